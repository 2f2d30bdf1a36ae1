"""Forward-mode in-edges (ingest/attribution/forward.py) equal the reverse-mode ones.

The engine picks forward mode where a slot's upstream nodes are few (the embedding); here both
modes are forced on the same graphs and every edge, completeness sum and target must agree to
1e-6: SAEs with a nonzero error node upstream and downstream (LayerNorm, GELU), identity
dictionaries on a grouped-query rotary RMSNorm model with a gated MLP (the bench's shape), and
a graph whose dictionaries sit on attn_out / mlp_out (several upstream slots per target).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

import ingest.attribution.engine as engine_module
from ingest.attribution.batch import BatchGraph
from ingest.attribution.config import AttributionConfig
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import build_slots
from ingest.dictionaries import IdentityDictionary
from tests.ingest.test_attribution import BATCH_LENGTHS, D_MODEL, VOCAB, make_batch, random_sae, tiny_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def llama_like() -> Any:
    """Rotary, grouped-query attention (2 KV heads for 4), RMSNorm, gated SiLU MLP."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=3, d_model=D_MODEL, n_heads=4, d_head=4, n_key_value_heads=2,
                                  d_mlp=32, n_ctx=8, d_vocab=VOCAB, act_fn="silu", gated_mlp=True,
                                  normalization_type="RMS", positional_embedding_type="rotary",
                                  rotary_dim=4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(cfg).eval()


def both_modes(model: Any, dictionaries: list[Any], monkeypatch: pytest.MonkeyPatch,
               **config: Any) -> tuple[BatchGraph, BatchGraph, list[int]]:
    """The graph of one batch with forward mode everywhere it applies, and with reverse mode only;
    also the downstream slots that went through forward mode."""
    slots = build_slots(model, dictionaries)
    batch = make_batch(BATCH_LENGTHS)
    cfg = AttributionConfig(steps=4, **config)
    graphs, used = [], []
    real = engine_module.forward_in_edges

    def spy(engine: Any, batch: Any, prep: Any, m: int, *args: Any) -> Any:
        used.append(m)
        return real(engine, batch, prep, m, *args)

    for cost in (0, 10**9):   # 0: every slot with upstream nodes goes forward; 1e9: none does
        monkeypatch.setattr(engine_module, "FORWARD_COST", cost)
        monkeypatch.setattr(engine_module, "forward_in_edges", spy)
        graphs.append(AttributionEngine(model, slots, cfg).attribute(batch, node_attributions=False, heads=False))
    return graphs[0], graphs[1], used


def as_dict(graph: BatchGraph) -> dict[tuple[int, int, int, int, int], float]:
    return {(s, m, int(e), int(d), int(u)): float(w) for (s, m), rows in graph.edges.items()
            for e, d, u, w in zip(rows.example, rows.dst, rows.src, rows.weight, strict=True)}


def assert_same(fwd: BatchGraph, rev: BatchGraph) -> None:
    a, b = as_dict(fwd), as_dict(rev)
    assert a, "the graph has edges"
    scale = max(abs(w) for w in b.values())
    for key in a.keys() | b.keys():
        assert a.get(key, 0.0) == pytest.approx(b.get(key, 0.0), abs=1e-6 * scale), key
    for m, sums in rev.edge_sums.items():
        torch.testing.assert_close(fwd.edge_sums[m], sums, rtol=1e-6, atol=1e-6 * float(sums.abs().max()))
    for m, active in rev.active.items():
        assert torch.equal(fwd.active[m], active)


@pytest.mark.parametrize("baseline", ["counterfactual", "zero"])
def test_forward_mode_equals_reverse_mode_with_sae_error_nodes(baseline: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    saes = [random_sae(f"blocks.{layer}.hook_resid_post", seed=10 + layer) for layer in range(2)]
    fwd, rev, used = both_modes(model, saes, monkeypatch, baseline=baseline)
    assert used == [1, 2]            # both SAEs took forward mode, from the embedding and from the SAE
    assert_same(fwd, rev)


def test_forward_mode_equals_reverse_mode_on_a_rotary_gqa_model(monkeypatch: pytest.MonkeyPatch) -> None:
    model = llama_like()
    dicts = [IdentityDictionary(D_MODEL, hook_name=f"blocks.{layer}.hook_resid_post") for layer in (0, 2)]
    fwd, rev, used = both_modes(model, dicts, monkeypatch)
    assert used == [1, 2]
    assert_same(fwd, rev)


def test_forward_mode_equals_reverse_mode_with_several_upstream_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    model = llama_like()
    saes = [random_sae(f"blocks.{layer}.hook_{kind}", seed=20 + 2 * layer + i)
            for layer in range(2) for i, kind in enumerate(("attn_out", "mlp_out"))]
    fwd, rev, used = both_modes(model, saes, monkeypatch, alpha="mean")
    assert used == [1, 2, 3, 4]
    assert_same(fwd, rev)


def test_the_engine_picks_forward_mode_only_where_upstream_nodes_are_few(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default cost, the embedding (one node) feeds its slot in forward mode; an identity
    slot of 16 latents feeding 16 targets stays in reverse mode; max over positions never goes forward."""
    model = llama_like()
    dicts = [IdentityDictionary(D_MODEL, hook_name=f"blocks.{layer}.hook_resid_post") for layer in (0, 2)]
    slots = build_slots(model, dicts)
    used: list[int] = []
    real = engine_module.forward_in_edges
    monkeypatch.setattr(engine_module, "forward_in_edges",
                        lambda engine, batch, prep, m, *a: used.append(m) or real(engine, batch, prep, m, *a))
    batch = make_batch(BATCH_LENGTHS)
    AttributionEngine(model, slots, AttributionConfig(steps=2)).attribute(batch, node_attributions=False, heads=False)
    assert used == [1]
    used.clear()
    AttributionEngine(model, slots, AttributionConfig(steps=2, alpha="max")).attribute(batch, node_attributions=False,
                                                                                      heads=False)
    assert used == []
