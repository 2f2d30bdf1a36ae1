"""Part A's reference for ``bench/attribution.py``: the same graph as the engine, made with one
``torch.autograd.grad`` per downstream target (see that script's docstring), and the comparison."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ingest.attribution.batch import BatchGraph, Prepared
from ingest.attribution.config import PositionAgg
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import Slot
from ingest.tasks.encode import TaskBatch

Dense = dict[tuple[int, int], torch.Tensor]  # (src slot, dst slot) -> [example, dst node, src node]


def _n_dst(slots: Sequence[Slot], m: int) -> int:
    return 1 if m == len(slots) else slots[m].n_nodes


def dense_edges(graph: BatchGraph, slots: Sequence[Slot], alpha: PositionAgg) -> tuple[Dense, int]:
    """The engine's edge rows as dense per-example tensors (small models only), and how many
    rows repeated an (example, dst, src) already seen. Repeated rows are combined by α (the
    largest magnitude for max, else the sum), which is what the engine means them to be."""
    out: Dense = {}
    repeated = 0
    for (s, m), rows in graph.edges.items():
        shape = (graph.n_examples, _n_dst(slots, m), slots[s].n_nodes)
        idx = ((rows.example * shape[1] + rows.dst) * shape[2] + rows.src).cpu()
        w = rows.weight.detach().cpu().double()
        repeated += len(idx) - len(torch.unique(idx))
        size = shape[0] * shape[1] * shape[2]
        if alpha is PositionAgg.MAX:
            hi = torch.full((size,), -torch.inf, dtype=w.dtype).scatter_reduce(0, idx, w, "amax")
            lo = torch.full((size,), torch.inf, dtype=w.dtype).scatter_reduce(0, idx, w, "amin")
            flat = torch.where(hi.abs() >= lo.abs(), hi, lo)
            flat = torch.where(torch.isfinite(flat), flat, torch.zeros_like(flat))
        else:
            flat = torch.zeros(size, dtype=w.dtype).index_add_(0, idx, w)
        out[s, m] = flat.view(shape)
    return out, repeated


def count_edges(graph: BatchGraph) -> int:
    """Edge rows (one per per-example weight unless the engine repeats an edge, see :func:`dense_edges`)."""
    return sum(len(rows) for rows in graph.edges.values())


def _n_nonzero(dense: Dense) -> int:
    return sum(int((t.abs() >= 1e-30).sum()) for t in dense.values())


def _project_row(slots: Sequence[Slot], prep: Prepared, s: int, e: int,
                 gbar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``_project`` for one example: attributions [T U] of slot ``s``'s nodes and their ids [U].

    Latent u at position p: (f_u - f_u^base)[p] * <W_dec[u], gbar[p]>; the vector node (error,
    or the embedding): <x - x^base - Σ_u (f_u - f_u^base) W_dec[u], gbar[p]>."""
    slot = slots[s]
    dx = prep.clean[s][e] - prep.base[s][e]                       # [T d_in]
    vector = torch.tensor([slot.vector], device=dx.device)
    if slot.dictionary is None:
        return (gbar * dx).sum(-1, keepdim=True), vector
    df = prep.f_clean[s][e] - prep.f_base[s][e]                   # type: ignore[index]
    cand = (df != 0).any(0).nonzero(as_tuple=True)[0]
    W = slot.dictionary.W_dec[cand]
    dfc = df[:, cand]
    a_lat = (gbar @ W.T) * dfc
    a_err = (gbar * (dx - dfc @ W)).sum(-1, keepdim=True)
    return torch.cat([a_lat, a_err], -1), torch.cat([cand, vector])


