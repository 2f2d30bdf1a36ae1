"""The kill table of a task disentanglement: run each community with each task's prompts.

For a community C (a set of stored node keys: features, error nodes, the embedding input) and a
task D, on D's prompts, with the evaluator's engine (the model and dictionaries rebuilt from the
ingest run's configuration, the task's mean baseline by default) and its normalized metric
F = (m − m(∅)) / (m(M) − m(∅)) (m the mean logit difference, M the full model, ∅ every node at
baseline; :class:`analysis.evaluate.sweep.AblationSweep`):

* **kill C**: C's nodes are at their baseline and every edge of the *complete* model graph that
  has a member of C as source or target is removed (C reads and sends nothing); every other
  node and edge is kept, whether it was stored or not. Edge ablation runs exactly that graph;
  node ablation runs the same node set (an ordinary forward pass with C at baseline: the same
  thing, since node ablation keeps every edge between kept nodes). C = ∅ gives F = 1, C = every
  node gives F = 0.
* **keep only C**: edge ablation keeps only the *stored* edges (union of the task graphs)
  between two members of C, plus the stored edges from members of C into D's output; every other
  edge carries its source's baseline. Node ablation keeps the nodes of C (error nodes outside C
  at baseline too) with every edge between them. C = ∅ gives F = 0; C = every node gives F = 1
  under node ablation, and under edge ablation whenever the stored graphs are complete.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.evaluate.sweep import AblationSweep, edge_sets

CONDITIONS = ("kill", "keep")


@dataclass
class KillTable:
    """``values[(ablation, condition)]``: [communities, tasks] normalized metric F."""

    tasks: tuple[str, ...]
    communities: list[int]
    sizes: list[int]
    dominant: list[str]
    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    clean: dict[str, float] = field(default_factory=dict)
    ablated: dict[str, float] = field(default_factory=dict)

    def by_community(self) -> dict[int, dict[str, list[float]]]:
        """``{community: {"kill_edge": [F per task], "keep_edge": [...], ...}}`` for write-back."""
        return {c: {f"{cond}_{kind}": [float(x) for x in v[row]] for (kind, cond), v in self.values.items()}
                for row, c in enumerate(self.communities)}


class KillRunner:
    """The model of an ingest run's configuration, and masks of node sets on it."""

    def __init__(self, alignment: Any, tasks: tuple[str, ...], run_config: dict[str, Any], *, examples: int,
                 split: str, seed: int, baseline: str, device: str = "cpu") -> None:
        from ingest.attribution.config import AttributionConfig
        from ingest.attribution.engine import AttributionEngine
        from ingest.graph_rows import GraphNames
        from ingest.pipeline import IngestConfig, resolve

        cfg = IngestConfig(model=run_config["model"], tasks=tasks, dicts=tuple(run_config["dicts"]),
                           include_embed=run_config.get("include_embed", True), examples=examples,
                           split=split, seed=seed, attribution=AttributionConfig(baseline=baseline))  # type: ignore[arg-type]
        self.resolved = resolve(cfg, device=device)
        self.engine = AttributionEngine(self.resolved.model, self.resolved.slots, cfg.attribution)
        self.names = GraphNames(model=self.resolved.model_label, checkpoint=self.resolved.checkpoint,
                                slots=tuple(self.resolved.slots), n_layers=int(self.resolved.model.cfg.n_layers))
        self.alignment = alignment
        self.baseline = baseline
        self.index = {k: i for i, k in enumerate(alignment.keys.tolist())}

    def sweep(self, task: str, batch_size: int) -> AblationSweep:
        """The evaluator's prepared batches of ``task`` (its own mean baseline)."""
        if self.baseline == "mean":
            self.engine.mean = self.engine.mean_baseline(self.resolved.reference[task])
        return AblationSweep(self.engine, self.resolved.batches[task], batch_size, keep_errors=True)

    def kill_mask(self, members: list[str]) -> Any:
        """Every node but ``members``, every edge between the others (module docstring)."""
        import torch

        from ingest.ablation import GraphMask

        nodes = {s: torch.ones(slot.n_nodes, dtype=torch.bool) for s, slot in enumerate(self.engine.slots)}
        for s, i in (self.names.locate(k) for k in members):
            nodes[s][i] = False
        return GraphMask.complete(self.engine, nodes)

    def keep_mask(self, members: list[str], task: str, kind: str) -> Any:
        """Only ``members`` (node ablation) or only their stored edges among themselves and into
        ``task``'s output (edge ablation)."""
        import numpy as np
        import torch

        from ingest.ablation import GraphMask

        if kind == "node":
            nodes = {s: torch.zeros(slot.n_nodes, dtype=torch.bool) for s, slot in enumerate(self.engine.slots)}
            for s, i in (self.names.locate(k) for k in members):
                nodes[s][i] = True
            return GraphMask.complete(self.engine, nodes)
        inside = np.zeros(len(self.alignment.keys), dtype=bool)
        inside[[self.index[k] for k in members]] = True
        target = inside.copy()
        out = self.alignment.outputs.get(task)
        if out is not None:
            target[self.index[out]] = True
        coo = self.alignment.pattern.tocoo()
        sel = inside[coo.row] & target[coo.col]
        keys = self.alignment.keys
        located = []
        for r, c in zip(coo.row[sel].tolist(), coo.col[sel].tolist(), strict=True):
            (s, u), (m, d) = self.names.locate(keys[r]), self.names.locate(keys[c])
            if s < m:
                located.append((s, u, m, d))
        return GraphMask.from_edges(self.engine, edge_sets(located), keep_errors=False)

    def scores(self, sweep: AblationSweep, members: list[str], task: str, kind: str) -> tuple[float, float]:
        """(F with ``members`` killed, F with only ``members`` kept) under ``kind`` ablation."""
        span = sweep.m_full - sweep.m_empty
        kill = sweep.measure(kind, self.kill_mask(members))["logit_diff"]
        keep = sweep.measure(kind, self.keep_mask(members, task, kind))["logit_diff"]
        return (kill - sweep.m_empty) / span, (keep - sweep.m_empty) / span


