"""Communities of a pulled subgraph (Leiden, Louvain, SBM, hierarchical Leiden), written back.

**Direction and sign.** Community objectives here are for undirected, non-negative weights,
so the graph they see is ``W = |A| + |A|ᵀ`` by default (``weights="abs"``: a strong inhibitory
edge binds two nodes as much as an excitatory one), or ``max(A, 0) + max(A, 0)ᵀ``
(``weights="positive"``: only excitatory edges count). Direction is dropped in both.

Methods: ``leiden`` (leidenalg; objective ``modularity`` with a resolution parameter, or
``cpm``; igraph's own Leiden above ``LEIDENALG_MAX_EDGES`` undirected edges), ``louvain``
(igraph's multilevel), ``sbm`` (a weighted stochastic block model estimated the way
graspologic's ``SBMEstimator`` does: adjacency spectral embedding, then a Gaussian mixture whose
number of blocks, between ``min_blocks`` and ``max_blocks``, BIC chooses),
``hleiden`` (graspologic's hierarchical Leiden: communities of communities, one level per
refinement). Every method takes a seed. The modularity reported is Newman's, of the final
partition on ``W``, for every method.

Write-back: ``:Community`` nodes (method, parameters, level, size, modularity, and the
selection: model, checkpoint, tasks, ``graph_run``, granularity, min_abs_weight, which the
``community_*`` library queries filter edges by) keyed by (run, level, index),
``(:Node)-[:IN_COMMUNITY {run}]->(:Community)`` and ``(:Community)-[:PRODUCED_BY]->(:Run)``.
The run id is the hash of the selection and the parameters, so re-running replaces instead of
duplicating: the new result is written as a new generation and the old one retired only
once it is complete (``graphdb/generations.py``), so an interrupted re-run keeps the old result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from analysis.subgraph import Subgraph
from graphdb.keys import node_key
from graphdb.provenance import RunRecord
from graphdb.schema import Label, Rel
from graphdb import generations
from graphdb.writer import GraphWriter

Method = Literal["leiden", "louvain", "sbm", "hleiden"]


@dataclass(frozen=True)
class CommunityConfig:
    method: Method = "leiden"
    objective: Literal["modularity", "cpm"] = "modularity"
    resolution: float = 1.0
    weights: Literal["abs", "positive"] = "abs"
    seed: int = 0
    min_blocks: int = 1
    max_blocks: int = 10
    max_cluster_size: int = 1000

    def __post_init__(self) -> None:
        if self.method not in ("leiden", "louvain", "sbm", "hleiden"):
            raise ValueError(f"method must be leiden, louvain, sbm or hleiden, got {self.method!r}")
        if self.objective not in ("modularity", "cpm"):
            raise ValueError(f"objective must be modularity or cpm, got {self.objective!r}")
        if self.weights not in ("abs", "positive"):
            raise ValueError(f"weights must be abs or positive, got {self.weights!r}")
        if not self.resolution > 0:
            raise ValueError(f"resolution must be > 0, got {self.resolution}")
        if not 1 <= self.min_blocks <= self.max_blocks:
            raise ValueError("need 1 <= min_blocks <= max_blocks")


@dataclass
class Partition:
    """``labels[level][i]``: community of node ``i`` at ``level`` (0 = finest for hleiden; the
    only level otherwise); ``modularity[level]``."""

    labels: list[Any]
    modularity: list[float]


def undirected(sub: Subgraph, weights: str = "abs") -> Any:
    """The symmetric non-negative matrix the objectives see (module docstring)."""
    A = sub.matrix.copy()
    A.data = abs(A.data) if weights == "abs" else A.data.clip(min=0)
    A.eliminate_zeros()
    return (A + A.T).tocsr()


def partition(sub: Subgraph, config: CommunityConfig) -> Partition:
    """Communities of ``sub`` by ``config.method``."""
    import numpy as np

    W = undirected(sub, config.weights)
    if config.method in ("leiden", "louvain"):
        labels = _leiden_louvain(W, config)
        levels = [labels]
    elif config.method == "sbm":
        levels = [sbm_blocks(W, config)]
    else:
        levels = _hierarchical_leiden(W, config)
    return Partition(labels=[relabel(x) for x in levels], modularity=[modularity(W, x) for x in levels])


def sbm_blocks(W: Any, config: CommunityConfig) -> Any:
    """Blocks of a weighted stochastic block model, estimated as graspologic's SBMEstimator does
    for unweighted graphs: adjacency spectral embedding (dimension by the elbow rule) and a
    Gaussian mixture whose number of components (``min_blocks`` .. ``max_blocks``) BIC chooses."""
    import numpy as np
    from graspologic.cluster import GaussianCluster
    from graspologic.embed import AdjacencySpectralEmbed

    X = AdjacencySpectralEmbed(algorithm="full").fit_transform(np.asarray(W.toarray(), dtype=float))
    gmm = GaussianCluster(min_components=config.min_blocks, max_components=config.max_blocks,
                          random_state=config.seed)
    return np.asarray(gmm.fit_predict(X))


#: Undirected edges above which ``leiden`` runs igraph's own Leiden (C, ``Graph.community_leiden``,
#: the same objectives; measured on a 1M-edge planted graph: 2.3 s against leidenalg's 29 s, the
#: same ARI 1.0) instead of leidenalg, whose optimiser did not finish a 10M-edge graph in 8 minutes.
#: The two implementations draw different random numbers, so up to here partitions are exactly
#: leidenalg's, as they always were.
LEIDENALG_MAX_EDGES = 2_000_000


def _leiden_louvain(W: Any, config: CommunityConfig) -> Any:
    import random

    import igraph as ig
    import leidenalg
    import numpy as np
    from scipy import sparse

    # The upper triangle, row-major: the same edge order as before, so the same partition.
    # python-igraph 1.0 accepts a numpy edge array but walks it element by element, slower
    # than a list (measured, 1M edges: 1.8 s vs 1.3 s); the weights go in as one array.
    upper = sparse.triu(W, k=1).tocoo()
    g = ig.Graph(n=W.shape[0], edges=np.column_stack([upper.row, upper.col]).tolist())
    g.es["weight"] = upper.data
    if config.method == "louvain":
        ig.set_random_number_generator(random.Random(config.seed))
        return np.asarray(g.community_multilevel(weights="weight", resolution=config.resolution).membership)
    if g.ecount() > LEIDENALG_MAX_EDGES:
        ig.set_random_number_generator(random.Random(config.seed))
        return np.asarray(g.community_leiden(objective_function="CPM" if config.objective == "cpm" else "modularity",
                                             weights="weight", resolution=config.resolution,
                                             n_iterations=-1).membership)
    kind = leidenalg.CPMVertexPartition if config.objective == "cpm" else leidenalg.RBConfigurationVertexPartition
    part = leidenalg.find_partition(g, kind, weights="weight", seed=config.seed,
                                    resolution_parameter=config.resolution, n_iterations=-1)
    return np.asarray(part.membership)


def _hierarchical_leiden(W: Any, config: CommunityConfig) -> list[Any]:
    import numpy as np
    from graspologic.partition import hierarchical_leiden

    from scipy import sparse

    clusters = hierarchical_leiden(sparse.csr_array(W.astype(float)), max_cluster_size=config.max_cluster_size,
                                   resolution=config.resolution, random_seed=config.seed + 1)
    n = W.shape[0]
    depth = max(c.level for c in clusters) + 1
    levels = [np.full(n, -1) for _ in range(depth)]
    for c in clusters:
        levels[c.level][c.node] = c.cluster
    for lv in range(1, depth):  # a node not refined further keeps its coarser community
        levels[lv] = np.where(levels[lv] < 0, levels[lv - 1] + 10**6, levels[lv])
    return levels


def relabel(labels: Any) -> Any:
    """Communities numbered 0, 1, ... by decreasing size (ties: first appearance)."""
    import numpy as np

    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty(len(uniq), dtype=int)
    rank[order] = np.arange(len(uniq))
    return rank[inverse]


def modularity(W: Any, labels: Any) -> float:
    """Newman's modularity of ``labels`` on the symmetric weighted matrix ``W``."""
    import numpy as np

    total = W.sum()
    if total == 0:
        return 0.0
    k = np.asarray(W.sum(axis=1)).ravel()
    coo = W.tocoo()
    inside = coo.data[labels[coo.row] == labels[coo.col]].sum()
    per = np.bincount(labels, weights=k)
    return float(inside / total - (per ** 2).sum() / total ** 2)


