"""The CLI through typer's CliRunner, against the session's real Neo4j server."""

import csv
import io
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from graphdb.embedded import free_port
from graphdb.sample import SampleSpec, write_sample
from graphdb.writer import GraphWriter
from queries.loader import run_query

runner = CliRunner()


def env_for(settings, **override):
    env = {"NEO4J_URI": settings.uri, "NEO4J_USER": settings.user, "NEO4J_PASSWORD": settings.password,
           "NEO4J_DATABASE": None}
    env.update(override)
    return env


def test_help_is_instant_and_imports_no_heavy_modules():
    code = "import sys, analysis.cli; print(sorted(m for m in ('torch', 'neo4j', 'pandas', 'graspologic', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "db" in result.stdout and "query" in result.stdout


def test_query_run_csv_and_json_match_the_library(db, neo4j_settings):
    spec = SampleSpec()
    write_sample(GraphWriter(db), spec)
    args = ["query", "run", "task_subgraph", "-p", f"model={spec.model}", "-p", "checkpoint=final",
            "-p", "task=ioi", "-p", "min_abs_weight=0.5"]
    want = run_query(db, "task_subgraph", {"model": spec.model, "checkpoint": "final", "task": "ioi",
                                           "min_abs_weight": 0.5})
    res = runner.invoke(app, [*args, "--format", "json"], env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == want
    res = runner.invoke(app, [*args, "--format", "csv"], env=env_for(neo4j_settings))
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["source"], r["target"]) for r in rows] == [(w["source"], w["target"]) for w in want]
    res = runner.invoke(app, args, env=env_for(neo4j_settings))
    assert res.exit_code == 0 and "task_subgraph" in res.stdout


