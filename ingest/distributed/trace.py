"""``mechgraph trace --ray``: one prompt's adjacency rows computed on Ray workers.

The driver runs the clean forward pass, finds the active features and the targets, and asks
for the rows (each target's in-edges from features, errors and tokens) in batches of
``--batch-size`` targets; each batch is a Ray task (:func:`ingest.distributed.units.rows_unit`)
on a worker that rebuilds the prompt's frozen graph from the specs and tokens (once per worker
process). Rows are independent given the prompt, so the driver copies each batch into the
adjacency and prunes, scores and stores exactly as one process does. With
``--max-feature-nodes`` the driver still picks each round's features from the influence of the
rows it has (``ingest.replacement.attribute.trace_prompt``): a round's batches run in parallel,
the rounds in order, so the same features are selected.

A unit whose worker dies is retried (``cluster.MAX_RETRIES``). Not resumable across a driver
crash: the rows live in the driver's memory until the graph is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ingest.distributed.attribution import UnitStats
from ingest.distributed.cluster import LOCAL, Cluster, connect
from ingest.distributed.units import Hooks, rows_unit

log = logging.getLogger(__name__)


def ray_trace(request: Any, *, db: Any | None = None, address: str = LOCAL, progress: Any = None,
              on_estimate: Any = None, hooks: Hooks | None = None) -> tuple[Any, UnitStats]:
    """:func:`ingest.replacement.jobs.trace` with the adjacency rows computed on Ray."""
    from ingest.replacement.jobs import trace

    stats = UnitStats()
    rows = RayRows(connect(address), hooks or Hooks.from_env(), stats, request.model, request.transcoders)
    return trace(request, db=db, progress=progress, on_estimate=on_estimate, remote=rows), stats


@dataclass
class RayRows:
    """The ``remote`` of :func:`ingest.replacement.attribute.trace_prompt` on a Ray cluster."""

    cluster: Cluster
    hooks: Hooks
    stats: UnitStats
    model: str
    transcoders: str
    submitted: int = 0   # units of this trace so far (their ids: trace#0, trace#1, ...)

    def __call__(self, tokens: Any, zero_bos: bool, batch_size: int, n_sources: int,
                 batches: list[tuple[Any, Any, Any]]) -> Iterator[tuple[int, Any]]:
        import ray

        remote = ray.remote(rows_unit).options(**self.cluster.options())
        toks = [int(t) for t in tokens.tolist()]
        refs = {remote.remote(self.model, self.transcoders, toks, zero_bos, batch_size, n_sources, self.submitted + i,
                              layer.cpu(), pos.cpu(), vec.detach().cpu(), self.cluster.device, self.hooks): i
                for i, (layer, pos, vec) in enumerate(batches)}
        self.submitted += len(batches)
        log.info("%d batches of rows on Ray (%s)", len(batches), self.cluster.address)
        try:
            while refs:
                (ready,), _ = ray.wait(list(refs), num_returns=1)
                i = refs.pop(ready)
                rows = ray.get(ready)
                self.stats.computed += 1
                yield i, rows
        finally:
            for ref in refs:  # an error in one unit: the others are not left running
                ray.cancel(ref)
