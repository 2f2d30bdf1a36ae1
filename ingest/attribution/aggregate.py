"""β over examples, thresholds and top-k: from per-example edges to the graph that is stored.

Everything is sparse: the accumulator holds one value per (upstream node, downstream node)
pair that carried a per-example weight above ``example_threshold`` in some example, never a
``d_dict x d_dict`` matrix. Its state is a handful of tensors, saved after every batch so an
interrupted ingest resumes where it stopped (:meth:`GraphAccumulator.state_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ingest.attribution.config import ExampleAgg
from ingest.attribution.batch import BatchGraph

Pair = tuple[int, int]


@dataclass
class Edges:
    """Final edges of one (upstream slot, downstream slot) pair: node indices and weights."""

    dst: Tensor
    src: Tensor
    weight: Tensor

    def __len__(self) -> int:
        return int(self.weight.numel())


class GraphAccumulator:
    """Accumulates :class:`BatchGraph` s over a dataset.

    ``n_nodes[s]`` is the node count of slot ``s`` (the output pseudo-slot included). Per
    pair, keys are ``dst * n_nodes[src_slot] + src``; values are the running sum (β = mean or
    sum) or the running largest-magnitude value (β = max, kept as max and min).
    """

    def __init__(self, beta: ExampleAgg, n_nodes: list[int]) -> None:
        self.beta = ExampleAgg(beta)
        self.n_nodes = list(n_nodes)
        self.n_examples = 0
        self.batches = 0
        self.keys: dict[Pair, Tensor] = {}
        self.hi: dict[Pair, Tensor] = {}
        self.lo: dict[Pair, Tensor] = {}
        self.node_attr: dict[int, Tensor] = {}
        self.active: dict[int, Tensor] = {}
        self.head_mass: dict[int, Tensor] = {}
        self.metric_clean = 0.0
        self.metric_base = 0.0
        #: dst slot -> [Σ |in-edge sum - Δ|, Σ |Δ|] over its targets and the examples (completeness)
        self.residual: dict[int, list[float]] = {}
        self.steps: int | None = None  # IG steps of the batches so far (set by the pipeline; resumed)

    def add(self, g: BatchGraph) -> None:
        for pair, rows in g.edges.items():
            if len(rows) == 0:
                continue
            keys = rows.dst.long() * self.n_nodes[pair[0]] + rows.src.long()
            self._merge(pair, keys.cpu(), rows.weight.detach().double().cpu())
        for store, new in ((self.node_attr, {s: a.sum(0) for s, a in g.node_attr.items()}),
                           (self.active, g.active), (self.head_mass, g.head_mass)):
            for s, value in new.items():
                value = value.detach().cpu()
                value = value.double() if value.is_floating_point() else value
                store[s] = store[s] + value if s in store else value.clone()
        if g.metric_clean is not None and g.metric_base is not None:
            self.metric_clean += float(g.metric_clean.double().sum())
            self.metric_base += float(g.metric_base.double().sum())
        for m, sums in g.edge_sums.items():
            if m in g.delta:
                delta = g.delta[m].detach().double().cpu()
                r = self.residual.setdefault(m, [0.0, 0.0])
                r[0] += float((sums.detach().cpu() - delta).abs().sum())
                r[1] += float(delta.abs().sum())
        self.n_examples += g.n_examples
        self.batches += 1

    def _merge(self, pair: Pair, keys: Tensor, values: Tensor) -> None:
        old = self.keys.get(pair)
        hi = values if old is None else torch.cat([self.hi[pair], values])
        keys = keys if old is None else torch.cat([old, keys])
        uniq, inv = torch.unique(keys, return_inverse=True)
        if self.beta is ExampleAgg.MAX:
            lo = values if old is None else torch.cat([self.lo[pair], values])
            self.hi[pair] = torch.full((len(uniq),), -torch.inf, dtype=hi.dtype).scatter_reduce(0, inv, hi, "amax")
            self.lo[pair] = torch.full((len(uniq),), torch.inf, dtype=lo.dtype).scatter_reduce(0, inv, lo, "amin")
        else:
            self.hi[pair] = torch.zeros(len(uniq), dtype=hi.dtype).index_add_(0, inv, hi)
        self.keys[pair] = uniq

    def merge(self, other: GraphAccumulator) -> None:
        """Add ``other``'s batches to this accumulator: sums (β mean/sum) add, maxima and minima
        (β max) combine exactly, counts and residuals add. Merging per-batch accumulators in
        batch order gives the accumulator of adding the batches one by one (the sums to float64
        rounding), which is how a distributed ingest (ingest/distributed) stores the graph a
        single process would."""
        if other.beta is not self.beta or other.n_nodes != self.n_nodes:
            raise ValueError("accumulators of different beta or node counts cannot be merged")
        if self.steps is not None and other.steps is not None and other.steps != self.steps:
            raise ValueError(f"accumulators of different IG steps ({self.steps}, {other.steps}) cannot be merged")
        self.steps = self.steps if self.steps is not None else other.steps
        for pair, keys in other.keys.items():
            old = self.keys.get(pair)
            if old is None:
                self.keys[pair], self.hi[pair] = keys.clone(), other.hi[pair].clone()
                if pair in other.lo:
                    self.lo[pair] = other.lo[pair].clone()
                continue
            uniq, inv = torch.unique(torch.cat([old, keys]), return_inverse=True)
            hi = torch.cat([self.hi[pair], other.hi[pair]])
            if self.beta is ExampleAgg.MAX:
                lo = torch.cat([self.lo[pair], other.lo[pair]])
                self.hi[pair] = torch.full((len(uniq),), -torch.inf, dtype=hi.dtype).scatter_reduce(0, inv, hi, "amax")
                self.lo[pair] = torch.full((len(uniq),), torch.inf, dtype=lo.dtype).scatter_reduce(0, inv, lo, "amin")
            else:
                self.hi[pair] = torch.zeros(len(uniq), dtype=hi.dtype).index_add_(0, inv, hi)
            self.keys[pair] = uniq
        for store, new in ((self.node_attr, other.node_attr), (self.active, other.active),
                           (self.head_mass, other.head_mass)):
            for s, value in new.items():
                store[s] = store[s] + value if s in store else value.clone()
        self.metric_clean += other.metric_clean
        self.metric_base += other.metric_base
        for m, (res, mag) in other.residual.items():
            r = self.residual.setdefault(m, [0.0, 0.0])
            r[0] += res
            r[1] += mag
        self.n_examples += other.n_examples
        self.batches += other.batches

    # -- results ---------------------------------------------------------------------------

    def weights(self, pair: Pair) -> Edges:
        """β-aggregated weights of every accumulated edge of ``pair`` (no threshold)."""
        keys = self.keys[pair]
        if self.beta is ExampleAgg.MAX:
            hi, lo = self.hi[pair], self.lo[pair]
            w = torch.where(hi.abs() >= lo.abs(), hi, lo)
            w = torch.where(torch.isfinite(w), w, torch.zeros_like(w))
        elif self.beta is ExampleAgg.MEAN:
            w = self.hi[pair] / max(self.n_examples, 1)
        else:
            w = self.hi[pair]
        n_src = self.n_nodes[pair[0]]
        return Edges(dst=keys // n_src, src=keys % n_src, weight=w)

    def result(self, threshold: float = 0.0, top_k: int = 0, noise_rel: float = 0.0) -> dict[Pair, Edges]:
        """The kept edges: above the noise floor (:func:`drop_noise`), |w| >= threshold, then at
        most ``top_k`` in-edges per downstream node."""
        edges, _ = drop_noise({pair: self.weights(pair) for pair in self.keys}, noise_rel)
        return select(edges, threshold, top_k)

    def completeness(self) -> dict[int, float]:
        """Relative completeness residual per downstream slot (the output is the last slot):
        Σ |Σ in-edges - Δ| / Σ |Δ| over its targets and examples, where Δ is the target's change
        from the baseline to the clean input. Integrated gradients makes it 0 as the number of
        steps grows (the engine's docstring); a large value means the path has not converged."""
        return {m: (res / mag if mag > 0 else (0.0 if res == 0 else float("inf")))
                for m, (res, mag) in sorted(self.residual.items())}

    def node_attribution(self, s: int) -> Tensor | None:
        """Mean over examples of each node's total-effect attribution to the metric."""
        a = self.node_attr.get(s)
        return None if a is None else a / max(self.n_examples, 1)

    # -- resume ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"beta": str(self.beta), "n_nodes": self.n_nodes, "n_examples": self.n_examples,
                "batches": self.batches, "keys": self.keys, "hi": self.hi, "lo": self.lo,
                "node_attr": self.node_attr, "active": self.active, "head_mass": self.head_mass,
                "metric_clean": self.metric_clean, "metric_base": self.metric_base, "residual": self.residual,
                "steps": self.steps}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GraphAccumulator:
        acc = cls(ExampleAgg(state["beta"]), state["n_nodes"])
        for name in ("n_examples", "batches", "keys", "hi", "lo", "node_attr", "active", "head_mass",
                     "metric_clean", "metric_base"):
            setattr(acc, name, state[name])
        acc.residual = state.get("residual", {})  # absent from states saved before they existed
        acc.steps = state.get("steps")
        return acc


