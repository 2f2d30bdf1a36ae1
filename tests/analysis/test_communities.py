"""Communities on planted partitions (graspologic's SBM sampler) stored in a real Neo4j: pulled
through Cypher, recovered by Leiden, Louvain, SBM and hierarchical Leiden, written back idempotently."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from analysis.communities import CommunityConfig, modularity, partition, undirected, write_communities
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


def test_pull_refuses_nodes_without_nid_and_shared_nids(planted):
    from graphdb.errors import ConfigError

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

