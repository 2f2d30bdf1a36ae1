"""Σ_k ∂λ/∂x̂_s / K for a chunk of downstream targets: the engine's reverse-mode integrand.

Per IG step, one forward pass of the frozen graph (``torch.func.vjp``) and the backward of
every target of the chunk by ``torch.func.vmap`` over their cotangents, :data:`VJP_COPIES` at
a time: one batched backward, not one per target, sharing the step's forward. (The whole chunk
in one vmap call is slower on a small model, likely because its batched elementwise backward
ops, RMSNorm, rotary, SiLU and masking over ``[targets, batch, pos, d_mlp]``, outgrow the CPU
caches: 16 at a time measured about 17% faster on ``bench/byo.py``'s tiny Llama, the same
gradients to float rounding; 8 and 32 were in between.)
``torch.autograd.grad(is_grads_batched=True)`` is not used: it runs the legacy vmap, which loops
per sample over softmax, GELU and ``where`` backward.

With a single upstream slot on a ``resid_post`` hook the forward starts at the layer its leaf
enters (:func:`~ingest.attribution.nodes.resid_entry`): the layers below it are not run. When the
target is a later ``resid_post`` too, the blocks between are a plain stack and their backward is
written by hand (:mod:`.blockgrad`: every target a row of one matrix product, checked against
this module's vmap on its first use); on ``bench/byo.py`` that took ingest from 74.2 to 51.4
CPU-s, the same graphs to float32 rounding (3e-5 relative on the smallest weights).

Repeating the batch once per target instead (one ordinary forward and backward over stacked
copies) measured 1.6x slower than vmap on the same model: the copies' forward costs as much as
their backward, where vmap runs the forward once.
"""

from __future__ import annotations

import logging
from typing import Any

import torch.func
from torch import Tensor

from ingest.attribution import blockgrad
from ingest.attribution.batch import Prepared
from ingest.attribution.blockgrad import CHECK_RTOL, Segment, max_rel_diff
from ingest.attribution.nodes import resid_entry
from ingest.attribution.rows import _Targets
from ingest.errors import AttributionError
from ingest.tasks.encode import TaskBatch

log = logging.getLogger(__name__)

#: targets per ``vmap(vjp)`` call (the chunk's targets share one forward pass per IG step)
VJP_COPIES = 16


def integrate(engine: Any, batch: TaskBatch, prep: Prepared, m: int, targets: _Targets,
              start: int, stop: int) -> dict[int, Tensor]:
    """{s: [stop-start, n, T, d_in]} for every upstream slot s of ``m`` (empty when none)."""
    K = engine.config.steps
    ups = engine._upstream(batch, prep, m)
    if not ups:
        return {}
    acc: dict[int, Tensor] = {}
    layer = engine.slots[m].layer + 1
    entry = resid_entry(engine.model, engine.slots[ups[0]]) if len(ups) == 1 else None
    seg = _segment(engine, ups[0], m, entry)
    for k in range(K):
        values = engine._path(prep, (k + 0.5) / K)

        def incoming(*leaves: Tensor, values: list[Tensor] = values, hooks: Any = ()) -> Tensor:
            vals = list(values)
            for s, leaf in zip(ups, leaves, strict=True):
                vals[s] = leaf
            # one upstream resid_post slot: start at the layer its leaf enters, not at the tokens
            x = batch.tokens if entry is None else leaves[0]
            y = engine.frozen_forward(x, vals, stop_at_layer=layer, start_at_layer=entry, hooks=hooks)[1][m]
            if y is None:
                raise AttributionError(f"the forward pass did not reach {engine.slots[m].hook}")
            return y

        for s in ups:
            acc.setdefault(s, values[s].new_zeros((stop - start, *values[s].shape)))
        if seg is not None:  # whole blocks between two resid_post hooks: the backward by hand
            if _by_hand(engine, seg, (ups[0], m), prep, incoming, values[ups[0]], targets, (start, stop), acc[ups[0]]):
                continue
            seg = None  # it failed its first-use check: autograd from here on
        y, vjp = torch.func.vjp(incoming, *[values[s] for s in ups])
        C = engine._cotangent(prep, m, y.detach(), targets, start, stop)
        # an identically zero cotangent (an exact dictionary's error node) has zero in-edges
        live = C.flatten(1).any(1).nonzero(as_tuple=True)[0]
        for a in range(0, len(live), VJP_COPIES):
            rows = live[a:a + VJP_COPIES]
            for s, g in zip(ups, torch.func.vmap(vjp)(C[rows]), strict=True):
                acc[s][rows] += g / K
    return acc


def _segment(engine: Any, s: int, m: int, entry: int | None) -> Segment | None:
    """The hand-written backward from ``m``'s hook to upstream slot ``s``'s, where it applies:
    ``s`` the only upstream slot, on a ``resid_post`` (``entry``: the layer its value enters),
    and ``m`` on a later ``resid_post``. Built once per engine and slot pair."""
    if not blockgrad.ENABLED:
        return None
    if (s, m) not in engine.segments:
        slot = engine.slots[m]
        seg = None
        if entry is not None and slot.hook == f"blocks.{slot.layer}.hook_resid_post":
            seg = Segment.build(engine.model, entry, slot.layer + 1)
        engine.segments[(s, m)] = seg
    return engine.segments[(s, m)]


def _by_hand(engine: Any, seg: Segment, key: tuple[int, int], prep: Prepared, incoming: Any, leaf: Tensor,
             targets: _Targets, rank: tuple[int, int], acc: Tensor) -> bool:
    """One IG step of :func:`integrate` through ``seg``: adds Σ (gradients / K) of the live
    targets (backward slots ``rank`` = [start, stop)) to ``acc``. False (and nothing added) when
    the segment fails its first-use check."""
    rec, hooks = seg.recorder()
    with torch.no_grad():
        y = incoming(leaf, hooks=hooks)
    C = engine._cotangent(prep, key[1], y, targets, *rank)
    live = C.flatten(1).any(1).nonzero(as_tuple=True)[0]
    if not len(live):
        return True
    g = seg.backward(rec, C[live])
    if not seg.checked and not _check(engine, seg, key, incoming, leaf, C[live[:2]], g[:2]):
        return False
    K = engine.config.steps
    if len(live) == len(C):
        acc.add_(g.div_(K))
    else:
        acc[live] += g / K
    return True


def _check(engine: Any, seg: Segment, key: tuple[int, int], incoming: Any, leaf: Tensor, C: Tensor,
           g: Tensor) -> bool:
    """The segment's first use: its gradients for two targets against autograd's. A mismatch
    (a block this module misreads) turns the segment off for this engine, with a warning."""
    _, vjp = torch.func.vjp(incoming, leaf)
    ref, = torch.func.vmap(vjp)(C)
    diff = max_rel_diff(g, ref)
    seg.checked = True
    if diff > CHECK_RTOL:
        log.warning("the hand-written backward of blocks %d..%d differs from autograd by %.3g (relative); "
                    "using autograd for these edges", seg.blocks[0].layer, seg.blocks[-1].layer, diff)
        engine.segments[key] = None
        return False
    return True
