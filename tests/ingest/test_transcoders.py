"""Transcoders as dictionaries: their equations, the error node, and loading every kind from
``path:DIR`` (sae_lens directories, mechgraph TopK and cross-layer directories, sets)."""

from __future__ import annotations

import json

import pytest
import torch

from ingest.dictionaries import TranscoderDictionary, load_dictionary
from ingest.dictionaries.transcoder_set import CrossLayerTranscoders, PerLayerTranscoders
from ingest.dictionaries.transcoder_set import load_transcoders
from ingest.errors import DictionaryError
from tests.ingest.replacement.conftest import D_MODEL, KINDS, make_clt, make_plt


def x_in(n: int = 32, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, D_MODEL, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
def test_equations(kind: str) -> None:
    t = make_plt(kind, layer=1, seed=4)
    x = x_in()
    pre = x @ t.W_enc + t.b_enc
    if kind.startswith("jumprelu"):
        f = pre * (pre > t.threshold)
    elif kind.startswith("topk"):
        top = pre.topk(5, dim=-1)
        f = torch.relu(torch.zeros_like(pre).scatter(-1, top.indices, top.values))
        assert ((t.encode(x) != 0).sum(-1) <= 5).all()
    else:
        f = torch.relu(pre)
    assert torch.allclose(t.encode(x), f, atol=1e-6)
    skip = x @ t.W_skip.T if kind.endswith("skip") else 0
    y_hat = f @ t.W_dec + t.b_dec + skip
    assert torch.allclose(t.reconstruct(x), y_hat, atol=1e-5)
    y = torch.randn(32, D_MODEL)
    assert torch.allclose(t.error(x, y), y - y_hat, atol=1e-5)
    assert t.hook_name == "blocks.1.mlp.hook_in" and t.out_hook == "blocks.1.hook_mlp_out"
    assert t.describe()["skip"] == kind.endswith("skip")
    with pytest.raises(DictionaryError, match="MLP output"):
        t.error(x)


@pytest.mark.parametrize("kind", KINDS)
def test_path_dir_round_trip(tmp_path, kind: str) -> None:
    t = make_plt(kind, layer=0, seed=6)
    (t.module.save_model if hasattr(t.module, "save_model") else t.module.save)(tmp_path / "tc")
    back = load_dictionary(f"path:{tmp_path / 'tc'}")
    assert isinstance(back, TranscoderDictionary) and back.kind == t.kind
    x = x_in()
    assert torch.allclose(back.reconstruct(x), t.reconstruct(x), atol=1e-6)


def test_transcoder_sets_from_directories(tmp_path) -> None:
    layers = [make_plt("jumprelu_skip", layer, seed=1) for layer in range(2)]
    for layer, t in enumerate(layers):
        t.module.save_model(tmp_path / "set" / f"layer_{layer}")
    s = load_transcoders(f"path:{tmp_path / 'set'}")
    assert isinstance(s, PerLayerTranscoders) and s.n_layers == 2 and s.has_skip
    listed = tmp_path / "listed"
    for layer, t in enumerate(layers):
        t.module.save_model(listed / f"l{layer}")
    (listed / "transcoder_set.json").write_text(json.dumps({"layers": ["l0", "l1"]}))
    s2 = load_transcoders(f"path:{listed}")
    comma = load_transcoders(f"path:{listed / 'l0'},path:{listed / 'l1'}")
    x = x_in()
    for other in (s2, comma):
        assert torch.allclose(other.encode(1, x), s.encode(1, x))


def test_cross_layer_transcoder_round_trip(tmp_path) -> None:
    clt = make_clt("jumprelu", skip=True, seed=3)
    clt.clt.save(tmp_path / "clt")
    back = load_transcoders(f"path:{tmp_path / 'clt'}")
    assert isinstance(back, CrossLayerTranscoders) and back.kind == "clt/jumprelu_skip"
    x = x_in()
    for layer in range(2):
        assert torch.allclose(back.encode(layer, x), clt.encode(layer, x))
        assert torch.equal(back.decoder(layer, torch.arange(3)), clt.decoder(layer, torch.arange(3)))
    assert list(back.out_layers(0)) == [0, 1] and back.decoder(0, torch.arange(3)).shape == (3, 2, D_MODEL)
    with pytest.raises(DictionaryError, match="cross-layer transcoder"):
        load_dictionary(f"path:{tmp_path / 'clt'}")


def test_sets_must_cover_every_layer_once() -> None:
    with pytest.raises(DictionaryError, match="one transcoder per layer"):
        PerLayerTranscoders([make_plt("relu", 1)])
    with pytest.raises(DictionaryError, match="same layer"):
        PerLayerTranscoders([make_plt("relu", 0), make_plt("relu", 0)])


def test_release_set_fails_in_one_sentence_offline() -> None:
    with pytest.raises(DictionaryError, match="knows no release"):
        load_transcoders("release:no-such-transcoders")


def test_release_transcoder_fails_fast_offline_in_one_sentence(tmp_path, monkeypatch) -> None:
    import time

    from huggingface_hub import constants

    from ingest.dictionaries import hub

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    release, sae_id = "gemma-scope-2-4b-pt-transcoders-all", "layer_0_width_16k_l0_big"
    for load in (lambda: load_dictionary(f"release:{release}/{sae_id}"),
                 lambda: TranscoderDictionary.from_pretrained(release, sae_id)):
        with pytest.raises(DictionaryError, match=r"could not fetch SAE .* \(offline\)") as e:
            load()
        assert "\n" not in str(e.value)
    assert time.monotonic() - start < 10
    assert hub  # the same offline policy as every release: ingest.dictionaries.hub
