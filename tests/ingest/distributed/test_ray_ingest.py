"""``ingest --ray`` on a local Ray cluster: the graph it stores is the single-process graph,
a worker killed mid-unit is retried, and a killed driver resumes without recomputing the units
it had saved. The model is the tiny random-weight checkpoint of ``tests/ingest/test_ingest.py``
with identity dictionaries (every count follows from the shapes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.attribution.config import AttributionConfig
from ingest.pipeline import IngestConfig, ingest

D = 16
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 32, 3)


def _config(model_dir: Path, **kw: object) -> IngestConfig:
    attribution = kw.pop("attribution", AttributionConfig(steps=2, threshold=1e-3))
    base = dict(model=f"path:{model_dir}", tasks=("ioi",),
                dicts=(f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"),
                examples=6, batch_size=2, attribution=attribution)
    base.update(kw)
    return IngestConfig(**base)  # type: ignore[arg-type]


def _graph(db) -> dict[str, dict]:  # noqa: ANN001
    """Every stored edge (feature and head granularity, IN_HEAD) and every node's properties."""
    edges = db.read("MATCH (a)-[r]->(b) WHERE type(r) IN ['ATTRIBUTES_TO', 'IN_HEAD'] "
                    "RETURN a.key AS a, b.key AS b, type(r) AS t, r.granularity AS g, r.task AS task, "
                    "coalesce(r.weight, r.share) AS w")
    nodes = db.read("MATCH (n) WHERE NOT n:Run RETURN n.key AS k, properties(n) AS p")
    return {"edges": {(r["a"], r["b"], r["t"], r["g"], r["task"]): r["w"] for r in edges},
            "nodes": {r["k"]: r["p"] for r in nodes}}


def _assert_same(got: dict, want: dict, *, exact: bool) -> None:
    assert got["edges"].keys() == want["edges"].keys() and len(want["edges"]) > 0
    for k, w in want["edges"].items():
        assert got["edges"][k] == (w if exact else pytest.approx(w, rel=1e-6, abs=1e-12)), k
    assert got["nodes"].keys() == want["nodes"].keys()
    for k, props in want["nodes"].items():
        assert got["nodes"][k].keys() == props.keys(), k
        for name, v in props.items():
            if isinstance(v, float):
                assert got["nodes"][k][name] == pytest.approx(v, rel=1e-6, abs=1e-12), (k, name)


def _single(db, config: IngestConfig, tmp_path: Path) -> dict:  # noqa: ANN001
    ingest(db, config, state_root=tmp_path / "single")
    graph = _graph(db)
    db.write("MATCH (n) DETACH DELETE n")
    return graph


@pytest.mark.parametrize("beta, steps", [("mean", 2), ("max", "auto")])
def test_ray_graph_equals_the_single_process_graph(db, model_dir, tmp_path, ray_address, beta, steps) -> None:
    """β mean: weights within 1e-6 relative; β max: equal exactly. --steps auto: batch 0 picks K on a worker."""
    from ingest.distributed.attribution import ray_ingest

    tasks = ("ioi", "sva") if beta == "mean" else ("ioi",)
    config = _config(model_dir, tasks=tasks,
                     attribution=AttributionConfig(steps=steps, beta=beta, threshold=1e-3, top_k=5))  # type: ignore[arg-type]
    want = _single(db, config, tmp_path)
    result, units = ray_ingest(db, config, state_root=tmp_path / "ray", address=ray_address)
    assert (units.computed, units.resumed) == (3 * len(tasks), 0)  # 3 batches per task, all on Ray
    assert [t.examples for t in result.tasks] == [6] * len(tasks)
    _assert_same(_graph(db), want, exact=beta == "max")
    assert not any((tmp_path / "ray" / result.run).glob("*")), "state left behind after the run was written"


