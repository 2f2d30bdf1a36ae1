"""``ingest --graph transcoders --ray``: prompt graphs computed on Ray workers and stored by the
driver equal the single-process prompt graphs, and so does the task graph aggregated from them."""

from __future__ import annotations

import pytest

from ingest.replacement.jobs import TaskTraceConfig, ingest_task

# A worker traces one prompt per unit in its own process; the single-process run batches and
# threads differently, so float32 sums differ in the last bits (1.1e-6 relative seen in CI):
# prompt-graph weights and scores are compared to 1e-5 relative.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
REL = 1e-5


def _graph(db, run: str) -> dict:  # noqa: ANN001
    rows = db.read("MATCH (a)-[r:ATTRIBUTES_TO]->(b) WHERE r.run = $run OR r.granularity = 'prompt' "
                   "RETURN a.key AS a, b.key AS b, r.granularity AS g, r.task AS t, r.weight AS w", {"run": run})
    prompts = db.read("MATCH (p:Prompt {run: $run}) RETURN p.prompt AS p, p.replacement_score AS s", {"run": run})
    return {"edges": {(r["a"], r["b"], r["g"], r["t"]): r["w"] for r in rows}, "prompts": {r["p"]: r["s"] for r in prompts}}


def test_ray_prompt_graphs_equal_the_single_process_ones(db, saved, tmp_path, ray_address) -> None:
    from ingest.distributed.prompts import ray_ingest_task

    model, tcs = saved
    config = TaskTraceConfig(model=model, transcoders=tcs, tasks=("ioi", "sva"), examples=3)
    run, single = ingest_task(db, config)
    want = _graph(db, run)
    db.write("MATCH (n) DETACH DELETE n")
    run_ray, results, units = ray_ingest_task(db, config, state_root=tmp_path, address=ray_address)
    assert run_ray == run and (units.computed, units.resumed) == (6, 0)
    assert [r.prompts for r in results] == [r.prompts for r in single]
    got = _graph(db, run)
    # A worker is another process (its own torch threads): float32 sums may round differently.
    assert len(want["prompts"]) == 6 and got["prompts"].keys() == want["prompts"].keys()
    for p, score in want["prompts"].items():
        assert got["prompts"][p] == pytest.approx(score, rel=REL), p
    assert got["edges"].keys() == want["edges"].keys() and {k[2] for k in want["edges"]} == {"prompt", "feature"}
    assert len(want["edges"]) == len(db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN r"))  # no two edges on one key
    for k, w in want["edges"].items():
        assert got["edges"][k] == pytest.approx(w, rel=REL, abs=1e-12), k
    assert [r.task_edges for r in results] == [r.task_edges for r in single]
    assert not any(tmp_path.rglob("*.json")), "resume records left behind after the task graphs were written"
