"""The query library: every file parses and runs on the sample graph, with hand-checked answers."""

from collections import Counter

import pytest

from graphdb.errors import QueryError
from graphdb.sample import SampleSpec, sample_rows, write_sample
from graphdb.schema import Rel
from graphdb.writer import GraphWriter
from queries.loader import library, parse_query, run_query

SPEC = SampleSpec()
CKPT, TASK = SPEC.checkpoints[-1], SPEC.tasks[0]
EDGES = [row for _, what, row, _ in sample_rows(SPEC) if what == Rel.ATTRIBUTES_TO]
A_FEATURE = SPEC.feature_key(CKPT, SPEC.n_layers - 1, 0)  # serves ioi, feeds the output

#: Parameters for every library query on the sample graph. Queries of analysis runs get
#: their ``run`` from the helper that writes one (``community_*``, ``roi*``, ``disentanglement``).
PARAMS = {
    "model": SPEC.model, "checkpoint": CKPT, "task": TASK, "layer": 1, "key": A_FEATURE,
    "run": SPEC.run().run_id, "kind": "sample", "hook": SPEC.hook(1),
}


@pytest.fixture()
def sample_db(db):
    write_sample(GraphWriter(db), SPEC)
    return db


def test_library_has_the_analyst_queries():
    assert {"task_subgraph", "neighbourhood", "paths_to_output", "graph_summary", "runs"} <= set(library())


def _communities_run(db) -> dict[str, str]:
    """Communities of the sample graph's ioi edges (for the queries that read them): the run id
    and the key of A_FEATURE's community (A_FEATURE feeds the output, so it has output links)."""
    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph

    sub = pull_subgraph(db, Selection(SPEC.model, CKPT, (TASK,)))
    run = write_communities(db, sub, partition(sub, CommunityConfig()), CommunityConfig())
    community = db.read("MATCH (:Node {key: $key})-[:IN_COMMUNITY {run: $run}]->(c) RETURN c.key AS c",
                        {"key": A_FEATURE, "run": run})[0]["c"]
    return {"run": run, "community": community}


def _disentangle_run(db, tmp_path) -> str:
    """A task disentanglement of the sample graph's tasks (no kill table: no model behind it)."""
    from analysis.disentangle.measure import DisentangleConfig, disentangle_graphs, pull_task_graphs

    runs = {t: SPEC.run().run_id for t in SPEC.tasks}
    graphs = pull_task_graphs(db, SPEC.model, CKPT, runs)
    config = DisentangleConfig(model=SPEC.model, tasks=tuple(SPEC.tasks), kill=False, draws=10)
    return disentangle_graphs(db, graphs, config, model=SPEC.model, checkpoint=CKPT, runs=runs, run_config=None,
                              out_root=tmp_path).run


def _roi_run(db) -> str:
    """ROIs of the sample graph's layer-1 dictionary (latent i in ROI i % 3), written back with
    the ROI-level graph of the sample run's ioi edges (for the queries that read them)."""
    import numpy as np

    from analysis.roi.fit import DictionaryRois, RoiConfig, block_stats
    from analysis.roi.graph import write_rois
    from graphdb.keys import node_key
    from graphdb.provenance import RunRecord
    from graphdb.schema import Label
    from ingest.graph_rows import GraphNames

    n, labels = SPEC.features_per_layer, np.arange(SPEC.features_per_layer) % 3
    hook = SPEC.hook(1)
    rois = DictionaryRois(hook=hook, layer=1, dictionary=SPEC.dictionary, n_latents=n, indices=np.arange(n),
                          dictionary_key=node_key(Label.DICTIONARY, model=SPEC.model, checkpoint=CKPT, hook=hook,
                                                  dictionary=SPEC.dictionary),
                          features=[SPEC.feature_key(CKPT, 1, i) for i in range(n)], labels=labels,
                          cosine=block_stats(np.eye(n), labels, 5), correlation=block_stats(np.eye(n), labels, 5))
    record = RunRecord(kind="roi", seed=0, config={"sample": SPEC.run().run_id})
    names = GraphNames(model=SPEC.model, checkpoint=CKPT, slots=(), n_layers=SPEC.n_layers)
    edges = write_rois(db, record, names, [rois], SPEC.run().run_id, RoiConfig(tasks=(TASK,), run=SPEC.run().run_id))
    assert edges[TASK] > 0
    return record.run_id


