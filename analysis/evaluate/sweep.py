"""``mechgraph evaluate``: judge a stored graph by running it, with edge and node ablation.

The graph comes from Neo4j (the edges one ingest run wrote for one task, strongest first); the
model and dictionaries are rebuilt from that run's ``:Run`` configuration, and the masks go to
:mod:`ingest.ablation`. For a sweep of edge budgets (the top-n edges by |weight|, log-spaced
from 1% to 100% of the stored graph), both ablations of the *same* graph are measured:

* faithfulness  F = (m(G) − m(∅)) / (m(M) − m(∅)), with m the mean logit difference over the
  examples, M the full model and ∅ every node at its baseline;
* completeness  C = (m(M∖G) − m(∅)) / (m(M) − m(∅)): the same with G ablated and its complement
  kept (every other edge of the complete graph for edge ablation, every other node for node
  ablation; error nodes stay unless ``keep_errors`` is off);
* edges, nodes (the output included), average in-degree (edges / nodes) and density (edges /
  the edges a complete forward-ordered graph on the same nodes would have).

CPR and CMD (as in the MIB benchmark) are the areas under F and under |1 − F| against the
fraction of the stored graph's edges kept (trapezoid rule over the sweep). Results go to a CSV,
a PNG (faithfulness against edges, edge and node ablation on one chart) and ``:Evaluation``
nodes linked to the evaluation's ``:Run`` and to the ingest run they evaluate.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from analysis.evaluate.selection import EdgeSelection, Located, select_edges
from analysis.subgraph import ingest_run_config
from analysis.tasks import stored_tasks
from graphdb.keys import node_key
from graphdb.provenance import RunRecord
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter
from ingest.replacement.config import TASK_RUN_KIND
from mechgraph.errors import ConfigError
from queries.loader import run_query

Ablation = Literal["edge", "node"]
#: The most edge budgets one sweep measures: 100 log-spaced points between 1% and 100% of a
#: graph are finer than any curve needs, and each point runs the model once per ablation.
MAX_SWEEP = 100
#: progress(done, total) over (budget, ablation) evaluations
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvaluateConfig:
    """Which stored graph, which data, which ablations."""

    task: str
    run: str | None = None
    model: str | None = None
    examples: int = 32
    batch_size: int = 16
    split: Literal["train", "test"] = "test"
    seed: int = 0
    baseline: str | None = None  # None: the baseline the graph was ingested with
    ablations: tuple[Ablation, ...] = ("edge", "node")
    sweep: int = 10
    selection: EdgeSelection = field(default_factory=EdgeSelection)
    keep_errors: bool = True

    def __post_init__(self) -> None:
        if (self.run is None) == (self.model is None):
            raise ValueError("name the graph with exactly one of --run RUN or --model SPEC")
        if self.examples < 1 or self.batch_size < 1 or self.sweep < 1:
            raise ValueError("examples, batch_size and sweep must be at least 1")
        if self.sweep > MAX_SWEEP:
            raise ValueError(f"sweep is at most {MAX_SWEEP} edge budgets (log-spaced from 1% to 100% of the "
                             f"graph), got {self.sweep}")
        if not self.ablations or set(self.ablations) - {"edge", "node"}:
            raise ValueError(f"ablations are edge and/or node, got {self.ablations!r}")
        if self.baseline not in (None, "mean", "zero", "counterfactual"):
            raise ValueError(f"baseline must be mean, zero or counterfactual, got {self.baseline!r}")


@dataclass
class CurvePoint:
    ablation: str
    budget: int
    edges: int
    nodes: int
    avg_degree: float
    density: float
    faithfulness: float
    completeness: float
    logit_diff: float
    kl: float
    loss: float
    answer_prob: float
    baseline: str = ""  # the value an ablated node takes: mean, zero or counterfactual


@dataclass
class EvaluationResult:
    run: str
    graph_run: str
    model: str
    checkpoint: str
    task: str
    total_edges: int
    clean_logit_diff: float
    ablated_logit_diff: float
    baseline: str = ""
    budgets: list[int] = field(default_factory=list)
    """The distinct edge budgets measured: fewer than ``sweep`` when the graph is small."""
    points: list[CurvePoint] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    csv: Path | None = None
    png: Path | None = None
    seconds: float = 0.0


def evaluate(db: Any, config: EvaluateConfig, *, out_dir: Path, device: str = "cpu",
             progress: Progress | None = None) -> EvaluationResult:
    """Sweep edge budgets of a stored graph under edge and node ablation (module docstring)."""
    config = replace(config, task=stored_tasks(db, (config.task,))[0])  # jsonl:PATH or its stored name
    from ingest.attribution.config import AttributionConfig
    from ingest.attribution.engine import AttributionEngine
    from ingest.graph_rows import GraphNames
    from ingest.pipeline import IngestConfig, resolve
    from ingest.replacement.ablation import is_transcoder_run

    t0 = time.perf_counter()
    graph_run, run_cfg = _graph_run(db, config)
    if config.baseline is None:  # judge the graph against the baseline its edges were measured from
        # (a transcoder graph's direct effects are measured against absent sources: zero)
        default = "zero" if is_transcoder_run(run_cfg) else "counterfactual"
        config = replace(config, baseline=run_cfg.get("attribution", {}).get("baseline", default))
    if is_transcoder_run(run_cfg):  # a transcoder task graph: the replacement model runs it
        names, selected, sweep = _replacement_sweep(db, config, graph_run, run_cfg, device)
    elif config.selection.granularity == "component":  # whole components: analysis/evaluate/components.py
        from analysis.evaluate.components import component_sweep
        names, selected, sweep = component_sweep(db, config, graph_run, run_cfg, device=device, point=CurvePoint)
    else:
        if run_cfg.get("graph") == "component":
            raise ConfigError(f"{graph_run} is a component graph: evaluate it with --granularity component")
        ingest_cfg = IngestConfig(model=run_cfg["model"], tasks=(config.task,), dicts=tuple(run_cfg["dicts"]),
                                  include_embed=run_cfg.get("include_embed", True), examples=config.examples,
                                  split=config.split, seed=config.seed,
                                  attribution=AttributionConfig(baseline=config.baseline))
        resolved = resolve(ingest_cfg, device=device)
        engine = AttributionEngine(resolved.model, resolved.slots, ingest_cfg.attribution)
        if config.baseline == "mean":
            engine.mean = engine.mean_baseline(resolved.reference[config.task])
        names = GraphNames(model=resolved.model_label, checkpoint=resolved.checkpoint, slots=tuple(resolved.slots),
                           n_layers=int(resolved.model.cfg.n_layers))
        selected = select_edges(db, config.selection, run=graph_run, task=config.task, names=names)
        sweep = AblationSweep(engine, resolved.batches[config.task], config.batch_size, keep_errors=config.keep_errors)
    budgets = sweep_budgets(len(selected), config.sweep)
    result = EvaluationResult(run="", graph_run=graph_run, model=names.model, checkpoint=names.checkpoint,
                              task=config.task, total_edges=len(selected), clean_logit_diff=sweep.m_full,
                              ablated_logit_diff=sweep.m_empty, baseline=str(config.baseline), budgets=budgets)
    total, done = len(budgets) * len(config.ablations), 0
    for budget in budgets:
        for kind in config.ablations:
            shape = selected.shape(budget) if config.selection.granularity != "feature" else None
            result.points.append(sweep.point(selected.located, budget, kind, shape=shape))
            done += 1
            if progress:
                progress(done, total)
    result.summary = {kind: _areas([p for p in result.points if p.ablation == kind], len(selected))
                      for kind in config.ablations}
    record = RunRecord(kind="evaluate", seed=config.seed, config={**asdict(config), "graph_run": graph_run})
    result.run = record.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    result.csv = _write_csv(result, out_dir / f"{record.run_id}.csv")
    result.png = _plot(result, out_dir / f"{record.run_id}.png")
    _write_graph(db, record, result)
    result.seconds = time.perf_counter() - t0
    return result


def _replacement_sweep(db: Any, config: EvaluateConfig, graph_run: str, run_cfg: dict[str, Any],
                       device: str) -> tuple[Any, Any, AblationSweep]:
    """Key locator, selected edges and sweep of a transcoder task graph, run in the replacement
    model (:mod:`ingest.replacement.ablation`) rebuilt from the ingest run's configuration."""
    from ingest.replacement.ablation import replacement_setup

    engine, names, batch = replacement_setup(run_cfg, task=config.task, examples=config.examples,
                                             split=config.split, seed=config.seed,
                                             baseline=config.baseline, device=device)  # type: ignore[arg-type]
    selected = select_edges(db, config.selection, run=graph_run, task=config.task, names=names)
    return names, selected, AblationSweep(engine, batch, config.batch_size, keep_errors=config.keep_errors)


