"""What a Ray worker runs: one unit of work, from specs to a partial result.

A unit receives specs (the ingest configuration, a task name, a batch or prompt index), never
weights: each worker loads the model and dictionaries itself, once per process (cached here),
from the same specs, so a zoo or ``path:`` model must be readable on every node (a shared file
system, or the same zoo built on each). It returns a small partial result to the driver and
writes nothing to Neo4j.

:class:`Hooks` are fault injection for the tests (the environment of the driver, passed to the
units as arguments): a unit that kills its own worker once, a driver that kills itself after
some units, a log of every unit attempt.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: per worker process: (kind, spec key) -> loaded model, dictionaries and task data
_CACHE: dict[tuple[str, str], Any] = {}


@dataclass
class Hooks:
    """Test hooks, read from the driver's environment.

    ``MECHGRAPH_RAY_KILL_UNIT=TASK#INDEX`` with ``MECHGRAPH_RAY_KILL_MARKER=FILE``: the worker
    running that unit exits abruptly (``os._exit``) on the attempt that finds no FILE (it
    creates it first), as a crashed worker would. ``MECHGRAPH_RAY_EXIT_AFTER=K``: the driver
    kills itself (SIGKILL) once K units are persisted. ``MECHGRAPH_RAY_UNIT_LOG=FILE``: every
    unit attempt appends its id to FILE."""

    kill_unit: str | None = None
    kill_marker: str | None = None
    exit_after: int | None = None
    unit_log: str | None = None
    persisted: int = field(default=0, compare=False)

    @classmethod
    def from_env(cls) -> Hooks:
        after = os.environ.get("MECHGRAPH_RAY_EXIT_AFTER")
        return cls(kill_unit=os.environ.get("MECHGRAPH_RAY_KILL_UNIT"),
                   kill_marker=os.environ.get("MECHGRAPH_RAY_KILL_MARKER"),
                   exit_after=int(after) if after else None, unit_log=os.environ.get("MECHGRAPH_RAY_UNIT_LOG"))

    def enter(self, unit: str) -> None:
        """In the worker, at the start of a unit attempt."""
        if self.unit_log:
            with open(self.unit_log, "a") as f:
                f.write(unit + "\n")
        if unit == self.kill_unit and self.kill_marker and not Path(self.kill_marker).exists():
            Path(self.kill_marker).touch()
            os._exit(1)

    def persisted_one(self) -> None:
        """In the driver, after a unit's result is saved."""
        self.persisted += 1
        if self.exit_after is not None and self.persisted >= self.exit_after:
            os.kill(os.getpid(), signal.SIGKILL)


def unit_id(task: str, index: int) -> str:
    return f"{task}#{index}"


def _cached(kind: str, key: str, make: Any) -> Any:
    if (kind, key) not in _CACHE:
        _CACHE[(kind, key)] = make()
    return _CACHE[(kind, key)]


def attribution_unit(config: Any, task: str, index: int, steps: int | None, device: str, hooks: Hooks) -> dict:
    """The accumulator state of batch ``index`` of ``task`` (``--graph resid/module``).

    ``steps=None`` is ``--steps auto`` on the task's first batch: the unit chooses K as the
    single-process ingest does, and the state carries it."""
    from ingest.attribution.aggregate import GraphAccumulator
    from ingest.attribution.engine import AttributionEngine
    from ingest.pipeline import choose_steps, mean_baseline, resolve

    hooks.enter(unit_id(task, index))
    key = repr((config, device))
    resolved = _cached("resolved", key, lambda: resolve(config, device=device))
    a = config.attribution
    mean = _cached("mean", repr((key, task)), lambda: mean_baseline(resolved, a, task))
    part = resolved.batches[task][index * config.batch_size:(index + 1) * config.batch_size]
    acc = GraphAccumulator(a.beta, [s.n_nodes for s in resolved.slots] + [1])
    if steps is None:
        acc.steps, graph = choose_steps(resolved, a, mean, part, task)
    else:
        acc.steps = steps
        graph = AttributionEngine(resolved.model, resolved.slots, replace(a, steps=steps), mean=mean).attribute(part)
    acc.add(graph)
    return acc.state_dict()


def prompt_unit(config: Any, task: str, index: int, device: str, hooks: Hooks) -> Any:
    """The pruned and scored replacement graph of prompt ``index`` of ``task``
    (``--graph transcoders``): a :class:`ingest.replacement.jobs.ComputedPrompt`."""
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.jobs import compute_prompt, model_and_labels, task_prompts

    hooks.enter(unit_id(task, index))
    model = _cached("model", repr((config.model, device)), lambda: model_and_labels(config.model, device)[0])
    tcs = _cached("transcoders", repr((config.transcoders, device)),
                  lambda: load_transcoders(config.transcoders, device=device))
    examples, batch = _cached("task", repr((config, task)), lambda: task_prompts(config, task, model))
    return compute_prompt(model, tcs, batch, examples, index, config.trace)


def rows_unit(model_spec: str, transcoders_spec: str, tokens: list[int], zero_bos: bool, batch_size: int,
              n_sources: int, index: int, layer: Any, pos: Any, vec: Any, device: str, hooks: Hooks) -> Any:
    """Adjacency rows of one batch of targets of one prompt (``trace --ray``): ``[n n_sources]``
    on the CPU. The worker keeps the prompt's frozen graph (one prompt at a time) for its next batches."""
    import torch

    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.errors import AttributionError
    from ingest.replacement.attribute import RowComputer
    from ingest.replacement.jobs import model_and_labels

    hooks.enter(unit_id("trace", index))
    model = _cached("model", repr((model_spec, device)), lambda: model_and_labels(model_spec, device)[0])
    tcs = _cached("transcoders", repr((transcoders_spec, device)), lambda: load_transcoders(transcoders_spec, device=device))
    params = [p for p in (*model.parameters(), *tcs.parameters()) if p.requires_grad]
    for p in params:  # as trace_prompt: the frozen graph needs no parameter gradients
        p.requires_grad_(False)
    try:
        key = repr((model_spec, transcoders_spec, device, tokens, zero_bos, batch_size))
        for k in [k for k in _CACHE if k[0] == "rows" and k[1] != key]:
            del _CACHE[k]  # another prompt's frozen graph: one prompt's at a time
        rows = _cached("rows", key, lambda: RowComputer(model, tcs, torch.tensor(tokens), batch_size, zero_bos=zero_bos))
        if rows.n_sources != n_sources:
            raise AttributionError(f"a Ray worker found {rows.n_sources} sources in the prompt, the driver "
                                   f"{n_sources}: run the driver on the workers' device (--device {device})")
        return rows(layer, pos, vec).cpu()
    finally:
        for p in params:
            p.requires_grad_(True)
