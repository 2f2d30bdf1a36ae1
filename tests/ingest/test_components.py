"""Component-level edges on a hand-built linear model, checked against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from ingest.attribution.components import component_edges


def _model() -> HookedTransformer:
    """Two attention-only layers, one head each, no LayerNorm, W_Q = W_K = 0 (uniform causal
    attention), so the metric is linear in every component's output. Head 0.0 copies dims 0,1
    of the embedding; head 1.0 reads only dims 2,3 (no connection to head 0.0)."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=4, n_ctx=4, d_head=4, n_heads=1, d_vocab=5,
                                  attn_only=True, normalization_type=None, act_fn="relu", seed=0)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E.copy_(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))
        model.blocks[0].attn.W_V[0] = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))
        model.blocks[0].attn.W_O[0] = torch.diag(torch.tensor([2.0, -1.0, 0.0, 0.0]))
        model.blocks[1].attn.W_V[0] = torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0]))
        model.blocks[1].attn.W_O[0] = torch.eye(4)
        model.W_U.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0],
                                      [0, 0, 0, 1.0, 0]]))
    return model


def _metric(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1, 0] + logits[:, -1, 1] - logits[:, -1, 2] + 0.5 * logits[:, -1, 3]


@pytest.mark.parametrize("steps", [1, 4])
def test_component_edges_equal_the_hand_computed_values(steps):
    model = _model()
    tokens, base = torch.tensor([[0, 1, 2, 3]]), torch.tensor([[4, 4, 1, 0]])
    g = component_edges(model, tokens, base, _metric, steps=steps)
    E, n = model.W_E.detach(), 4
    d = torch.tensor([1.0, 1.0, -1.0, 0.5])  # dM/d(final residual at the last position)
    # head 0.0 at the last position: mean of the embeddings, dims scaled by (2, -1, 0, 0)
    o00 = lambda t: (E[t].mean(0) * torch.tensor([2.0, -1.0, 0, 0]))  # noqa: E731
    assert g.weights[("L0.H0", "output")] == pytest.approx(float((o00(tokens[0]) - o00(base[0])) @ d), abs=1e-5)
    # head 1.0 reads dims 2, 3 only: head 0.0 writes dims 0, 1, so no connection at all
    assert abs(g.weights[("L0.H0", "L1.H0")]) < 1e-6
    # embed -> head 1.0: every position p feeds the last query with weight 1/n through dims 2, 3
    grad_in = d * torch.tensor([0, 0, 1.0, 1.0]) / n
    want = float(((E[tokens[0]] - E[base[0]]) * grad_in).sum())
    assert g.weights[("embed", "L1.H0")] == pytest.approx(want, abs=1e-5)
    # the metric is linear here, so the edges into the output add up to its change exactly
    with torch.no_grad():
        change = float(_metric(model(tokens)) - _metric(model(base)))
    assert sum(w for (u, v), w in g.weights.items() if v == "output") == pytest.approx(change, abs=1e-5)


def test_component_edges_do_not_depend_on_a_basis_rotation_of_the_residual():
    """Rotating the residual basis (W_E, W_O by Q; W_V, W_U by Q^T) changes every neuron and
    feature value but not one component edge."""
    model = _model()
    tokens, base = torch.tensor([[0, 1, 2, 3]]), torch.tensor([[4, 4, 1, 0]])
    before = component_edges(model, tokens, base, _metric, steps=2).weights
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        model.W_E.copy_(model.W_E @ Q)
        model.W_U.copy_(Q.T @ model.W_U)
        for block in model.blocks:
            block.attn.W_V[0] = Q.T @ block.attn.W_V[0]
            block.attn.W_O[0] = block.attn.W_O[0] @ Q
    after = component_edges(model, tokens, base, _metric, steps=2).weights
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=1e-5)
