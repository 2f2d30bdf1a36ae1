"""The two jobs on replacement graphs, as the CLI and notebooks call them.

* :func:`trace` — one prompt: load the model and transcoders, compute the full graph, prune,
  score, and (given a database) store the pruned graph under a ``trace`` run.
* :func:`ingest_task` — a task's prompts (``mechgraph ingest --graph transcoders``): one
  prompt graph per example, its target the task's logit difference (answer − counterfactual
  answer), each stored; then the position-free task graph aggregated from the stored graphs.

Both are idempotent: the run id is the hash of the configuration, prompt ids hash run, tokens
and targets, and every write MERGEs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from graphdb.provenance import RunRecord
from graphdb.writer import GraphWriter
from ingest.errors import SpecError, TaskError
from ingest.replacement.config import TASK_RUN_KIND, TraceConfig
from ingest.replacement.graph import PromptGraph
from ingest.replacement.prune import Layout, Pruned, Scores, masked, prune, scores
from mechgraph.errors import require_positive

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TraceRequest:
    """One prompt to trace. ``target``: ``None`` (salient logits) or ``"ANSWER/COUNTER"``
    (the logit difference of two single-token answers)."""

    model: str
    transcoders: str
    prompt: str
    target: str | None = None
    config: TraceConfig = field(default_factory=TraceConfig)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("the prompt is empty")
        if self.target is not None and len(self.target.split("/")) != 2:
            raise ValueError(f"a target is ANSWER/COUNTERFACTUAL_ANSWER (two tokens), got {self.target!r}")


@dataclass
class TraceResult:
    graph: PromptGraph
    pruned: Pruned
    full: Scores
    pruned_scores: Scores
    run: str
    prompt: str | None          # the stored prompt id (None when not stored)
    stored_nodes: int = 0
    stored_edges: int = 0
    seconds: float = 0.0

    @property
    def pruned_nodes(self) -> int:
        return int(self.pruned.node_mask.sum())

    @property
    def pruned_edges(self) -> int:
        return int((self.pruned.edge_mask & (self.graph.adjacency != 0)).sum())


def model_and_labels(model_spec: str, device: str) -> tuple[Any, str, str]:
    """The model and its (model label, checkpoint label) in the store."""
    from ingest.pipeline import model_labels
    from ingest.zoo.specs import load_model, parse_model_spec

    spec = parse_model_spec(model_spec)
    label, checkpoint, _ = model_labels(spec, "resid")
    return load_model(spec, device=device), label, checkpoint


def _token_id(model: Any, text: str) -> int:
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist()
    if len(ids) != 1:
        raise TaskError(f"target {text!r} is {len(ids)} tokens for this model's tokenizer; it must be one")
    return int(ids[0])


def prune_and_score(graph: PromptGraph, config: TraceConfig) -> tuple[Pruned, Scores, Scores]:
    layout = Layout(graph.n_features, graph.n_errors, graph.n_pos, graph.n_targets)
    p = prune(graph.adjacency, layout, graph.target_weights, node_threshold=config.node_threshold,
              edge_threshold=config.edge_threshold)
    return p, scores(graph.adjacency, layout, graph.target_weights), \
        scores(masked(graph.adjacency, p), layout, graph.target_weights)


def trace(request: TraceRequest, *, db: Any | None = None, progress: Progress | None = None,
          writer: GraphWriter | None = None, on_estimate: Callable[[Any], None] | None = None,
          remote: Any = None) -> TraceResult:
    """Trace one prompt; store it when ``db`` is given (see the module docstring). ``on_estimate``
    gets the run's :class:`~ingest.replacement.memory.MemoryEstimate` before the trace starts;
    ``remote`` computes the adjacency rows elsewhere (``trace --ray``, ingest/distributed/trace.py)."""
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.attribute import trace_prompt
    from ingest.replacement.store import GraphLabels, write_prompt_graph
    from ingest.replacement.targets import logit_diff_target

    t0 = time.perf_counter()
    model, label, checkpoint = model_and_labels(request.model, request.device)
    tcs = load_transcoders(request.transcoders, device=request.device)
    tokens = model.to_tokens(request.prompt)[0]
    targets = None
    if request.target is not None:
        a, c = request.target.split("/")
        targets = [logit_diff_target(_token_id(model, a), _token_id(model, c), model.W_U.detach(),
                                     model.b_U.detach(), model.tokenizer.decode)]
    if on_estimate is not None:
        from ingest.replacement.memory import estimate_memory

        on_estimate(estimate_memory(model, tcs, tokens, request.config, n_targets=None if targets is None else 1))
    graph = trace_prompt(model, tcs, tokens, request.config, prompt=request.prompt, targets=targets,
                         progress=progress, remote=remote)
    pruned, full, ps = prune_and_score(graph, request.config)
    record = RunRecord(kind="trace", seed=0, config={
        "model": request.model, "model_label": label, "checkpoint": checkpoint, "transcoders": request.transcoders,
        "transcoder_kind": tcs.kind, "target": request.target, "trace": request.config.as_dict()})
    result = TraceResult(graph=graph, pruned=pruned, full=full, pruned_scores=ps, run=record.run_id, prompt=None)
    if db is not None:
        writer = writer or GraphWriter(db)
        stored = write_prompt_graph(writer, graph, pruned, GraphLabels(label, checkpoint, tcs.kind), record,
                                    transcoders=request.transcoders, full=full, pruned_scores=ps)
        result.prompt, result.stored_nodes, result.stored_edges = stored.prompt, stored.nodes, stored.edges
    result.seconds = time.perf_counter() - t0
    return result


@dataclass(frozen=True)
class TaskTraceConfig:
    """``mechgraph ingest --graph transcoders``: a task's prompts through the replacement model."""

    model: str
    transcoders: str
    tasks: tuple[str, ...]
    examples: int = 8
    split: Literal["train", "test", "all"] = "test"
    seed: int = 0
    beta: Literal["mean", "sum"] = "mean"
    trace: TraceConfig = field(default_factory=TraceConfig)

    def __post_init__(self) -> None:
        if not self.transcoders:
            raise ValueError("--graph transcoders needs --transcoders SPEC")
        if not self.tasks:
            raise ValueError("name at least one task (--task)")
        require_positive(examples=self.examples)
        if self.beta not in ("mean", "sum"):
            raise ValueError(f"beta must be mean or sum for transcoder graphs, got {self.beta!r}")