def sweep_budgets(total: int, points: int) -> list[int]:
    """Edge budgets: ``points`` log-spaced counts from 1% to 100% of ``total`` (distinct, sorted;
    one point: the whole graph). A small graph has fewer distinct budgets than ``points``
    (never more than ``total``); the duplicates are measured once."""
    if points == 1:
        return [total]
    return sorted({max(1, math.ceil(total * 10 ** (-2 + 2 * i / (points - 1)))) for i in range(points)})


class AblationSweep:
    """Runs graphs of one engine on one dataset: the batches are prepared (clean and baseline
    values) once, and m(M), m(∅) measured once; :meth:`point` measures one graph. A
    bidirectional model's prompts run grouped by length, unpadded (:meth:`TaskBatch.unpadded`),
    so every metric is each prompt's own, whatever the other prompts' lengths."""

    def __init__(self, engine: Any, batch: Any, batch_size: int, *, keep_errors: bool = True) -> None:
        import torch

        from ingest.ablation import GraphMask, edge_ablation, residual_starts

        self.node_ablation, self.edge_ablation = _ablations(engine)
        self.engine = engine
        self.keep_errors = keep_errors
        # A bidirectional model attends to right-padding (TransformerLens masks padding only in
        # causal attention): its prompts run grouped by length without padding, as in ingest.
        groups = [batch] if engine.causal else [g for _, g in batch.unpadded()]
        self.parts = [g[i:i + batch_size] for g in groups for i in range(0, len(g), batch_size)]
        self.preps = [engine.prepare(p) for p in self.parts]
        # where a dictionary engine's edge-ablation passes may start: a forward pass per batch, the
        # same for every graph (the replacement model's edge ablation has no such starts)
        self.starts = ([residual_starts(engine, p, prep) for p, prep in zip(self.parts, self.preps, strict=True)]
                       if self.edge_ablation is edge_ablation else [None] * len(self.parts))
        every = {s: torch.ones(sl.n_nodes, dtype=torch.bool) for s, sl in enumerate(engine.slots)}
        self.everything = GraphMask.complete(engine, every)
        self.clean = [self.node_ablation(engine, p, self.everything, prep) for p, prep in zip(self.parts, self.preps)]
        nothing = GraphMask(nodes={s: ~k for s, k in every.items()}, edges={})
        self.m_full = self.measure("node", self.everything)["logit_diff"]
        self.m_empty = self.measure("node", nothing)["logit_diff"]
        if abs(self.m_full - self.m_empty) < 1e-9:
            raise ConfigError("the logit difference does not change when every node is ablated; "
                              "faithfulness is undefined")

    def measure(self, kind: str, mask: Any) -> dict[str, float]:
        """Mean over the examples of each output metric, with ``mask`` ablated by ``kind``."""
        import torch

        from ingest.ablation import output_metrics

        run = self.edge_ablation if kind == "edge" else self.node_ablation
        per: dict[str, list[Any]] = {}
        for p, prep, c, starts in zip(self.parts, self.preps, self.clean, self.starts, strict=True):
            extra = {"starts": starts} if kind == "edge" and starts is not None else {}
            for k, v in output_metrics(run(self.engine, p, mask, prep, **extra), c, p).items():
                per.setdefault(k, []).append(v)
        return {k: float(torch.cat(v).mean()) for k, v in per.items()}

    def point(self, located: list[list[Located]], budget: int, kind: str, *,
              shape: tuple[int, int] | None = None) -> CurvePoint:
        """The graph of the ``budget`` strongest edges of ``located`` (per edge, strongest first,
        the feature-level edges (src slot, src index, dst slot, dst index) it stands for), kept
        and removed, under ``kind`` ablation. Nodes (the output included) and density are
        counted at feature level unless ``shape`` gives the coarse graph's (nodes, edges of the
        complete forward-ordered graph on them)."""
        from ingest.ablation import GraphMask

        engine, span = self.engine, self.m_full - self.m_empty
        mask = GraphMask.from_edges(engine, edge_sets([e for group in located[:budget] for e in group]),
                                    keep_errors=self.keep_errors)
        nodes, possible = shape or (mask.n_nodes, GraphMask.complete(engine, mask.nodes).n_edges)
        kept = self.measure(kind, mask)
        removed = self.measure(kind, mask.complement(engine, kind, keep_errors=self.keep_errors))
        return CurvePoint(ablation=kind, budget=budget, edges=budget, nodes=nodes,
                          avg_degree=budget / nodes, density=budget / max(possible, 1),
                          faithfulness=(kept["logit_diff"] - self.m_empty) / span,
                          completeness=(removed["logit_diff"] - self.m_empty) / span,
                          logit_diff=kept["logit_diff"], kl=kept["kl"], loss=kept["loss"],
                          answer_prob=kept["answer_prob"], baseline=str(engine.config.baseline))


