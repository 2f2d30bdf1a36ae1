"""Subgraphs out of Neo4j as scipy sparse matrices, with a stable, documented node index.

``pull_subgraph`` reads a selection (model, checkpoint, one or more tasks, run, granularity,
minimum |weight|) in two queries. The ``subgraph_columns`` library query returns each task's
edges as three parallel columns in a single record, endpoints as ``nid`` integers
(``graphdb.keys.key_id``, set on every node by the writer) rather than key strings, so there is
no per-edge Python work and no million-string transfer between the server and numpy. Then the
``node_keys`` query fetches the keys of just the distinct nodes. The node index is the
lexicographic order of the node keys, so the same selection always gives the same matrix;
``A[i, j]`` is the weight of the edge from node ``i`` to node ``j``, summed over the selected
tasks (and runs) when they share an edge.

Nodes written before nids existed have none: the pull raises ``ConfigError`` asking for the
graph to be written again (ingest is idempotent; the MERGE adds the nid) rather than keeping a
second, slower key-string path. Two stored keys with the same nid (probability ~1e-9 at 200k
nodes) are detected by the key fetch and raise ``ConfigError`` too.

A selection of more than ``PAGE_EDGES`` edges is pulled in pages of about ``PAGE_EDGES`` edges,
keyed by ranges of the source node's nid (``_pages``): each edge is read once, so the pull is
linear in the edges, and neither the server's transaction memory nor the driver's decoded lists
hold more than a page at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphdb.writer import cypher_template
from mechgraph.errors import ConfigError
from queries.loader import get_query, run_query


def ingest_run_config(db: Any, run: str, tasks: tuple[str, ...] = ()) -> dict[str, Any]:
    """The configuration of the named ingest run, checked to exist, to be an ingest run and to
    have finished the graph of every one of ``tasks`` (``ConfigError`` otherwise, saying when a
    task's graph is still being written)."""
    import json

    rows = run_query(db, "run_config", {"run": run})
    if not rows or rows[0]["kind"] != "ingest":
        raise ConfigError(f"no ingest run {run!r} in this database (`mechgraph query run runs`)")
    config: dict[str, Any] = json.loads(rows[0]["config"])
    from ingest.tasks.names import task_name
    stored = {task_name(t) for t in config.get("tasks", [])} | set(config.get("tasks", []))
    missing = [t for t in tasks if t not in stored]
    if missing:
        raise ConfigError(f"ingest run {run} has no graph of {', '.join(missing)} "
                          f"(it has {', '.join(config.get('tasks', []))})")
    writing = [t for t in tasks if t in rows[0]["tasks_writing"]]
    unfinished = [t for t in tasks if t not in rows[0]["tasks_done"]]
    if writing or unfinished:
        raise ConfigError(f"ingest run {run} is in progress: its graph of {', '.join(writing or unfinished)} is not "
                          "finished (another process is writing it, or it stopped; the same `mechgraph ingest` "
                          "again finishes it)")
    return config


def newest_ingest_run(db: Any, model: str, checkpoint: str, tasks: tuple[str, ...]) -> str:
    """The newest finished ingest run that wrote the graph of every one of ``tasks`` for ``model``
    @ ``checkpoint`` (the ``latest_run`` library query, per task). ``ConfigError`` when a task has
    none, or when the tasks' newest runs differ (then a run must be named, or ``*`` chosen)."""
    newest: dict[str, str] = {}
    for task in tasks:
        rows = run_query(db, "latest_run", {"kind": "ingest", "model": model, "checkpoint": checkpoint, "task": task})
        if not rows:
            raise ConfigError(f"no finished ingest run wrote a {task} graph of {model} @ {checkpoint}: "
                              "run `mechgraph ingest` first, or name a run")
        newest[task] = rows[0]["run"]
    if len(set(newest.values())) > 1:
        raise ConfigError("the newest ingest runs differ between the tasks ("
                          + ", ".join(f"{t}: {r}" for t, r in newest.items())
                          + "): name one run, or * to sum every run of each task")
    return newest[tasks[0]]


#: node labels a selection can restrict to
NODE_KINDS = ("Feature", "ErrorNode", "Input", "Output", "Head", "ROI")


@dataclass(frozen=True)
class Selection:
    """Which edges to pull. ``run = "*"``: every run of each task. ``kinds`` and ``layers``
    (empty: any) restrict the *nodes*: an edge is pulled when both its endpoints carry one of
    the labels and sit in one of the layers (the subgraph induced by those nodes)."""

    model: str
    checkpoint: str
    tasks: tuple[str, ...]
    run: str = "*"
    granularity: str = "feature"
    min_abs_weight: float = 0.0
    kinds: tuple[str, ...] = ()
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("select at least one task")
        if not self.min_abs_weight >= 0:  # NaN too
            raise ValueError(f"min_abs_weight must be >= 0, got {self.min_abs_weight}")
        if self.granularity not in ("feature", "head", "roi"):
            raise ValueError(f"granularity must be feature, head or roi, got {self.granularity!r}")
        unknown = sorted(set(self.kinds) - set(NODE_KINDS))
        if unknown:
            raise ValueError(f"unknown node kind {', '.join(unknown)}; kinds: {', '.join(NODE_KINDS)}")


@dataclass
class Subgraph:
    """``keys[i]`` is node ``i`` (sorted); ``matrix`` is the [n, n] CSR matrix of summed weights;
    ``edges`` the number of stored edges pulled (before tasks were summed)."""

    selection: Selection
    keys: Any
    matrix: Any
    edges: int

    @property
    def n(self) -> int:
        return len(self.keys)

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys.tolist())}


