"""The zoo's transcoders (issue 16, item 2), built on a micro zoo: layout, caching, specs,
metrics, and the replacement model checked against an independent TransformerLens splice."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from analysis.cli import app
from ingest.dictionaries.transcoder import TopKTranscoder
from ingest.dictionaries.transcoder_set import CrossLayerTranscoder, CrossLayerTranscoders, load_transcoders
from ingest.errors import SpecError
from ingest.zoo.build import ZooConfig
from ingest.zoo.saes import SAETrainConfig, token_mask
from ingest.zoo.specs import load_model, parse_model_spec
from ingest.zoo.train import ToyModelConfig
from ingest.zoo.transcoder_build import (
    ZooTranscoderConfig,
    build_zoo_transcoders,
    replacement_forward,
    score_transcoders,
)
from ingest.zoo.transcoders import TranscoderTrainConfig

MICRO = ZooConfig(
    models=(ToyModelConfig(name="micro", n_layers=2, d_model=32, n_heads=2, d_mlp=64, steps=24,
                           first_checkpoint=3, checkpoints=3, train_pool=128, n_eval=16),),
    sae=SAETrainConfig(training_tokens=2048, warm_tokens=1024, batch_tokens=256, n_prompts=96,
                       expansion=2, k=4),
    n_eval_tokens_prompts=48)
TC = ZooTranscoderConfig(per_layer=TranscoderTrainConfig(expansion=2, k=8, steps=60, batch_tokens=256),
                         clt=TranscoderTrainConfig(expansion=2, k=8, steps=60, batch_tokens=256),
                         n_train_prompts=192, n_eval_prompts=96, all_checkpoints=("micro",), clt_models=("micro",))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A zoo model directory as `zoo build` lays it out, with untrained (random) checkpoints:
    the transcoder step needs the layout and the manifest, not a trained model."""
    from ingest.zoo.build import FORMAT_VERSION
    from ingest.zoo.store import save_checkpoint, step_dir, write_json
    from ingest.zoo.tokenizer import build_tokenizer
    from ingest.zoo.train import build_model

    root = tmp_path_factory.mktemp("zoo")
    cfg = MICRO.models[0]
    tok = build_tokenizer(root / "micro" / "tokenizer")
    checkpoints = []
    for i, step in enumerate(cfg.checkpoint_steps()):
        torch.manual_seed(i)
        model = build_model(cfg, tok)
        save_checkpoint(model, root / "micro" / "checkpoints" / step_dir(step))
        checkpoints.append({"step": step, "path": f"checkpoints/{step_dir(step)}", "tasks": {t: {"accuracy": 0.0, "logit_diff": 0.0} for t in cfg.tasks}})
    write_json(root / "micro" / "manifest.json", {
        "name": "micro", "kind": "toy", "format": FORMAT_VERSION, "config_hash": MICRO.model_hash(cfg),
        "config": cfg.to_dict(), "tokenizer": "tokenizer", "checkpoints": checkpoints})
    built, cached = build_zoo_transcoders(root, TC)
    assert (built, cached) == (["micro"], [])
    return root


def test_every_checkpoint_has_a_set_and_the_final_one_a_clt(zoo):
    m = json.loads((zoo / "micro" / "transcoders" / "manifest.json").read_text())
    steps = [c["step"] for c in json.loads((zoo / "micro" / "manifest.json").read_text())["checkpoints"]]
    assert [(s["kind"], s["step"]) for s in m["sets"]] == [("per-layer", st) for st in steps] + [("clt", steps[-1])]
    for s in m["sets"]:
        assert len(s["fvu"]) == len(s["l0"]) == len(s["dead"]) == 2
        assert all(0 <= v for v in s["fvu"]) and all(0 < v <= 8 for v in s["l0"])   # TopK: at most k active
        assert set(s["replacement_ratio"]) == set(MICRO.models[0].tasks)
    assert not (zoo / "micro" / ".transcoders.partial").exists()
    assert build_zoo_transcoders(zoo, TC) == ([], ["micro"])   # cached: a second build does nothing


def test_zoo_transcoder_specs(zoo, monkeypatch):
    monkeypatch.setenv("MECHGRAPH_ZOO", str(zoo))
    per_layer = load_transcoders("zoo:micro@final")
    assert per_layer.n_layers == 2 and per_layer.d_dict(0) == 64
    clt = load_transcoders("zoo:micro@final/clt")
    assert isinstance(clt, CrossLayerTranscoders) and list(clt.out_layers(0)) == [0, 1]
    first = json.loads((zoo / "micro" / "manifest.json").read_text())["checkpoints"][0]["step"]
    assert load_transcoders(f"zoo:micro@{first}").n_layers == 2
    with pytest.raises(SpecError, match="no clt transcoders at step"):
        load_transcoders(f"zoo:micro@{first}/clt")
    with pytest.raises(SpecError, match="no SAE on 'nosuch'"):   # NAME@CKPT/HOOK stays a dictionary spec
        load_transcoders("zoo:micro@final/nosuch")


