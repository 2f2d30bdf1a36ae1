"""Node-level quantities of one batch: total-effect attributions to the metric, and heads.

``node_attribution``: integrated gradients of the metric over one slot's nodes at a time (its
latents and error node move together from the baseline, every other hook is recomputed
normally), summed over positions; per slot they sum to metric(clean) - metric(slot at its
baseline). ``head_mass``: for a dictionary on ``attn_out`` (or ``hook_z``), the activation of
an active latent is a sum over heads (∂f/∂x · z_h W_O[h] for ReLU-like encoders, exact where
the latent is active), so each head's contribution is read off directly and summed in
absolute value over the positions where the latent is active.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ingest.attribution.batch import Prepared
from ingest.attribution.hooks import run_hooked
from ingest.attribution.rows import _latent_jacobian_rows
from ingest.attribution.slots import Slot
from ingest.tasks.encode import TaskBatch

#: ``project(prep, s, grads) -> (A, ids)``: the engine's projection of gradients at slot ``s``
#: onto that slot's nodes (see ``AttributionEngine._project``).
Project = Callable[[Prepared, int, Tensor], tuple[Tensor, Tensor]]
#: ``metric(logits, batch) -> [n]``: the task metric the attributions explain.
Metric = Callable[[Tensor, TaskBatch], Tensor]


#: rows (examples x IG steps) one stacked forward pass of the IG steps may hold
STACKED_ROWS = 256


def steps_per_pass(steps: int, n: int) -> int:
    """How many IG steps of an ``n``-example batch run stacked in one forward/backward pass:
    per-call overhead, not arithmetic, is the cost of a small model's passes."""
    return max(1, min(steps, STACKED_ROWS // max(n, 1)))


def resid_entry(model: Any, slot: Slot) -> int | None:
    """``L + 1`` for a slot on ``blocks.L.hook_resid_post``: a pass that sets that hook may start
    at layer ``L + 1`` with the hook's value as its input, skipping the layers below (whose
    output it replaces). ``None`` for other hooks, and where the blocks would also need the
    tokens (a left-padding tokenizer's attention mask, a shortformer's positional embedding)."""
    if slot.hook != f"blocks.{slot.layer}.hook_resid_post" or not hasattr(model, "blocks"):
        return None
    if getattr(model.cfg, "positional_embedding_type", "") == "shortformer" or \
            getattr(getattr(model, "tokenizer", None), "padding_side", "right") == "left":
        return None
    return slot.layer + 1


def node_attribution(model: Any, metric: Metric, project: Project, steps: int, slot: Slot,
                     batch: TaskBatch, prep: Prepared, s: int) -> Tensor:
    """Total-effect IG of slot ``s``'s nodes (``slot``) on the metric, Σ over positions:
    [n, n_nodes]. ``model`` is the HookedTransformer, ``steps`` the IG steps K."""
    K = steps
    n = len(batch)
    gbar = torch.zeros_like(prep.clean[s])
    per_pass = steps_per_pass(K, n)
    entry = resid_entry(model, slot)
    for k0 in range(0, K, per_pass):
        ks = range(k0, min(K, k0 + per_pass))  # these steps' copies of the batch run as one batch
        leaf = torch.cat([prep.base[s] + (k + 0.5) / K * (prep.clean[s] - prep.base[s]) for k in ks])
        leaf = leaf.detach().requires_grad_(True)
        with torch.enable_grad():
            if entry is not None:  # the leaf is the residual stream entering layer `entry`
                logits = model(leaf, start_at_layer=entry)
            else:
                logits = run_hooked(model, batch.tokens.repeat(len(ks), 1),
                                    fwd_hooks=[(slot.hook, lambda x, hook: leaf.view(x.shape))])
            total = sum(metric(logits[i * n:(i + 1) * n], batch).sum() for i in range(len(ks)))
            g, = torch.autograd.grad(total, leaf)
        for i in range(len(ks)):
            gbar += g[i * n:(i + 1) * n] / K
    A, ids = project(prep, s, gbar[None])
    out = torch.zeros((A.shape[1], slot.n_nodes), dtype=A.dtype, device=A.device)
    out[:, ids] = A[0].sum(1)
    return out.detach()


def head_mass(model: Any, slot: Slot, batch: TaskBatch, prep: Prepared, s: int) -> Tensor:
    """Σ over active (example, position) of |each head's contribution| to each latent of
    ``slot`` (slot ``s`` of ``prep``); ``model`` is the HookedTransformer."""
    d, f_clean = slot.dictionary, prep.f_clean[s]
    if d is None or f_clean is None:
        raise ValueError(f"{slot.hook} carries no dictionary, so its latents have no heads")
    layer = slot.layer
    z_hook = f"blocks.{layer}.attn.hook_z"
    cache: dict[str, Tensor] = {}
    with torch.no_grad():
        run_hooked(model, batch.tokens, fwd_hooks=[(z_hook, lambda x, hook: cache.__setitem__("z", x))],
                   stop_at_layer=layer + 1)
    z = cache["z"]                                                   # [n T H dh]
    H = z.shape[2]
    mass = torch.zeros((slot.n_latents, H), dtype=z.dtype, device=z.device)
    ex, q, node = ((f_clean != 0) & prep.valid[..., None]).nonzero(as_tuple=True)
    if len(node) == 0:
        return mass
    rows = _latent_jacobian_rows(d, prep.clean[s][ex, q], node)     # [N d_in]
    if slot.hook.endswith("hook_z"):
        contrib = (rows.view(-1, H, z.shape[3]) * z[ex, q]).sum(-1)
    else:
        W_O = model.blocks[layer].attn.W_O                   # [H dh d_model]
        contrib = torch.einsum("nhd,hdm,nm->nh", z[ex, q], W_O, rows)
    mass.index_add_(0, node, contrib.abs().detach())
    return mass
