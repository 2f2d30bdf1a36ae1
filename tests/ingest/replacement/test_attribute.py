"""Exactness of the replacement graph's edges: for every feature and target node, the sum of
its in-edges plus its fixed terms equals its pre-activation (or logit) on the prompt.

The fixed terms come from a separate forward pass of the frozen affine model with every
source at zero, and the values from the model's own clean forward pass, so the identity checks
the backward-pass edges against two forward passes.
"""

from __future__ import annotations

import pytest
import torch

from ingest.replacement.attribute import trace_prompt
from ingest.replacement.config import TraceConfig
from ingest.replacement.targets import logit_diff_target
from tests.ingest.replacement.conftest import KINDS, PROMPT, make_clt, make_set


def _check_exact(g) -> None:  # noqa: ANN001
    rows = torch.cat([torch.arange(g.n_features), torch.arange(g.target_start, g.n_nodes)])
    lhs = g.adjacency[rows].double().sum(1) + g.fixed[rows].double()
    value = g.value[rows].double()
    scale = value.abs().max()
    assert ((lhs - value).abs() <= 1e-4 * torch.maximum(value.abs(), scale * 1e-2)).all(), \
        f"max error {(lhs - value).abs().max():.3g} for values up to {scale:.3g}"
    # Error and token rows have no inputs; nothing feeds a source from its own or a later layer.
    assert not g.adjacency[g.n_features:g.target_start].any()
    assert not g.adjacency[:, g.target_start:].any()


@pytest.mark.parametrize("kind", KINDS)
def test_per_layer_transcoder_edges_are_exact(tiny_model, kind: str) -> None:
    tokens = tiny_model.to_tokens(PROMPT)[0]
    g = trace_prompt(tiny_model, make_set(kind, seed=1), tokens, TraceConfig(batch_size=64))
    assert g.n_features > 10 and 1 <= g.n_targets <= 10
    _check_exact(g)


@pytest.mark.parametrize("activation,skip", [("relu", False), ("jumprelu", False), ("topk", False), ("relu", True)])
def test_cross_layer_transcoder_edges_are_exact(tiny_model, activation: str, skip: bool) -> None:
    tokens = tiny_model.to_tokens(PROMPT)[0]
    g = trace_prompt(tiny_model, make_clt(activation, skip, seed=2), tokens, TraceConfig(batch_size=32))
    assert g.n_features > 10
    _check_exact(g)
    # A layer-0 CLT feature writes into layer 1's MLP output too: some layer-1 target must see it
    # through that decoder, which a per-layer reading would miss. The identity above covers it.


def test_logit_difference_target_is_exact(tiny_model) -> None:
    tokens = tiny_model.to_tokens(PROMPT)[0]
    tok = tiny_model.tokenizer
    answer, counter = tok.convert_tokens_to_ids("Mary"), tok.convert_tokens_to_ids("John")
    target = logit_diff_target(answer, counter, tiny_model.W_U.detach(), tiny_model.b_U.detach(), tok.decode)
    g = trace_prompt(tiny_model, make_set("skip"), tokens, TraceConfig(), targets=[target])
    assert g.n_targets == 1 and g.targets[0].label == "Mary - John"
    logits = tiny_model(tokens[None])[0, -1]
    assert float(g.value[-1]) == pytest.approx(float(logits[answer] - logits[counter]), rel=1e-5)
    _check_exact(g)


def test_batch_size_does_not_change_the_graph(tiny_model) -> None:
    tokens = tiny_model.to_tokens(PROMPT)[0]
    tc = make_set("relu")
    a = trace_prompt(tiny_model, tc, tokens, TraceConfig(batch_size=7)).adjacency
    b = trace_prompt(tiny_model, tc, tokens, TraceConfig(batch_size=512)).adjacency
    assert torch.allclose(a, b, atol=1e-6)


def test_max_feature_nodes_keeps_the_most_influential_features(tiny_model) -> None:
    tokens = tiny_model.to_tokens(PROMPT)[0]
    tc = make_set("relu")
    full = trace_prompt(tiny_model, tc, tokens, TraceConfig(batch_size=8))
    part = trace_prompt(tiny_model, tc, tokens, TraceConfig(batch_size=8, max_feature_nodes=12))
    assert part.n_features == 12 and part.n_errors == full.n_errors
    # Rows of the kept features equal the full graph's rows restricted to the kept columns.
    keep = part.selected_features
    cols = torch.cat([keep, torch.arange(full.n_features, full.n_nodes)])
    assert torch.allclose(part.adjacency[:12], full.adjacency[keep][:, cols], atol=1e-6)
    assert torch.allclose(part.adjacency[-part.n_targets:], full.adjacency[-full.n_targets:][:, cols], atol=1e-6)
