"""The model zoo, built in miniature: layout, caching, specs, loading, SAE metrics."""

from __future__ import annotations

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from analysis.cli import app
from ingest.dictionaries import IdentityDictionary, load_dictionary
from ingest.errors import ModelUnavailableError, SpecError
from ingest.tasks import get_task
from ingest.tasks.encode import encode_examples, evaluate, final_logits
from ingest.zoo.build import ZooConfig, build_zoo
from ingest.zoo.saes import SAETrainConfig, evaluate_dictionary, token_mask
from ingest.zoo.specs import load_model, parse_model_spec
from ingest.zoo.train import ToyModelConfig

MICRO = ZooConfig(
    models=(ToyModelConfig(name="micro", n_layers=1, d_model=32, n_heads=2, d_mlp=64, steps=24,
                           first_checkpoint=3, checkpoints=3, train_pool=128, n_eval=16),),
    sae=SAETrainConfig(training_tokens=4096, warm_tokens=2048, batch_tokens=256, n_prompts=192,
                       expansion=2, k=4),
    n_eval_tokens_prompts=48)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    t0 = time.monotonic()
    result = build_zoo(root, MICRO)
    assert result.built == ("micro",) and result.cached == ()
    return root, time.monotonic() - t0


def test_micro_zoo_layout_and_manifest(zoo):
    root, seconds = zoo
    assert seconds < 60
    m = json.loads((root / "micro" / "manifest.json").read_text())
    steps = [c["step"] for c in m["checkpoints"]]
    assert steps == MICRO.models[0].checkpoint_steps() == [3, 8, 24]
    assert (root / "emergence.png").stat().st_size > 1000
    assert not any(p.name.startswith(".") for p in root.iterdir())   # no partial build left
    for c in m["checkpoints"]:
        assert set(c["tasks"]) == set(MICRO.models[0].tasks)
        assert set(c["saes"]) == {"blocks.0.hook_resid_post", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out"}
        for s in c["saes"].values():
            assert s["explained_variance"] <= 1 and 0 < s["l0"] <= 4 and 0 <= s["dead_fraction"] <= 1
            assert (root / "micro" / s["path"] / "cfg.json").is_file()
    first, later = m["checkpoints"][0]["saes"], m["checkpoints"][-1]["saes"]
    assert all(s["decoder_cosine_prev_median"] is None for s in first.values())
    assert all(-1 <= s["decoder_cosine_prev_median"] <= 1 for s in later.values())


def test_second_build_is_a_noop(zoo):
    root, _ = zoo
    before = (root / "micro" / "manifest.json").stat().st_mtime_ns
    t0 = time.monotonic()
    result = build_zoo(root, MICRO)
    assert result.built == () and result.cached == ("micro",)
    assert time.monotonic() - t0 < 1
    assert (root / "micro" / "manifest.json").stat().st_mtime_ns == before


def test_checkpoints_are_log_spaced():
    steps = ToyModelConfig(name="x", n_layers=1, d_model=8, n_heads=2, d_mlp=8, steps=3000,
                           first_checkpoint=20, checkpoints=8).checkpoint_steps()
    assert len(steps) == 8 and steps[0] == 20 and steps[-1] == 3000
    ratios = [b / a for a, b in zip(steps, steps[1:])]
    assert max(ratios) / min(ratios) < 1.05


def test_load_specs_and_checkpoints_differ(zoo):
    root, _ = zoo
    final = load_model("zoo:micro@final", zoo=root)
    early = load_model("zoo:micro@step-3", zoo=root)
    same = load_model("zoo:micro@24", zoo=root)
    tokens = torch.tensor([[1, 5, 9, 20]])
    assert torch.equal(final(tokens), same(tokens))
    assert not torch.allclose(final(tokens), early(tokens))
    ckpt_dir = root / "micro" / "checkpoints" / "step-000024"
    assert torch.equal(load_model(f"path:{ckpt_dir}")(tokens), final(tokens))
    with pytest.raises(SpecError, match="has no checkpoint at step 5"):
        load_model("zoo:micro@5", zoo=root)
    with pytest.raises(ModelUnavailableError, match="not built"):
        load_model("zoo:nope", zoo=root)


def test_zoo_dictionary_spec(zoo, monkeypatch):
    root, _ = zoo
    monkeypatch.setenv("MECHGRAPH_ZOO", str(root))
    sae = load_dictionary("zoo:micro@final/blocks.0.hook_mlp_out")
    assert sae.hook_name == "blocks.0.hook_mlp_out" and sae.d_in == 32 and sae.d_dict == 64
    with pytest.raises(SpecError, match="no SAE on"):
        load_dictionary("zoo:micro@final/blocks.7.hook_mlp_out")
    with pytest.raises(SpecError, match="needs a hook"):
        load_dictionary("zoo:micro@final")


def test_identity_dictionary_metrics_are_exact(zoo):
    root, _ = zoo
    model = load_model("zoo:micro", zoo=root)
    batch = encode_examples(model.tokenizer, get_task("sva").examples(32, seed=0, split="test"))
    mask = token_mask(batch.tokens, [batch.pad_id, model.tokenizer.bos_token_id])
    ident = IdentityDictionary(32, hook_name="blocks.0.hook_resid_post")
    m = evaluate_dictionary(model, ident, batch.tokens, mask, task_batch=batch)
    assert m.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert m.spliced_accuracy == m.clean_accuracy and m.dead_fraction == 0 and m.l0 == 32


def test_right_padding_leaves_last_logits_unchanged(zoo):
    root, _ = zoo
    model = load_model("zoo:micro", zoo=root)
    exs = get_task("bracket_depth").examples(8, seed=0) + get_task("induction").examples(8, seed=0)
    batch = encode_examples(model.tokenizer, exs)
    padded = final_logits(model(batch.tokens), batch.last)
    for i in range(len(exs)):
        alone = model(batch.tokens[i:i + 1, : batch.last[i] + 1])[0, -1]
        torch.testing.assert_close(padded[i], alone, atol=1e-5, rtol=1e-5)


def test_training_learns_a_task(tmp_path):
    from ingest.zoo.tokenizer import build_tokenizer
    from ingest.zoo.train import eval_batches, train_toy_model
    cfg = ToyModelConfig(name="sva-only", n_layers=1, d_model=32, n_heads=2, d_mlp=64, steps=150,
                         first_checkpoint=10, checkpoints=2, tasks=("sva",), train_pool=1000,
                         n_eval=128, batch_size=32, lm_loss_weight=0.0)
    tok = build_tokenizer(tmp_path / "tok")
    seen = []
    model = train_toy_model(cfg, tok, save=lambda step, model, metrics: seen.append((step, metrics)))
    assert [s for s, _ in seen] == [10, 150]
    assert seen[-1][1]["sva"]["accuracy"] >= 0.9 > seen[0][1]["sva"]["accuracy"] - 0.5
    assert evaluate(model, eval_batches(cfg, tok))["sva"]["accuracy"] == seen[-1][1]["sva"]["accuracy"]


def test_model_spec_errors():
    for bad, msg in [("", "empty"), ("gpt2", "unknown model spec"), ("zoo:a@b", "checkpoint"),
                     ("hf:", "missing"), ("s3:x", "scheme")]:
        with pytest.raises(SpecError, match=msg):
            parse_model_spec(bad)
    assert str(parse_model_spec("zoo:mt-small")) == "zoo:mt-small@final"


def test_hub_model_offline_fails_in_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match="not reachable"):
        load_model("hf:gpt2")


