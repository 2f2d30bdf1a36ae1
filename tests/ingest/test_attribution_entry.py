"""Speed-ups of the attribution passes change no result.

Ground truth is the engine without them: every pass from the tokens (not from the layer a
``resid_post`` slot's leaf enters) and the whole chunk of targets in one ``vmap`` call (not
:data:`~ingest.attribution.reverse.VJP_COPIES` at a time). Skipping the layers below a leaf runs
the same operations on the same values, so that graph is identical bit for bit; smaller vmap
calls may round the batched matmuls differently, so those weights agree to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import ingest.attribution.blockgrad as blockgrad
import ingest.attribution.nodes as nodes
import ingest.attribution.reverse as reverse
from ingest.attribution.config import AttributionConfig
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import build_slots
from ingest.dictionaries import IdentityDictionary
from tests.ingest.test_attribution import D_MODEL, VOCAB, make_batch
from tests.ingest.test_attribution_memory import assert_same_graph, topk_sae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def model_of(kind: str) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    if kind == "llama":  # rotary, RMSNorm, grouped-query attention, gated SiLU MLP
        cfg = HookedTransformerConfig(n_layers=3, d_model=D_MODEL, n_heads=2, d_head=8, n_key_value_heads=1,
                                      d_mlp=32, n_ctx=8, d_vocab=VOCAB, act_fn="silu", gated_mlp=True,
                                      normalization_type="RMS", positional_embedding_type="rotary",
                                      rotary_dim=8, seed=0)
    else:
        cfg = HookedTransformerConfig(n_layers=3, d_model=D_MODEL, n_heads=2, d_head=8, d_mlp=32, n_ctx=8,
                                      d_vocab=VOCAB, act_fn="gelu", normalization_type="LN", eps=0.1, seed=0)
    return HookedTransformer(cfg).eval()


def graph(model: Any, kind: str) -> Any:
    if kind == "identity":
        dicts = [IdentityDictionary(D_MODEL, hook_name=f"blocks.{i}.hook_resid_post") for i in (0, 2)]
    else:
        dicts = [topk_sae(f"blocks.{i}.hook_resid_post", seed=i) for i in (0, 2)]
    engine = AttributionEngine(model, build_slots(model, dicts), AttributionConfig(steps=3, chunk=40))
    return engine.attribute(make_batch([6, 5, 6], seed=3))   # right padding in the middle row


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("dicts", ["identity", "topk"])
def test_starting_at_the_leafs_layer_changes_nothing(arch: str, dicts: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_of(arch)
    monkeypatch.setattr(blockgrad, "ENABLED", False)  # it applies only from a leaf's layer: off in both
    fast = graph(model, dicts)
    monkeypatch.setattr(nodes, "resid_entry", lambda model, slot: None)
    monkeypatch.setattr(reverse, "resid_entry", lambda model, slot: None)
    assert_same_graph(graph(model, dicts), fast)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_targets_a_few_at_a_time_give_the_whole_chunks_weights(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_of(arch)
    monkeypatch.setattr(blockgrad, "ENABLED", False)  # the generic integrand's vmap
    monkeypatch.setattr(reverse, "VJP_COPIES", 3)
    small = graph(model, "identity")
    monkeypatch.setattr(reverse, "VJP_COPIES", 10_000)
    whole = graph(model, "identity")
    assert set(small.edges) == set(whole.edges)
    for key, rows in whole.edges.items():
        other = small.edges[key]
        for col in ("example", "dst", "src"):
            assert torch.equal(getattr(rows, col), getattr(other, col)), (key, col)
        assert torch.allclose(other.weight, rows.weight, rtol=1e-5, atol=1e-7), key