@pytest.mark.parametrize("name", sorted(library()))
def test_every_library_query_runs_and_returns_its_declared_columns(sample_db, name, tmp_path):
    q = library()[name]
    if name.startswith("prompt_"):
        pytest.skip("the sample graph has no traced prompts; tests/ingest/replacement/test_store.py runs the prompt_* queries")
    if name.startswith("imported_"):
        pytest.skip("the sample graph has no prompt graphs; tests/analysis/test_exchange.py runs the imported_* queries "
                    "on imported files")
    if name.startswith("community_"):
        given = _communities_run(sample_db)
        values = {p.name: given[p.name] for p in q.params if p.required}
    else:
        values = {p.name: PARAMS[p.name] for p in q.params if p.required}
    if name.startswith("roi") or name == "report_rois":
        values["run"] = _roi_run(sample_db)
    if name == "report_communities":
        _communities_run(sample_db)
    if name == "group_members":
        values["key"] = _communities_run(sample_db)["community"]
    if name == "report_evaluations":
        sample_db.write("CREATE (:Evaluation {name: 'edge-summary', run: 'evaluate-0', task: $task, ablation: 'edge', "
                        "cpr: 0.5, cmd: 0.5})", {"task": TASK})
    if name == "disentanglement":
        values["run"] = _disentangle_run(sample_db, tmp_path)
    rows = run_query(sample_db, name, {k: v for k, v in values.items() if k in {p.name for p in q.params}})
    assert rows, f"{name} returned nothing on the sample graph"
    assert list(rows[0]) == list(q.returns)


def test_task_subgraph_matches_the_generator(sample_db):
    tau = 0.5
    want = sorted((e["src"], e["dst"]) for e in EDGES
                  if e["checkpoint"] == CKPT and e["task"] == TASK and abs(e["weight"]) >= tau)
    rows = run_query(sample_db, "task_subgraph", {"model": SPEC.model, "checkpoint": CKPT, "task": TASK,
                                                  "min_abs_weight": tau, "limit": 10**6})
    assert sorted((r["source"], r["target"]) for r in rows) == want
    weights = [r["abs_weight"] for r in rows]
    assert weights == sorted(weights, reverse=True)


def test_graph_summary_counts_every_edge(sample_db):
    want = Counter((e["checkpoint"], e["task"]) for e in EDGES)
    rows = run_query(sample_db, "graph_summary")
    assert {(r["checkpoint"], r["task"]): r["edges"] for r in rows} == dict(want)


def test_neighbourhood_one_hop_is_the_direct_neighbours(sample_db):
    direct = {e["dst"] for e in EDGES if e["src"] == A_FEATURE and e["task"] == TASK and e["checkpoint"] == CKPT}
    direct |= {e["src"] for e in EDGES if e["dst"] == A_FEATURE and e["task"] == TASK and e["checkpoint"] == CKPT}
    rows = run_query(sample_db, "neighbourhood", {"key": A_FEATURE, "task": TASK, "hops": 1})
    assert {r["node"] for r in rows} == direct
    assert {r["distance"] for r in rows} == {1}


def test_bind_checks_names_types_and_ranges():
    q = library()["neighbourhood"]
    assert q.bind({"key": "k", "task": "t", "hops": "3"})["hops"] == 3
    with pytest.raises(QueryError, match="1..3"):
        q.bind({"key": "k", "task": "t", "hops": "4"})
    with pytest.raises(QueryError, match="must be int"):
        q.bind({"key": "k", "task": "t", "hops": "two"})
    with pytest.raises(QueryError, match="needs --param task"):
        q.bind({"key": "k"})
    with pytest.raises(QueryError, match="no parameter colour"):
        q.bind({"key": "k", "task": "t", "colour": "red"})


def test_malformed_files_are_rejected(tmp_path):
    bad = tmp_path / "undeclared.cypher"
    bad.write_text("// name: undeclared\n// summary: s\n// returns: x\nRETURN $x AS x\n")
    with pytest.raises(QueryError, match="declared"):
        parse_query(bad)
    misnamed = tmp_path / "a.cypher"
    misnamed.write_text("// name: b\n// summary: s\n// returns: x\nRETURN 1 AS x\n")
    with pytest.raises(QueryError, match="must be 'a'"):
        parse_query(misnamed)
