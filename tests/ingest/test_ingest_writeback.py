"""Ingest and half-written state (issue 14): key parts checked before any computation (A1),
a run's edges invisible to the library until its task is finished (A3), and one ingest per
run at a time (B)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from graphdb.sample import SampleSpec, write_sample
from graphdb.schema import Rel
from graphdb.writer import GraphWriter
from ingest.attribution.config import AttributionConfig
from ingest.pipeline import IngestConfig, ingest
from queries.loader import run_query

D = 16
DICTS = (f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post")


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 32, 3)


def _env(settings) -> dict[str, str | None]:
    return {"NEO4J_URI": settings.uri, "NEO4J_USER": settings.user, "NEO4J_PASSWORD": settings.password,
            "NEO4J_DATABASE": None}


def _counts(db) -> tuple[int, int]:
    return (db.read("MATCH (n) RETURN count(n) AS c")[0]["c"], db.read("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"])


def _ingest_args(model: str, *tasks: str) -> list[str]:
    args = ["ingest", "--model", model, "--examples", "4", "--batch-size", "2", "--steps", "2", "--threshold", "0.001"]
    for t in tasks:
        args += ["--task", t]
    for d in DICTS:
        args += ["--dicts", d]
    return args


# -- A1 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["model", "task"])
def test_a_key_separator_in_a_key_part_fails_before_any_computation(db, neo4j_settings, model_dir, tmp_path,
                                                                      monkeypatch, where):
    from ingest.attribution.engine import AttributionEngine
    from ingest.tasks import get_task

    write_sample(GraphWriter(db), SampleSpec())
    before = _counts(db)
    model, task = model_dir, "ioi"
    if where == "model":
        model = tmp_path / "tiny|v2"
        model.symlink_to(model_dir, target_is_directory=True)
    else:
        rows = [{"clean": e.clean, "counterfactual": e.counterfactual, "answer": e.answer, "cf_answer": e.cf_answer}
                for e in get_task("ioi").examples(8, seed=0, split="test")]
        path = tmp_path / "my|task.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        task = f"jsonl:{path}"

    def no_computation(*a, **k):
        raise AssertionError("the attribution ran before the key parts were checked")

    monkeypatch.setattr(AttributionEngine, "attribute", no_computation)
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "home"), *_ingest_args(f"path:{model}", task)],
                             env=_env(neo4j_settings))
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mechgraph: error: ") and "'|'" in lines[0], res.stderr
    assert _counts(db) == before


# -- A3 ----------------------------------------------------------------------------------------

class _DiesInEdges(GraphWriter):
    """The real writer, raising after its first committed batch of attribution edges."""

    def __init__(self, db) -> None:
        super().__init__(db, batch_size=3, progress=self._tick)
        self.current = None

    def write_relationships(self, rel, rows, **kw):
        self.current = rel
        return super().write_relationships(rel, rows, **kw)

    def _tick(self, _rows: int) -> None:
        if self.current is Rel.ATTRIBUTES_TO:
            raise RuntimeError("killed while writing edges")


def test_a_run_still_writing_is_invisible_to_the_library(db, model_dir, tmp_path):
    config = IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), dicts=DICTS, examples=4, batch_size=2,
                          attribution=AttributionConfig(steps=2, threshold=1e-3))
    with pytest.raises(RuntimeError, match="killed"):
        ingest(db, config, state_root=tmp_path, writer=_DiesInEdges(db))
    run = db.read("MATCH (r:Run {kind: 'ingest'}) RETURN r.run AS run")[0]["run"]
    partial = db.read("MATCH ()-[e:ATTRIBUTES_TO {run: $run}]->() RETURN count(e) AS n", {"run": run})[0]["n"]
    assert partial > 0, "the simulated crash left no partial graph to hide"

    model, task, ckpt = "tiny", "ioi", "path"
    model = db.read("MATCH ()-[e:ATTRIBUTES_TO {run: $run}]->() RETURN e.model AS m LIMIT 1", {"run": run})[0]["m"]

    def visible() -> dict[str, int]:
        p = {"model": model, "checkpoint": ckpt, "task": task}
        out = {name: len(run_query(db, name, {**p, "limit": 10**6})) for name in
               ("task_subgraph", "hubs", "top_output_contributors")}
        out["run_edges"] = len(run_query(db, "run_edges", {"run": run, "task": task}))
        out["subgraph_columns"] = len(run_query(db, "subgraph_columns", p)[0]["weights"])
        out["graph_summary"] = len([r for r in run_query(db, "graph_summary", {}) if r["run"] == run])
        out["report_graphs"] = len([r for r in run_query(db, "report_graphs", {}) if r["run"] == run])
        out["latest_run"] = len(run_query(db, "latest_run", {**p, "kind": "ingest"}))
        return out

    hidden = visible()
    assert hidden == dict.fromkeys(hidden, 0), f"a half-written run is visible: {hidden}"
    done = ingest(db, config, state_root=tmp_path)
    assert done.run == run and done.tasks[0].edges > partial
    shown = visible()
    assert all(n > 0 for n in shown.values()), shown


# -- B -----------------------------------------------------------------------------------------

def _edges(db) -> dict[tuple[str, str, str, str, str], float]:
    rows = db.read("MATCH (a)-[r:ATTRIBUTES_TO]->(b) RETURN a.key AS a, b.key AS b, r.run AS run, "
                   "r.task AS task, r.granularity AS g, r.weight AS w")
    # One entry per relationship: the task is part of the key (without it, the edges two tasks
    # share endpoints for would collapse to whichever the store returned last).
    edges = {(r["a"], r["b"], r["run"], r["task"], r["g"]): r["w"] for r in rows}
    assert len(edges) == len(rows)
    return edges


@pytest.mark.slow
def test_two_concurrent_ingests_of_one_run_compute_it_once(db, neo4j_settings, model_dir, tmp_path):
    env = {**os.environ, **{k: v for k, v in _env(neo4j_settings).items() if v is not None}}
    env.pop("NEO4J_DATABASE", None)
    args = [sys.executable, "-c", "from analysis.cli import main; main()", "-v", "--data-dir", str(tmp_path / "home"),
            *_ingest_args(f"path:{model_dir}", "ioi", "sva")]
    args[args.index("--examples") + 1] = "8"   # long enough that the two overlap
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.5)
    procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    computed = [err.count("computing the") for _, err in outs]
    assert sorted(computed) == [0, 2], [err for _, err in outs]   # two tasks, by one process only
    waited = outs[computed.index(0)]
    assert "up to date" in waited[0]
    concurrent = _edges(db)
    counts = _counts(db)
    db.write("MATCH (n) DETACH DELETE n")
    # The same command alone, in a process of its own as the concurrent ones were.
    alone = [*args]
    alone[alone.index("--data-dir") + 1] = str(tmp_path / "alone")
    done = subprocess.run(alone, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _edges(db) == concurrent and _counts(db) == counts
