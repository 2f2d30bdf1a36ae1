"""``analysis.evaluate`` end to end against a real Neo4j: a stored graph, its curves, :Evaluation nodes.

The graph is the complete residual graph of a tiny model with identity dictionaries (threshold
0 keeps every edge), so both ablations of the whole stored graph must reproduce the model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.evaluate import EvaluateConfig, evaluate
from ingest.attribution.config import AttributionConfig
from ingest.pipeline import IngestConfig, ingest

D = 8


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 16, 5)


def test_evaluating_the_complete_stored_graph(db, model_dir, tmp_path):
    graph = ingest(db, IngestConfig(
        model=f"path:{model_dir}", tasks=("ioi",), examples=4, batch_size=4,
        dicts=(f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"),
        attribution=AttributionConfig(steps=1, threshold=0.0)), state_root=tmp_path / "state")
    config = EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=3)
    result = evaluate(db, config, out_dir=tmp_path / "out")
    assert result.total_edges == graph.tasks[0].edges > 0
    full = [p for p in result.points if p.edges == result.total_edges]
    assert {p.ablation for p in full} == {"edge", "node"}
    for p in full:  # every edge of a complete graph kept: the model itself
        assert p.faithfulness == pytest.approx(1.0, abs=1e-4)
        assert p.completeness == pytest.approx(0.0, abs=1e-4)
    assert len(result.points) == 2 * len({p.budget for p in result.points}) == 6
    assert result.csv.read_text().count("\n") == 7 and result.png.stat().st_size > 0
    stored = db.read("MATCH (e:Evaluation)-[:EVALUATES]->(r:Run {run: $run}) RETURN count(e) AS c", {"run": graph.run})
    assert stored[0]["c"] == len(result.points) + 2
    evaluate(db, config, out_dir=tmp_path / "out")  # the same evaluation again: replaced, not duplicated
    again = db.read("MATCH (e:Evaluation) RETURN count(e) AS c")
    assert again[0]["c"] == len(result.points) + 2


def test_evaluate_needs_a_graph(db):
    with pytest.raises(ValueError):
        EvaluateConfig(task="ioi")
    from graphdb.errors import ConfigError
    with pytest.raises(ConfigError, match="no ingest run"):
        evaluate(db, EvaluateConfig(task="ioi", run="ingest-000000000000"), out_dir=Path("/nonexistent"))