def test_zoo_list_prints_the_transcoder_table(zoo):
    r = CliRunner().invoke(app, ["zoo", "list", "--zoo", str(zoo), "--format", "json", "--no-saes"])
    assert r.exit_code == 0, r.output
    assert r.output.count('"kind": "per-layer"') == 3 and r.output.count('"kind": "clt"') == 1
    assert r.output.count('"max_fvu"') == r.output.count('"max_dead"') == 4


def _tiny(zoo):
    model = load_model(parse_model_spec("zoo:micro@final"), zoo=zoo)
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    batch = encode_examples(model.tokenizer, get_task("sva").examples(6, seed=0, split="test"))
    return model, batch


def test_replacement_forward_equals_a_transformer_lens_splice(zoo):
    """Independent path: TL's hook points (ln2 output in, hook_mlp_out replaced) against the
    module forward hooks of :func:`replacement_forward`."""
    model, batch = _tiny(zoo)
    tcs = load_transcoders(f"path:{zoo / 'micro' / 'transcoders' / 'step-000024'}")
    keep = token_mask(batch.tokens, [batch.pad_id, model.tokenizer.bos_token_id])
    got = replacement_forward(model, tcs, batch.tokens, keep)
    ins = {}

    def take(x, hook):
        ins[hook.layer()] = x

    def put(out, hook):
        rec = tcs[hook.layer()].forward(ins[hook.layer()])
        return torch.where(keep[..., None], rec, out)

    hooks = [(f"blocks.{i}.ln2.hook_normalized", take) for i in range(2)] + \
            [(f"blocks.{i}.hook_mlp_out", put) for i in range(2)]
    want = model.run_with_hooks(batch.tokens, fwd_hooks=hooks)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, model(batch.tokens), atol=1e-4)   # the splice did something
    nothing = torch.zeros_like(keep)
    assert torch.equal(replacement_forward(model, tcs, batch.tokens, nothing), model(batch.tokens))


def test_a_clt_without_cross_layer_decoders_is_its_per_layer_set(zoo, tmp_path):
    model, batch = _tiny(zoo)
    torch.manual_seed(0)
    clt = CrossLayerTranscoder(2, 32, 16, activation="topk", k=4)
    layers = []
    with torch.no_grad():
        for p in (clt.W_enc, clt.b_enc, clt.b_dec):
            p.normal_()
        for i in range(2):
            clt.W_dec[i].normal_()
            clt.W_dec[i][:, 1:] = 0       # layer 0's features write layer 0 only
            t = TopKTranscoder(32, 16, 32, 4, layer=i)
            t.W_enc.copy_(clt.W_enc[i]); t.b_enc.copy_(clt.b_enc[i])
            t.W_dec.copy_(clt.W_dec[i][:, 0]); t.b_dec.copy_(clt.b_dec[i])
            t.save(tmp_path / "set" / f"layer_{i}")
    clt.save(tmp_path / "clt")
    keep = token_mask(batch.tokens, [batch.pad_id, model.tokenizer.bos_token_id])
    a = replacement_forward(model, load_transcoders(f"path:{tmp_path / 'set'}"), batch.tokens, keep)
    b = replacement_forward(model, load_transcoders(f"path:{tmp_path / 'clt'}"), batch.tokens, keep)
    assert torch.allclose(a, b, atol=1e-5)
    tokens = batch.tokens
    mask = token_mask(tokens, [batch.pad_id, model.tokenizer.bos_token_id])
    sa = score_transcoders(model, f"path:{tmp_path / 'set'}", tokens, mask, batch, "cpu")
    sb = score_transcoders(model, f"path:{tmp_path / 'clt'}", tokens, mask, batch, "cpu")
    assert sa["fvu"] == sb["fvu"] and sa["l0"] == sb["l0"] and sa["replacement_accuracy"] == sb["replacement_accuracy"]
    # and with its cross-layer decoder on, layer 1's reconstruction (so its FVU) changes
    with torch.no_grad():
        clt.W_dec[0][:, 1].normal_()
    clt.save(tmp_path / "clt2")
    sc = score_transcoders(model, f"path:{tmp_path / 'clt2'}", tokens, mask, batch, "cpu")
    assert sc["fvu"][0] == sb["fvu"][0] and sc["fvu"][1] != sb["fvu"][1]


def test_trace_on_a_zoo_model_defaults_to_its_transcoders(zoo, monkeypatch):
    from ingest.replacement.jobs import check_transcoder_spec
    from ingest.tasks import get_task

    assert check_transcoder_spec(None, "zoo:micro@final") == "zoo:micro@final"
    assert check_transcoder_spec("path:/x", "zoo:micro@final") == "path:/x"
    with pytest.raises(SpecError, match="only zoo models and smollm2-135m have a default"):
        check_transcoder_spec(None, "path:/some/model")
    monkeypatch.setenv("MECHGRAPH_ZOO", str(zoo))
    prompt = get_task("ioi").examples(1, seed=0, split="test")[0].clean
    r = CliRunner().invoke(app, ["trace", "--model", "zoo:micro@final", "--prompt", prompt, "--no-store",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)[0]
    assert 0 <= row["completeness"] <= 1 and row["nodes"] > 0 and row["targets"]
