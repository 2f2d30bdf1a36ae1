"""In-edges of one slot by forward-mode differentiation, when upstream nodes are fewer than targets.

The engine's reverse mode runs one backward per downstream target (latent, summed over its
positions). With α a signed sum or mean over positions, an edge weight is bilinear in the
upstream node's move and the target's sensitivity,

    w(u → λ) = (1/K) Σ_k Σ_{q ∈ λ's positions} Σ_p ∂λ[q]/∂x̂_s[p] · t_u[p]   at t = (k - ½)/K,

where ``t_u[p]`` is node u's move at its hook (``Δf_u[p] W_dec[u]`` for a latent, the error's
change for the error node, the embedding's change for the embedding). The inner sums are one
Jacobian-vector product per upstream node (``torch.func.jvp``), so when a slot has fewer
upstream nodes than targets (the embedding is one node; every dictionary downstream of it has
as many targets as active latents) forward mode computes the same weights in fewer passes: the
same midpoint rule, the same definition, only the order of the sums changes (float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ingest.attribution.batch import Prepared
from ingest.attribution.nodes import steps_per_pass
from ingest.attribution.rows import EdgeRows, _Targets
from ingest.attribution.slots import Slot

#: A forward-mode pass per upstream node costs about this many reverse-mode passes per target
#: (vmap over jvp vs over vjp, measured on the bench's tiny Llama: 2.5x); forward mode is used
#: when the upstream nodes times this are fewer than the targets.
FORWARD_COST = 3


def upstream_tangents(slot: Slot, dx: Tensor, f_clean: Tensor | None,
                      f_base: Tensor | None) -> tuple[Tensor, Tensor]:
    """Each upstream node's move at its hook, ``[U n T d_in]``, and the node ids ``[U]``: the
    candidates of :func:`~ingest.attribution.rows.project_on_nodes` (latents that move, then the
    vector node), less those whose move is identically zero (they have no edges)."""
    vector_ids = torch.tensor([slot.vector], device=dx.device)
    if slot.dictionary is None or f_clean is None or f_base is None:
        moves, ids = dx[None], vector_ids
    else:
        df = f_clean - f_base
        cand = (df != 0).any(0).any(0).nonzero(as_tuple=True)[0]
        W = slot.dictionary.W_dec[cand]                               # [U d_in]
        dfc = df[..., cand]                                           # [n T U]
        de = dx - dfc @ W                                             # the error node's move
        moves = torch.cat([dfc.permute(2, 0, 1)[..., None] * W[:, None, None, :], de[None]])
        ids = torch.cat([cand, vector_ids])
    live = moves.flatten(1).any(1)
    return moves[live], ids[live]


def n_upstream_nodes(slots: Sequence[Slot], prep: Prepared, ups: Sequence[int]) -> int:
    """An upper bound on the tangents :func:`forward_in_edges` needs (before zero moves drop)."""
    total = 0
    for s in ups:
        fc, fb = prep.f_clean[s], prep.f_base[s]
        total += 1 if fc is None or fb is None else int((fc != fb).any(0).any(0).sum()) + 1
    return total


def forward_in_edges(engine: Any, batch: Any, prep: Prepared, m: int, targets: _Targets, ups: Sequence[int],
                     total: Tensor | None) -> dict[int, EdgeRows]:
    """Un-pruned edge rows into slot ``m``'s targets from every upstream slot in ``ups`` (the
    engine's ``_rows`` output, one row per (target group, upstream node) with a nonzero weight);
    ``total`` [n, n_nodes] gets each group's sum over all upstream nodes (completeness)."""
    import torch.func

    slots, K, n = engine.slots, engine.config.steps, len(batch)
    d = slots[m].dictionary
    T = prep.valid.shape[1]
    moves = {s: upstream_tangents(slots[s], prep.clean[s] - prep.base[s], prep.f_clean[s], prep.f_base[s])
             for s in ups}
    # which (example, position, node) of slot m are targets: a latent where active, the error node
    mask = torch.zeros((n, T, slots[m].n_nodes), dtype=prep.clean[m].dtype, device=prep.valid.device)
    mask[targets.ex, targets.q, targets.node] = 1
    layer = slots[m].layer + 1
    per_pass = steps_per_pass(K, n)
    acc = {s: torch.zeros((len(moves[s][1]), n, slots[m].n_nodes), dtype=mask.dtype, device=mask.device)
           for s in ups}
    for k0 in range(0, K, per_pass):
        ks = range(k0, min(K, k0 + per_pass))     # these steps' copies of the batch run as one batch
        paths = [engine._path(prep, (k + 0.5) / K) for k in ks]
        values = [torch.cat(v) for v in zip(*paths, strict=True)]
        tokens = batch.tokens.repeat(len(ks), 1)
        g = prep.grad_metric[m].repeat(len(ks), 1, 1)
        w = mask.repeat(len(ks), 1, 1)

        def scalars(*leaves: Tensor, values: list[Tensor] = values, tokens: Tensor = tokens,
                    g: Tensor = g, w: Tensor = w) -> Tensor:
            vals = list(values)
            for s, leaf in zip(ups, leaves, strict=True):
                vals[s] = leaf
            y = engine.frozen_forward(tokens, vals, stop_at_layer=layer)[1][m]
            f = d.encode(y)
            err = ((y - d.decode(f)) * g).sum(-1, keepdim=True)
            return (torch.cat([f, err], -1) * w).sum(1)               # [k·n, n_nodes]

        primals = tuple(values[s] for s in ups)
        for i, s in enumerate(ups):
            tangent, _ = moves[s]
            if len(tangent) == 0:
                continue
            zeros = [torch.zeros_like(p) for p in primals]

            def push(t: Tensor, i: int = i, zeros: list[Tensor] = zeros, reps: int = len(ks)) -> Tensor:
                tangents = list(zeros)
                tangents[i] = t.repeat(reps, 1, 1)
                return torch.func.jvp(scalars, primals, tuple(tangents))[1]

            out = torch.func.vmap(push)(tangent)                       # [U k·n n_nodes]
            acc[s] += out.view(len(tangent), len(ks), n, -1).sum(1) / K
    rows: dict[int, EdgeRows] = {}
    for s in ups:
        W, ids = acc[s][:, targets.g_ex, targets.g_node], moves[s][1]  # [U groups]
        if total is not None:
            total.index_put_((targets.g_ex, targets.g_node), W.sum(0).double(), accumulate=True)
        u, grp = (W != 0).nonzero(as_tuple=True)
        rows[s] = EdgeRows(example=targets.g_ex[grp], dst=targets.g_node[grp], src=ids[u], weight=W[u, grp])
    return rows
