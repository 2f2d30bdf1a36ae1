"""``trace --ray``: one prompt's adjacency rows computed in batches on Ray workers (one of them
killed mid-unit and retried); the stored graph equals the single-process one, with every feature
and with ``--max-feature-nodes`` (rows chosen by running influence, round by round)."""

from __future__ import annotations

import math

import pytest

from ingest.distributed.units import Hooks
from ingest.replacement.config import TraceConfig
from ingest.replacement.jobs import TraceRequest, trace
from tests.ingest.replacement.conftest import PROMPT

# A worker computes rows in its own process: float32 sums may differ in the last bits
# (see test_ray_prompts.py): weights and scores are compared to 1e-5 relative.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
REL = 1e-5


def _stored(db) -> tuple[dict, dict]:  # noqa: ANN001
    """Every node but the :Run (its creation time differs) by key with its properties, every
    relationship by (type, source, target) with its properties."""
    nodes = {(tuple(sorted(r["labels"])), r["p"].get("key") or r["p"].get("prompt")): r["p"] for r in db.read(
        "MATCH (n) WHERE NOT n:Run RETURN labels(n) AS labels, n {.*} AS p")}
    rels = {(r["t"], r["a"], r["b"]): r["p"] for r in db.read(
        "MATCH (a)-[r]->(b) RETURN type(r) AS t, coalesce(a.key, a.prompt, a.run_id, a.id) AS a, "
        "coalesce(b.key, b.prompt, b.run_id, b.id) AS b, r {.*} AS p")}
    return nodes, rels


def _same(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    for k, props in want.items():
        assert got[k].keys() == props.keys(), k
        for name, v in props.items():
            if isinstance(v, float) and not (name.endswith("_at") or name == "seconds"):
                assert math.isclose(got[k][name], v, rel_tol=REL, abs_tol=1e-12), (what, k, name)
            elif not isinstance(v, float):
                assert got[k][name] == v, (what, k, name)


@pytest.mark.parametrize("max_feature_nodes", [None, 12])
def test_ray_trace_stores_the_single_process_graph(db, saved, tmp_path, ray_address, max_feature_nodes) -> None:
    from ingest.distributed.trace import ray_trace

    model, tcs = saved
    config = TraceConfig(batch_size=4, max_feature_nodes=max_feature_nodes)
    request = TraceRequest(model=model, transcoders=tcs, prompt=PROMPT, config=config)
    single = trace(request, db=db)
    want = _stored(db)
    db.write("MATCH (n) DETACH DELETE n")
    log = tmp_path / "units.log"
    hooks = Hooks(kill_unit="trace#1", kill_marker=str(tmp_path / "killed"), unit_log=str(log))
    result, units = ray_trace(request, db=db, address=ray_address, hooks=hooks)
    n_active = int(single.graph.active_features.shape[0])
    n_sel = single.graph.n_features
    assert max_feature_nodes is None or n_sel == max_feature_nodes < n_active, "the test needs a real selection"
    n_batches = math.ceil(single.graph.n_targets / 4) + math.ceil(n_sel / 4)
    assert units.computed == n_batches > 2
    attempts = log.read_text().split()
    assert attempts.count("trace#1") == 2 and len(attempts) == n_batches + 1, "unit trace#1 killed once, retried once"
    assert result.run == single.run and result.prompt == single.prompt
    assert result.graph.selected_features.tolist() == single.graph.selected_features.tolist()
    assert (result.pruned_nodes, result.pruned_edges) == (single.pruned_nodes, single.pruned_edges)
    assert math.isclose(result.full.replacement, single.full.replacement, rel_tol=REL)
    got = _stored(db)
    _same(got[0], want[0], "nodes")
    _same(got[1], want[1], "relationships")
    assert len(want[1]) >= single.stored_edges > 0 and len(db.read("MATCH ()-[r]->() RETURN r")) == len(want[1])