@dataclass
class TaskTraceResult:
    task: str
    prompts: list[str]
    nodes: int
    edges: int
    task_edges: int
    replacement: float
    completeness: float
    seconds: float


@dataclass(frozen=True)
class ComputedPrompt:
    """One task prompt's replacement graph, pruned and scored, before it is stored."""

    graph: PromptGraph
    pruned: Pruned
    full: Scores
    pruned_scores: Scores


@dataclass(frozen=True)
class PromptOutcome:
    """What a stored task prompt came to (JSON-able: ``--ray`` saves it to resume)."""

    prompt: str
    nodes: int
    edges: int
    replacement: float
    completeness: float


@dataclass(frozen=True)
class TaskPrompts:
    """A task's prompts to run: ``spec`` as in ``TaskTraceConfig.tasks``, ``n`` prompts, the
    run id, and ``store(index, computed)``, which writes one computed prompt graph (the
    caller's process)."""

    run: str
    spec: str
    task: str
    n: int
    store: Callable[[int, ComputedPrompt], PromptOutcome]


#: run_prompts(prompts, progress) -> one outcome per prompt, in prompt order (``--ray``: ingest/distributed)
PromptRunner = Callable[[TaskPrompts, Progress | None], list[PromptOutcome]]


def task_prompts(config: TaskTraceConfig, spec: str, model: Any) -> tuple[list[Any], Any]:
    """The examples of task ``spec`` and their encoded batch (deterministic: seed and split)."""
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples

    task = get_task(spec)
    examples = task.examples(config.examples, seed=config.seed, split=config.split)
    if not examples:
        raise TaskError(f"task {task.name!r} produced no examples")
    return examples, encode_examples(model.tokenizer, examples)


