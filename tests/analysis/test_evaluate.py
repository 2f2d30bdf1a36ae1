"""``analysis.evaluate.sweep`` end to end against a real Neo4j: a stored graph, its curves, :Evaluation nodes.

The graph is the complete residual graph of a tiny model with identity dictionaries (threshold
0 keeps every edge), so both ablations of the whole stored graph must reproduce the model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.evaluate.sweep import EvaluateConfig, evaluate
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
    from mechgraph.errors import ConfigError
    with pytest.raises(ConfigError, match="no ingest run"):
        evaluate(db, EvaluateConfig(task="ioi", run="ingest-000000000000"), out_dir=Path("/nonexistent"))


def _module_graph(db, model_dir, tmp_path):
    """The complete module graph (identity dictionaries on attn_out and mlp_out) of the tiny
    model, with its head-level graph."""
    hooks = [f"blocks.{L}.hook_{k}_out" for L in range(2) for k in ("attn", "mlp")]
    return ingest(db, IngestConfig(
        model=f"path:{model_dir}", tasks=("ioi",), examples=4, batch_size=4,
        dicts=tuple(f"identity:{D}/{h}" for h in hooks),
        attribution=AttributionConfig(steps=1, threshold=0.0)), state_root=tmp_path / "state")


def test_selections_from_the_store(db, model_dir, tmp_path):
    """A library query naming the same edges gives the same curve; a community restriction keeps
    exactly the edges inside it (and its links to the output); the complete head-level graph,
    run as the sets of its features, is the model again. (With the counterfactual baseline: the
    stored graph leaves out edges whose source does not change between the clean and the
    counterfactual prompt, which matter under another baseline.)"""
    from analysis.evaluate.selection import EdgeSelection, select_edges
    from graphdb.schema import Label, Rel
    from graphdb.writer import GraphWriter
    from ingest.graph_rows import GraphNames
    from ingest.pipeline import resolve

    graph = _module_graph(db, model_dir, tmp_path)
    base = EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=2, ablations=("edge",))
    by_run = evaluate(db, base, out_dir=tmp_path / "a")
    by_query = evaluate(db, EvaluateConfig(
        task="ioi", run=graph.run, examples=4, sweep=2, ablations=("edge",),
        selection=EdgeSelection(query="run_edges", params=(("run", graph.run), ("task", "ioi")))),
        out_dir=tmp_path / "b")
    assert [p.faithfulness for p in by_query.points] == pytest.approx([p.faithfulness for p in by_run.points])

    stored = db.read("MATCH (a)-[r:ATTRIBUTES_TO {run: $run, granularity: 'feature'}]->(b) "
                     "RETURN a.key AS s, b.key AS t, labels(b) AS lb", {"run": graph.run})
    members = sorted({r["s"] for r in stored})[::2]
    writer = GraphWriter(db)
    writer.write_nodes(Label.COMMUNITY, [{"key": "community-test", "run": "communities-test", "index": 0}])
    writer.write_relationships(Rel.IN_COMMUNITY, [{"src": k, "dst": "community-test", "run": "communities-test"}
                                                  for k in members], src=Label.NODE, dst=Label.COMMUNITY)
    resolved = resolve(IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=4,
                                    dicts=tuple(f"identity:{D}/blocks.{L}.hook_{k}_out" for L in range(2)
                                                for k in ("attn", "mlp"))))
    names = GraphNames(model=resolved.model_label, checkpoint=resolved.checkpoint, slots=tuple(resolved.slots),
                       n_layers=2)
    inside = select_edges(db, EdgeSelection(group="community-test"), run=graph.run, task="ioi", names=names)
    expect = {(r["s"], r["t"]) for r in stored if r["s"] in members and (r["t"] in members or "Output" in r["lb"])}
    assert set(zip(inside.sources, inside.targets, strict=True)) == expect and expect
    touching = select_edges(db, EdgeSelection(group="community-test", touching=True), run=graph.run, task="ioi",
                            names=names)
    assert len(touching) == sum(r["s"] in members or r["t"] in members for r in stored) > len(inside)

    heads = evaluate(db, EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=2, baseline="counterfactual",
                                        selection=EdgeSelection(granularity="head")), out_dir=tmp_path / "c")
    n_head_edges = db.read("MATCH ()-[r:ATTRIBUTES_TO {run: $run, granularity: 'head'}]->() RETURN count(r) AS c",
                           {"run": graph.run})[0]["c"]
    assert heads.total_edges == n_head_edges > 0
    for p in heads.points:
        if p.edges == heads.total_edges:
            assert p.faithfulness == pytest.approx(1.0, abs=1e-4)
            assert p.nodes < by_run.points[-1].nodes  # heads, not their features
    feature = evaluate(db, EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=1, baseline="counterfactual"),
                       out_dir=tmp_path / "d")
    assert [p.faithfulness for p in feature.points] == pytest.approx([1.0, 1.0], abs=1e-4)