def test_db_init_and_status_on_an_external_server(db, neo4j_settings):
    res = runner.invoke(app, ["db", "init"], env=env_for(neo4j_settings))
    assert res.exit_code == 0 and "schema ready" in res.stdout
    res = runner.invoke(app, ["db", "status"], env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    assert neo4j_settings.uri in res.stdout and "5." in res.stdout


def test_db_status_of_the_embedded_server(embedded_server):
    res = runner.invoke(app, ["--data-dir", str(embedded_server.data_dir), "db", "status"], env={"NEO4J_URI": None})
    assert res.exit_code == 0, res.output
    assert "bolt://127.0.0.1:" in res.stdout
    assert f"version:     {embedded_server.state().version}" in res.stdout


def test_db_status_when_not_running_exits_3(tmp_path):
    res = runner.invoke(app, ["--data-dir", str(tmp_path), "db", "status"], env={"NEO4J_URI": None})
    assert res.exit_code == 3 and "not running" in res.stdout


def _one_error_line(res):
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("mechgraph: error: ")
    assert "Traceback" not in res.output
    return lines[0]


def test_wrong_password_is_one_clear_line(neo4j_settings):
    res = runner.invoke(app, ["db", "init"], env=env_for(neo4j_settings, NEO4J_PASSWORD="not-the-password"))
    assert res.exit_code == 1
    assert "rejected the credentials" in _one_error_line(res)


def test_server_down_is_one_clear_line():
    env = {"NEO4J_URI": f"bolt://127.0.0.1:{free_port()}", "NEO4J_PASSWORD": "x"}
    res = runner.invoke(app, ["query", "run", "graph_summary"], env=env)
    assert res.exit_code == 1
    assert "cannot reach Neo4j" in _one_error_line(res)


def test_embedded_not_started_is_one_clear_line(tmp_path):
    res = runner.invoke(app, ["--data-dir", str(tmp_path), "query", "run", "runs"], env={"NEO4J_URI": None})
    assert res.exit_code == 1
    assert "mechgraph db start" in _one_error_line(res)


@pytest.mark.parametrize("args, message", [
    (["query", "run", "no_such_query"], "no query named"),
    (["query", "run", "task_subgraph", "-p", "model"], "NAME=VALUE"),
    (["query", "run", "neighbourhood", "-p", "key=k", "-p", "task=t", "-p", "hops=9"], "1..3"),
])
def test_bad_query_input_fails_before_connecting(args, message):
    res = runner.invoke(app, args, env={"NEO4J_URI": None})
    assert res.exit_code == 1
    assert message in _one_error_line(res)


def test_db_start_is_idempotent_and_stop_stops(tmp_path):
    env = {"NEO4J_URI": None, "MECHGRAPH_BOLT_PORT": str(free_port()), "MECHGRAPH_NEO4J_HEAP": "512m",
           "MECHGRAPH_NEO4J_PAGECACHE": "64m"}
    base = ["--data-dir", str(tmp_path)]
    try:
        first = runner.invoke(app, [*base, "db", "start"], env=env)
        assert first.exit_code == 0 and " started at bolt://127.0.0.1:" in first.stdout, first.output
        again = runner.invoke(app, [*base, "db", "start"], env=env)
        assert again.exit_code == 0 and "already running" in again.stdout
        assert runner.invoke(app, [*base, "db", "init"], env=env).exit_code == 0
    finally:
        stopped = runner.invoke(app, [*base, "db", "stop"], env=env)
    assert stopped.exit_code == 0 and "Neo4j stopped." in stopped.stdout
    assert runner.invoke(app, [*base, "db", "status"], env=env).exit_code == 3


def test_communities_defaults_to_the_newest_ingest_run(db, neo4j_settings):
    """Two finished ingest runs of one task: no --run partitions the newest one's edges only;
    --run '*' sums both (the old default)."""
    from graphdb.keys import node_key
    from graphdb.provenance import RunRecord
    from graphdb.schema import Label, Rel

    model, ckpt, task = "cli-model", "final", "ioi"
    keys = [node_key(Label.FEATURE, model=model, checkpoint=ckpt, hook="blocks.0.hook_resid_post", dictionary="sae",
                     index=i) for i in range(6)]
    writer = GraphWriter(db)
    writer.write_nodes(Label.FEATURE, [{"key": k, "model": model, "checkpoint": ckpt} for k in keys])
    writer.write_nodes(Label.TASK, [{"key": node_key(Label.TASK, task=task), "name": task}])
    old = RunRecord(kind="ingest", config={"graph": "resid"}, seed=0, created_at=1.0)
    new = RunRecord(kind="ingest", config={"graph": "module"}, seed=0, created_at=2.0)
    for record, pairs in ((old, [(0, 1), (1, 2), (2, 0)]), (new, [(3, 4), (4, 5)])):
        writer.write_nodes(Label.RUN, [{**record.row(), "tasks_done": [task]}])
        writer.write_relationships(Rel.FOR_TASK, [{"src": record.key, "dst": node_key(Label.TASK, task=task)}],
                                   src=Label.RUN, dst=Label.TASK)
        writer.write_relationships(Rel.ATTRIBUTES_TO,
                                   [{"src": keys[a], "dst": keys[b], "weight": 1.0} for a, b in pairs],
                                   common={"model": model, "checkpoint": ckpt, "task": task, "run": record.run_id})
    args = ["communities", "--model", model, "--checkpoint", ckpt, "--task", task]
    res = runner.invoke(app, args, env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())  # the table title wraps
    assert f"graph run {new.run_id}): 3 nodes, 2 edges" in text
    res = runner.invoke(app, [*args, "--run", "*"], env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    assert "6 nodes, 5 edges" in " ".join(res.stdout.split())
    res = runner.invoke(app, ["communities", "--model", model, "--checkpoint", ckpt, "--task", "induction"],
                        env=env_for(neo4j_settings))
    assert res.exit_code == 1 and "no finished ingest run" in res.output
    assert "newest finished ingest run" in " ".join(runner.invoke(app, ["communities", "--help"]).stdout.split())
    # Issue 15 item 10: csv and json rows name the communities run created and the graph run read;
    # stdout is the table alone (json: one document), the hint line goes to stderr.
    res = runner.invoke(app, [*args, "--format", "csv"], env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows and all(r["run"].startswith("communities-") and r["graph_run"] == new.run_id for r in rows)
    assert f"run {rows[0]['run']};" in res.stderr
    res = runner.invoke(app, [*args, "--format", "json"], env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    assert [r["run"] for r in json.loads(res.stdout)] == [r["run"] for r in rows]
