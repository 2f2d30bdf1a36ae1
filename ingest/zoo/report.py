"""Emergence tables and plots from zoo manifests (accuracy and logit difference per task
per checkpoint), and the SAE summary ``zoo list`` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def emergence_rows(manifests: dict[str, dict[str, Any]], metric: str = "accuracy") -> list[dict[str, Any]]:
    """One row per (model, checkpoint): ``model``, ``step`` and ``metric`` of every task."""
    rows = []
    for name, m in manifests.items():
        for c in m.get("checkpoints", []):
            if "tasks" in c:
                rows.append({"model": name, "step": c["step"],
                             **{t: round(v[metric], 3) for t, v in c["tasks"].items()}})
    return rows


def emergence_step(manifest: dict[str, Any], task: str, threshold: float = 0.95) -> int | None:
    """First checkpoint step at which ``task``'s held-out accuracy reaches ``threshold``."""
    for c in manifest.get("checkpoints", []):
        if c.get("tasks", {}).get(task, {}).get("accuracy", 0) >= threshold:
            return c["step"]
    return None


def sae_rows(manifests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per SAE: toy models per checkpoint, pretrained models (no checkpoints) once."""
    rows = []
    for name, m in manifests.items():
        for c in m.get("checkpoints", []):
            rows += [sae_row(name, c["step"], hook, s) for hook, s in c.get("saes", {}).items()]
        rows += [sae_row(name, None, hook, s) for hook, s in m.get("saes", {}).items()]
    return rows


def sae_row(model: str, step: int | None, hook: str, s: dict[str, Any]) -> dict[str, Any]:
    def r(key: str, digits: int = 3) -> float | None:
        return None if s.get(key) is None else round(s[key], digits)
    return {"model": model, "step": step, "hook": hook, "ev": r("explained_variance"), "l0": r("l0", 1),
            "dead": r("dead_fraction"), "spliced/clean": r("spliced_ratio"),
            "dec_cos_prev": r("decoder_cosine_prev_median")}


def plot_emergence(manifests: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """A PNG: one row per toy model, columns accuracy and logit difference vs step (log x)."""
    toy = {n: m for n, m in manifests.items() if m.get("checkpoints")}
    if not toy:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(toy), 2, figsize=(11, 3.6 * len(toy)), squeeze=False)
    for row, (name, m) in enumerate(toy.items()):
        steps = [c["step"] for c in m["checkpoints"]]
        tasks = list(m["checkpoints"][0]["tasks"])
        for col, (metric, label) in enumerate((("accuracy", "held-out accuracy"),
                                               ("logit_diff", "mean logit diff (answer - cf answer)"))):
            ax = axes[row][col]
            for task in tasks:
                ax.plot(steps, [c["tasks"][task][metric] for c in m["checkpoints"]], marker="o", label=task)
            ax.set_xscale("log")
            ax.set_xlabel("training step")
            ax.set_ylabel(label)
            ax.set_title(f"{name} ({m['config']['n_layers']} layers, d_model {m['config']['d_model']})")
            if metric == "accuracy":
                ax.axhline(0.95, color="grey", lw=0.8, ls="--")
                ax.set_ylim(-0.02, 1.02)
        axes[row][0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
