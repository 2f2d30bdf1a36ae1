"""Subgraphs out of Neo4j as scipy sparse matrices, with a stable, documented node index.

``pull_subgraph`` reads a selection (model, checkpoint, one or more tasks, run, granularity,
minimum |weight|) through the ``subgraph_columns`` library query: each task's edges arrive as
three parallel columns in a single record, so there is no per-edge Python work between the
server and numpy. The node index is the lexicographic order of the node keys, so the same
selection always gives the same matrix; ``A[i, j]`` is the weight of the edge from node ``i``
to node ``j``, summed over the selected tasks (and runs) when they share an edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphdb.errors import ConfigError
from queries.loader import run_query


@dataclass(frozen=True)
class Selection:
    """Which edges to pull. ``run = "*"``: every run of each task."""

    model: str
    checkpoint: str
    tasks: tuple[str, ...]
    run: str = "*"
    granularity: str = "feature"
    min_abs_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("select at least one task")
        if self.min_abs_weight < 0:
            raise ValueError(f"min_abs_weight must be >= 0, got {self.min_abs_weight}")


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
        rows = run_query(db, "subgraph_columns", {
            "model": selection.model, "checkpoint": selection.checkpoint, "task": task, "run": selection.run,
            "granularity": selection.granularity, "min_abs_weight": selection.min_abs_weight})
        srcs.append(np.asarray(rows[0]["sources"], dtype=object))
        dsts.append(np.asarray(rows[0]["targets"], dtype=object))
        weights.append(np.asarray(rows[0]["weights"], dtype=np.float64))
    src, dst, w = np.concatenate(srcs), np.concatenate(dsts), np.concatenate(weights)
    if len(w) == 0:
        raise ConfigError(f"no {selection.granularity} edges of {selection.model} @ {selection.checkpoint} for "
                          f"{', '.join(selection.tasks)} (run {selection.run}, |weight| >= {selection.min_abs_weight})")
    keys, inverse = np.unique(np.concatenate([src, dst]).astype(str), return_inverse=True)
    n, m = len(keys), len(w)
    matrix = sparse.coo_matrix((w, (inverse[:m], inverse[m:])), shape=(n, n)).tocsr()  # duplicates summed
    return Subgraph(selection=selection, keys=keys, matrix=matrix, edges=m)
