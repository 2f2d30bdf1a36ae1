"""Feature descriptions (ingest/describe) on a tiny model, against the session's real Neo4j."""

from __future__ import annotations

import pytest
import torch

from analysis.exchange.export import export_task
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


def test_descriptions_are_clerps_in_a_task_graph_export(db):
    from graphdb.keys import node_key
    from graphdb.schema import Label, Rel
    from graphdb.writer import GraphWriter

    w = GraphWriter(db)
    base = {"model": "m", "checkpoint": "final"}
    f = [node_key(Label.FEATURE, **base, hook=f"blocks.{i}.hook_resid_post", dictionary="sae", index=7 + i) for i in range(2)]
    out = node_key(Label.OUTPUT, **base, task="ioi", metric="logit_diff")
    w.write_nodes(Label.FEATURE, [{"key": f[0], "hook": "blocks.0.hook_resid_post", "layer": 0, "index": 7,
                                   "dictionary": "d0", "description": '"Mary"'},
                                  {"key": f[1], "hook": "blocks.1.hook_resid_post", "layer": 1, "index": 8,
                                   "dictionary": "d1"}])
    w.write_nodes(Label.OUTPUT, [{"key": out, "task": "ioi", "metric": "logit_diff", "layer": 2}])
    w.write_relationships(Rel.ATTRIBUTES_TO, [{"src": f[0], "dst": f[1], "weight": 0.5}, {"src": f[1], "dst": out, "weight": -2.0}],
                          common={**base, "task": "ioi", "run": "r", "granularity": "feature"})
    doc = export_task(db, model="m", checkpoint="final", task="ioi", run="r")
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert set(nodes) == {"0_7_0", "1_8_0", "3_0_0"}
    assert (nodes["0_7_0"]["clerp"], nodes["1_8_0"]["clerp"], nodes["3_0_0"]["feature_type"]) == ('"Mary"', "", "logit")
    assert {(x["source"], x["target"], x["weight"]) for x in doc["links"]} == {("0_7_0", "1_8_0", 0.5), ("1_8_0", "3_0_0", -2.0)}
