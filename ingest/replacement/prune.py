"""Influence pruning and the replacement / completeness scores of a replacement graph.

Definitions (Ameisen et al. 2025, methods §5 and appendix; the same as circuit-tracer's
``prune_graph`` and ``compute_graph_scores``), for an adjacency ``A`` whose rows are targets
and columns sources, nodes ordered features / errors / tokens / targets:

* ``Â = |A|`` with each row divided by its sum (rows that sum to 0 stay 0);
* influence ``I = w Â + w Â² + ...`` (``w``: the target weights on the target nodes), the
  share of the targets' normalised input that each node carries through all paths;
* **node pruning** keeps the nodes whose influence is at least the threshold value ``v`` for
  which the nodes ``>= v`` carry ``node_threshold`` of the total (the smallest such set),
  plus every token and target node;
* **edge pruning** on the node-pruned graph scores edge ``(t, s)`` by ``Â[t, s] (I_t + w_t)``
  and keeps the smallest set carrying ``edge_threshold`` of the total; then feature and
  error nodes without a kept out-edge, and features without a kept in-edge, are dropped, until
  nothing changes;
* **replacement score**: of the influence that reaches the targets from tokens and errors,
  the share from tokens (1: no error node matters; 0: only error nodes feed the targets);
* **completeness score**: the influence-weighted (``I + w``) mean over nodes of the share of a
  node's normalised input that does not come from error nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ingest.errors import AttributionError


@dataclass(frozen=True)
class Layout:
    """Node counts in the order features / errors / tokens / targets."""

    n_features: int
    n_errors: int
    n_tokens: int
    n_targets: int

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_tokens + self.n_targets

    @property
    def errors(self) -> slice:
        return slice(self.n_features, self.n_features + self.n_errors)

    @property
    def tokens(self) -> slice:
        return slice(self.n_features + self.n_errors, self.n_features + self.n_errors + self.n_tokens)


@dataclass(frozen=True)
class Pruned:
    """Which nodes and edges survive, and each node's cumulative influence share."""

    node_mask: Bool[Tensor, " n_nodes"]
    edge_mask: Bool[Tensor, "n_nodes n_nodes"]
    cumulative: Float[Tensor, " n_nodes"]


@dataclass(frozen=True)
class Scores:
    replacement: float
    completeness: float


def normalise(A: Float[Tensor, "n n"]) -> Float[Tensor, "n n"]:
    M = A.abs()
    return M / M.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(M: Float[Tensor, "n n"], w: Float[Tensor, " n"], max_iter: int = 1000) -> Float[Tensor, " n"]:
    """``w M + w M² + ...``; the graph is acyclic, so the series ends after at most its depth."""
    term = w @ M
    total = term.clone()
    for _ in range(max_iter):
        if not term.any():
            return total
        term = term @ M
        total += term
    raise AttributionError(f"influence did not converge in {max_iter} steps: the adjacency has a cycle")


def _target_weights(layout: Layout, weights: Tensor, like: Tensor) -> Tensor:
    w = torch.zeros(layout.n_nodes, dtype=like.dtype, device=like.device)
    w[layout.n_nodes - layout.n_targets:] = weights.to(like.dtype)
    return w


def share_threshold(scores: Tensor, share: float) -> Tensor:
    """The value ``v`` such that the scores ``>= v`` are the fewest carrying ``share`` of the total."""
    ordered = torch.sort(scores, descending=True).values
    cum = torch.cumsum(ordered, dim=0) / torch.sum(ordered)
    i = min(int(torch.searchsorted(cum, share).item()), len(cum) - 1)
    return ordered[i]


def prune(A: Float[Tensor, "n n"], layout: Layout, weights: Float[Tensor, " n_targets"], *,
          node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """Influence pruning (module docstring)."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    w = _target_weights(layout, weights, A)
    node_infl = influence(normalise(A), w)
    keep = node_infl >= share_threshold(node_infl, node_threshold)
    fixed_start = layout.n_features + layout.n_errors
    keep[fixed_start:] = True                                   # tokens and targets always stay
    P = A.clone()
    P[~keep] = 0
    P[:, ~keep] = 0
    Mp = normalise(P)
    edge_scores = Mp * (influence(Mp, w) + w)[:, None]
    edges = edge_scores >= share_threshold(edge_scores.flatten(), edge_threshold)
    F = layout.n_features

    def drop_dangling() -> None:
        keep[:fixed_start] &= edges[:, :fixed_start].any(0)     # features, errors: an out-edge kept
        keep[:F] &= edges[:F].any(1)                            # features: an in-edge kept

    # Each round can leave new nodes dangling; at most depth + 1 rounds (circuit-tracer's order).
    before = keep.clone()
    drop_dangling()
    while not torch.equal(keep, before):
        before = keep.clone()
        edges[~keep] = False
        edges[:, ~keep] = False
        drop_dangling()
    ordered, idx = torch.sort(node_infl, descending=True)
    cumulative = torch.zeros_like(node_infl)
    cumulative[idx] = torch.cumsum(ordered, 0) / torch.sum(ordered)
    return Pruned(node_mask=keep, edge_mask=edges, cumulative=cumulative)


def scores(A: Float[Tensor, "n n"], layout: Layout, weights: Float[Tensor, " n_targets"]) -> Scores:
    """Replacement and completeness scores of ``A`` (module docstring)."""
    w = _target_weights(layout, weights, A)
    M = normalise(A)
    infl = influence(M, w)
    tok = infl[layout.tokens].sum()
    err = infl[layout.errors].sum()
    replacement = tok / (tok + err) if float(tok + err) > 0 else torch.tensor(float("nan"))
    non_error = 1 - M[:, layout.errors].sum(dim=-1)
    out = infl + w
    completeness = (non_error * out).sum() / out.sum()
    return Scores(replacement=float(replacement), completeness=float(completeness))


def masked(A: Tensor, pruned: Pruned) -> Tensor:
    """The pruned graph's adjacency: dropped nodes' rows and columns and dropped edges at 0."""
    P = A * pruned.edge_mask.to(A.dtype)
    P[~pruned.node_mask] = 0
    P[:, ~pruned.node_mask] = 0
    return P