def _ablations(engine: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Node and edge ablation for ``engine``: a transcoder replacement model runs its own."""
    from ingest.replacement.ablation import ReplacementEngine

    if isinstance(engine, ReplacementEngine):
        from ingest.replacement import ablation as replacement
        return replacement.node_ablation, replacement.edge_ablation
    from ingest import ablation
    return ablation.node_ablation, ablation.edge_ablation


def _graph_run(db: Any, config: EvaluateConfig) -> tuple[str, dict[str, Any]]:
    """The ingest run to evaluate and its configuration."""
    if config.run is not None:
        rows = run_query(db, "run_config", {"run": config.run})
        if rows and rows[0]["kind"] == TASK_RUN_KIND:  # `ingest --graph transcoders`: its own configuration
            return config.run, json.loads(rows[0]["config"])
        if rows and rows[0]["kind"] == "roi":  # an ROI-level graph: the model is the ingest run's
            if config.selection.granularity != "roi":
                raise ConfigError(f"{config.run} is a roi run: its graph is read with --granularity roi")
            inner = run_query(db, "run_config", {"run": json.loads(rows[0]["config"])["ingest_run"]})
            return config.run, json.loads(inner[0]["config"])
        return config.run, ingest_run_config(db, config.run)
    if config.selection.granularity == "roi":
        raise ConfigError("an ROI-level graph is named by its roi run: --run ROI_RUN (`mechgraph roi fit` prints it)")
    from ingest.pipeline import model_labels
    from ingest.zoo.specs import parse_model_spec

    label, checkpoint, _ = model_labels(parse_model_spec(config.model or ""), "resid")
    rows = run_query(db, "latest_run",
                     {"kind": "ingest", "model": label, "checkpoint": checkpoint, "task": config.task})
    if not rows:
        raise ConfigError(f"no ingested {config.task} graph of {label} @ {checkpoint}: run `mechgraph ingest` first")
    return rows[0]["run"], json.loads(rows[0]["config"])


def edge_sets(located: list[Located]) -> dict[tuple[int, int], Any]:
    """[(src slot, src index, dst slot, dst index)] -> {(s, m): Edges-like with dst/src tensors}."""
    import torch

    from ingest.attribution.aggregate import Edges

    grouped: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for s, u, m, d in located:
        grouped.setdefault((s, m), []).append((d, u))
    return {pair: Edges(dst=torch.tensor([d for d, _ in du]), src=torch.tensor([u for _, u in du]),
                        weight=torch.ones(len(du))) for pair, du in grouped.items()}


def _areas(points: list[CurvePoint], total: int) -> dict[str, float]:
    """CPR (area under F) and CMD (area under |1 - F|) against the fraction of edges kept."""
    pts = sorted(points, key=lambda p: p.edges)
    xs = [0.0] + [p.edges / total for p in pts]
    fs = [0.0] + [p.faithfulness for p in pts]
    cpr = sum((xs[i + 1] - xs[i]) * (fs[i + 1] + fs[i]) / 2 for i in range(len(xs) - 1))
    cmd = sum((xs[i + 1] - xs[i]) * (abs(1 - fs[i + 1]) + abs(1 - fs[i])) / 2 for i in range(len(xs) - 1))
    return {"cpr": cpr, "cmd": cmd}


def _write_csv(result: EvaluationResult, path: Path) -> Path:
    fields = list(asdict(result.points[0]))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(asdict(p) for p in result.points)
    return path


def _plot(result: EvaluationResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for kind, style in (("edge", "o-"), ("node", "s--")):
        pts = sorted((p for p in result.points if p.ablation == kind), key=lambda p: p.edges)
        if pts:
            area = result.summary[kind]
            ax.plot([p.edges for p in pts], [p.faithfulness for p in pts], style,
                    label=f"{kind} ablation (CPR {area['cpr']:.2f}, CMD {area['cmd']:.2f})")
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("edges kept (top |weight| of the stored graph)")
    ax.set_ylabel("faithfulness F")
    ax.set_title(f"{result.model} @ {result.checkpoint}, {result.task} ({result.graph_run}), "
                 f"{result.baseline} baseline", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _write_graph(db: Any, record: RunRecord, result: EvaluationResult) -> None:
    """``:Evaluation`` nodes (one per curve point, one summary per ablation), linked to the runs."""
    writer = GraphWriter(db)
    writer.write_nodes(Label.RUN, [record.row()])
    base = {"run": record.run_id, "graph_run": result.graph_run, "model": result.model,
            "checkpoint": result.checkpoint, "task": result.task, "baseline": result.baseline}
    rows = [{"key": node_key(Label.EVALUATION, run=record.run_id, name=f"{p.ablation}-{p.budget}"),
             "name": f"{p.ablation}-{p.budget}", **base, **asdict(p)} for p in result.points]
    rows += [{"key": node_key(Label.EVALUATION, run=record.run_id, name=f"{kind}-summary"), "name": f"{kind}-summary",
              "ablation": kind, **base, **areas, "csv": str(result.csv), "png": str(result.png)}
             for kind, areas in result.summary.items()]
    writer.write_nodes(Label.EVALUATION, rows)
    graph_key = node_key(Label.RUN, run=result.graph_run)
    writer.write_relationships(Rel.PRODUCED_BY, [{"src": r["key"], "dst": record.key} for r in rows],
                               src=Label.EVALUATION, dst=Label.RUN)
    writer.write_relationships(Rel.EVALUATES, [{"src": r["key"], "dst": graph_key} for r in rows],
                               src=Label.EVALUATION, dst=Label.RUN)
