"""Communities on planted partitions (graspologic's SBM sampler) stored in a real Neo4j: pulled
through Cypher, recovered by Leiden, Louvain, SBM and hierarchical Leiden, written back idempotently."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from analysis.communities.partition import CommunityConfig, modularity, partition, undirected, write_communities
from analysis.subgraph import Selection, pull_subgraph
from graphdb.keys import node_key
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter

MODEL, CKPT, TASK = "planted", "final", "t"
SIZES = [40, 30, 30]


def _key(i: int) -> str:
    return node_key(Label.FEATURE, model=MODEL, checkpoint=CKPT, hook="blocks.0.hook_resid_post", dictionary="sae", index=i)


@pytest.fixture()
def planted(db):
    """A directed planted-partition graph with signed weights; truth is each node's block."""
    from graspologic.simulations import sbm

    P = np.full((3, 3), 0.02) + np.eye(3) * 0.4
    rng = np.random.default_rng(0)
    A = sbm(SIZES, P, directed=True, loops=False)
    truth = np.repeat(np.arange(3), SIZES)
    rows, cols = A.nonzero()
    w = rng.uniform(0.5, 2.0, len(rows)) * rng.choice([-1, 1], len(rows))
    writer = GraphWriter(db)
    writer.write_nodes(Label.FEATURE, [{"key": _key(i), "model": MODEL, "checkpoint": CKPT, "index": i}
                                       for i in range(len(truth))])
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": _key(r), "dst": _key(c), "weight": float(x)}
                                                   for r, c, x in zip(rows, cols, w)],
                               common={"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": "planted-run"})
    order = np.argsort([_key(i) for i in range(len(truth))])  # the subgraph's node index sorts keys
    return db, truth[order], len(rows)


def test_pull_subgraph_is_the_stored_graph(planted):
    db, truth, n_edges = planted
    sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    assert sub.n == len(truth) and sub.edges == sub.matrix.nnz == n_edges
    assert list(sub.keys) == sorted(sub.keys)
    row = db.read("MATCH (a)-[r:ATTRIBUTES_TO]->(b) RETURN a.key AS a, b.key AS b, r.weight AS w LIMIT 1")[0]
    idx = sub.index()
    assert sub.matrix[idx[row["a"]], idx[row["b"]]] == pytest.approx(row["w"])
    with pytest.raises(Exception, match="no feature edges"):
        pull_subgraph(db, Selection(MODEL, CKPT, ("other",)))


def test_a_pull_in_pages_is_the_pull_in_one(planted, monkeypatch):
    import analysis.subgraph as subgraph

    db, _, n_edges = planted
    whole = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    monkeypatch.setattr(subgraph, "PAGE_EDGES", 17)
    pages = list(subgraph._pages(db, {"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": "*",
                                      "granularity": "feature", "min_abs_weight": 0.0, "kinds": "*", "layers": "*"}))
    assert len(pages) >= n_edges / 17 and sum(len(p["weights"]) for p in pages) == n_edges
    paged = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    assert paged.edges == whole.edges == n_edges and list(paged.keys) == list(whole.keys)
    assert (paged.matrix != whole.matrix).nnz == 0
    assert (paged.matrix.indptr == whole.matrix.indptr).all() and (paged.matrix.indices == whole.matrix.indices).all()
    # A weight threshold and a node filter apply on every page as in the one-shot pull.
    sel = Selection(MODEL, CKPT, (TASK,), min_abs_weight=1.2, kinds=("Feature",))
    assert (pull_subgraph(db, sel).matrix != whole.matrix.multiply(abs(whole.matrix) >= 1.2)).nnz == 0
    # An edge whose source has no nid is in no page: refused, not lost.
    from mechgraph.errors import ConfigError

    db.write("MATCH (n:Feature {key: $k}) SET n.nid = null", {"k": _key(3)})
    with pytest.raises(ConfigError, match="without an nid"):
        pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))


