"""``mechgraph ingest``: compute a model's attribution graph per task and stream it into Neo4j.

Order of work, so that bad input fails before anything is written and an interrupted run
resumes to the same graph:

1. Resolve everything: the model, its dictionaries (the ``--graph`` default or explicit
   specs), the slots (hooks exist, widths match), the tasks and their examples (non-empty,
   aligned counterfactuals), and one forward pass over every batch checking that activations
   and latents are finite.
2. Take the run's lock (``graphdb/runlock.py``; a second ingest of the same run waits for the
   first, then finds its tasks done) and write the ``:Run`` node (its id is the hash of the
   whole configuration).
3. Per task: skip it if the run's ``tasks_done`` names it. Otherwise accumulate batches,
   saving the accumulator after each batch under ``<data dir>/runs/<run id>/``; a restart
   loads it and continues with the next batch (examples and batches are deterministic, so
   the result is the uninterrupted one). Then write nodes, feature edges, ``IN_HEAD`` shares
   and the head-level graph (all MERGEs: idempotent) while the run's ``tasks_writing`` names
   the task (the library's queries hide those edges until then), and in one write add the
   task to ``tasks_done`` and clear ``tasks_writing``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from graphdb.provenance import RunRecord, task_edge_counts, tasks_done
from graphdb.runlock import run_lock
from graphdb.schema import Granularity, Label, Rel
from graphdb.writer import GraphWriter
from ingest.attribution.config import AttributionConfig
from ingest.errors import AttributionError, ModelUnavailableError, SpecError, TaskError
from mechgraph.errors import require_positive

log = logging.getLogger(__name__)

GraphKind = Literal["resid", "module", "component"]
#: Hook suffixes of the dictionaries each ``--graph`` picks from a zoo model. ``component``: whole
#: components (embedding, heads, MLPs, output), no dictionaries (ingest/component_graph.py).
GRAPH_HOOKS: dict[str, tuple[str, ...]] = {"resid": ("hook_resid_post",), "module": ("hook_attn_out", "hook_mlp_out"),
                                           "component": ()}

#: progress(task, examples done, examples total, edges kept so far in the accumulator)
Progress = Callable[[str, int, int, int], None]
#: accumulate(resolved, config, task, state dir, progress) -> the task's GraphAccumulator over all
#: its batches, resumed from the state dir; how ``--ray`` computes them (ingest/distributed).
Accumulate = Callable[["Resolved", "IngestConfig", str, Path, "Progress | None"], Any]


@dataclass(frozen=True)
class IngestConfig:
    """One ingest: a model checkpoint, its dictionaries, tasks, and how edges are measured."""

    model: str
    tasks: tuple[str, ...]
    dicts: tuple[str, ...] = ()
    graph: GraphKind = "resid"
    dicts_all: tuple[str, ...] = ()  # SOURCE[@SITES] on every layer (ingest/dictionaries/everywhere.py)
    examples: int = 32
    batch_size: int = 8
    split: Literal["train", "test", "all"] = "test"  # all: every example, whatever its split
    seed: int = 0
    include_embed: bool = True
    attribution: AttributionConfig = field(default_factory=AttributionConfig)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("name at least one task (--task)")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"a task is named twice: {list(self.tasks)}")
        from ingest.dictionaries.everywhere import parse_dicts_all
        for text in self.dicts_all:
            parse_dicts_all(text)  # a SpecError (a ValueError) names the accepted forms
        if self.graph not in GRAPH_HOOKS:
            raise ValueError(f"graph must be one of {', '.join(GRAPH_HOOKS)}, got {self.graph!r}")
        if self.graph == "component" and (self.dicts or self.dicts_all):
            raise ValueError("--graph component is between whole components and uses no dictionaries; "
                             "drop --dicts / --dicts-all")
        if self.graph == "component" and not self.include_embed:
            raise ValueError("--graph component always has the embedding as a node; drop --no-embed")
        require_positive(examples=self.examples, batch_size=self.batch_size)
        if self.split not in ("train", "test", "all"):
            raise ValueError(f"split must be train, test or all, got {self.split!r}")


@dataclass
class TaskGraph:
    """What one task's graph came to."""

    task: str
    skipped: bool = False
    examples: int = 0
    features: int = 0
    nodes: int = 0
    edges: int = 0
    head_edges: int = 0
    noise_dropped: int = 0  # edges under the noise floor (AttributionConfig.noise_rel), not stored
    steps: int = 0          # IG steps used (the one --steps auto chose)
    #: relative completeness residual per target (a dictionary's hook, or "output"); see
    #: GraphAccumulator.completeness. ``residual`` is the largest, ``converged`` whether it is
    #: within the tolerance.
    residuals: dict[str, float] = field(default_factory=dict)
    residual: float = float("nan")
    converged: bool = True
    heads: list[dict[str, Any]] = field(default_factory=list)
    metric_clean: float = float("nan")
    metric_base: float = float("nan")
    seconds: float = 0.0


