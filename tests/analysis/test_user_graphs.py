"""A user's own task, queries and edge lists against a real Neo4j: a graph ingested from a
``jsonl:`` task is found by every command under its spec or its stored name; ``evaluate`` runs a
user's ``.cypher`` file or a CSV/JSON edge list; and it judges a graph against the baseline the
graph was ingested with unless told otherwise, naming it everywhere."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from analysis.evaluate.selection import EdgeSelection
from analysis.evaluate.sweep import EvaluateConfig, evaluate
from ingest.attribution.config import AttributionConfig
from ingest.pipeline import IngestConfig, ingest
from ingest.tasks import get_task
from queries.loader import run_query

D = 8
runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 16, 11)


def _jsonl_task(path: Path) -> Path:
    """IOI prompts of both splits written as a user's JSONL task."""
    rows = get_task("ioi").examples(12, seed=5, split="train") + get_task("ioi").examples(12, seed=5, split="test")
    path.write_text("".join(json.dumps({"clean": e.clean, "counterfactual": e.counterfactual, "answer": e.answer,
                                        "cf_answer": e.cf_answer}) + "\n" for e in rows))
    return path


def _ingest(db, model_dir: Path, task: str, tmp_path: Path):
    return ingest(db, IngestConfig(
        model=f"path:{model_dir}", tasks=(task,), examples=4, batch_size=4,
        dicts=(f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"),
        attribution=AttributionConfig(steps=1, threshold=0.0)), state_root=tmp_path / "state")


def _forget_aliases() -> None:
    """What a new process knows: no task aliases declared yet."""
    from ingest.tasks import names
    names._ALIASES.clear()


def test_a_jsonl_task_is_found_by_its_spec_and_by_its_stored_name(db, model_dir, tmp_path, neo4j_settings):
    path = _jsonl_task(tmp_path / "my_task.jsonl")
    graph = _ingest(db, model_dir, f"jsonl:{path}", tmp_path)
    assert [t.task for t in graph.tasks] == ["my_task"]
    spec = run_query(db, "task_spec", {"task": "my_task"})[0]["spec"]
    assert spec == f"jsonl:{path.absolute()}"
    out = tmp_path / "out"
    by_spec = evaluate(db, EvaluateConfig(task=f"jsonl:{path}", model=f"path:{model_dir}", examples=4, sweep=2),
                       out_dir=out)
    _forget_aliases()  # a later command in a new process, given only the stored name
    by_name = evaluate(db, EvaluateConfig(task="my_task", model=f"path:{model_dir}", examples=4, sweep=2), out_dir=out)
    assert by_spec.graph_run == by_name.graph_run == graph.run
    assert [p.faithfulness for p in by_spec.points] == pytest.approx([p.faithfulness for p in by_name.points])
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    for task in (f"jsonl:{path}", "my_task"):
        res = runner.invoke(app, ["communities", "--model", model_dir.name, "--checkpoint", "path", "--task", task],
                            env=env)
        assert res.exit_code == 0, res.output
        assert graph.run in res.stdout


def test_evaluate_runs_a_cypher_file_and_edge_lists(db, model_dir, tmp_path):
    graph = _ingest(db, model_dir, "ioi", tmp_path)
    top = run_query(db, "run_edges", {"run": graph.run, "task": "ioi", "limit": 6})
    base = dict(task="ioi", run=graph.run, examples=4, sweep=1, ablations=("edge",))
    want = evaluate(db, EvaluateConfig(**base, selection=EdgeSelection(top_n=6)), out_dir=tmp_path / "out")
    query = tmp_path / "strongest.cypher"
    query.write_text("// name: strongest\n// summary: the n strongest edges of a run\n"
                     "// param run: string  run id\n// param n: int = 3 [1..100]  how many\n"
                     "// returns: source, target, weight\n"
                     "MATCH (a)-[r:ATTRIBUTES_TO {run: $run, granularity: 'feature'}]->(b)\n"
                     "RETURN a.key AS source, b.key AS target, r.weight AS weight "
                     "ORDER BY abs(r.weight) DESC, source, target LIMIT $n\n")
    as_csv = tmp_path / "edges.csv"
    with open(as_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["src", "dst"])
        w.writerows([r["source"], r["target"]] for r in top)
    as_json = tmp_path / "edges.json"
    as_json.write_text(json.dumps([{"src": r["source"], "dst": r["target"], "weight": r["weight"]} for r in top]))
    for selection in (EdgeSelection(query=str(query), params=(("run", graph.run), ("n", "6"))),
                      EdgeSelection(edges=str(as_csv)), EdgeSelection(edges=str(as_json))):
        got = evaluate(db, EvaluateConfig(**base, selection=selection), out_dir=tmp_path / "out")
        assert got.total_edges == 6
        assert got.points[0].faithfulness == pytest.approx(want.points[0].faithfulness, abs=1e-6)
    from mechgraph.errors import MechgraphError
    with pytest.raises(MechgraphError, match="n must be in 1..100"):
        evaluate(db, EvaluateConfig(**base, selection=EdgeSelection(query=str(query), params=(("run", graph.run), ("n", "0")))),
                 out_dir=tmp_path / "out")
    (tmp_path / "bad.csv").write_text("from,to\na,b\n")
    with pytest.raises(MechgraphError, match="src and dst"):
        evaluate(db, EvaluateConfig(**base, selection=EdgeSelection(edges=str(tmp_path / "bad.csv"))), out_dir=tmp_path / "out")


def test_evaluate_defaults_to_the_ingest_baseline_and_names_it(db, model_dir, tmp_path):
    graph = _ingest(db, model_dir, "ioi", tmp_path)  # ingest's default baseline: counterfactual
    result = evaluate(db, EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=2), out_dir=tmp_path / "out")
    assert result.baseline == "counterfactual"
    rows = list(csv.DictReader(open(result.csv)))
    assert {r["baseline"] for r in rows} == {"counterfactual"}
    stored = db.read("MATCH (e:Evaluation {run: $run}) RETURN DISTINCT e.baseline AS b", {"run": result.run})
    assert [r["b"] for r in stored] == ["counterfactual"]
    assert {r["baseline"] for r in run_query(db, "report_evaluations")} == {"counterfactual"}
    mean = evaluate(db, EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=2, baseline="mean"),
                    out_dir=tmp_path / "out")
    assert mean.baseline == "mean" and mean.ablated_logit_diff != pytest.approx(result.ablated_logit_diff)
