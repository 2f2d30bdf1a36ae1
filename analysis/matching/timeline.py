"""When did each community of the final checkpoint emerge, and what did it do on the way?

Reads the community runs (``mechgraph communities``) of one model at several checkpoints (named,
or the newest run per checkpoint), and the feature ``MATCHES`` between consecutive checkpoints
(``mechgraph match features``). Communities of consecutive checkpoints are matched by the Jaccard
overlap of their members after mapping the earlier members through the matches
(:func:`analysis.matching.match_communities`); members that are not features (error nodes, the
embedding input, the outputs) are the same node at every checkpoint, so they map to the key with
the later checkpoint. A final community's emergence is the first checkpoint of its unbroken
chain of matches (:func:`analysis.matching.emergence_chains`).

Task alignment along a chain: a mapping ``community key -> (dominant task, purity)`` when one is
given (e.g. from a disentanglement analysis), else computed here: per task, the sum of |w| over
the community run's graph edges (same selection: run, granularity, minimum weight) with at
least one endpoint in the community; the dominant task is the largest, its purity its share.

Outputs: a CSV (one row per community on a chain) and a PNG (x: checkpoint step, log scale; one
row per final community; a marker where its chain exists, coloured by dominant task, sized and
shaded by purity).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analysis.matching.core import Chain, CommunityMatch, dominant_task, emergence_chains, incident_weight, match_communities
from analysis.tasks import stored_tasks
from graphdb.keys import node_key, parse_key
from graphdb.schema import Label
from graphdb.writer import cypher_template
from mechgraph.errors import ConfigError

#: community key -> (dominant task, purity)
Alignment = Mapping[str, tuple[str | None, float]]


@dataclass(frozen=True)
class TimelineConfig:
    """``model``: the stored model name (``mt-small``). ``communities``: community run ids (any
    order, one per checkpoint); empty: the newest run of every checkpoint that has one."""

    model: str
    communities: tuple[str, ...] = ()
    level: int = 0
    min_jaccard: float = 0.1
    method: str = "*"
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.model or ":" in self.model or "@" in self.model:
            raise ValueError(f"name the model as stored, e.g. mt-small (not a spec), got {self.model!r}")
        if len(set(self.communities)) != len(self.communities):
            raise ValueError("a community run is named twice")
        if not 0 <= self.min_jaccard <= 1:
            raise ValueError(f"min_jaccard is in [0, 1], got {self.min_jaccard}")
        if self.level < 0:
            raise ValueError(f"level must be >= 0, got {self.level}")


@dataclass
class CommunityRun:
    """One community run: its checkpoint and step, the selection its graph came from, and its
    communities (key -> member keys)."""

    run: str
    checkpoint: str
    step: int
    tasks: tuple[str, ...]
    selection: dict[str, Any]
    communities: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Timeline:
    model: str
    runs: list[CommunityRun]
    links: list[list[CommunityMatch]]
    chains: dict[str, Chain]
    alignment: dict[str, tuple[str | None, float]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    csv: Path | None = None
    png: Path | None = None


def step_of(checkpoint: str) -> int:
    """The training step of a ``step-N`` checkpoint label."""
    try:
        return int(str(checkpoint).removeprefix("step-"))
    except ValueError:
        raise ConfigError(f"checkpoint {checkpoint!r} is not a training step (step-N)") from None


def community_runs(db: Any, model: str, runs: Sequence[str] = (), level: int = 0) -> list[CommunityRun]:
    """The named community runs of ``model`` (or the newest per checkpoint), oldest step first,
    with their members."""
    rows = db.read(cypher_template("match_community_runs"), {"model": model, "level": level})
    if runs:
        have = {r["run"]: r for r in rows}
        missing = [r for r in runs if r not in have]
        if missing:
            raise ConfigError(f"no community run {', '.join(missing)} of {model} at level {level} "
                              "(`mechgraph query run runs` lists runs)")
        chosen = [have[r] for r in runs]
    else:
        newest: dict[str, dict[str, Any]] = {}
        for r in rows:  # newest first within a checkpoint
            newest.setdefault(r["checkpoint"], r)
        chosen = list(newest.values())
    out = []
    for r in chosen:
        config = json.loads(r["config"] or "{}")
        cr = CommunityRun(run=r["run"], checkpoint=r["checkpoint"], step=step_of(r["checkpoint"]),
                          tasks=tuple(r["tasks"] or ()), selection=config.get("selection", {}))
        for c in db.read(cypher_template("match_community_sets"), {"run": r["run"], "level": level}):
            cr.communities[c["community"]] = list(c["members"])
        out.append(cr)
    steps = [c.step for c in out]
    if len(set(steps)) != len(steps):
        raise ConfigError(f"two community runs of {model} are at the same checkpoint; name one per checkpoint")
    return sorted(out, key=lambda c: c.step)


def translation(db: Any, model: str, earlier: str, later: str, method: str = "*") -> dict[str, str]:
    """Earlier feature key -> later feature key from the stored MATCHES (the best-scoring one when
    several runs or methods matched a feature)."""
    rows = db.read(cypher_template("match_feature_pairs"), {"model": model, "from_checkpoint": earlier,
                                                            "to_checkpoint": later, "method": method})
    out: dict[str, str] = {}
    for r in rows:  # strongest first
        out.setdefault(r["source"], r["target"])
    return out


def move_to_checkpoint(key: str, checkpoint: str) -> str | None:
    """The same non-feature node (error, input, output, head) at another checkpoint; None for a
    feature or a node without a checkpoint (those are matched, not moved)."""
    label, parts = parse_key(key)
    if label is Label.FEATURE or "checkpoint" not in parts:
        return None
    return node_key(label, **{**parts, "checkpoint": checkpoint})


def _translator(feature_map: Mapping[str, str], checkpoint: str) -> Callable[[str], str | None]:
    def translate(key: str) -> str | None:
        return feature_map.get(key) or move_to_checkpoint(key, checkpoint)
    return translate


def community_alignment(db: Any, run: CommunityRun, tasks: Sequence[str] = ()) -> dict[str, tuple[str | None, float]]:
    """(dominant task, purity) of each community of ``run`` from per-task incident |w| (module
    docstring); tasks default to the run's own."""
    from analysis.subgraph import Selection, pull_subgraph

    sel = run.selection
    weights: dict[str, dict[str, float]] = {c: {} for c in run.communities}
    model = sel.get("model") or parse_key(next(iter(next(iter(run.communities.values())))))[1]["model"]
    for task in tasks or run.tasks:
        selection = Selection(model=model, checkpoint=run.checkpoint, tasks=(task,), run=sel.get("run", "*"),
                              granularity=sel.get("granularity", "feature"),
                              min_abs_weight=float(sel.get("min_abs_weight", 0.0)))
        try:
            sub = pull_subgraph(db, selection)
        except ConfigError:  # this task has no graph at this checkpoint: it weighs nothing here
            continue
        index = sub.index()
        for c, members in run.communities.items():
            weights[c][task] = incident_weight(sub.matrix, index, members)
    return {c: dominant_task(w) for c, w in weights.items()}