def test_pull_refuses_nodes_without_nid_and_shared_nids(planted):
    from mechgraph.errors import ConfigError

    db, _, _ = planted
    db.write("MATCH (n:Feature {key: $k}) SET n.nid = null", {"k": _key(3)})
    with pytest.raises(ConfigError, match="without an nid"):
        pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    db.write("MATCH (a:Feature {key: $a}), (b:Feature {key: $b}) SET a.nid = b.nid", {"a": _key(3), "b": _key(4)})
    with pytest.raises(ConfigError, match="share nid"):
        pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))


@pytest.mark.parametrize("method", ["leiden", "louvain", "sbm", "hleiden"])
def test_methods_recover_planted_blocks(planted, method):
    db, truth, _ = planted
    sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    part = partition(sub, CommunityConfig(method=method, seed=0, max_blocks=6, max_cluster_size=50))
    labels = part.labels[0] if method != "hleiden" else part.labels[0]
    ari = adjusted_rand_score(truth, labels)
    assert ari >= 0.9, f"{method}: ARI {ari:.3f}"
    assert part.modularity[0] == pytest.approx(modularity(undirected(sub), labels))


def test_cpm_objective_and_seeds(planted):
    db, truth, _ = planted
    sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    a = partition(sub, CommunityConfig(objective="cpm", resolution=0.3, seed=1)).labels[0]
    b = partition(sub, CommunityConfig(objective="cpm", resolution=0.3, seed=1)).labels[0]
    assert (a == b).all() and adjusted_rand_score(truth, a) >= 0.9


def test_write_back_replaces_rather_than_duplicates(planted):
    db, truth, _ = planted
    sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    config = CommunityConfig(seed=0)
    part = partition(sub, config)
    run = write_communities(db, sub, part, config)

    def counts():
        return db.read("MATCH (c:Community {run: $run}) OPTIONAL MATCH (n)-[m:IN_COMMUNITY]->(c) "
                       "RETURN count(DISTINCT c) AS c, count(m) AS m", {"run": run})[0]

    first = counts()
    assert first == {"c": len(set(part.labels[0].tolist())), "m": len(truth)}
    assert write_communities(db, sub, part, config) == run
    assert counts() == first
    sizes = db.read("MATCH (c:Community {run: $run}) RETURN c.size AS s ORDER BY s DESC", {"run": run})
    assert [r["s"] for r in sizes] == sorted(np.bincount(part.labels[0]).tolist(), reverse=True)


