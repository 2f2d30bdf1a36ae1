"""``mechgraph demo``: the whole pipeline, end to end, on the embedded Neo4j (the README's main job).

Stages (each a library call, timed; the summary prints where everything went):

1. **zoo**: build the toy models (cached after the first build: two sizes, log-spaced training
   checkpoints, an SAE per hook and checkpoint);
2. **ingest**: the residual-stream graph of the small model for every task at every chosen
   checkpoint, and of the large model at its final checkpoint;
3. **communities**: Leiden on each ingested multi-task graph, written back;
4. **ROIs**: covariance + SBM Regions of Interest of the small model's final dictionaries;
5. **evaluate**: faithfulness and completeness curves (edge vs node ablation) of one task;
6. **shortcut**: the gender-shortcut showcase (node vs edge ablation);
7. analyses registered in :data:`EXTRA_STAGES` (task disentanglement with the kill table,
   matching across checkpoints and sizes);
8. **transcoders**: the zoo's TopK transcoders (a cached step), one traced prompt graph of the
   final small model, and the transcoder task graph of the evaluated task with its communities;
9. **report**: one HTML page read back from the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphdb.connection import connect
from graphdb.embedded import ensure_running


@dataclass(frozen=True)
class DemoConfig:
    small: str = "mt-small"
    large: str = "mt-large"
    tasks: tuple[str, ...] = ("ioi", "induction", "greater_than")
    #: training steps of the small model to ingest besides the final one (the nearest stored
    #: checkpoints are used)
    steps: tuple[int, ...] = (171, 717)
    examples: int = 32
    eval_task: str = "ioi"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if len(self.tasks) < 2:
            raise ValueError("the demo compares tasks: name at least two")
        if self.examples < 4:
            raise ValueError("examples must be at least 4")
        from ingest.tasks.registry import MAX_GENERATED_EXAMPLES

        if self.examples > MAX_GENERATED_EXAMPLES:
            raise ValueError(f"examples is at most {MAX_GENERATED_EXAMPLES:,} per task, got {self.examples:,}")
        if any(step < 0 for step in self.steps):
            raise ValueError(f"steps are training steps, at least 0, got {list(self.steps)}")
        if self.eval_task not in self.tasks:
            raise ValueError(f"eval_task {self.eval_task!r} is not one of the tasks")


@dataclass
class DemoState:
    """What the stages produced, for later stages and the summary."""

    config: DemoConfig
    data: Path
    db: Any
    uri: str = ""
    #: (model, checkpoint label) -> ingest run id, in ingest order
    ingests: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (model, checkpoint label) -> communities run id
    communities: dict[tuple[str, str], str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)


Stage = Callable[[DemoState, Any], None]
#: (name, stage) run after the built-in analyses and before the report
EXTRA_STAGES: list[tuple[str, Stage]] = []


def _stage_zoo(state: DemoState, bars: Any) -> None:
    from ingest.zoo.build import build_zoo
    from ingest.zoo.store import zoo_root

    result = build_zoo(zoo_root(None), only=(state.config.small, state.config.large), device=state.config.device,
                       progress=bars if bars else _no_bars)
    state.lines.append(f"zoo: built {', '.join(result.built) or 'nothing'}; cached {', '.join(result.cached) or 'nothing'}")


def _no_bars(description: str, total: int) -> Any:
    return lambda n: None


def _checkpoint_steps(model: str, wanted: tuple[int, ...]) -> list[int]:
    """The stored checkpoints nearest to ``wanted``, plus the final one (sorted, distinct)."""
    from ingest.zoo.specs import zoo_manifest, zoo_model_dir

    steps = [int(c["step"]) for c in zoo_manifest(zoo_model_dir(model), model)["checkpoints"]]
    chosen = {min(steps, key=lambda s, w=w: abs(s - w)) for w in wanted} | {steps[-1]}
    return sorted(chosen)


def _stage_ingest(state: DemoState, bars: Any) -> None:
    from ingest.attribution.config import AttributionConfig
    from ingest.pipeline import IngestConfig, ingest

    cfg = state.config
    specs = [f"zoo:{cfg.small}@{s}" for s in _checkpoint_steps(cfg.small, cfg.steps)] + [f"zoo:{cfg.large}@final"]
    for spec in specs:
        result = ingest(state.db, IngestConfig(model=spec, tasks=cfg.tasks, examples=cfg.examples, seed=cfg.seed,
                                               attribution=AttributionConfig(threshold=0.01)),
                        state_root=state.data / "runs", device=cfg.device,
                        progress=bars.ingest(f"{spec} ") if bars else None)
        state.ingests[result.model, result.checkpoint] = result.run
        sizes = ", ".join(f"{t.task} {t.nodes}/{t.edges}" for t in result.tasks)
        state.lines.append(f"ingest {result.model} @ {result.checkpoint}: run {result.run} (nodes/edges {sizes}, "
                           f"{result.seconds:.0f} s)")


def _stage_communities(state: DemoState, bars: Any) -> None:
    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph

    for (model, ckpt), run in state.ingests.items():
        sub = pull_subgraph(state.db, Selection(model, ckpt, state.config.tasks, run=run))
        config = CommunityConfig(method="leiden", seed=state.config.seed)
        part = partition(sub, config)
        comm_run = write_communities(state.db, sub, part, config)
        state.communities[model, ckpt] = comm_run
        sizes = sorted((int(n) for n in _sizes(part.labels[0])), reverse=True)
        state.lines.append(f"communities {model} @ {ckpt}: {len(sizes)} (sizes {sizes[:6]}), modularity "
                           f"{part.modularity[0]:.3f}, run {comm_run}")


def _sizes(labels: Any) -> Any:
    import numpy as np

    return np.bincount(np.asarray(labels))


def final_small(state: DemoState) -> tuple[tuple[str, str], str]:
    small = [(k, r) for k, r in state.ingests.items() if k[0] == state.config.small]
    return small[-1]


def _stage_rois(state: DemoState, bars: Any) -> None:
    from analysis.roi.fit import RoiConfig, fit_run_rois

    (model, ckpt), run = final_small(state)
    result = fit_run_rois(state.db, RoiConfig(tasks=state.config.tasks, run=run, seed=state.config.seed),
                          out_root=state.data / "rois", device=state.config.device)
    for d in result.rois:
        state.lines.append(f"ROIs {model} @ {ckpt} {d.hook}: {len(set(d.labels.tolist()))} ROIs over "
                           f"{len(d.indices)} latents; decoder cosine {d.cosine.overall:.3f} vs random "
                           f"{d.cosine.overall_baseline:.3f} (z {d.cosine.overall_z:.1f}), correlation "
                           f"{d.correlation.overall:.3f} vs {d.correlation.overall_baseline:.3f}")
    state.results["rois"] = result


def _stage_evaluate(state: DemoState, bars: Any) -> None:
    from analysis.evaluate.sweep import EvaluateConfig, evaluate

    (model, ckpt), run = final_small(state)
    result = evaluate(state.db, EvaluateConfig(task=state.config.eval_task, run=run, examples=state.config.examples),
                      out_dir=state.data / "evaluations", device=state.config.device)
    areas = "; ".join(f"{k} CPR {a['cpr']:.3f} CMD {a['cmd']:.3f}" for k, a in result.summary.items())
    state.lines.append(f"evaluate {model} @ {ckpt} {state.config.eval_task}: {areas}; plot {result.png}")


def _stage_shortcut(state: DemoState, bars: Any) -> None:
    from analysis.evaluate.shortcut import ShortcutConfig, run_shortcut

    (model, ckpt), _ = final_small(state)
    spec = f"zoo:{model}@final"
    result = run_shortcut(ShortcutConfig(model=spec, seed=state.config.seed), device=state.config.device)
    name = spec.replace(":", "-").replace("@", "-")
    path = result.write_csv(state.data / "evaluations" / f"shortcut-{name}.csv")
    clean, node, edge = result.rows
    state.lines.append(f"shortcut {spec}: gap {clean.shortcut_gap:.1f} -> node {node.shortcut_gap:.1f} / edge "
                       f"{edge.shortcut_gap:.1f}; pronoun logit diff {clean.pronoun_logit_diff:.2f} -> node "
                       f"{node.pronoun_logit_diff:.2f} / edge {edge.pronoun_logit_diff:.2f} ({path})")


def _stage_disentangle(state: DemoState, bars: Any) -> None:
    from analysis.disentangle.measure import DisentangleConfig, disentangle

    (model, ckpt), run = final_small(state)
    result = disentangle(state.db, DisentangleConfig(model=f"zoo:{model}@final", tasks=state.config.tasks, run=run,
                                                     examples=state.config.examples, seed=state.config.seed),
                         out_root=state.data / "disentangle", device=state.config.device)
    a = result.analysis
    state.results["disentangle"] = result
    state.lines.append(f"disentangle {model} @ {ckpt}: {len(a.purity)} communities, NMI {a.nmi:.3f}, ARI {a.ari:.3f}, "
                       f"{a.null} null NMI {a.null_mean:.3f} ± {a.null_std:.3f}, z = {a.z:.1f}; kill table "
                       f"{result.csv}")


def _stage_matching(state: DemoState, bars: Any) -> None:
    from analysis.matching.features import FeatureMatchConfig, match_features, write_feature_matches
    from analysis.matching.sizes import SizesConfig, compare_sizes, save_sizes
    from analysis.matching.timeline import TimelineConfig, build_timeline, save_timeline
    from ingest.zoo.specs import zoo_manifest, zoo_model_dir

    cfg = state.config
    small = [ck for (m, ck) in state.ingests if m == cfg.small]
    n_layers = int(zoo_manifest(zoo_model_dir(cfg.small), cfg.small)["config"]["n_layers"])
    hooks = tuple(f"blocks.{L}.hook_resid_post" for L in range(n_layers))
    for a, b in zip(small, small[1:], strict=False):
        result = match_features(FeatureMatchConfig(model=f"zoo:{cfg.small}", from_checkpoint=a, to_checkpoint=b,
                                                   hooks=hooks, method="cosine", seed=cfg.seed), device=cfg.device)
        run = write_feature_matches(state.db, result)
        pairs = [m for h in result.hooks for m in h.matches.values()]
        mean = sum(float(m.score.sum()) for m in pairs) / max(sum(len(m) for m in pairs), 1)
        state.lines.append(f"match {cfg.small} {a} -> {b}: {sum(len(m) for m in pairs)} latent pairs by decoder "
                           f"cosine (mean {mean:.3f}), run {run}")
    timeline = build_timeline(state.db, TimelineConfig(
        model=cfg.small, communities=tuple(state.communities[cfg.small, ck] for ck in small), tasks=cfg.tasks))
    save_timeline(timeline, state.data / "matching")
    state.results["timeline"] = timeline
    emerged = {f.rsplit("|", 1)[-1]: c.emergence for f, c in timeline.chains.items()}
    state.lines.append(f"timeline {cfg.small}: emergence step per final community {emerged}; plot {timeline.png}")
    large = [ck for (m, ck) in state.ingests if m == cfg.large]
    if large:
        sizes = compare_sizes(state.db, SizesConfig(
            small=cfg.small, large=cfg.large, small_run=state.communities[cfg.small, small[-1]],
            large_run=state.communities[cfg.large, large[-1]], tasks=cfg.tasks, examples=cfg.examples,
            seed=cfg.seed), device=cfg.device)
        save_sizes(sizes, state.data / "matching")
        state.results["sizes"] = sizes
        recur = sum(bool(r["recurs"]) for r in sizes.rows)
        state.lines.append(f"sizes {cfg.small} vs {cfg.large}: {recur} of {len(sizes.rows)} paired communities recur "
                           f"(activation similarity >= 0.5 and the same dominant task); table {sizes.csv}")


def _stage_transcoders(state: DemoState, bars: Any) -> None:
    """The zoo's transcoders (a cached step), one traced prompt of the final small model, and
    the transcoder task graph of the evaluated task, partitioned like the others."""
    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph
    from graphdb.schema import Granularity
    from ingest.pipeline import model_labels
    from ingest.replacement.jobs import TaskTraceConfig, TraceRequest, ingest_task, trace
    from ingest.tasks import get_task
    from ingest.zoo.specs import parse_model_spec
    from ingest.zoo.store import zoo_root
    from ingest.zoo.transcoder_build import build_zoo_transcoders

    cfg = state.config
    say = bars.progress.console.log if bars else (lambda s: None)
    built, cached = build_zoo_transcoders(zoo_root(None), device=cfg.device, say=say)
    spec = f"zoo:{cfg.small}@final"
    example = get_task(cfg.eval_task).examples(1, seed=cfg.seed, split="test")[0]
    t = trace(TraceRequest(model=spec, transcoders=spec, prompt=example.clean, device=cfg.device), db=state.db)
    state.results["trace"] = t
    state.lines.append(f"transcoders: built {', '.join(built) or 'nothing'}; cached {', '.join(cached) or 'nothing'}. "
                       f"trace {spec} {example.clean!r}: {t.graph.n_nodes} nodes, {t.pruned_nodes} after pruning "
                       f"({t.pruned_edges} edges), replacement {t.full.replacement:.3f}, completeness "
                       f"{t.full.completeness:.3f}; prompt {t.prompt}")
    run, results = ingest_task(state.db, TaskTraceConfig(model=spec, transcoders=spec, tasks=(cfg.eval_task,),
                                                         examples=min(cfg.examples, 8), seed=cfg.seed),
                               device=cfg.device)
    r = results[0]
    model, ckpt, _ = model_labels(parse_model_spec(spec), "resid")   # the labels the trace stored
    sub = pull_subgraph(state.db, Selection(model, ckpt, (cfg.eval_task,), run=run,
                                            granularity=str(Granularity.FEATURE)))
    config = CommunityConfig(method="leiden", seed=cfg.seed)
    part = partition(sub, config)
    comm_run = write_communities(state.db, sub, part, config)
    state.lines.append(f"transcoder task graph {model} @ {ckpt} {cfg.eval_task}: run {run}, {len(r.prompts)} prompts, "
                       f"{r.task_edges} task edges, mean replacement {r.replacement:.3f}; communities "
                       f"{len(_sizes(part.labels[0]))}, modularity {part.modularity[0]:.3f} (run {comm_run})")


def _stage_report(state: DemoState, bars: Any) -> None:
    from analysis.report.html import write_report

    state.report = write_report(state.db, state.data, state.data / "report" / "index.html",
                                title="mechgraph demo: the model zoo")


STAGES: list[tuple[str, Stage]] = [("zoo", _stage_zoo), ("ingest", _stage_ingest), ("communities", _stage_communities),
                                   ("ROIs", _stage_rois), ("evaluate", _stage_evaluate), ("shortcut", _stage_shortcut),
                                   ("disentangle", _stage_disentangle), ("matching", _stage_matching),
                                   ("transcoders", _stage_transcoders)]


def run_demo(data_dir: Path, config: DemoConfig | None = None, *, bars: Any = None) -> DemoState:
    """Run every stage (module docstring) and return what they produced."""
    config = config or DemoConfig()
    ensure_running(data_dir)
    stages = STAGES + EXTRA_STAGES + [("report", _stage_report)]
    with connect(data=data_dir) as db:
        state = DemoState(config=config, data=data_dir, db=db, uri=db.settings.uri)
        overall = bars.progress.add_task("mechgraph demo", total=len(stages)) if bars else None
        for name, stage in stages:
            if bars:
                bars.progress.update(overall, description=f"mechgraph demo: {name}")
            t = time.perf_counter()
            stage(state, bars)
            state.seconds[name] = time.perf_counter() - t
            if bars:
                bars.progress.advance(overall)
                bars.progress.console.log(f"{name}: done in {state.seconds[name]:.0f} s")
    return state