def test_a_worker_killed_mid_unit_is_retried(db, model_dir, tmp_path, ray_address, monkeypatch) -> None:
    from ingest.distributed.attribution import ray_ingest

    config = _config(model_dir)
    want = _single(db, config, tmp_path)
    marker, log = tmp_path / "killed", tmp_path / "units.log"
    monkeypatch.setenv("MECHGRAPH_RAY_KILL_UNIT", "ioi#1")
    monkeypatch.setenv("MECHGRAPH_RAY_KILL_MARKER", str(marker))
    monkeypatch.setenv("MECHGRAPH_RAY_UNIT_LOG", str(log))
    _, units = ray_ingest(db, config, state_root=tmp_path / "ray", address=ray_address)
    attempts = log.read_text().split()
    assert marker.exists() and sorted(attempts) == ["ioi#0", "ioi#1", "ioi#1", "ioi#2"]  # batch 1: killed, then retried
    assert units.computed == 3
    _assert_same(_graph(db), want, exact=False)


def test_a_killed_driver_resumes_without_recomputing_saved_units(db, model_dir, tmp_path, ray_address,
                                                                 neo4j_settings, monkeypatch) -> None:
    """The driver is ``mechgraph ingest --ray ADDRESS`` in a subprocess, SIGKILLed once it has
    saved 2 of 4 units; the rerun (here, same configuration, same state folder) computes only
    the units it had not saved, and stores the single-process graph."""
    import torch

    from ingest.distributed.attribution import ray_ingest

    config = _config(model_dir, examples=8)  # 4 units
    want = _single(db, config, tmp_path)
    home, log = tmp_path / "home", tmp_path / "units.log"
    env = {**os.environ, "NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "MECHGRAPH_RAY_UNIT_LOG": str(log),
           "MECHGRAPH_RAY_EXIT_AFTER": "2", "MECHGRAPH_RAY_UNIT_CPUS": "2",  # one unit at a time: one cold worker
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[3]),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("NEO4J_DATABASE", None)
    cmd = [sys.executable, "-m", "analysis.cli", "--data-dir", str(home), "ingest", "-m", config.model, "-t", "ioi",
           *[a for d in config.dicts for a in ("-d", d)], "-n", "8", "--batch-size", "2", "--steps", "2",
           "--threshold", "1e-3", "--format", "csv", "--ray", ray_address]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert first.returncode == -9, first.stderr  # SIGKILL from the driver hook, after 2 units were saved
    (state,) = (home / "runs").glob("*/ioi.pt")
    saved = set(range(torch.load(state, weights_only=False)["batches"]))
    saved |= {int(p.stem) for p in state.with_suffix(".units").glob("*.pt")}
    assert len(saved) >= 2
    log.write_text("")
    monkeypatch.setenv("MECHGRAPH_RAY_UNIT_LOG", str(log))
    monkeypatch.setenv("MECHGRAPH_RAY_UNIT_CPUS", "2")  # one worker (the killed driver's are gone): one import of torch
    result, units = ray_ingest(db, config, state_root=home / "runs", address=ray_address)
    assert result.run == state.parent.name  # the CLI's run and this one are the same configuration
    recomputed = {int(u.split("#")[1]) for u in log.read_text().split()}
    assert recomputed == set(range(4)) - saved  # only the units not saved before the kill
    assert (units.computed, units.resumed) == (4 - len(saved), len(saved))
    _assert_same(_graph(db), want, exact=False)


#: Listening addresses in /proc/net/tcp{,6} hex: 127.0.0.1, ::ffff:127.0.0.1, ::1
_LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def test_every_ray_server_listens_on_loopback_only(ray_address) -> None:
    """Every listening socket of the session's cluster (GCS, raylet, workers, agents, this driver)."""
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    pids = {os.getpid()}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and session.encode() in (proc / "cmdline").read_bytes():
                pids.add(int(proc.name))
        except OSError:  # a process that ended meanwhile
            continue
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    listening = [line.split()[1] for table in ("tcp", "tcp6") for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and line.split()[9] in inodes]
    assert len(pids) >= 3 and len(listening) >= 3, (pids, listening)  # GCS, raylet, the driver at least
    assert [a for a in listening if a.split(":")[0] not in _LOOPBACK] == []
