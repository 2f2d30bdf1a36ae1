"""Per-example edge rows: downstream targets grouped into backward slots, α over positions.

Helpers of :mod:`.engine` that work on tensors only (no model): how downstream nodes
share the copies of one batched backward pass, how a latent's Jacobian row is read, and how
position pairs contract (α) and rows of the same edge combine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.attribution.config import AttributionConfig, PositionAgg


@dataclass
class EdgeRows:
    """Per-example edges of one (upstream slot, downstream slot) pair, α-aggregated.

    ``example`` indexes the batch; ``dst`` and ``src`` are node indices inside their slots
    (the vector node of a slot is its ``n_latents``; the output's only node is 0).
    """

    example: Int[Tensor, " n"]
    dst: Int[Tensor, " n"]
    src: Int[Tensor, " n"]
    weight: Float[Tensor, " n"]

    def __len__(self) -> int:
        return int(self.weight.numel())


@dataclass
class _Targets:
    """Downstream nodes of one slot for one batch, grouped into batched-backward slots.

    Target ``i`` is node ``node[i]`` at (``ex[i]``, ``q[i]``); it goes into backward slot
    ``rank[i]`` (shared across examples). Group ``g`` (a slot's content for one example) is
    (``g_ex[g]``, ``g_node[g]``); ``table[ex, rank]`` is the group id or -1.
    """

    ex: Tensor
    q: Tensor
    node: Tensor
    rank: Tensor
    g_ex: Tensor
    g_node: Tensor
    table: Tensor

    @property
    def width(self) -> int:
        return int(self.table.shape[1])


def _group(ex: Tensor, q: Tensor, node: Tensor, *, n: int, T: int, n_nodes: int,
           merge_positions: bool) -> _Targets:
    """Assign targets to backward slots: one per (example, node) when positions merge, else
    one per (example, position, node); each example numbers its groups 0, 1, ..."""
    key = ex * n_nodes + node if merge_positions else (ex * T + q) * n_nodes + node
    uniq, inv = torch.unique(key, return_inverse=True)
    per_ex = n_nodes if merge_positions else T * n_nodes
    g_ex = uniq // per_ex
    g_node = uniq % n_nodes
    counts = torch.bincount(g_ex, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    g_rank = torch.arange(len(uniq), device=ex.device) - starts[g_ex]
    width = int(counts.max()) if len(uniq) else 0
    table = torch.full((n, width), -1, dtype=torch.long, device=ex.device)
    table[g_ex, g_rank] = torch.arange(len(uniq), device=ex.device)
    return _Targets(ex=ex, q=q, node=node, rank=g_rank[inv], g_ex=g_ex, g_node=g_node, table=table)


def _latent_jacobian_rows(d: Any, rows: Tensor, node: Tensor, *, budget: int = 1 << 24) -> Tensor:
    """∂encode(x)[node_i]/∂x at ``rows[i]``: one backward over a copy of each row (exact for
    any per-token encoder, TopK's active set included)."""
    out = []
    step = max(1, budget // max(1, d.d_dict))
    for a in range(0, len(node), step):
        r = rows[a:a + step].detach().requires_grad_(True)
        with torch.enable_grad():
            f = d.encode(r)
            g, = torch.autograd.grad(f.gather(1, node[a:a + step, None]).sum(), r)
        out.append(g)
    return torch.cat(out) if out else rows.new_zeros((0, rows.shape[-1]))


def _reduce_positions(A: Tensor, alpha: PositionAgg, absolute: bool) -> Tensor:
    """α over the upstream position axis (dim 2) of [B n T U]."""
    if absolute:
        A = A.abs()
    if alpha is PositionAgg.MAX:
        idx = A.abs().argmax(2, keepdim=True)
        return A.gather(2, idx).squeeze(2)
    return A.sum(2)


def _coalesce(rows: EdgeRows, alpha: PositionAgg, n_src: int) -> EdgeRows:
    """Combine rows with the same (example, dst, src) (one per downstream position) by α."""
    if len(rows) == 0:
        return rows
    big = int(rows.dst.max()) + 1
    key = (rows.example * big + rows.dst) * n_src + rows.src
    uniq, inv = torch.unique(key, return_inverse=True)
    if alpha is PositionAgg.MAX:
        hi = torch.full((len(uniq),), -torch.inf, dtype=rows.weight.dtype, device=key.device)
        lo = torch.full((len(uniq),), torch.inf, dtype=rows.weight.dtype, device=key.device)
        hi = hi.scatter_reduce(0, inv, rows.weight, "amax")
        lo = lo.scatter_reduce(0, inv, rows.weight, "amin")
        w = torch.where(hi.abs() >= lo.abs(), hi, lo)
    else:
        w = torch.zeros(len(uniq), dtype=rows.weight.dtype, device=key.device).index_add_(0, inv, rows.weight)
    src = uniq % n_src
    rest = uniq // n_src
    return EdgeRows(example=rest // big, dst=rest % big, src=src, weight=w)


def prune_early(rows: EdgeRows, config: AttributionConfig, n_valid: Tensor) -> EdgeRows:
    """Drop a chunk's rows that the engine's final pruning would drop (``|w| < epsilon`` after
    α), so that the rows held between chunks follow kept edges, not every (target, candidate)
    pair. Exact where a row's fate does not depend on other rows: merged positions (one row per
    edge, compared after the same mean normalisation by ``n_valid`` [batch]) and max (the row of
    largest |w| decides, and it is kept iff the edge is); a sum of |w| over positions, whose rows
    add up across chunks, is left whole."""
    if not config.merges_positions and config.alpha is not PositionAgg.MAX:
        return rows
    w = rows.weight
    if config.alpha is PositionAgg.MEAN:
        w = w / n_valid[rows.example].clamp(min=1).to(w.dtype)
    keep = w.abs() >= max(config.epsilon, 1e-30)
    return EdgeRows(rows.example[keep], rows.dst[keep], rows.src[keep], rows.weight[keep])


def project_on_nodes(slot: Any, dx: Tensor, f_clean: Tensor | None, f_base: Tensor | None,
                     gbar: Tensor) -> tuple[Tensor, Tensor]:
    """IG attributions of one slot's nodes from mean gradients ``gbar`` [B n T d_in] at its hook:
    [B n T U] over candidate node ids [U] (latents that move between baseline and clean, then the
    vector node). ``dx`` is the hook's clean - baseline value; a latent's attribution is
    ``(gbar · W_dec[u]) Δf_u``, the error node's ``gbar · (dx - Δf W_dec)``. The latents may be
    sparse COO tensors (:class:`~ingest.attribution.batch.LatentStore`): Δf is then formed from
    the nonzeros only, never as a dense ``[n T d_dict]`` tensor, with the same values."""
    vector_ids = torch.tensor([slot.vector], device=dx.device)
    if slot.dictionary is None:
        return (gbar * dx).sum(-1, keepdim=True), vector_ids
    cand, dfc = latent_delta(f_clean, f_base)                        # [U], [n T U]
    W = slot.dictionary.W_dec[cand]                                  # [U d_in]
    de = dx - dfc @ W                                                # error delta
    A_lat = (gbar @ W.T) * dfc
    A_err = (gbar * de).sum(-1, keepdim=True)
    return torch.cat([A_lat, A_err], dim=-1), torch.cat([cand, vector_ids])


def latent_delta(f_clean: Tensor | None, f_base: Tensor | None) -> tuple[Tensor, Tensor]:
    """Latents that differ between clean and baseline, ascending ids [U], and their
    differences ``f_clean - f_base`` at those columns [n T U]; dense or sparse inputs."""
    if f_clean is None or f_base is None:
        raise ValueError("a dictionary slot has clean and baseline latents")
    if not (f_clean.is_sparse and f_base.is_sparse):
        df = f_clean.to_dense() - f_base.to_dense()
        cand = (df != 0).any(0).any(0).nonzero(as_tuple=True)[0]
        return cand, df[..., cand]
    df = (f_clean - f_base).coalesce()   # the same float subtraction, at the nonzeros of either
    idx, val = df.indices(), df.values()
    nz = val != 0
    ex, q, u, val = idx[0, nz], idx[1, nz], idx[2, nz], val[nz]
    cand = torch.unique(u)
    dfc = torch.zeros((*df.shape[:2], len(cand)), dtype=val.dtype, device=val.device)
    dfc[ex, q, torch.searchsorted(cand, u)] = val
    return cand, dfc