@dataclass
class IngestResult:
    run: str
    model: str
    checkpoint: str
    dictionaries: list[str]
    tasks: list[TaskGraph]
    seconds: float


@dataclass
class Resolved:
    """Everything an ingest needs, checked."""

    model: Any
    model_label: str
    checkpoint: str
    dict_specs: list[str]
    slots: list[Any]
    batches: dict[str, Any]     # task name -> TaskBatch
    reference: dict[str, Any]   # task name -> TaskBatch for the mean baseline
    task_specs: dict[str, str] = field(default_factory=dict)  # task name -> the spec it was read from


def resolve(config: IngestConfig, *, device: str = "cpu") -> Resolved:
    """Load and check the model, dictionaries, slots and task data (step 1). Specs, tasks and
    example counts are checked before torch is even imported (seconds on a busy machine)."""
    from ingest.dictionaries import check_dictionary_spec, load_dictionary
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    from ingest.tasks.names import aliased, canonical_spec
    from ingest.zoo.specs import load_model, parse_model_spec

    spec = parse_model_spec(config.model)
    tasks = [get_task(t) for t in config.tasks]  # unknown tasks fail before the model loads
    for task in tasks:  # so do requests for more examples than a task can provide
        task.check_count(config.examples, config.split)
    model_label, checkpoint, default_dicts = model_labels(spec, config.graph)
    specs = list(config.dicts) or ([] if config.dicts_all else default_dicts)
    if not specs and not config.dicts_all and config.graph != "component":
        raise SpecError(f"{config.model} has no zoo SAEs to pick for --graph {config.graph}; name dictionaries "
                        "with --dicts (path:DIR, identity:D/HOOK, release:RELEASE/SAE_ID, ...)")
    # Every part of every key the graph will have is checked now, before the model loads or
    # runs: a name that cannot be a key part must not cost a whole attribution and then fail
    # at write time (with a :Run already written). The hooks' keys are checked once the slots exist.
    check_key_parts(model_label, checkpoint, [t.name for t in tasks])
    for s in specs:  # a missing directory or an unreachable release fails in well under a second
        check_dictionary_spec(s)
    import torch

    from ingest.attribution.slots import build_slots

    model = load_model(spec, device=device)
    if config.dicts_all:
        specs += _expand_dicts_all(config, model, tasks)
    dictionaries = [load_dictionary(s, device=device) for s in specs]
    slots = [] if config.graph == "component" else build_slots(model, dictionaries, include_embed=config.include_embed)
    check_key_parts(model_label, checkpoint, [t.name for t in tasks], slots=slots, n_layers=int(model.cfg.n_layers))
    batches, reference, task_specs = {}, {}, {}
    for spec_text, task in zip(config.tasks, tasks, strict=True):
        task_specs[task.name] = canonical_spec(aliased(spec_text) or spec_text)
        examples = task.examples(config.examples, seed=config.seed, split=config.split)
        if not examples:
            raise TaskError(f"task {task.name!r} produced no examples")
        batches[task.name] = encode_examples(model.tokenizer, examples, n_ctx=model.cfg.n_ctx)
        if config.attribution.baseline == "mean":
            # the reference set of a JSONL task is at most its training rows (all rows with --split all)
            ref_split = "all" if config.split == "all" else "train"
            ref = task.examples(min(config.attribution.mean_examples, max(task.available(ref_split), 1)),
                                seed=config.seed + 1, split=ref_split)
            reference[task.name] = encode_examples(model.tokenizer, ref, n_ctx=model.cfg.n_ctx)
    with torch.no_grad():
        for name, batch in batches.items():
            _check_finite(model, slots, batch, config.batch_size, name)
    return Resolved(model=model, model_label=model_label, checkpoint=checkpoint, dict_specs=specs, slots=slots,
                    batches=batches, reference=reference, task_specs=task_specs)


