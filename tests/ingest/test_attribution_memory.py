"""Memory that follows active latents: the sparse latent store and early pruning change no result.

The engine holds each slot's latents as sparse COO tensors (:class:`LatentStore`) and drops a
chunk's edge rows below the pruning threshold as soon as they are made (:func:`prune_early`).
Ground truth here is the engine as it was before either: dense latents everywhere, rows pruned
only once all chunks are in. The graphs must be identical, bit for bit.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import ingest.attribution.engine as engine_module
from ingest.attribution.batch import BatchGraph, LatentStore
from ingest.attribution.config import AttributionConfig
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import build_slots
from ingest.dictionaries import SAEDictionary
from tests.ingest.test_attribution import D_MODEL, VOCAB, make_batch

D_SAE, K_ACTIVE = 96, 3
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model() -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=D_MODEL, n_heads=2, d_head=8, d_mlp=32, n_ctx=8,
                                  d_vocab=VOCAB, act_fn="gelu", normalization_type="LN", eps=0.1, seed=0)
    return HookedTransformer(cfg).eval()


def topk_sae(hook: str, seed: int) -> SAEDictionary:
    """A random TopK SAE: K_ACTIVE of D_SAE latents per token, sparse enough to be stored sparse."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = TopKSAE(TopKSAEConfig(d_in=D_MODEL, d_sae=D_SAE, k=K_ACTIVE, metadata=SAEMetadata(hook_name=hook)))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_MODEL, D_SAE, generator=g) / D_MODEL ** 0.5)
        sae.W_dec.copy_(torch.randn(D_SAE, D_MODEL, generator=g) * 0.3)
        sae.b_enc.copy_(torch.randn(D_SAE, generator=g) * 0.3)
    return SAEDictionary(sae.eval())


def assert_same_graph(a: BatchGraph, b: BatchGraph) -> None:
    assert set(a.edges) == set(b.edges)
    for key in a.edges:
        for col in ("example", "dst", "src", "weight"):
            assert torch.equal(getattr(a.edges[key], col), getattr(b.edges[key], col)), (key, col)
    for name in ("delta", "edge_sums", "node_attr", "active"):
        x, y = getattr(a, name), getattr(b, name)
        assert set(x) == set(y)
        for s in x:
            assert torch.equal(x[s], y[s]), (name, s)


CONFIGS = [dict(alpha="sum", threshold=0.0), dict(alpha="sum", threshold=0.05), dict(alpha="mean", threshold=0.02),
           dict(alpha="max", threshold=0.05), dict(alpha="sum", alpha_abs=True, threshold=0.05),
           dict(alpha="max", baseline="zero", threshold=0.0)]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
def test_sparse_latents_and_early_pruning_give_the_dense_engines_graph(
        kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    slots = build_slots(model, [topk_sae(f"blocks.{i}.hook_resid_post", seed=i) for i in range(2)])
    batch = make_batch([6, 5, 6], seed=3)
    config = AttributionConfig(steps=2, chunk=5, **kwargs)  # small chunks: rows of one edge span chunks
    engine = AttributionEngine(model, slots, config)

    prep = engine.prepare(batch)
    for s, slot in enumerate(slots):
        if slot.dictionary is not None:   # held sparse, read back exactly
            assert isinstance(prep.f_clean, LatentStore) and prep.f_clean.stored(s).is_sparse
            with torch.no_grad():
                assert torch.equal(prep.f_clean[s], slot.dictionary.encode(prep.clean[s]))
    sparse = engine.attribute(batch)
    assert sum(len(r) for r in sparse.edges.values()) > 0

    # The engine before: dense latents, every row kept until all chunks are in.
    monkeypatch.setattr(LatentStore, "pack", staticmethod(lambda f: f))
    monkeypatch.setattr(engine_module, "prune_early", lambda rows, config, n_valid: rows)
    dense_prep = engine.prepare(batch)
    assert not any(f is not None and f.is_sparse for f in map(dense_prep.f_clean.stored, range(len(slots))))
    assert_same_graph(sparse, engine.attribute(batch))