def test_cli_zoo_list_and_model_check(zoo):
    root, _ = zoo
    runner = CliRunner()
    r = runner.invoke(app, ["zoo", "list", "--zoo", str(root), "--format", "json", "--no-saes"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["model", "check", "zoo:micro@final", "--zoo", str(root)])
    assert r.exit_code == 0, r.output
    assert "bracket_depth" in r.output and "1 layers, d_model 32" in r.output
    r = runner.invoke(app, ["model", "check", "zoo:micro@99", "--zoo", str(root)])
    assert r.exit_code == 1 and "no checkpoint at step 99" in r.output


def test_cli_zoo_list_with_a_pretrained_model(zoo, tmp_path):
    """`zoo list` shows toy models (checkpoints) and pretrained ones (SAEs only) together."""
    root, _ = zoo
    (tmp_path / "micro").mkdir()
    (tmp_path / "micro" / "manifest.json").write_text((root / "micro" / "manifest.json").read_text())
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "manifest.json").write_text(json.dumps({
        "name": "pretrained", "kind": "pretrained", "build_seconds": 60,
        "saes": {"blocks.3.hook_resid_post": {"path": "saes/x", "explained_variance": 0.9, "l0": 64.0,
                                              "dead_fraction": 0.05}}}))
    r = CliRunner().invoke(app, ["zoo", "list", "--zoo", str(tmp_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert '"model": "pretrained"' in r.output and '"min_ev": 0.9' in r.output
