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

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ingest.attribution.rows import _latent_jacobian_rows
from ingest.tasks.encode import TaskBatch

if TYPE_CHECKING:
    from ingest.attribution.batch import Prepared
    from ingest.attribution.engine import AttributionEngine


def node_attribution(engine: AttributionEngine, batch: TaskBatch, prep: Prepared, s: int) -> Tensor:
    """Total-effect IG of slot ``s``'s nodes on the metric, Σ over positions: [n, n_nodes]."""
    K = engine.config.steps
    slot = engine.slots[s]
    gbar = torch.zeros_like(prep.clean[s])
    for k in range(K):
        t = (k + 0.5) / K
        leaf = (prep.base[s] + t * (prep.clean[s] - prep.base[s])).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = engine.model.run_with_hooks(
                batch.tokens, fwd_hooks=[(slot.hook, lambda x, hook: leaf.view(x.shape))])
            g, = torch.autograd.grad(engine.metric(logits, batch).sum(), leaf)
        gbar += g / K
    A, ids = engine._project(prep, s, gbar[None])
    out = torch.zeros((A.shape[1], slot.n_nodes), dtype=A.dtype, device=A.device)
    out[:, ids] = A[0].sum(1)
    return out.detach()


def head_mass(engine: AttributionEngine, batch: TaskBatch, prep: Prepared, s: int) -> Tensor:
    """Σ over active (example, position) of |each head's contribution| to each latent."""
    slot = engine.slots[s]
    d, f_clean = slot.dictionary, prep.f_clean[s]
    if d is None or f_clean is None:
        raise ValueError(f"{slot.hook} carries no dictionary, so its latents have no heads")
    layer = slot.layer
    z_hook = f"blocks.{layer}.attn.hook_z"
    cache: dict[str, Tensor] = {}
    with torch.no_grad():
        engine.model.run_with_hooks(batch.tokens, fwd_hooks=[(z_hook, lambda x, hook: cache.__setitem__("z", x))],
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
        W_O = engine.model.blocks[layer].attn.W_O                   # [H dh d_model]
        contrib = torch.einsum("nhd,hdm,nm->nh", z[ex, q], W_O, rows)
    mass.index_add_(0, node, contrib.abs().detach())
    return mass