def compute_prompt(model: Any, tcs: Any, batch: Any, examples: list[Any], i: int, config: TraceConfig) -> ComputedPrompt:
    """Prompt ``i``'s graph, its target the task's logit difference, pruned and scored."""
    from ingest.replacement.attribute import trace_prompt
    from ingest.replacement.targets import logit_diff_target

    tokens = batch.tokens[i, :int(batch.last[i]) + 1]
    target = logit_diff_target(int(batch.answer[i]), int(batch.cf_answer[i]), model.W_U.detach(),
                               model.b_U.detach(), model.tokenizer.decode)
    graph = trace_prompt(model, tcs, tokens, config, prompt=examples[i].clean, targets=[target])
    pruned, full, ps = prune_and_score(graph, config)
    return ComputedPrompt(graph, pruned, full, ps)


def ingest_task(db: Any, config: TaskTraceConfig, *, device: str = "cpu", progress: Progress | None = None,
                writer: GraphWriter | None = None, run_prompts: PromptRunner | None = None
                ) -> tuple[str, list[TaskTraceResult]]:
    """Trace and store every example's prompt graph per task, then write the task graph.
    ``run_prompts`` computes the prompt graphs elsewhere (``--ray``); they are stored here."""
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.aggregate import aggregate, read_prompt_edges, write_task_graph
    from ingest.replacement.store import GraphLabels, write_prompt_graph
    from ingest.tasks import get_task

    tasks = [get_task(t) for t in config.tasks]
    model, label, checkpoint = model_and_labels(config.model, device)
    tcs = load_transcoders(config.transcoders, device=device)
    record = RunRecord(kind=TASK_RUN_KIND, seed=config.seed, config={
        "model": config.model, "model_label": label, "checkpoint": checkpoint, "transcoders": config.transcoders,
        "transcoder_kind": tcs.kind, "tasks": list(config.tasks), "examples": config.examples,
        "split": config.split, "beta": config.beta, "trace": config.trace.as_dict()})
    writer = writer or GraphWriter(db)
    out = []
    for spec, task in zip(config.tasks, tasks, strict=True):
        t0 = time.perf_counter()
        examples, batch = task_prompts(config, spec, model)
        labels = GraphLabels(label, checkpoint, tcs.kind, task=task.name)

        def store(i: int, c: ComputedPrompt, labels: GraphLabels = labels) -> PromptOutcome:
            stored = write_prompt_graph(writer, c.graph, c.pruned, labels, record, transcoders=config.transcoders,
                                        full=c.full, pruned_scores=c.pruned_scores)
            return PromptOutcome(stored.prompt, stored.nodes, stored.edges, c.full.replacement, c.full.completeness)

        job = TaskPrompts(run=record.run_id, spec=spec, task=task.name, n=len(batch), store=store)
        if run_prompts is not None:
            outcomes = run_prompts(job, progress)
        else:
            outcomes = []
            for i in range(len(batch)):
                outcomes.append(store(i, compute_prompt(model, tcs, batch, examples, i, config.trace)))
                if progress:
                    progress(task.name, i + 1, len(batch))
        prompts = [o.prompt for o in outcomes]
        weights = aggregate(read_prompt_edges(db, prompts), len(prompts), config.beta)
        n_task = write_task_graph(writer, weights, record, model=label, checkpoint=checkpoint, task=task.name,
                                  dictionary=tcs.kind)
        out.append(TaskTraceResult(task=task.name, prompts=prompts, nodes=sum(o.nodes for o in outcomes),
                                   edges=sum(o.edges for o in outcomes), task_edges=n_task,
                                   replacement=sum(o.replacement for o in outcomes) / len(outcomes),
                                   completeness=sum(o.completeness for o in outcomes) / len(outcomes),
                                   seconds=time.perf_counter() - t0))
    return record.run_id, out


def check_transcoder_spec(spec: str | None, model: str = "") -> str:
    """The transcoder spec to use: ``spec``, or for a zoo model (``zoo:NAME[@CKPT]``) the zoo's
    per-layer transcoders of that checkpoint (``zoo build --transcoders`` makes them), and for
    ``smollm2-135m`` the zoo's SmolLM2 set (``zoo build --smollm2 --transcoders``)."""
    if spec:
        return spec
    if model.strip().startswith("zoo:") and "/" not in model:
        return model.strip()
    if model.strip() == "smollm2-135m":
        return "zoo:smollm2-135m"
    raise SpecError("name the transcoders with --transcoders SPEC (path:DIR, SPEC,SPEC,..., release:RELEASE, "
                    "zoo:NAME@CKPT[/clt]); only zoo models and smollm2-135m have a default")