def _expand_dicts_all(config: IngestConfig, model: Any, tasks: Sequence[Any]) -> list[str]:
    """``--dicts-all`` as concrete specs; SVD bases are fitted on the tasks' train prompts."""
    from ingest.dictionaries.everywhere import expand_dicts_all
    from ingest.tasks.encode import encode_examples

    n = config.attribution.mean_examples

    def fit_tokens() -> tuple[Any, Any]:
        examples = [ex for t in tasks for ex in t.examples(n, seed=config.seed + 1, split="train")]
        batch = encode_examples(model.tokenizer, examples, require_aligned=False)
        pos = batch.tokens.new_tensor(range(batch.tokens.shape[1]))
        valid = (pos[None, :] <= batch.last[:, None]) & (pos[None, :] > 0)  # no BOS, no padding
        return batch.tokens.to(model.cfg.device), valid.to(model.cfg.device)

    key = {"model": config.model, "tasks": list(config.tasks), "seed": config.seed, "examples": n}
    return expand_dicts_all(config.dicts_all, model, fit_tokens=fit_tokens, fit_key=key)


def check_key_parts(model_label: str, checkpoint: str, tasks: Sequence[str], *, slots: Sequence[Any] = (),
                    n_layers: int = 0) -> None:
    """Build one key of every kind the graph will write (``graphdb.keys``, the one identity
    function), so that a label, task, hook or dictionary name that cannot be a key part fails
    with one sentence before any computation. ``ConfigError`` names the offending input."""
    from graphdb.keys import node_key
    from ingest.graph_rows import GraphNames
    from mechgraph.errors import ConfigError

    names = GraphNames(model=model_label, checkpoint=checkpoint, slots=tuple(slots), n_layers=n_layers)
    try:
        node_key(Label.CHECKPOINT, model=model_label, checkpoint=checkpoint)
    except ConfigError as e:
        raise ConfigError(f"the model {model_label!r} @ {checkpoint!r} cannot name graph nodes: {e}") from None
    for task in tasks:
        try:
            node_key(Label.TASK, task=task)
        except ConfigError as e:
            raise ConfigError(f"the task {task!r} cannot name graph nodes: {e}") from None
    for s, slot in enumerate(slots):
        try:
            names.node_key(s, 0, tasks[0])
            if slot.dictionary is not None:
                names.node_key(s, slot.vector, tasks[0])
                names.dictionary_key(slot)
        except ConfigError as e:
            raise ConfigError(f"the dictionary at {slot.hook!r} cannot name graph nodes: {e}") from None


def model_labels(spec: Any, graph: str) -> tuple[str, str, list[str]]:
    """(model label, checkpoint label, default dictionary specs) of a model spec."""
    if spec.kind == "zoo":
        from ingest.zoo.specs import zoo_manifest, zoo_model_dir
        from ingest.zoo.store import resolve_checkpoint
        manifest = zoo_manifest(zoo_model_dir(spec.name), spec.name)
        ckpt = resolve_checkpoint(manifest, spec.checkpoint)
        hooks = [h for h in ckpt.get("saes", {}) if h.endswith(GRAPH_HOOKS[graph])]
        return spec.name, f"step-{ckpt['step']}", [f"zoo:{spec.name}@{ckpt['step']}/{h}" for h in hooks]
    if spec.kind == "smollm2":
        from ingest.zoo.specs import zoo_manifest, zoo_model_dir
        try:
            manifest = zoo_manifest(zoo_model_dir(spec.name), spec.name)
            hooks = [h for h in manifest.get("saes", {}) if h.endswith(GRAPH_HOOKS[graph])]
        except ModelUnavailableError:  # no SmolLM2 SAEs built: explicit --dicts are still fine
            hooks = []
        return spec.name, "main", [f"zoo:{spec.name}/{h}" for h in hooks]
    if spec.kind == "hf":
        return spec.name.replace("/", "__"), "main", []
    return Path(spec.name).name, "path", []


