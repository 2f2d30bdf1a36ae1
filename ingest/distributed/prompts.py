"""``mechgraph ingest --graph transcoders --ray``: a task's prompt graphs computed on Ray.

Units are prompts. Each returns its pruned, scored prompt graph; the driver stores it (the
only writer to Neo4j) and records the stored prompt's id and scores in the run's state folder
(``<task>.prompts/<index>.json``), so a restarted driver stores only the prompts missing. The
task graph is then aggregated from the stored prompt graphs exactly as in one process
(``ingest.replacement.jobs.ingest_task``), so it is the same graph.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ingest.distributed.attribution import UnitStats
from ingest.distributed.cluster import LOCAL, Cluster, connect
from ingest.distributed.units import Hooks, prompt_unit

log = logging.getLogger(__name__)


def ray_ingest_task(db: Any, config: Any, *, state_root: Path, address: str = LOCAL, device: str = "cpu",
                    progress: Any = None, writer: Any = None) -> tuple[str, list[Any], UnitStats]:
    """:func:`ingest.replacement.jobs.ingest_task` with the prompt graphs computed on Ray."""
    from ingest.replacement.jobs import ingest_task

    stats = UnitStats()
    runner = RayPrompts(connect(address), Hooks.from_env(), stats, config, state_root)
    run, results = ingest_task(db, config, device=device, progress=progress, writer=writer, run_prompts=runner)
    for r in results:  # the task graph is written: its prompts need no resume records any more
        folder = runner.folder(run, r.task)
        for p in folder.glob("*.json"):
            p.unlink()
        if folder.is_dir():
            folder.rmdir()
    return run, results, stats


@dataclass
class RayPrompts:
    """The ``run_prompts`` step of ``ingest_task`` on a Ray cluster."""

    cluster: Cluster
    hooks: Hooks
    stats: UnitStats
    config: Any
    state_root: Path

    def folder(self, run: str, task: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task)
        return self.state_root / run / f"{safe}.prompts"

    def __call__(self, job: Any, progress: Any) -> list[Any]:
        import ray

        from ingest.replacement.jobs import PromptOutcome

        folder = self.folder(job.run, job.task)
        outcomes: dict[int, Any] = {}
        for p in folder.glob("*.json") if folder.is_dir() else ():
            outcomes[int(p.stem)] = PromptOutcome(**json.loads(p.read_text()))
        self.stats.resumed += len(outcomes)
        todo = [i for i in range(job.n) if i not in outcomes]
        log.info("%s: %d of %d prompts on Ray (%s), %d already stored", job.task, len(todo), job.n,
                 self.cluster.address, job.n - len(todo))
        remote = ray.remote(prompt_unit).options(**self.cluster.options())
        spec = ray.put(self.config)
        refs = {remote.remote(spec, job.spec, i, self.cluster.device, self.hooks): i for i in todo}
        try:
            while refs:
                (ready,), _ = ray.wait(list(refs), num_returns=1)
                i = refs.pop(ready)
                outcome = job.store(i, ray.get(ready))  # MERGEs: a prompt stored twice is stored once
                _save_json(folder / f"{i}.json", asdict(outcome))
                outcomes[i] = outcome
                self.stats.computed += 1
                if progress:
                    progress(job.task, len(outcomes), job.n)
                self.hooks.persisted_one()
        finally:
            for ref in refs:
                ray.cancel(ref)
        return [outcomes[i] for i in range(job.n)]


def _save_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
