"""``mechgraph ingest --ray`` for SAE/transcoder-free graphs (``--graph resid/module``).

Units are (task, batch of examples). Each returns its batch's accumulator state (per-edge sums
for β mean/sum, maxima and minima for β max, example counts, node attributions, completeness
sums); the driver merges them in batch order (``GraphAccumulator.merge``), so the accumulator,
and the noise floor, threshold and top-k applied to it afterwards by the single-process
writer (``ingest.pipeline``), are those of a single process.

Resumable: a finished unit's state is saved at once under the run's state folder
(``<task>.units/<batch>.pt``); the prefix of finished batches is merged into the task's usual
resume state (``<task>.pt``, the single-process one) and its unit files removed. A restarted
driver loads both and submits only the batches missing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.distributed.cluster import LOCAL, Cluster, connect
from ingest.distributed.units import Hooks, attribution_unit

log = logging.getLogger(__name__)


@dataclass
class UnitStats:
    """Units of this call: computed on the cluster, and taken from a saved state instead."""

    computed: int = 0
    resumed: int = 0


def ray_ingest(db: Any, config: Any, *, state_root: Path, address: str = LOCAL, device: str = "cpu",
               progress: Any = None, writer: Any = None) -> tuple[Any, UnitStats]:
    """:func:`ingest.pipeline.ingest` with each task's batches computed on Ray; the driver
    (this process) resolves and checks the inputs, merges, and writes."""
    from ingest.pipeline import ingest
    from mechgraph.errors import ConfigError

    if config.graph == "component":
        raise ConfigError("--ray splits dictionary graphs (--graph resid, module, transcoders); "
                          "--graph component runs in one process")
    cluster = connect(address)
    stats = UnitStats()
    accumulate = RayAccumulate(cluster, Hooks.from_env(), stats)
    result = ingest(db, config, state_root=state_root, device=device, progress=progress, writer=writer,
                    accumulate=accumulate)
    return result, stats


@dataclass
class RayAccumulate:
    """The ``accumulate`` step of :func:`ingest.pipeline.ingest` on a Ray cluster."""

    cluster: Cluster
    hooks: Hooks
    stats: UnitStats

    def __call__(self, resolved: Any, config: Any, task: str, state_dir: Path, progress: Any) -> Any:
        import ray
        import torch

        from ingest.attribution.aggregate import GraphAccumulator
        from ingest.pipeline import save_state, state_path

        a = config.attribution
        n_examples = len(resolved.batches[task])
        n_batches = math.ceil(n_examples / config.batch_size)
        path = state_path(state_dir, task)
        units = path.with_suffix(".units")
        prefix = (GraphAccumulator.from_state(torch.load(path, weights_only=False)) if path.is_file()
                  else GraphAccumulator(a.beta, [s.n_nodes for s in resolved.slots] + [1]))
        finished = {int(p.stem): p for p in units.glob("*.pt")} if units.is_dir() else {}
        finished = {i: p for i, p in finished.items() if i >= prefix.batches}
        self.stats.resumed += prefix.batches + len(finished)

        def absorb(i: int, state: dict | None) -> None:
            if state is not None:  # a unit just computed: saved before anything else
                save_state(GraphAccumulator.from_state(state), units / f"{i}.pt")
                finished[i] = units / f"{i}.pt"
            while prefix.batches in finished:  # merge in batch order: the single-process sums
                p = finished.pop(prefix.batches)
                prefix.merge(GraphAccumulator.from_state(torch.load(p, weights_only=False)))
                save_state(prefix, path)
                p.unlink()
            if progress:
                done = prefix.batches + len(finished)
                progress(task, min(done * config.batch_size, n_examples), n_examples, _n_edges(prefix))
            if state is not None:
                self.stats.computed += 1
                self.hooks.persisted_one()

        absorb(0, None)
        remote = ray.remote(attribution_unit).options(**self.cluster.options())
        spec = ray.put(config)  # specs go over the network, not weights: each worker loads its own
        device = self.cluster.device
        steps = prefix.steps if prefix.steps is not None else (None if a.steps == "auto" else int(a.steps))
        if steps is None and prefix.batches == 0:  # --steps auto: batch 0 chooses K first
            absorb(0, ray.get(remote.remote(spec, task, 0, None, device, self.hooks)))
            steps = prefix.steps
        todo = [i for i in range(prefix.batches, n_batches) if i not in finished]
        log.info("%s: %d of %d batches on Ray (%s), %d from saved state", task, len(todo), n_batches,
                 self.cluster.address, n_batches - len(todo))
        refs = {remote.remote(spec, task, i, steps, device, self.hooks): i for i in todo}
        try:
            while refs:
                (ready,), _ = ray.wait(list(refs), num_returns=1)
                absorb(refs.pop(ready), ray.get(ready))
        finally:
            for ref in refs:  # an error in one unit: the others are not left running
                ray.cancel(ref)
        if prefix.batches != n_batches:
            raise RuntimeError(f"{task}: merged {prefix.batches} of {n_batches} batches")  # a bug, not a user error
        if units.is_dir():
            units.rmdir()
        return prefix


def _n_edges(acc: Any) -> int:
    return sum(len(k) for k in acc.keys.values())
