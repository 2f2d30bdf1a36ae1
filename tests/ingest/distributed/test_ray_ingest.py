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

    config = _config(model_dir, tasks=("ioi", "sva"),
                     attribution=AttributionConfig(steps=steps, beta=beta, threshold=1e-3, top_k=5))  # type: ignore[arg-type]
    want = _single(db, config, tmp_path)
    result, units = ray_ingest(db, config, state_root=tmp_path / "ray", address=ray_address)
    assert (units.computed, units.resumed) == (6, 0)  # 2 tasks x 3 batches, all on Ray
    assert [t.examples for t in result.tasks] == [6, 6]
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
                                                                 neo4j_settings) -> None:
    config = _config(model_dir, examples=8)  # 4 units
    want = _single(db, config, tmp_path)
    home, log = tmp_path / "home", tmp_path / "units.log"
    env = {**os.environ, "NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "MECHGRAPH_RAY_UNIT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[3]),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("NEO4J_DATABASE", None)
    cmd = [sys.executable, "-m", "analysis.cli", "--data-dir", str(home), "ingest", "-m", config.model, "-t", "ioi",
           *[a for d in config.dicts for a in ("-d", d)], "-n", "8", "--batch-size", "2", "--steps", "2",
           "--threshold", "1e-3", "--format", "csv", "--ray", ray_address]
    first = subprocess.run(cmd, env={**env, "MECHGRAPH_RAY_EXIT_AFTER": "2"}, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == -9, first.stderr  # SIGKILL from the driver hook, after 2 units were saved
    (state,) = (home / "runs").glob("*/ioi.pt")
    import torch
    saved = set(range(torch.load(state, weights_only=False)["batches"]))
    saved |= {int(p.stem) for p in state.with_suffix(".units").glob("*.pt")}
    assert len(saved) >= 2
    log.write_text("")
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    recomputed = {int(u.split("#")[1]) for u in log.read_text().split()}
    assert recomputed == set(range(4)) - saved  # only the units not saved before the kill
    assert f"Ray: {4 - len(saved)} units computed, {len(saved)} taken from saved state" in second.stderr
    _assert_same(_graph(db), want, exact=False)
