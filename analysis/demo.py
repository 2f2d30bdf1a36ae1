"""The main job, end to end on the embedded Neo4j (the README's first command).

For now: start the server, write the sample graph (the writer creates the schema first), and run two library
queries. Later stages (zoo, ingest, analysis, evaluation, report) extend this pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphdb.connection import connect
from graphdb.embedded import ServerState, ensure_running
from graphdb.sample import SampleSpec, write_sample
from graphdb.writer import GraphWriter
from queries.loader import run_query


@dataclass
class DemoResult:
    uri: str
    server: ServerState | None
    written: dict[str, int]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def run_demo(data_dir: Path, spec: SampleSpec | None = None) -> DemoResult:
    """Run the pipeline and return what it wrote and the query results."""
    spec = spec or SampleSpec()
    state = ensure_running(data_dir)
    with connect(data=data_dir) as db:
        written = write_sample(GraphWriter(db), spec)
        ckpt, task = spec.checkpoints[-1], spec.tasks[0]
        result = DemoResult(uri=db.settings.uri, server=state, written=written)
        result.tables["graph_summary"] = run_query(db, "graph_summary")
        result.tables["task_subgraph"] = run_query(
            db, "task_subgraph",
            {"model": spec.model, "checkpoint": ckpt, "task": task, "min_abs_weight": 1.0, "limit": 15},
        )
    return result
