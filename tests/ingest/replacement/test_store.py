"""Prompt graphs in a real Neo4j (the session's server, never a mock): idempotent writes, the
stored graph's scores, the library queries, and the task graph as the sum/mean of the stored
prompt graphs."""

from __future__ import annotations

import pytest

from graphdb.writer import GraphWriter
from ingest.replacement.config import TraceConfig
from ingest.replacement.jobs import TaskTraceConfig, TraceRequest, ingest_task, trace
from ingest.replacement.store import read_prompt_graph, stored_scores
from queries.loader import run_query
from tests.ingest.replacement.conftest import PROMPT


def counts(db) -> tuple[int, int]:  # noqa: ANN001
    n = db.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
    r = db.read("MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"]
    return n, r


@pytest.mark.slow
def test_trace_writes_idempotently_and_the_stored_graph_scores_as_computed(db, saved) -> None:
    model, tcs = saved
    request = TraceRequest(model=model, transcoders=tcs, prompt=PROMPT, config=TraceConfig(node_threshold=0.9))
    first = trace(request, db=db)
    assert first.prompt and first.stored_nodes == first.pruned_nodes and first.stored_edges == first.pruned_edges
    before = counts(db)
    weights = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN r.weight AS w ORDER BY w")
    again = trace(request, db=db, writer=GraphWriter(db, batch_size=7))
    assert again.prompt == first.prompt and counts(db) == before
    assert db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN r.weight AS w ORDER BY w") == weights
    p = db.read("MATCH (p:Prompt {prompt: $p}) RETURN p {.*} AS p", {"p": first.prompt})[0]["p"]
    assert p["text"] == PROMPT and p["run"] == first.run and p["pruned_edges"] == first.pruned_edges
    assert p["replacement_score"] == pytest.approx(first.full.replacement)
    # Scores of the stored graph read back equal the pruned graph's scores computed in memory.
    s = stored_scores(db, first.prompt)
    assert s.replacement == pytest.approx(first.pruned_scores.replacement, abs=1e-6)
    assert s.completeness == pytest.approx(first.pruned_scores.completeness, abs=1e-6)
    # ... and of any stored subgraph: without its error nodes the replacement score is 1.
    g = read_prompt_graph(db, first.prompt)
    no_errors = {k for k, n in zip(g.keys, g.nodes, strict=True) if n["kind"] != "error"}
    assert stored_scores(db, first.prompt, keys=no_errors).replacement == pytest.approx(1.0)
    rows = run_query(db, "prompt_graph", {"prompt": first.prompt})
    assert len(rows) == first.stored_edges


@pytest.mark.slow
@pytest.mark.parametrize("beta", ["mean", "sum"])
def test_task_graph_is_the_sum_or_mean_of_the_stored_prompt_graphs(db, saved, beta: str) -> None:
    model, tcs = saved
    config = TaskTraceConfig(model=model, transcoders=tcs, tasks=("ioi",), examples=3, beta=beta)  # type: ignore[arg-type]
    run, results = ingest_task(db, config)
    (res,) = results
    assert len(res.prompts) == 3 and res.task_edges > 0
    # Independently of the aggregation code: sum the stored prompt edges per position-free pair in Cypher.
    expected = {(r["s"], r["d"]): r["w"] / (3 if beta == "mean" else 1) for r in db.read(
        "MATCH (p:Prompt {run: $run})<-[:IN_PROMPT]-(a)-[r:ATTRIBUTES_TO {granularity: 'prompt'}]->(b)-[:IN_PROMPT]->(p) "
        "WHERE a.feature <> b.feature RETURN a.feature AS s, b.feature AS d, sum(r.weight) AS w", {"run": run})}
    got = {(r["s"], r["d"]): r["w"] for r in db.read(
        "MATCH (a)-[r:ATTRIBUTES_TO {run: $run, task: 'ioi', granularity: 'feature'}]->(b) "
        "RETURN a.key AS s, b.key AS d, r.weight AS w", {"run": run})}
    assert got.keys() == expected.keys() and len(got) == res.task_edges
    assert all(got[k] == pytest.approx(expected[k], rel=1e-9, abs=1e-12) for k in got)
    # The task graph uses the task graph's keys: Feature / ErrorNode / Input / Output nodes.
    labels = {r["l"] for r in db.read("MATCH (n)-[:ATTRIBUTES_TO {run: $run, granularity: 'feature'}]-() "
                                      "UNWIND labels(n) AS l RETURN DISTINCT l", {"run": run})}
    assert {"Feature", "Output", "Node"} <= labels
    # Idempotent: ingesting again changes nothing.
    before = counts(db)
    ingest_task(db, config)
    assert counts(db) == before
    recurring = run_query(db, "prompt_recurring_features", {"model": "model", "checkpoint": "path", "task": "ioi",
                                                            "min_prompts": 1})
    assert recurring and all(r["prompts"] >= 1 for r in recurring)
    edges = run_query(db, "prompt_feature_edges", {"feature": recurring[0]["feature"], "task": "ioi"})
    assert edges and {e["direction"] for e in edges} <= {"in", "out"}