def _check_finite(model: Any, slots: Sequence[Any], batch: Any, batch_size: int, task: str) -> None:
    import torch
    for start in range(0, len(batch), batch_size):
        part = batch[start:start + batch_size]
        for tokens, which in ((part.tokens, "clean"), (part.cf_tokens, "counterfactual")):
            cache: dict[str, Any] = {}
            model.run_with_hooks(tokens, fwd_hooks=[(s.hook, lambda x, hook: cache.__setitem__(hook.name, x))
                                                    for s in slots])
            for s in slots:
                x = cache[s.hook]
                ok = bool(torch.isfinite(x).all())
                if ok and s.dictionary is not None:
                    ok = bool(torch.isfinite(s.dictionary.encode(x.flatten(-2) if x.ndim == 4 else x)).all())
                if not ok:
                    raise AttributionError(f"task {task!r}: non-finite activations or latents at {s.hook} on the "
                                           f"{which} prompts of examples {start}..{start + len(part) - 1}")


def run_record(config: IngestConfig, resolved: Resolved) -> RunRecord:
    return RunRecord(kind="ingest", seed=config.seed, config={
        "model": config.model, "model_label": resolved.model_label, "checkpoint": resolved.checkpoint,
        "dicts": resolved.dict_specs, "graph": config.graph, "tasks": list(config.tasks),
        **({"dicts_all": list(config.dicts_all)} if config.dicts_all else {}),
        "examples": config.examples, "batch_size": config.batch_size, "split": config.split,
        "include_embed": config.include_embed, "attribution": config.attribution.as_dict()})


def ingest(db: Any | None, config: IngestConfig, *, state_root: Path, device: str = "cpu",
           progress: Progress | None = None, writer: GraphWriter | None = None,
           stop_after_batches: int | None = None, accumulate: Accumulate | None = None) -> IngestResult:
    """Compute and write the graphs of ``config`` (see the module docstring).

    ``stop_after_batches`` stops after that many batches of computation in this call (the
    state is saved: a later call resumes); it exists for tests of resumption. ``accumulate``
    replaces this process's batch loop (``--ray`` runs the batches on a cluster); the writes
    stay here.
    """
    t0 = time.perf_counter()
    resolved = resolve(config, device=device)
    record = run_record(config, resolved)
    writer = writer or GraphWriter(db)
    state_dir = state_root / record.run_id
    results, budget = [], stop_after_batches
    # One process per run: a second ingest of the same configuration waits here, then finds
    # the tasks the first one finished in tasks_done and skips them (graphdb/runlock.py).
    with run_lock(state_root, record.run_id):
        writer.write_nodes(Label.RUN, [record.row()])
        done = set(tasks_done(db, record)) if db is not None else set()  # None: --bulk, a new store
        for task in resolved.batches:
            if task in done:
                counts = task_edge_counts(db, record.run_id, task)
                fine = Granularity.COMPONENT if config.graph == "component" else Granularity.FEATURE
                results.append(TaskGraph(task=task, skipped=True, edges=counts.get(str(fine), 0),
                                         head_edges=counts.get(str(Granularity.HEAD), 0)))
                continue
            t1 = time.perf_counter()
            if config.graph == "component":  # whole components, no dictionaries: ingest/component_graph.py
                from ingest.component_graph import component_task
                graph = TaskGraph(task=task, **component_task(writer, resolved, config, record.key, record.run_id,
                                                              task, progress))
                graph.seconds = time.perf_counter() - t1
                results.append(graph)
                done.add(task)
                writer.write_nodes(Label.RUN, [{"key": record.key, "tasks_done": sorted(done), "tasks_writing": []}])
                continue
            if accumulate is not None:
                acc = accumulate(resolved, config, task, state_dir, progress)
            else:
                acc, budget = _accumulate(resolved, config, task, state_dir, progress, budget)
            if acc is None:
                break
            # Until the task is in tasks_done, tasks_writing names it: the library's queries
            # hide the (run, task)'s edges while they are being written, or half-written after
            # a crash, and resuming the run finishes them.
            writer.write_nodes(Label.RUN, [{"key": record.key, "tasks_writing": [task]}])
            graph = _write_task(writer, resolved, config, record, task, acc)
            graph.seconds = time.perf_counter() - t1
            results.append(graph)
            done.add(task)
            writer.write_nodes(Label.RUN, [{"key": record.key, "tasks_done": sorted(done), "tasks_writing": []}])
            state_path(state_dir, task).unlink(missing_ok=True)
    return IngestResult(run=record.run_id, model=resolved.model_label, checkpoint=resolved.checkpoint,
                        dictionaries=resolved.dict_specs, tasks=results, seconds=time.perf_counter() - t0)


