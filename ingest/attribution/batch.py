"""What one batch of examples is and yields: prepared values, the batch's graph, the metric.

Data only (no model calls), shared by :mod:`.engine`, :mod:`.nodes` and :mod:`.aggregate`.
Node axes follow :mod:`.slots`: latents ``0 .. n_latents-1`` of a slot, then its vector node.
"""

from __future__ import annotations

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


@dataclass
class Prepared:
    """Clean and baseline values of every slot for one batch (graph positions only differ)."""

    valid: Bool[Tensor, "batch pos"]
    clean: list[HookValues]
    base: list[HookValues]
    f_clean: list[Tensor | None]
    f_base: list[Tensor | None]
    grad_metric: list[HookValues]  # ∂metric/∂x_s at the clean input (total effect)
    metric_clean: Tensor           # [batch] the metric on the clean prompts

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
