"""SmolLM2 transcoders: a tiny build of all 30 layers, its cache, the ``zoo:smollm2-135m`` spec
as ``mechgraph trace``'s default for ``smollm2-135m``, and the exactness of a prompt graph's
in-edges through the real model; and the zoo's built set, when there is one.

The tiny build (width 64, k 4, 8 rows of 16 tokens, a few steps) checks the plumbing; its
transcoders are poor, which exactness does not care about: the graph is exact for any
transcoders, the error nodes carrying what they miss. The model comes from the default
SmolLM2 cache (built from the GGUF on first use, ~25 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ingest.replacement.jobs import check_transcoder_spec
from ingest.zoo import smollm2_transcoders as st
from ingest.zoo.smollm2_saes import N_LAYERS
from ingest.zoo.smollm2_transcoders import SmolTranscoderConfig, build_smollm2_transcoders
from tests.ingest.gguf import needs_gguf

TINY = SmolTranscoderConfig(width=64, k=4, context_size=16, train_rows=8, eval_rows=2, steps=3, batch_tokens=64)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("zoo")
    return root, build_smollm2_transcoders(root, TINY)


@pytest.mark.slow
@needs_gguf
def test_tiny_build_layout_cache_and_exact_trace(built, monkeypatch):
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.attribute import trace_prompt
    from ingest.replacement.config import TraceConfig
    from ingest.zoo import smollm2

    root, manifest = built
    out = root / "smollm2-135m" / "transcoders"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["layers"] == list(range(N_LAYERS)) and len(manifest["fvu"]) == N_LAYERS
    assert all(0 <= d <= 1 for d in manifest["dead"]) and all(0 < v < 10 for v in manifest["fvu"])
    assert all(0 < l0 <= TINY.k for l0 in manifest["l0"])
    rep = manifest["replacement"]
    assert 0 <= rep["top1_agreement"] <= 1 and rep["clean_loss"] > 0 and rep["positions"] > 0
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())   # no partial build left

    # zoo:smollm2-135m is trace's default for smollm2-135m, and resolves to this set
    assert check_transcoder_spec(None, "smollm2-135m") == "zoo:smollm2-135m"
    monkeypatch.setenv("MECHGRAPH_ZOO", str(root))
    tcs = load_transcoders("zoo:smollm2-135m")
    assert tcs.n_layers == N_LAYERS and tcs.d_dict(0) == TINY.width

    # cached: the same config again loads no model
    def no_load(*_a, **_k):
        raise AssertionError("load_smollm2 was called although the build is cached")
    monkeypatch.setattr(smollm2, "load_smollm2", no_load)
    assert build_smollm2_transcoders(root, TINY) == manifest
    monkeypatch.undo()

    # the trace's in-edges plus fixed terms equal every feature's pre-activation and every
    # target logit, through the real 30-layer model
    model = smollm2.load_smollm2()
    g = trace_prompt(model, tcs, model.to_tokens("The capital of France is")[0], TraceConfig(max_n_logits=3))
    rows = torch.cat([torch.arange(g.n_features), torch.arange(g.target_start, g.n_nodes)])
    lhs = g.adjacency[rows].double().sum(1) + g.fixed[rows].double()
    value = g.value[rows].double()
    assert g.n_features > 0
    assert ((lhs - value).abs() <= 1e-4 * torch.maximum(value.abs(), value.abs().max() * 1e-2)).all(), \
        f"max error {(lhs - value).abs().max():.3g} for values up to {value.abs().max():.3g}"


def test_missing_set_names_the_build_command(tmp_path):
    from ingest.errors import SpecError

    with pytest.raises(SpecError, match="zoo build --smollm2 --transcoders"):
        st.resolve_smollm2_transcoders(tmp_path)
    assert st.smollm2_transcoder_rows(tmp_path) == []


@pytest.mark.parametrize("bad", [{"width": 0}, {"k": 65, "width": 64}, {"layers": (30,)}, {"lr": 0.0}])
def test_bad_config_is_refused(bad):
    from mechgraph.errors import ConfigError

    with pytest.raises(ConfigError):
        SmolTranscoderConfig(**bad)


@pytest.mark.slow
def test_the_zoo_set_loads_with_its_manifest_figures():
    """The set `zoo build --smollm2 --transcoders` made, when this machine has one."""
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.zoo.store import zoo_root

    manifest = st.read_smollm2_transcoder_manifest(zoo_root())
    if manifest is None:
        pytest.skip(f"no SmolLM2 transcoders in {zoo_root()} (run `mechgraph zoo build --smollm2 --transcoders`)")
    tcs = load_transcoders("zoo:smollm2-135m")
    cfg = manifest["config"]
    assert tcs.n_layers == N_LAYERS
    assert {tcs.d_dict(layer) for layer in range(N_LAYERS)} == {cfg["width"]}
    assert len(manifest["fvu"]) == N_LAYERS and manifest["replacement"]["positions"] > 0