def drop_noise(edges: dict[Pair, Edges], noise_rel: float) -> tuple[dict[Pair, Edges], int]:
    """Drop in-edges below ``noise_rel`` times the largest |w| into the same downstream node
    (over all its upstream slots); returns the kept edges and how many were dropped.

    Why: in float32 a weight that is exactly zero in one basis is rounding noise in a rotated
    one (an SVD or orthogonal basis: Σ_i a_i b_i over cancelling terms leaves ~1e-7 of the
    terms' size), so ``threshold = 0`` would store every such pair. Float32's unit roundoff is
    6e-8; sums over d_model terms and K IG steps grow it by a few orders, hence a default of
    1e-6 (``AttributionConfig.noise_rel``): an edge a millionth of its target's strongest
    in-edge carries nothing measurable. 0 keeps everything."""
    if noise_rel <= 0:
        return edges, 0
    peak: dict[int, Tensor] = {}  # downstream slot -> largest |w| into each of its nodes
    for m in {m for _, m in edges}:
        parts = [e for (_, d), e in edges.items() if d == m and len(e)]
        if parts:
            dst = torch.cat([e.dst.long() for e in parts])
            w = torch.cat([e.weight.abs() for e in parts])
            peak[m] = torch.zeros(int(dst.max()) + 1, dtype=w.dtype).scatter_reduce(0, dst, w, "amax")
    kept, dropped = {}, 0
    for (s, m), e in edges.items():
        if not len(e):
            kept[(s, m)] = e
            continue
        keep = e.weight.abs() >= noise_rel * peak[m][e.dst.long()]
        dropped += int((~keep & (e.weight != 0)).sum())  # exact zeros were never edges
        kept[(s, m)] = Edges(e.dst[keep], e.src[keep], e.weight[keep])
    return kept, dropped