def write_communities(db: Any, sub: Subgraph, part: Partition, config: CommunityConfig) -> str:
    """Write the partition (every level) back; returns the run id. Idempotent per run."""
    import numpy as np

    record = RunRecord(kind="communities", seed=config.seed,
                       config={"selection": asdict(sub.selection), **asdict(config)})
    writer = GraphWriter(db)
    gen = generations.begin(writer, record)
    params = {k: v for k, v in asdict(config).items() if k != "seed"}
    comms, members = [], []
    for level, labels in enumerate(part.labels):
        sizes = np.bincount(labels)
        for c, size in enumerate(sizes.tolist()):
            if size == 0:
                continue
            key = node_key(Label.COMMUNITY, run=record.run_id, level=level, index=c)
            comms.append({"key": key, "run": record.run_id, "level": level, "index": c, "size": size,
                          "method": config.method, "modularity": part.modularity[level],
                          "model": sub.selection.model, "checkpoint": sub.selection.checkpoint,
                          "tasks": list(sub.selection.tasks), "graph_run": sub.selection.run,
                          "granularity": sub.selection.granularity,
                          "min_abs_weight": sub.selection.min_abs_weight, **params})
        keys = sub.keys.tolist()
        members += [{"src": keys[i], "dst": node_key(Label.COMMUNITY, run=record.run_id, level=level, index=int(c)),
                     "run": record.run_id} for i, c in enumerate(labels.tolist())]
    tag = {"gen": gen}
    writer.write_nodes(Label.COMMUNITY, comms, common=tag)
    writer.write_relationships(Rel.PRODUCED_BY, [{"src": c["key"], "dst": record.key} for c in comms],
                               src=Label.COMMUNITY, dst=Label.RUN, common=tag)
    writer.write_relationships(Rel.IN_COMMUNITY, members, src=Label.NODE, dst=Label.COMMUNITY, common=tag)
    generations.finish(db, record, gen, "finish_run_communities")
    return record.run_id

