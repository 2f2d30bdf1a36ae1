"""SmolLM2 SAE builder: layout, manifest, caching and all-or-nothing output, at a tiny size.

The tiny build (one layer, 32-token rows, ~4k training activations) checks the plumbing in
well under a minute; it cannot reach the default config's explained variance, so metrics
are only checked to be finite and in range. The model comes from the default SmolLM2 cache
(built from the GGUF on first use, ~25 s).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ingest.zoo import smollm2
from ingest.zoo.saes import SAETrainConfig
from ingest.zoo.smollm2_saes import MANIFEST, build_smollm2_saes
from mechgraph.errors import ConfigError
from tests.ingest.gguf import needs_gguf



TINY = SAETrainConfig(architecture="topk", expansion=2, k=8, training_tokens=4096, batch_tokens=512,
                      lr=3e-3, context_size=32, seed=0)
LAYER = 1
HOOK = f"blocks.{LAYER}.hook_resid_post"


class _NoModelLoad(RuntimeError):
    pass


def _forbid_load(*_args, **_kwargs):
    raise _NoModelLoad("load_smollm2 was called although the build should have been cached")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("zoo")
    return root, build_smollm2_saes(root, layers=(LAYER,), cfg=TINY, n_eval_sequences=8)


@pytest.mark.slow
@needs_gguf
def test_layout_and_manifest(built):
    from ingest.dictionaries import SAEDictionary

    root, manifest = built
    out = root / smollm2.SMOLLM2_NAME
    assert [p.name for p in root.iterdir()] == [smollm2.SMOLLM2_NAME]  # no temporary siblings left
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert manifest["name"] == "smollm2-135m" and manifest["kind"] == "pretrained"
    assert "pydoc_data" in manifest["corpus"]
    assert manifest["sae_config"] == TINY.to_dict()
    assert manifest["build_seconds"] > 0
    assert sorted(manifest["saes"]) == [HOOK]
    assert not (out / "init").exists()

    tokens = manifest["tokens"]
    assert tokens["held_out_rows"] == 8 and 0 < tokens["held_out_tokens"] < 8 * TINY.context_size
    assert tokens["train_tokens"] > tokens["held_out_tokens"]

    entry = manifest["saes"][HOOK]
    assert entry["path"] == f"saes/{HOOK}"
    assert math.isfinite(entry["explained_variance"]) and entry["explained_variance"] <= 1.0
    assert 0 < entry["l0"] <= TINY.k
    assert 0.0 <= entry["dead_fraction"] <= 1.0

    sae = SAEDictionary.from_disk(out / entry["path"])
    assert sae.hook_name == HOOK
    assert (sae.d_in, sae.d_dict) == (576, 576 * TINY.expansion)


@pytest.mark.slow
@needs_gguf
def test_second_build_is_cached(built, monkeypatch):
    root, manifest = built
    monkeypatch.setattr(smollm2, "load_smollm2", _forbid_load)
    assert build_smollm2_saes(root, layers=(LAYER,), cfg=TINY, n_eval_sequences=8) == manifest


@pytest.mark.slow
@needs_gguf
def test_failed_rebuild_keeps_the_old_output(built, monkeypatch):
    """Another config means a rebuild; one that dies leaves the previous build as it was."""
    root, manifest = built
    monkeypatch.setattr(smollm2, "load_smollm2", _forbid_load)
    with pytest.raises(_NoModelLoad):
        build_smollm2_saes(root, layers=(LAYER,), cfg=TINY, n_eval_sequences=9)
    assert [p.name for p in root.iterdir()] == [smollm2.SMOLLM2_NAME]
    assert json.loads((root / smollm2.SMOLLM2_NAME / MANIFEST).read_text()) == manifest


@pytest.mark.slow
@needs_gguf
def test_build_is_seeded(built, tmp_path):
    _, manifest = built
    again = build_smollm2_saes(tmp_path, layers=(LAYER,), cfg=TINY, n_eval_sequences=8)
    assert again["saes"] == manifest["saes"]


@pytest.mark.parametrize(("layers", "n_eval"), [((), 8), ((30,), 8), ((-1,), 8), ((1,), 0)])
def test_bad_arguments_are_refused(tmp_path, layers, n_eval):
    with pytest.raises(ConfigError):
        build_smollm2_saes(tmp_path, layers=layers, cfg=TINY, n_eval_sequences=n_eval)
    assert list(tmp_path.iterdir()) == []
