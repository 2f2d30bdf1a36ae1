"""Feature descriptions (ingest/describe) on a tiny model, against the session's real Neo4j."""

from __future__ import annotations

import pytest
import torch

from ingest.describe.contexts import Context, DescribeConfig, describe, label

HOOK = "blocks.0.hook_resid_post"


def test_top_contexts_are_the_highest_activations(db, tiny_checkpoint):
    from ingest.latents import shared_prompts
    from ingest.zoo.specs import load_model, parse_model_spec

    ckpt = tiny_checkpoint(16, 32, 0)
    spec = f"path:{ckpt}"
    config = DescribeConfig(model=spec, dicts=(f"identity:16/{HOOK}",), tasks=("ioi",), examples=4, top_k=3, window=3)
    [done] = describe(db, config)
    assert (done.model, done.checkpoint, done.hook, done.latents) == ("ckpt", "path", HOOK, 16)
    # By hand: an identity dictionary's latent j is the residual stream's coordinate j; every
    # position of every prompt from 1 (after BOS) to its last token is a candidate.
    model = load_model(parse_model_spec(spec))
    batch = shared_prompts(model.tokenizer, ("ioi",), 4, seed=0, n_ctx=model.cfg.n_ctx)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens)
    x = cache[HOOK]
    stored = {int(r["key"].rsplit("|", 1)[1]): r for r in db.read(
        "MATCH (f:Feature {hook: $h}) RETURN f.key AS key, f.top_activations AS acts, f.top_contexts AS ctxs, "
        "f.description AS description", {"h": HOOK})}
    assert sorted(stored) == list(range(16))
    for j in range(16):
        cands = sorted(((float(x[r, p, j]), r, p) for r in range(len(batch)) for p in range(1, int(batch.last[r]) + 1)),
                       key=lambda c: -c[0])
        top = [c for c in cands if c[0] > 0][:3]
        assert stored[j]["acts"] == pytest.approx([a for a, _, _ in top], rel=1e-5)
        for (_, r, p), text in zip(top, stored[j]["ctxs"], strict=True):
            word = model.tokenizer.decode([int(batch.tokens[r, p])])
            before = "".join(model.tokenizer.decode([int(t)]) for t in batch.tokens[r, max(0, p - 2):p])
            assert text == before + "[[" + word + "]]"
        assert stored[j]["description"]


def _c(token: str, previous: str, activation: float) -> Context:
    return Context(0, 1, activation, token, previous, previous + "[[" + token + "]]")


def test_label_rule():
    assert label([], 12) == "inactive on 12 prompts"
    # " Mary" carries 3 of 4 units of activation: the label is the token
    assert label([_c(" Mary", " to", 2.0), _c(" Mary", " and", 1.0), _c(" John", " to", 1.0)], 5) == '"Mary"'
    # no token carries half, " to" before them carries 3 of 4.5
    assert label([_c(" a", " to", 1.5), _c(" b", " to", 1.5), _c(" c", " x", 1.5)], 5) == 'after "to"'
    assert label([_c(" a", " p", 1.0), _c(" b", " q", 0.9), _c(" c", " r", 0.8), _c(" d", " s", 0.7)], 5) == \
        '"a" / "b" / "c"'


def test_describe_command(db, tiny_checkpoint, neo4j_settings, tmp_path):
    from typer.testing import CliRunner

    from analysis.cli import app

    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None, "MECHGRAPH_ZOO": str(tmp_path)}
    runner = CliRunner()
    res = runner.invoke(app, ["describe", "--zoo"], env=env)
    assert res.exit_code == 1 and res.stderr.strip() == "mechgraph: error: the zoo has no built models (`mechgraph zoo build`)"
    ckpt = tiny_checkpoint(16, 32, 1)
    res = runner.invoke(app, ["describe", "-m", f"path:{ckpt}", "-d", f"identity:16/{HOOK}", "-t", "ioi",
                              "--examples", "2", "--format", "json"], env=env)
    assert res.exit_code == 0, res.output
    import json

    [row] = json.loads(res.stdout)
    assert (row["hook"], row["latents"]) == (HOOK, 16)
    n = db.read("MATCH (f:Feature {hook: $h}) WHERE f.description IS NOT NULL RETURN count(f) AS n", {"h": HOOK})
    assert n[0]["n"] == 16


def test_transcoder_sets_are_described_under_the_keys_prompt_graphs_use(db, tiny_checkpoint, tmp_path):
    from ingest.dictionaries.transcoder import TopKTranscoder
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.latents import shared_prompts
    from ingest.replacement.store import GraphLabels
    from ingest.zoo.specs import load_model, parse_model_spec

    ckpt = tiny_checkpoint(16, 32, 2)
    torch.manual_seed(0)
    for layer in range(2):
        t = TopKTranscoder(16, 8, 16, 2, layer=layer)
        with torch.no_grad():
            for p in t.parameters():
                p.normal_()
        t.save(tmp_path / "set" / f"layer_{layer}")
    config = DescribeConfig(model=f"path:{ckpt}", transcoders=(f"path:{tmp_path / 'set'}",), tasks=("ioi",),
                            examples=4, top_k=3, window=3)
    done = describe(db, config)
    tcs = load_transcoders(f"path:{tmp_path / 'set'}")
    assert [(d.hook, d.dictionary, d.latents) for d in done] == [(f"blocks.{i}.mlp.hook_in", tcs.kind, 8) for i in range(2)]
    # By hand: layer L's MLP input is ln2 of the residual stream between attention and MLP.
    model = load_model(parse_model_spec(f"path:{ckpt}"))
    batch = shared_prompts(model.tokenizer, ("ioi",), 4, seed=0, n_ctx=model.cfg.n_ctx)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens)
    labels = GraphLabels(model="ckpt", checkpoint="path", dictionary=tcs.kind)
    for layer in range(2):
        with torch.no_grad():
            acts = tcs.encode(layer, model.blocks[layer].ln2(cache[f"blocks.{layer}.hook_resid_mid"]))
        for j in range(8):
            key = labels.position_free({"kind": "feature", "layer": layer, "feature": j})   # what a prompt graph names
            [row] = db.read("MATCH (f:Feature {key: $k}) RETURN f.top_activations AS acts, f.description AS d", {"k": key})
            cands = sorted((float(acts[r, p, j]) for r in range(len(batch)) for p in range(1, int(batch.last[r]) + 1)),
                           reverse=True)
            assert row["acts"] == pytest.approx([a for a in cands if a > 0][:3], rel=1e-5) and row["d"]