def state_path(state_dir: Path, task: str) -> Path:
    """Where a task's accumulator (its batches so far) is saved between batches."""
    return state_dir / ("".join(c if c.isalnum() or c in "-_." else "_" for c in task) + ".pt")


def mean_baseline(resolved: Resolved, a: AttributionConfig, task: str) -> Any:
    """The task's mean baseline (``--baseline mean``), else None."""
    if a.baseline != "mean":
        return None
    from ingest.attribution.engine import AttributionEngine
    return AttributionEngine(resolved.model, resolved.slots, replace(a, steps=1)).mean_baseline(resolved.reference[task])


def _accumulate(resolved: Resolved, config: IngestConfig, task: str, state_dir: Path,
                progress: Progress | None, budget: int | None) -> tuple[Any, int | None]:
    """Run (or resume) the task's batches; ``(None, 0)`` when the batch budget ran out first."""
    import torch

    from ingest.attribution.aggregate import GraphAccumulator
    from ingest.attribution.engine import AttributionEngine

    batch = resolved.batches[task]
    a = config.attribution
    mean = mean_baseline(resolved, a, task)
    n_nodes = [s.n_nodes for s in resolved.slots] + [1]
    path = state_path(state_dir, task)
    acc = (GraphAccumulator.from_state(torch.load(path, weights_only=False)) if path.is_file()
           else GraphAccumulator(a.beta, n_nodes))
    if acc.steps is None and a.steps == "auto":
        if budget is not None:
            if budget <= 0:
                return None, 0
            budget -= 1
        acc.steps, first = choose_steps(resolved, a, mean, batch[:config.batch_size], task)
        acc.add(first)
        save_state(acc, path)
    elif acc.steps is None:
        acc.steps = int(a.steps)
    engine = AttributionEngine(resolved.model, resolved.slots, replace(a, steps=acc.steps), mean=mean)
    starts = list(range(0, len(batch), config.batch_size))
    log.info("run %s: computing the %s graph (%d examples, %d batches done before)", state_dir.name, task,
             len(batch), acc.batches)
    if progress:
        progress(task, acc.n_examples, len(batch), _n_accumulated(acc))
    for i, start in enumerate(starts):
        if i < acc.batches:
            continue
        if budget is not None:
            if budget <= 0:
                return None, 0
            budget -= 1
        part = batch[start:start + config.batch_size]
        acc.add(engine.attribute(part))
        save_state(acc, path)
        if progress:
            progress(task, acc.n_examples, len(batch), _n_accumulated(acc))
    return acc, budget


def choose_steps(resolved: Resolved, a: AttributionConfig, mean: Any, part: Any, task: str) -> tuple[int, Any]:
    """``--steps auto``: the first K of AUTO_STEPS whose completeness residual on the task's
    first batch is within the tolerance (else the last), and that batch's graph at that K."""
    from ingest.attribution.aggregate import GraphAccumulator
    from ingest.attribution.config import AUTO_STEPS
    from ingest.attribution.engine import AttributionEngine

    for K in AUTO_STEPS:
        graph = AttributionEngine(resolved.model, resolved.slots, replace(a, steps=K), mean=mean).attribute(part)
        probe = GraphAccumulator(a.beta, [s.n_nodes for s in resolved.slots] + [1])
        probe.add(graph)
        worst = max(probe.completeness().values(), default=0.0)
        log.info("%s: completeness residual %.3g at K=%d (tolerance %g)", task, worst, K, a.tolerance)
        if worst <= a.tolerance:
            break
    return K, graph