def kill_table(analysis: Any, config: Any, run_config: dict[str, Any], *, device: str = "cpu",
               progress: Any = None) -> KillTable:
    """F for the ``config.top_k`` largest communities × every task, both conditions, each
    ablation of ``config.ablations`` (module docstring)."""
    import numpy as np

    tasks = analysis.alignment.tasks
    groups = analysis.purity[:config.top_k]
    runner = KillRunner(analysis.alignment, tasks, run_config, examples=config.examples, split=config.split,
                        seed=config.seed, baseline=config.baseline, device=device)
    table = KillTable(tasks=tasks, communities=[p.index for p in groups], sizes=[p.size for p in groups],
                      dominant=[p.dominant_task for p in groups])
    for kind in config.ablations:
        for cond in CONDITIONS:
            table.values[kind, cond] = np.zeros((len(groups), len(tasks)))
    total, done = len(tasks) * len(groups) * len(config.ablations), 0
    for t, task in enumerate(tasks):
        sweep = runner.sweep(task, config.batch_size)
        table.clean[task], table.ablated[task] = sweep.m_full, sweep.m_empty
        for row, p in enumerate(groups):
            for kind in config.ablations:
                kill, keep = runner.scores(sweep, p.members, task, kind)
                table.values[kind, "kill"][row, t] = kill
                table.values[kind, "keep"][row, t] = keep
                done += 1
                if progress:
                    progress(done, total)
    return table


def write_kill_csv(table: KillTable, path: Path) -> Path:
    """One row per (ablation, community); columns ``kill:<task>`` and ``keep:<task>``."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ablation", "community", "size", "dominant_task",
                    *[f"{cond}:{t}" for cond in CONDITIONS for t in table.tasks]])
        for kind in sorted({k for k, _ in table.values}):
            for row, c in enumerate(table.communities):
                w.writerow([kind, c, table.sizes[row], table.dominant[row],
                            *[float(table.values[kind, cond][row, t]) for cond in CONDITIONS
                              for t in range(len(table.tasks))]])
    return path


def plot_kill(table: KillTable, kind: str, path: Path, *, title: str = "") -> Path:
    """Two annotated heatmaps (kill C, keep only C): rows communities, columns tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [table.values[kind, cond] for cond in CONDITIONS]
    lo = min(0.0, *(float(v.min()) for v in panels))
    hi = max(1.0, *(float(v.max()) for v in panels))
    k, T = panels[0].shape
    fig, axes = plt.subplots(1, 2, figsize=(3.0 + 1.6 * T * 2, 1.4 + 0.45 * k), squeeze=False, sharey=True)
    rows = [f"C{c} (n={n}, {d})" for c, n, d in zip(table.communities, table.sizes, table.dominant, strict=True)]
    for ax, values, name in zip(axes[0], panels, ("kill C", "keep only C"), strict=True):
        im = ax.imshow(values, vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
        ax.set_xticks(np.arange(T), table.tasks, fontsize=8)
        ax.set_yticks(np.arange(k), rows, fontsize=8)
        ax.tick_params(labelleft=ax is axes[0][0])  # shared rows: labelled once
        ax.set_title(f"{name} ({kind} ablation)", fontsize=9)
        for i in range(k):
            for j in range(T):
                v = values[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if (v - lo) / (hi - lo) > 0.6 else "white")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    if title:
        fig.suptitle(f"{title}\nF = (m − m(∅)) / (m(M) − m(∅)) on each task's prompts", fontsize=9, y=1.04)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