def loop_reference(engine: AttributionEngine, batch: TaskBatch, examples: Sequence[int]) -> tuple[Dense, Dense, int]:
    """Edges of ``examples`` with one backward pass per downstream target and IG step.

    Returns dense edges for α = sum and α = max (from the same gradients) and the number of
    backward passes. Targets are the engine's: every latent active (clean or at the baseline)
    at a graph position, plus the error node at every graph position, plus the output metric.
    """
    slots, S, K = engine.slots, engine.S, engine.config.steps
    prep = engine.prepare(batch)
    n = len(batch)
    with torch.no_grad():
        _, y0 = engine.frozen_forward(batch.tokens, prep.base)    # every upstream node at its baseline
    dsts = [m for m in range(1, S) if slots[m].dictionary is not None]
    targets: dict[int, torch.Tensor] = {}                        # m -> [N 3] (example, position, node)
    for m in dsts:
        d = slots[m].dictionary
        assert d is not None and prep.f_clean[m] is not None
        with torch.no_grad():
            act = ((prep.f_clean[m] != 0) | (d.encode(y0[m]) != 0)) & prep.valid[..., None]
        rows = [act.nonzero()]
        if engine.config.error_edges:
            e_ex, e_q = prep.valid.nonzero(as_tuple=True)
            rows.append(torch.stack([e_ex, e_q, torch.full_like(e_ex, slots[m].vector)], 1))
        targets[m] = torch.cat(rows)
    sums: Dense = {(s, m): torch.zeros((n, _n_dst(slots, m), slots[s].n_nodes), dtype=torch.float64)
                   for m in [*dsts, S] for s in range(m)}
    maxes: Dense = {key: t.clone() for key, t in sums.items()}
    backwards = 0
    for e in examples:
        sub = batch[e:e + 1]
        mine = {m: [tuple(r) for r in targets[m][targets[m][:, 0] == e, 1:].tolist()] for m in dsts}
        gbar: dict[tuple[int, int, int], dict[int, torch.Tensor]] = {}   # (m, q, node) -> {s: [T d_in]}

        def add(key: tuple[int, int, int], leaves: Sequence[int], grads: Sequence[torch.Tensor | None]) -> None:
            acc = gbar.setdefault(key, {})
            for s, g in zip(leaves, grads, strict=True):
                if g is not None:
                    acc[s] = acc[s] + g[0] / K if s in acc else g[0] / K

        for k in range(K):
            t = (k + 0.5) / K
            values = [(b[e:e + 1] + t * (c[e:e + 1] - b[e:e + 1])).detach().requires_grad_(True)
                      for c, b in zip(prep.clean, prep.base, strict=True)]
            with torch.enable_grad():
                logits, incoming = engine.frozen_forward(sub.tokens, values)
                for m in dsts:
                    d = slots[m].dictionary
                    y = incoming[m]
                    assert d is not None and y is not None
                    f = d.encode(y)
                    err = ((y - d.decode(f)) * prep.grad_metric[m][e:e + 1]).sum(-1)
                    ups = list(range(m))
                    for q, node in mine[m]:
                        lam = f[0, q, node] if node < slots[m].n_latents else err[0, q]
                        grads = torch.autograd.grad(lam, [values[s] for s in ups], retain_graph=True,
                                                    allow_unused=True)
                        add((m, q, node), ups, grads)
                        backwards += 1
                metric = engine.metric(logits, sub)[0]
                grads = torch.autograd.grad(metric, values, allow_unused=True)
                add((S, 0, 0), range(S), grads)
                backwards += 1
        for (m, _q, node), per_slot in gbar.items():
            for s, g in per_slot.items():
                A, ids = _project_row(slots, prep, s, e, g)          # [T U]
                ids = ids.cpu()
                total = A.sum(0).detach().cpu().double()
                top = A.gather(0, A.abs().argmax(0, keepdim=True))[0].detach().cpu().double()
                sums[s, m][e, node, ids] += total
                cur = maxes[s, m][e, node, ids]
                maxes[s, m][e, node, ids] = torch.where(top.abs() > cur.abs(), top, cur)
    return sums, maxes, backwards


def compare(engine: Dense, loop: Dense, examples: Sequence[int]) -> tuple[float, float, int, int]:
    """(max |engine - loop|, max |weight|, engine edges, loop edges) over ``examples``."""
    diff = scale = 0.0
    n_engine = n_loop = 0
    for key, lt in loop.items():
        lt = lt[list(examples)]
        et = engine[key][list(examples)] if key in engine else torch.zeros_like(lt)
        diff = max(diff, float((et - lt).abs().max()) if lt.numel() else 0.0)
        scale = max(scale, float(et.abs().max()) if et.numel() else 0.0)
        n_engine += int((et.abs() >= 1e-30).sum())
        n_loop += int((lt.abs() >= 1e-30).sum())
    return diff, scale, n_engine, n_loop