def _n_accumulated(acc: Any) -> int:
    return sum(len(k) for k in acc.keys.values())


def save_state(acc: Any, path: Path) -> None:
    import torch
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(acc.state_dict(), tmp)
    os.replace(tmp, path)


def _write_task(writer: GraphWriter, resolved: Resolved, config: IngestConfig, record: RunRecord,
                task: str, acc: Any) -> TaskGraph:
    from graphdb.keys import node_key
    from ingest.graph_rows import (GraphNames, count_edges, edge_common, edge_rows, head_assignments, head_graph,
                                   head_report, in_head_rows, node_rows)

    a = config.attribution
    names = GraphNames(model=resolved.model_label, checkpoint=resolved.checkpoint, slots=tuple(resolved.slots),
                       n_layers=int(resolved.model.cfg.n_layers))
    heads = head_assignments(acc)
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for what, row, ends in node_rows(names, task, acc, heads):
        groups.setdefault((what, ends), []).append(row)
    task_key = node_key(Label.TASK, task=task)
    groups.setdefault((Label.TASK, None), []).append({"key": task_key, "name": task,
                                                       "spec": resolved.task_specs.get(task, task)})
    groups.setdefault((Rel.FOR_TASK, (Label.RUN, Label.TASK)), []).append({"src": record.key, "dst": task_key})
    nodes = features = 0
    for (what, ends), rows in sorted(groups.items(), key=lambda g: isinstance(g[0][0], Rel)):
        if isinstance(what, Rel):
            src, dst = ends or (Label.NODE, Label.NODE)
            writer.write_relationships(what, rows, src=src, dst=dst)
        else:
            writer.write_nodes(what, rows)
            nodes += len(rows) if what in (Label.FEATURE, Label.ERROR, Label.INPUT, Label.OUTPUT) else 0
            features += len(rows) if what is Label.FEATURE else 0
    from ingest.attribution.aggregate import drop_noise, select
    edges, noise = drop_noise({pair: acc.weights(pair) for pair in acc.keys}, a.noise_rel)
    edges = select(edges, a.threshold, a.top_k)
    writer.write_relationships(Rel.ATTRIBUTES_TO, edge_rows(names, task, edges),
                               common=edge_common(names, task, record.run_id, Granularity.FEATURE))
    writer.write_relationships(Rel.IN_HEAD, in_head_rows(names, task, heads, acc, record.run_id))
    coarse = head_graph(names, task, acc, heads, a.threshold, a.top_k)
    writer.write_relationships(Rel.ATTRIBUTES_TO, coarse,
                               common=edge_common(names, task, record.run_id, Granularity.HEAD))
    n = max(acc.n_examples, 1)
    residuals = {("output" if m == len(resolved.slots) else resolved.slots[m].hook): r
                 for m, r in acc.completeness().items()}
    worst = max(residuals.values(), default=0.0)
    converged = worst <= a.tolerance
    if not converged:
        log.info("%s: the integrated-gradients path has not converged at K=%d steps: completeness residual "
                    "%.3g at %s, above the tolerance %g (raise --steps, or --steps auto)", task, acc.steps, worst,
                    max(residuals, key=residuals.__getitem__), a.tolerance)
    writer.write_relationships(Rel.FOR_TASK, [{
        "src": record.key, "dst": task_key, "ig_steps": acc.steps, "residual": worst, "residual_tolerance": a.tolerance,
        "residual_output": residuals.get("output", 0.0),
        "residual_targets": [f"{k}={v:.6g}" for k, v in residuals.items()]}], src=Label.RUN, dst=Label.TASK)
    if noise:
        log.info("%s: %d edges below the noise floor (%g of their target's largest in-edge) not stored",
                 task, noise, a.noise_rel)
    return TaskGraph(task=task, examples=acc.n_examples, features=features, nodes=nodes, edges=count_edges(edges),
                     noise_dropped=noise, steps=acc.steps or 0, residuals=residuals, residual=worst, converged=converged,
                     head_edges=len(coarse), heads=head_report(names, heads, acc), metric_clean=acc.metric_clean / n, metric_base=acc.metric_base / n)