def pull_subgraph(db: Any, selection: Selection) -> Subgraph:
    """The selected edges as a sparse matrix over a sorted node index (module docstring)."""
    import numpy as np
    from scipy import sparse

    srcs, dsts, weights = [], [], []
    for task in selection.tasks:
        params = {"model": selection.model, "checkpoint": selection.checkpoint, "task": task, "run": selection.run,
                  "granularity": selection.granularity, "min_abs_weight": selection.min_abs_weight,
                  "kinds": ",".join(selection.kinds) or "*", "layers": ",".join(map(str, selection.layers)) or "*"}
        for page in _pages(db, params):
            srcs.append(np.asarray(page["source_nids"], dtype=np.int64))
            dsts.append(np.asarray(page["target_nids"], dtype=np.int64))
            weights.append(np.asarray(page["weights"], dtype=np.float64))
            del page   # this page's Python lists go before the next page arrives
    src, dst, w = np.concatenate(srcs), np.concatenate(dsts), np.concatenate(weights)
    del srcs, dsts, weights
    what = (f"{selection.granularity} edges of {selection.model} @ {selection.checkpoint} for "
            f"{', '.join(selection.tasks)} (run {selection.run}, |weight| >= {selection.min_abs_weight}"
            + (f", nodes {'/'.join(selection.kinds)}" if selection.kinds else "")
            + (f", layers {', '.join(map(str, selection.layers))}" if selection.layers else "") + ")")
    if len(w) == 0:
        raise ConfigError(f"no {what}")
    if (src < 0).any() or (dst < 0).any():
        raise ConfigError(f"the {what} join nodes without an nid (written before nids existed): write "
                          "the graph again (`mechgraph ingest` is idempotent and adds them)")
    nids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    keys = _keys_of(db, nids)
    order = np.argsort(keys, kind="stable")  # node index = lexicographic order of the keys
    rank = np.empty(len(nids), dtype=np.int64)
    rank[order] = np.arange(len(nids))
    n, m = len(nids), len(w)
    matrix = sparse.coo_matrix((w, (rank[inverse[:m]], rank[inverse[m:]])), shape=(n, n)).tocsr()  # duplicates summed
    return Subgraph(selection=selection, keys=keys[order], matrix=matrix, edges=m)


#: Edges per page of a pull. One page is one record of three lists: the server holds them in its
#: transaction memory and the driver decodes them into Python objects, so a 10-million-edge pull
#: in one record needs gigabytes on both sides; pages bound that to about a page's worth.
PAGE_EDGES = 2_000_000
_CYPHER = Path(__file__).parent / "cypher"
_NID_END = 2**63   # nids are 63-bit non-negative integers (graphdb.keys.key_id)


def _pages(db: Any, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The records of one task's selection, a page at a time. A store of at most PAGE_EDGES
    edges (its count store), or a selection of at most PAGE_EDGES (``subgraph_count``, which stops
    there), is one page: ``subgraph_columns`` itself. A larger one is pulled in pages keyed by the
    source node's nid, as many as the store has pages of edges: nids are uniform hashes, so equal
    slices of the nid range hold about equal shares of the edges, and each page
    (``subgraph_columns_page``) is a range seek on the Node(nid) index and an expansion of those
    nodes. Every edge is read once: the pull is linear in the edges. An edge whose source has no
    nid is in no page (``subgraph_no_nid``): ``ConfigError``, as for a target without one."""
    keys = {k: params[k] for k in ("model", "checkpoint", "task")}
    stored = db.read((_CYPHER / "stored_edges.cypher").read_text())[0]["edges"]
    if stored <= PAGE_EDGES or db.read((_CYPHER / "subgraph_count.cypher").read_text(),
                                       {**keys, "min_abs_weight": params["min_abs_weight"],
                                        "limit": PAGE_EDGES + 1})[0]["edges"] <= PAGE_EDGES:
        query = get_query("subgraph_columns")
        yield db.read_columns(query.text, query.bind(params))[0]
        return
    missing = db.read((_CYPHER / "subgraph_no_nid.cypher").read_text(), keys)[0]["edges"]
    if missing:
        raise ConfigError(f"{missing} {params['task']} edges of {params['model']} @ {params['checkpoint']} start at "
                          "nodes without an nid (written before nids existed): write the graph again "
                          "(`mechgraph ingest` is idempotent and adds them)")
    page = (_CYPHER / "subgraph_columns_page.cypher").read_text()
    n_pages = -(-stored // PAGE_EDGES)
    cuts = [_NID_END * i // n_pages for i in range(n_pages + 1)]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        yield db.read_columns(page, {**params, "nid_from": lo, "nid_to": hi - 1})[0]


def _keys_of(db: Any, nids: Any) -> Any:
    """The key of each of the sorted unique ``nids`` (a str array aligned with them)."""
    import numpy as np

    row = db.read_columns(cypher_template("node_keys"), {"nids": nids.tolist()})[0]
    got, keys = np.asarray(row["nids"], dtype=np.int64), np.asarray(row["keys"], dtype=str)
    found, counts = np.unique(got, return_counts=True)
    if (counts > 1).any():
        shared = int(found[counts > 1][0])
        raise ConfigError(f"two stored nodes share nid {shared} (a collision of the 63-bit BLAKE2b ids of their keys: "
                          f"{sorted(keys[got == shared].tolist())}); rename one of them")
    if len(found) != len(nids) or not (found == nids).all():
        raise ConfigError(f"{len(nids)} node ids pulled but {len(found)} of them found (were nodes deleted "
                          "while pulling?)")
    return keys[np.argsort(got)]
