"""``mechgraph evaluate`` and ``mechgraph communities`` on a transcoder task graph, end to end
against a real Neo4j: ``ingest --graph transcoders`` of a tiny model, its curves (run in the
replacement model, :mod:`ingest.replacement.ablation`), :Evaluation nodes and communities.

Ground truth: the complete graph over every node of the replacement model (as an edge list)
reproduces the model under both ablations (F = 1) and its complement is the empty graph (C = 0).
"""

from __future__ import annotations

import json

import pytest

from analysis.evaluate.selection import EdgeSelection
from analysis.evaluate.sweep import EvaluateConfig, evaluate
from graphdb.keys import node_key
from graphdb.schema import Label
from ingest.replacement.jobs import TaskTraceConfig, ingest_task
from tests.ingest.replacement.conftest import D_DICT, N_LAYERS, saved, tiny_model  # noqa: F401 - fixtures

MODEL, CKPT = "model", "path"   # the labels of the saved tiny model (a path:DIR checkpoint)


def _complete_edges(kind: str) -> list[dict[str, str]]:
    """Every edge of the complete forward-ordered graph over the replacement model's nodes."""
    base = {"model": MODEL, "checkpoint": CKPT}
    slots = [[node_key(Label.INPUT, **base, name="embed")]]
    for layer in range(N_LAYERS):
        slots.append([node_key(Label.FEATURE, **base, hook=f"blocks.{layer}.mlp.hook_in", dictionary=kind, index=i)
                      for i in range(D_DICT)]
                     + [node_key(Label.ERROR, **base, hook=f"blocks.{layer}.hook_mlp_out", dictionary=kind)])
    slots.append([node_key(Label.OUTPUT, **base, task="ioi", metric="logit_diff")])
    return [{"src": u, "dst": d} for m in range(1, len(slots)) for s in range(m) for u in slots[s] for d in slots[m]]


@pytest.mark.slow
def test_evaluate_and_communities_on_a_transcoder_task_graph(db, neo4j_settings, saved, tmp_path) -> None:  # noqa: F811
    model, tcs = saved
    run, (res,) = ingest_task(db, TaskTraceConfig(model=model, transcoders=tcs, tasks=("ioi",), examples=3))
    result = evaluate(db, EvaluateConfig(task="ioi", run=run, examples=4, sweep=3), out_dir=tmp_path / "out")
    assert result.total_edges == res.task_edges > 0 and result.baseline == "zero"
    assert {p.ablation for p in result.points} == {"edge", "node"} and all(p.baseline == "zero" for p in result.points)
    stored = db.read("MATCH (e:Evaluation)-[:EVALUATES]->(r:Run {run: $run}) RETURN count(e) AS c, "
                     "collect(DISTINCT e.baseline) AS b", {"run": run})
    assert stored[0]["c"] == len(result.points) + 2 and stored[0]["b"] == ["zero"]

    kind = db.read("MATCH (d:Dictionary)<-[:OF_DICTIONARY]-(:Feature) RETURN DISTINCT d.kind AS k")[0]["k"]
    edges = tmp_path / "complete.json"
    edges.write_text(json.dumps(_complete_edges(kind)))
    for baseline in ("zero", "mean"):
        complete = evaluate(db, EvaluateConfig(task="ioi", run=run, examples=4, sweep=1, baseline=baseline,
                                               selection=EdgeSelection(edges=str(edges)), keep_errors=False),
                            out_dir=tmp_path / "out")
        for p in complete.points:
            assert p.faithfulness == pytest.approx(1.0, abs=1e-4), (baseline, p)
            assert p.completeness == pytest.approx(0.0, abs=1e-4), (baseline, p)

    from typer.testing import CliRunner

    from analysis.cli import app

    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    r = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "communities", "--model", MODEL, "--checkpoint", CKPT,
                                 "--task", "ioi", "--run", run, "--format", "json"], env=env)
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["graph_run"] == run and row["communities"] >= 1
    members = db.read("MATCH (n)-[:IN_COMMUNITY {run: $c}]->(:Community) "
                      "MATCH (n)-[:ATTRIBUTES_TO {run: $g, granularity: 'feature'}]-() RETURN count(DISTINCT n) AS n",
                      {"c": row["run"], "g": run})
    nodes = db.read("MATCH (n)-[:ATTRIBUTES_TO {run: $g, granularity: 'feature'}]-() RETURN count(DISTINCT n) AS n", {"g": run})
    assert members[0]["n"] == nodes[0]["n"] > 0