def select(edges: dict[Pair, Edges], threshold: float, top_k: int) -> dict[Pair, Edges]:
    """Keep |w| >= threshold (and w != 0); then the ``top_k`` largest |w| in-edges of every
    downstream node, counted over all its upstream slots (ties broken by slot, then index)."""
    kept = {}
    for pair, e in edges.items():
        m = (e.weight.abs() >= threshold) & (e.weight != 0)
        kept[pair] = Edges(e.dst[m], e.src[m], e.weight[m])
    if top_k <= 0:
        return kept
    by_dst: dict[int, list[Pair]] = {}
    for pair in sorted(kept):
        by_dst.setdefault(pair[1], []).append(pair)
    out: dict[Pair, Edges] = {}
    for pairs in by_dst.values():
        parts = [kept[p] for p in pairs]
        which = torch.cat([torch.full((len(e),), i) for i, e in enumerate(parts)])
        dst = torch.cat([e.dst for e in parts])
        src = torch.cat([e.src for e in parts])
        w = torch.cat([e.weight for e in parts])
        # Sort by |w| descending (stable over slot/index order), then stably by dst.
        order = torch.argsort(-w.abs(), stable=True)
        order = order[torch.argsort(dst[order], stable=True)]
        d_sorted = dst[order]
        first = torch.ones_like(d_sorted, dtype=torch.bool)
        first[1:] = d_sorted[1:] != d_sorted[:-1]
        group_start = torch.cummax(torch.where(first, torch.arange(len(order)), 0), 0).values
        rank = torch.arange(len(order)) - group_start
        keep = order[rank < top_k]
        for i, p in enumerate(pairs):
            sel = keep[which[keep] == i]
            sel = sel.sort().values
            out[p] = Edges(dst[sel], src[sel], w[sel])
    return out
