"""Library queries keyed by model, checkpoint and task read one run's graph at one granularity
(the newest by default), and say which runs they mixed when asked to mix them."""

from __future__ import annotations

import time

from graphdb.sample import SampleSpec, write_sample
from graphdb.writer import GraphWriter
from queries.loader import run_query

KEYS = {"model": "sample-tiny", "checkpoint": "final", "task": "ioi"}


def test_hubs_top_contributors_and_task_subgraph_select_one_run(db):
    older, newer = SampleSpec(seed=1), SampleSpec(seed=2)
    write_sample(GraphWriter(db), older)
    time.sleep(0.01)
    write_sample(GraphWriter(db), newer)
    runs = {older.run().run_id, newer.run().run_id}
    assert len(runs) == 2
    sub = run_query(db, "task_subgraph", {**KEYS, "limit": 100000})
    assert {r["run"] for r in sub} == {newer.run().run_id}
    mixed = run_query(db, "task_subgraph", {**KEYS, "run": "*", "limit": 100000})
    assert {r["run"] for r in mixed} == runs and len(mixed) == 2 * len(sub)
    assert {r["run"] for r in run_query(db, "task_subgraph", {**KEYS, "run": older.run().run_id})} == {older.run().run_id}
    assert {r["run"] for r in run_query(db, "top_output_contributors", KEYS)} == {newer.run().run_id}
    hubs = run_query(db, "hubs", KEYS)
    assert all(r["runs"] == [newer.run().run_id] for r in hubs)
    assert any(len(r["runs"]) == 2 for r in run_query(db, "hubs", {**KEYS, "run": "*"}))
    assert run_query(db, "hubs", {**KEYS, "granularity": "head"}) == []  # never another granularity