def build_timeline(db: Any, config: TimelineConfig, *, alignment: Alignment | None = None) -> Timeline:
    """Match the communities of consecutive checkpoints and follow the final ones back."""
    config = replace(config, tasks=stored_tasks(db, config.tasks))  # jsonl:PATH or its stored name
    runs = community_runs(db, config.model, config.communities, config.level)
    if len(runs) < 2:
        raise ConfigError(f"a timeline needs community runs at two or more checkpoints of {config.model}; found "
                          f"{len(runs)} (run `mechgraph communities` on each checkpoint's graph)")
    links = []
    for early, late in zip(runs, runs[1:], strict=False):
        feature_map = translation(db, config.model, early.checkpoint, late.checkpoint, config.method)
        if not feature_map:
            raise ConfigError(f"no feature MATCHES from {early.checkpoint} to {late.checkpoint} of {config.model}; "
                              f"run `mechgraph match features --model zoo:{config.model} --from {early.step} "
                              f"--to {late.step}` first")
        links.append(match_communities(early.communities, late.communities, _translator(feature_map, late.checkpoint),
                                       min_jaccard=config.min_jaccard))
    chains = emergence_chains([r.step for r in runs], links, sorted(runs[-1].communities,
                                                                     key=lambda k: parse_key(k)[1]["index"].zfill(9)))
    if alignment is None:
        on_chains = {c for ch in chains.values() for c in ch.communities}
        got: dict[str, tuple[str | None, float]] = {}
        for run in runs:
            if on_chains & set(run.communities):
                got |= community_alignment(db, run, config.tasks)
        alignment = got
    timeline = Timeline(model=config.model, runs=runs, links=links, chains=chains, alignment=dict(alignment))
    timeline.rows = timeline_rows(timeline)
    return timeline


def timeline_rows(t: Timeline) -> list[dict[str, Any]]:
    """One row per community on a chain: the final community, the step, the community there,
    its size, the overlap of the link to the next checkpoint, its dominant task and purity."""
    size = {c: len(m) for r in t.runs for c, m in r.communities.items()}
    ckpt = {r.step: r.checkpoint for r in t.runs}
    rows = []
    for final, chain in t.chains.items():
        for k, (step, comm) in enumerate(zip(chain.steps, chain.communities, strict=True)):
            task, purity = t.alignment.get(comm, (None, 0.0))
            rows.append({"final": final, "emergence_step": chain.emergence, "step": step, "checkpoint": ckpt[step],
                         "community": comm, "size": size.get(comm, 0),
                         "jaccard_next": chain.jaccard[k] if k < len(chain.jaccard) else None,
                         "dominant_task": task, "purity": purity})
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def plot_timeline(t: Timeline, path: Path) -> Path:
    """The emergence plot (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals = list(t.chains)
    tasks = sorted({r["dominant_task"] or "none" for r in t.rows})
    colours = {task: plt.get_cmap("tab10")(i % 10) for i, task in enumerate(tasks)}
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(finals) + 1.6))
    steps = [r.step for r in t.runs]
    for y, final in enumerate(finals):
        mine = [r for r in t.rows if r["final"] == final]
        ax.plot([r["step"] for r in mine], [y] * len(mine), color="0.8", lw=1, zorder=1)
        for r in mine:
            p = float(r["purity"] or 0.0)
            ax.scatter(r["step"], y, s=20 + 180 * p, color=colours[r["dominant_task"] or "none"],
                       alpha=0.25 + 0.75 * p, edgecolors="k", linewidths=0.3, zorder=2)
    for task, colour in colours.items():
        ax.scatter([], [], color=colour, label=task)
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xticks([], minor=True)  # no log-scale minor labels over the checkpoint labels
    ax.set_yticks(range(len(finals)), [f"#{parse_key(f)[1]['index']}" for f in finals])
    ax.invert_yaxis()
    ax.set_xlabel("checkpoint step (log)")
    ax.set_ylabel(f"community at step {steps[-1]}")
    ax.set_title(f"{t.model}: emergence of the final communities (size/shade = purity)")
    ax.legend(title="dominant task", fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_timeline(t: Timeline, out_dir: Path) -> Timeline:
    t.csv = write_csv(t.rows, out_dir / f"timeline-{t.model}.csv")
    t.png = plot_timeline(t, out_dir / f"timeline-{t.model}.png")
    return t