def test_community_library_queries_on_a_hand_built_partition(db):
    """Two hand-made communities A = {f0, f1, f2}, B = {f3, f4, f5} and the output in a third:
    the top edges of A are exactly its internal edges of the selected task by |weight|, and its
    output links are its members' direct edges into the output with their total."""
    from analysis.communities.partition import Partition
    from queries.loader import run_query

    f = [_key(i) for i in range(6)]
    out = node_key(Label.OUTPUT, model=MODEL, checkpoint=CKPT, task=TASK, metric="logit_diff")
    writer = GraphWriter(db)
    writer.write_nodes(Label.FEATURE, [{"key": k, "model": MODEL, "checkpoint": CKPT, "index": i}
                                       for i, k in enumerate(f)])
    writer.write_nodes(Label.OUTPUT, [{"key": out, "model": MODEL, "checkpoint": CKPT, "task": TASK,
                                       "metric": "logit_diff"}])
    edges = [(0, 1, 3.0), (1, 2, -2.0), (0, 2, 0.5), (3, 4, 1.0), (4, 5, 1.5), (2, 3, 0.1)]
    to_out = [(1, 0.7), (2, -0.2), (5, 0.4)]
    common = {"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": "hand-run"}
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": f[a], "dst": f[b], "weight": w} for a, b, w in edges]
                               + [{"src": f[a], "dst": out, "weight": w} for a, w in to_out], common=common)
    # Another task's edge inside A, stronger than any selected one: not part of the partitioned graph.
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": f[0], "dst": f[1], "weight": 9.0}],
                               common={**common, "task": "other"})

    sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,), run="hand-run"))
    block = {**{k: 0 for k in f[:3]}, **{k: 1 for k in f[3:]}, out: 2}
    labels = np.array([block[k] for k in sub.keys.tolist()])
    config = CommunityConfig(seed=0)
    run = write_communities(db, sub, Partition(labels=[labels], modularity=[modularity(undirected(sub), labels)]),
                            config)
    a, b = (node_key(Label.COMMUNITY, run=run, level=0, index=i) for i in (0, 1))

    top = run_query(db, "community_top_edges", {"community": a, "limit": 2})
    assert [(r["source"], r["target"], r["weight"]) for r in top] == [(f[0], f[1], 3.0), (f[1], f[2], -2.0)]
    everything = run_query(db, "community_top_edges", {"community": a})
    assert [(r["source"], r["target"], r["task"]) for r in everything] == [
        (f[0], f[1], TASK), (f[1], f[2], TASK), (f[0], f[2], TASK)]
    assert [r["weight"] for r in run_query(db, "community_top_edges", {"community": b})] == [1.5, 1.0]

    links = run_query(db, "community_output_links", {"community": a})
    assert [(r["output"], r["member"], r["weight"]) for r in links] == [(out, f[1], 0.7), (out, f[2], -0.2)]
    assert all(r["output_total_weight"] == pytest.approx(0.5) and r["output_edges"] == 2
               and r["metric"] == "logit_diff" for r in links)
    links_b = run_query(db, "community_output_links", {"community": b})
    assert [(r["member"], r["weight"], r["output_total_weight"]) for r in links_b] == [(f[5], 0.4, 0.4)]


def test_pull_restricts_node_kinds_and_layers(db):
    """kinds/layers select the subgraph induced by those nodes: exactly the stored edges whose
    two endpoints pass, counted independently in Cypher."""
    from graphdb.sample import SampleSpec, write_sample
    from graphdb.writer import GraphWriter

    spec = SampleSpec()
    write_sample(GraphWriter(db), spec)
    ckpt, task = spec.checkpoints[-1], spec.tasks[0]
    full = pull_subgraph(db, Selection(spec.model, ckpt, (task,)))
    only = pull_subgraph(db, Selection(spec.model, ckpt, (task,), kinds=("Feature",), layers=(0, 1)))
    want = db.read("MATCH (a:Feature)-[r:ATTRIBUTES_TO {task: $task, checkpoint: $ckpt, granularity: 'feature'}]->"
                   "(b:Feature) WHERE a.layer IN [0, 1] AND b.layer IN [0, 1] AND r.model = $model "
                   "RETURN count(r) AS n", {"task": task, "ckpt": ckpt, "model": spec.model})[0]["n"]
    assert 0 < only.edges == want < full.edges
    from graphdb.keys import parse_key
    from graphdb.schema import Label

    assert {parse_key(k)[0] for k in only.keys.tolist()} == {Label.FEATURE}
    with pytest.raises(ValueError, match="unknown node kind"):
        Selection(spec.model, ckpt, (task,), kinds=("Neuron",))


def test_leiden_above_the_leidenalg_size_is_igraphs(planted, monkeypatch):
    import analysis.communities.partition as partition_module

    db, truth, _ = planted
    sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,)))
    small = partition(sub, CommunityConfig(seed=0)).labels[0]
    monkeypatch.setattr(partition_module, "LEIDENALG_MAX_EDGES", 10)
    big = partition(sub, CommunityConfig(seed=0))
    assert adjusted_rand_score(truth, big.labels[0]) >= 0.9 and adjusted_rand_score(truth, small) >= 0.9
    assert (partition(sub, CommunityConfig(seed=0)).labels[0] == big.labels[0]).all()   # seeded
    assert big.modularity[0] == pytest.approx(modularity(undirected(sub), big.labels[0]))
