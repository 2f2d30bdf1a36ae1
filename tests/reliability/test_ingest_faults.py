"""Fault tests of ingest (issue 14): a real ``mechgraph ingest`` process killed with SIGKILL
while it accumulates and while it writes, and the server killed under a running ingest. Each
ends, after the natural re-run of the same command, with exactly the graph an uninterrupted
run writes: the same edges with the same weights, and the same node and relationship counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


D = 16
DICTS = (f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post")
TASKS = ("ioi", "sva")
EXAMPLES, BATCH = 24, 2   # 12 batches per task: long enough to be caught at each phase


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 32, 5)


def _args(model_dir: Path, home: Path) -> list[str]:
    args = [sys.executable, "-c", "from analysis.cli import main; main()", "-v", "--data-dir", str(home), "ingest",
            "--model", f"path:{model_dir}", "--examples", str(EXAMPLES), "--batch-size", str(BATCH), "--steps", "2",
            "--threshold", "0.001"]
    for t in TASKS:
        args += ["--task", t]
    for d in DICTS:
        args += ["--dicts", d]
    return args


def _graph(db: Any) -> tuple[dict[tuple[str, str, str, str, str], float], int, int]:
    rows = db.read("MATCH (a)-[r:ATTRIBUTES_TO]->(b) RETURN a.key AS a, b.key AS b, r.run AS run, "
                   "r.task AS task, r.granularity AS g, r.weight AS w")
    nodes = db.read("MATCH (n) RETURN count(n) AS c")[0]["c"]
    rels = db.read("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"]
    # One entry per relationship: the task is part of the key (without it, the edges two tasks
    # share endpoints for would collapse to whichever the store returned last).
    edges = {(r["a"], r["b"], r["run"], r["task"], r["g"]): r["w"] for r in rows}
    assert len(edges) == len(rows)
    return edges, nodes, rels


def _uninterrupted(db: Any, settings: Any, model_dir: Path, tmp_path: Path) -> tuple[Any, int, int]:
    """The graph one uninterrupted ``mechgraph ingest`` process writes (a process of its own, as
    the interrupted ones are: nothing of this test process's state can leak into it)."""
    db.write("MATCH (n) DETACH DELETE n")
    done = subprocess.run(_args(model_dir, tmp_path / "alone"), env=_env(settings), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    graph = _graph(db)
    db.write("MATCH (n) DETACH DELETE n")
    return graph


def _wait(what: str, ready: Any, proc: subprocess.Popen[str], timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the ingest ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _writing(db: Any) -> bool:
    rows = db.read("MATCH (r:Run {kind: 'ingest'}) RETURN r.tasks_writing AS w")
    return any(r["w"] for r in rows)


def _env(settings: Any) -> dict[str, str]:
    env = {**os.environ, "NEO4J_URI": settings.uri, "NEO4J_USER": settings.user,
           "NEO4J_PASSWORD": settings.password}
    env.pop("NEO4J_DATABASE", None)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["accumulating", "writing"])
def test_ingest_killed_then_rerun_writes_the_uninterrupted_graph(db, neo4j_settings, model_dir, tmp_path, phase):
    expected = _uninterrupted(db, neo4j_settings, model_dir, tmp_path)
    home = tmp_path / "home"
    args, env = _args(model_dir, home), _env(neo4j_settings)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if phase == "accumulating":   # a saved accumulator: the process is inside a task's batches
            _wait("a saved accumulator", lambda: any((home / "runs").glob("*/*.pt")), proc)
        else:                         # a task's graph being written: its Run names it in tasks_writing
            _wait("the first task's write", lambda: _writing(db), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert _graph(db) == expected


@pytest.mark.slow
def test_server_killed_mid_ingest_then_rerun_writes_the_uninterrupted_graph(db, neo4j_settings, model_dir, tmp_path):
    """Against its own embedded server (the ingest starts it): SIGKILL of the server while the
    ingest accumulates; the ingest fails with one error line; the re-run (which restarts the
    server) writes the uninterrupted graph."""
    from graphdb.connection import connect
    from graphdb.embedded import EmbeddedServer

    expected = _uninterrupted(db, neo4j_settings, model_dir, tmp_path)
    home = tmp_path / "own"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    args = _args(model_dir, home)
    server = EmbeddedServer(home, heap="512m", page_cache="64m")
    server.start()
    try:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait("a saved accumulator", lambda: any((home / "runs").glob("*/*.pt")), proc)
        pid = json.loads((home / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0
        assert err.count("mechgraph: error:") == 1 and "Traceback" not in err, err
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        assert rerun.returncode == 0, rerun.stderr
        with connect(data=home) as own:
            got = _graph(own)
        # The runs' other nodes (the :Run, :Task, ...) are the same in both stores.
        assert got == expected
    finally:
        server.stop()
