"""The hand-written backward of whole blocks (``ingest.attribution.blockgrad``) against autograd.

Ground truth is ``torch.func.vjp`` of TransformerLens' own forward over the same blocks, under
``vmap`` over the cotangents: in float64 the two agree to rounding (1e-10 relative) on every
block kind the module covers; in float32 (oneDNN's products on CPU) to 1e-5. In the engine,
the graph with the module on has the generic integrand's edges, and a segment whose backward
is wrong is caught by the first-use check and computed by autograd instead.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

import ingest.attribution.blockgrad as blockgrad
from ingest.attribution.blockgrad import Segment, max_rel_diff
from ingest.attribution.config import AttributionConfig
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.hooks import run_hooked
from ingest.attribution.slots import build_slots
from ingest.dictionaries import IdentityDictionary
from tests.ingest.test_attribution import make_batch
from tests.ingest.test_attribution_memory import assert_same_graph, topk_sae

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D = 16
BASE = dict(n_layers=4, d_model=D, n_heads=4, d_head=4, d_mlp=24, n_ctx=12, d_vocab=20, seed=0)
ARCHS: dict[str, dict[str, Any]] = {
    # Llama: RMSNorm, rotary on halves, grouped-query attention, gated SiLU MLP
    "llama": dict(normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=4,
                  n_key_value_heads=2, gated_mlp=True, act_fn="silu"),
    # GPT-J-like rotary on adjacent pairs over part of each head, multi-head, plain GELU MLP
    "rotary-partial-adjacent": dict(normalization_type="LN", positional_embedding_type="rotary", rotary_dim=2,
                                    rotary_adjacent_pairs=True, act_fn="gelu_new", eps=0.1),
    # GPT-2: LayerNorm, learned positions (outside the blocks), GELU
    "gpt2": dict(normalization_type="LN", act_fn="gelu", eps=0.1),
    # folded norms (no weights), bidirectional attention, ReLU
    "rmspre-bidirectional": dict(normalization_type="RMSPre", attention_dir="bidirectional", act_fn="relu"),
    "lnpre-gated-gelu": dict(normalization_type="LNPre", gated_mlp=True, act_fn="gelu", eps=0.1),
    # attention only, no norm at all
    "attn-only-no-norm": dict(normalization_type=None, attn_only=True, act_fn="relu"),
}


def model_of(arch: str, dtype: torch.dtype = torch.float64) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(**BASE, **ARCHS[arch], dtype=dtype)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial norm weights and biases (they start at 1 and 0)
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b", "b_Q", "b_K", "b_V", "b_in", "b_out", "b_O")):
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def against_autograd(model: Any, start: int, stop: int, *, n: int = 3, T: int = 9, B: int = 5) -> float:
    g = torch.Generator().manual_seed(2)
    dtype = model.cfg.dtype
    x = torch.randn(n, T, D, generator=g, dtype=dtype)
    C = torch.randn(B, n, T, D, generator=g, dtype=dtype)
    seg = Segment.build(model, start, stop)
    assert seg is not None
    rec, hooks = seg.recorder()
    with torch.no_grad():
        y = run_hooked(model, x, fwd_hooks=hooks, start_at_layer=start, stop_at_layer=stop)
    ours = seg.backward(rec, C)

    def blocks(inp: torch.Tensor) -> torch.Tensor:
        return model(inp, start_at_layer=start, stop_at_layer=stop)

    y_ref, vjp = torch.func.vjp(blocks, x)
    ref, = torch.func.vmap(vjp)(C)
    assert torch.equal(y, y_ref)  # the recorded forward is TransformerLens' own
    return max_rel_diff(ours, ref)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_backward_of_two_blocks_is_autograds_in_float64(arch: str) -> None:
    for p in (model := model_of(arch)).parameters():
        p.requires_grad_(False)
    assert against_autograd(model, 1, 3) < 1e-10


def test_float32_through_onednn_matches_autograd() -> None:
    model = model_of("llama", torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    assert against_autograd(model, 0, 4, B=7) < 1e-5


@pytest.mark.parametrize("change", [dict(parallel_attn_mlp=True), dict(attn_scores_soft_cap=5.0),
                                    dict(positional_embedding_type="alibi"), dict(act_fn="solu_ln")])
def test_blocks_it_does_not_cover_are_left_to_autograd(change: dict[str, Any]) -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = {**BASE, **ARCHS["gpt2"], **change}
    model = HookedTransformer(HookedTransformerConfig(**cfg)).eval()
    assert Segment.build(model, 0, 2) is None


def engine_graph(model: Any, dicts: str) -> tuple[Any, AttributionEngine]:
    if dicts == "identity":
        ds = [IdentityDictionary(D, hook_name=f"blocks.{i}.hook_resid_post") for i in (0, 2, 3)]
    else:
        ds = [topk_sae(f"blocks.{i}.hook_resid_post", seed=i) for i in (0, 2, 3)]
    engine = AttributionEngine(model, build_slots(model, ds), AttributionConfig(steps=3, chunk=12))
    return engine.attribute(make_batch([6, 5, 6], seed=3)), engine


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("dicts", ["identity", "topk"])
def test_the_engines_edges_are_the_generic_integrands(arch: str, dicts: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_of(arch, torch.float32)
    fast, engine = engine_graph(model, dicts)
    used = [seg for seg in engine.segments.values() if seg is not None]
    assert used and all(seg.checked for seg in used)   # resid_post 0 -> 2 and 2 -> 3 by hand
    monkeypatch.setattr(blockgrad, "ENABLED", False)
    slow, _ = engine_graph(model, dicts)
    assert set(fast.edges) == set(slow.edges)
    for key, rows in slow.edges.items():
        other = fast.edges[key]
        for col in ("example", "dst", "src"):
            assert torch.equal(getattr(rows, col), getattr(other, col)), (key, col)
        scale = float(rows.weight.abs().max())
        assert torch.allclose(other.weight, rows.weight, rtol=1e-4, atol=1e-6 * scale), key
    for s in slow.edge_sums:
        assert torch.allclose(fast.edge_sums[s], slow.edge_sums[s], rtol=1e-4, atol=1e-6), s


def test_a_wrong_backward_is_caught_on_first_use_and_autograd_takes_over(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    model = model_of("llama", torch.float32)
    monkeypatch.setattr(blockgrad, "ENABLED", False)
    reference, _ = engine_graph(model, "identity")
    monkeypatch.setattr(blockgrad, "ENABLED", True)
    real = blockgrad._block_back
    monkeypatch.setattr(blockgrad, "_block_back", lambda b, s, G, ws: 1.01 * real(b, s, G, ws))  # 1% off
    with caplog.at_level(logging.WARNING, logger="ingest.attribution.reverse"):
        graph, engine = engine_graph(model, "identity")
    assert "differs from autograd" in caplog.text
    assert all(seg is None for seg in engine.segments.values())
    assert_same_graph(graph, reference)
