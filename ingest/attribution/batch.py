"""What one batch of examples is and yields: prepared values, the batch's graph, the metric.

Data only (no model calls), shared by :mod:`.engine`, :mod:`.nodes` and :mod:`.aggregate`.
Node axes follow :mod:`.slots`: latents ``0 .. n_latents-1`` of a slot, then its vector node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ingest.attribution.rows import EdgeRows
from ingest.tasks.encode import TaskBatch


#: Per-slot hook values, flattened to ``[batch pos d_in]`` (``hook_z`` is ``[batch pos (n_heads d_head)]``).
HookValues = Float[Tensor, "batch pos d_in"]


@dataclass
class BatchGraph:
    """What one batch of examples contributes to the graph. ``S = len(slots)`` is the output."""

    n_examples: int
    edges: dict[tuple[int, int], EdgeRows] = field(default_factory=dict)
    #: dst slot -> [batch, n_nodes]: Σ_q (λ(clean) - λ(baseline)) of each downstream node
    #: (what its in-edges sum to under completeness, with α = sum).
    delta: dict[int, Tensor] = field(default_factory=dict)
    #: dst slot -> [batch, n_nodes]: Σ of every in-edge of each downstream node over all upstream
    #: nodes and positions, before α and pruning; completeness says it equals ``delta``.
    edge_sums: dict[int, Tensor] = field(default_factory=dict)
    #: slot -> [batch, n_nodes]: total-effect IG attribution of each node to the metric, Σ over positions.
    node_attr: dict[int, Tensor] = field(default_factory=dict)
    #: slot -> [n_nodes] number of (example, position)s where the node is active (clean or baseline).
    active: dict[int, Tensor] = field(default_factory=dict)
    #: attention slot -> [n_latents, n_heads]: Σ |per-head contribution| to each latent's activation.
    head_mass: dict[int, Tensor] = field(default_factory=dict)
    #: [batch] metric on the clean prompt and at the edge graph's baseline.
    metric_clean: Tensor | None = None
    metric_base: Tensor | None = None


#: Store a slot's latents sparse when at most this fraction of them is nonzero (a COO entry
#: costs 3 int64 indices + 1 value = 7 float32 slots, so sparse pays below 1/7).
SPARSE_BELOW = 1 / 8


class LatentStore(Sequence[Tensor | None]):
    """Per-slot latents ``[batch pos d_dict]`` held sparse (COO) when few are nonzero.

    A TopK or ReLU dictionary has ``k`` << ``d_dict`` active latents per token, so the dense
    tensors of every slot would make a batch's resident memory grow with dictionary width
    (``n × T × d_dict`` floats per slot) rather than with active latents (``n × T × k``).
    Indexing (``store[s]``) returns the slot's dense tensor, built on the spot and exact
    (``to_dense`` of the stored nonzeros), so a reader sees what it always saw; the engine's
    hot paths read :meth:`stored` and work on the nonzeros. ``sparse=False`` keeps all dense.
    """

    def __init__(self, latents: Sequence[Tensor | None], *, sparse: bool = True) -> None:
        self._items = [self.pack(f) if sparse else f for f in latents]

    @staticmethod
    def pack(f: Tensor | None) -> Tensor | None:
        """``f`` as a store holds it: coalesced sparse COO when at most :data:`SPARSE_BELOW` is nonzero."""
        if f is None or f.is_sparse or f.numel() == 0:
            return f
        nnz = int(torch.count_nonzero(f))
        return f.to_sparse().coalesce() if nnz <= SPARSE_BELOW * f.numel() else f

    def stored(self, s: int) -> Tensor | None:
        """Slot ``s``'s latents as held: a coalesced sparse COO tensor, a dense one, or None."""
        return self._items[s]

    def __getitem__(self, s: int) -> Tensor | None:  # type: ignore[override]
        f = self._items[s]
        return f.to_dense() if f is not None and f.is_sparse else f

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Tensor | None]:
        return (self[s] for s in range(len(self)))


@dataclass
class Prepared:
    """Clean and baseline values of every slot for one batch (graph positions only differ).

    ``f_clean``/``f_base`` are :class:`LatentStore` s (lists given are converted): indexing one
    gives the slot's dense latents, while the batch holds only the nonzeros."""

    valid: Bool[Tensor, "batch pos"]
    clean: list[HookValues]
    base: list[HookValues]
    f_clean: Sequence[Tensor | None]
    f_base: Sequence[Tensor | None]
    grad_metric: list[HookValues]  # ∂metric/∂x_s at the clean input (total effect)
    metric_clean: Tensor           # [batch] the metric on the clean prompts

    def __post_init__(self) -> None:
        if not isinstance(self.f_clean, LatentStore):
            self.f_clean = LatentStore(self.f_clean)
        if not isinstance(self.f_base, LatentStore):
            self.f_base = LatentStore(self.f_base)

    @property
    def n_valid(self) -> Tensor:
        return self.valid.sum(-1)


def logit_diff(logits: Float[Tensor, "batch pos d_vocab"], batch: TaskBatch) -> Float[Tensor, " batch"]:
    """The output metric: logit[answer] - logit[cf_answer] at each prompt's last token."""
    rows = torch.arange(len(batch), device=logits.device)
    last = logits[rows, batch.last]
    return last[rows, batch.answer] - last[rows, batch.cf_answer]


def _flat(x: Tensor) -> Tensor:
    return x.flatten(-2) if x.ndim == 4 else x


@dataclass
class MeanBaseline:
    """Reference means per slot: hook value ``x`` [d_in] and latents ``f`` [d_dict] (None: embedding)."""

    x: list[Tensor]
    f: list[Tensor | None]


def merge_graphs(n_examples: int, parts: list[tuple[Tensor, BatchGraph]]) -> BatchGraph:
    """One :class:`BatchGraph` of ``n_examples`` from graphs of row subsets (``(row indices,
    graph)``, e.g. the :meth:`TaskBatch.unpadded` groups): per-example tensors are put back in
    row order, edge rows get their rows' indices, counts add up."""
    out = BatchGraph(n_examples=n_examples)
    for idx, g in parts:
        for pair, rows in g.edges.items():
            moved = EdgeRows(idx.to(rows.example.device)[rows.example], rows.dst, rows.src, rows.weight)
            old = out.edges.get(pair)
            out.edges[pair] = moved if old is None else EdgeRows(
                *(torch.cat([a, b]) for a, b in zip((old.example, old.dst, old.src, old.weight),
                                                    (moved.example, moved.dst, moved.src, moved.weight), strict=True)))
        for name in ("delta", "edge_sums", "node_attr"):
            store = getattr(out, name)
            for s, t in getattr(g, name).items():
                full = store.setdefault(s, torch.zeros((n_examples, *t.shape[1:]), dtype=t.dtype, device=t.device))
                full[idx.to(t.device)] = t
        for name in ("active", "head_mass"):
            store = getattr(out, name)
            for s, t in getattr(g, name).items():
                store[s] = store[s] + t if s in store else t.clone()
        for name in ("metric_clean", "metric_base"):
            t = getattr(g, name)
            if t is not None:
                if getattr(out, name) is None:
                    setattr(out, name, torch.zeros(n_examples, dtype=t.dtype, device=t.device))
                getattr(out, name)[idx.to(t.device)] = t
    return out
