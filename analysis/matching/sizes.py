r"""Which communities recur across model sizes? ``mt-small`` vs ``mt-large`` at their final
checkpoints, matched by behaviour on the same prompts.

The two models have different widths, so decoder directions cannot be compared; what can is
what the latents *do* on the same tokens. For a community ``c`` of the small model and ``d`` of
the large one, with feature members ``C`` and ``D``, the activation similarity is the mean of
the best matches both ways

    sim(c, d) = ½ ( mean_{i∈C} max_{j∈D} ρ_ij + mean_{j∈D} max_{i∈C} ρ_ij )

with ``ρ`` the Pearson correlation of latent activations over the tokens of the shared prompts
(a community without feature members has similarity 0). Communities are paired one-to-one by the
Hungarian assignment on ``−sim``; each pair also gets both sides' task alignment (dominant task,
purity; :func:`analysis.match_timeline.community_alignment` or a given mapping), and ``recurs``
when the similarity reaches ``min_similarity`` *and* the dominant tasks agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from analysis.matching.core import PromptSample, standardise
from analysis.matching.features import default_tasks, resolve_side
from analysis.matching.timeline import Alignment, CommunityRun, community_alignment, community_runs, write_csv
from analysis.tasks import stored_tasks
from graphdb.keys import parse_key
from graphdb.schema import Label
from mechgraph.errors import ConfigError

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SizesConfig(PromptSample):
    """Two zoo models (stored names) and, optionally, the community run of each (default: the
    newest run at the model's final checkpoint); the prompts the latents are compared on."""

    small: str = "mt-small"
    large: str = "mt-large"
    small_run: str | None = None
    large_run: str | None = None
    level: int = 0
    min_similarity: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (self.small, self.large):
            if not name or ":" in name or "@" in name:
                raise ValueError(f"name models as stored, e.g. mt-small (not a spec), got {name!r}")
        if self.small == self.large:
            raise ValueError("compare two different models")
        if not -1 <= self.min_similarity <= 1:
            raise ValueError(f"min_similarity is a correlation in [-1, 1], got {self.min_similarity}")


@dataclass
class SizesResult:
    small: CommunityRun
    large: CommunityRun
    similarity: Any                     # [small communities, large communities], sorted keys
    rows: list[dict[str, Any]] = field(default_factory=list)
    csv: Path | None = None
    seconds: float = 0.0


def _final_run(db: Any, model: str, run: str | None, level: int) -> CommunityRun:
    final = resolve_side(model, "final").checkpoint
    runs = community_runs(db, model, (run,) if run else (), level)
    chosen = [r for r in runs if run or r.checkpoint == final]
    if not chosen:
        raise ConfigError(f"no community run of {model} at its final checkpoint {final}; run `mechgraph communities "
                          f"--model {model} --checkpoint {final} ...` or name one")
    return chosen[0]


def feature_members(members: list[str]) -> list[tuple[str, str, int]]:
    """(hook, dictionary kind, index) of the feature members (other nodes carry no latent)."""
    out = []
    for key in members:
        label, parts = parse_key(key)
        if label is Label.FEATURE:
            out.append((parts["hook"], parts["dictionary"], int(parts["index"])))
    return out


def community_similarity(Z_a: Mapping[str, Any], Z_b: Mapping[str, Any], comms_a: Mapping[str, list[str]],
                         comms_b: Mapping[str, list[str]]) -> Any:
    """[len(comms_a), len(comms_b)] mean-of-best-matches activation similarity (module docstring),
    communities in sorted key order; ``Z_*[hook]`` are standardised latents [tokens d_dict]."""
    def columns(Z: Mapping[str, Any], members: list[str]) -> Any:
        cols = [Z[h][:, i] for h, _, i in feature_members(members)]
        return np.column_stack(cols) if cols else None

    A = [columns(Z_a, comms_a[k]) for k in sorted(comms_a)]
    B = [columns(Z_b, comms_b[k]) for k in sorted(comms_b)]
    sim = np.zeros((len(A), len(B)))
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            if a is None or b is None:
                continue
            rho = a.T @ b / a.shape[0]
            sim[i, j] = 0.5 * (rho.max(axis=1).mean() + rho.max(axis=0).mean())
    return sim


def _latents(run: CommunityRun, model: str, tasks: tuple[str, ...], config: SizesConfig, device: str,
             progress: Progress | None) -> tuple[Any, dict[str, Any]]:
    """(the prompts' token ids, standardised latents per hook) of the run's dictionaries."""
    from ingest.dictionaries import load_dictionary
    from ingest.latents import collect_latents, shared_prompts
    from ingest.zoo.specs import load_model

    side = resolve_side(model, run.checkpoint)
    used = {(h, kind) for ms in run.communities.values() for h, kind, _ in feature_members(ms)}
    dicts = []
    for hook, kind in sorted(used):
        if hook not in side.dicts:
            raise ConfigError(f"{side.spec} has no zoo dictionary on {hook}, which community run {run.run} uses")
        d = load_dictionary(side.dicts[hook], device=device)
        if d.kind != kind:
            raise ConfigError(f"community run {run.run} has {kind} features on {hook}, but the zoo dictionary there "
                              f"is {d.kind}")
        dicts.append(d)
    if not dicts:
        raise ConfigError(f"community run {run.run} has no feature members")
    m = load_model(side.spec, device=device)
    batch = shared_prompts(m.tokenizer, tasks, config.examples, seed=config.seed, split=config.split,
                           n_ctx=m.cfg.n_ctx)
    bar = (lambda done, total: progress(f"{side.spec} latents", done, total)) if progress else None
    F = collect_latents(m, dicts, batch, batch_size=config.batch_size, progress=bar)
    return batch.tokens, {h: standardise(x) for h, x in F.items()}


def compare_sizes(db: Any, config: SizesConfig, *, device: str = "cpu", alignment: Alignment | None = None,
                  progress: Progress | None = None) -> SizesResult:
    """Pair the communities of the two models by behaviour and task (module docstring)."""
    config = replace(config, tasks=stored_tasks(db, config.tasks))  # jsonl:PATH or its stored name
    from scipy.optimize import linear_sum_assignment

    t0 = time.perf_counter()
    small = _final_run(db, config.small, config.small_run, config.level)
    large = _final_run(db, config.large, config.large_run, config.level)
    tasks = config.tasks or tuple(dict.fromkeys(small.tasks + large.tasks)) or default_tasks(config.small)
    tok_small, Z_small = _latents(small, config.small, tasks, config, device, progress)
    tok_large, Z_large = _latents(large, config.large, tasks, config, device, progress)
    if tok_small.shape != tok_large.shape or bool((tok_small != tok_large).any()):
        raise ConfigError(f"{config.small} and {config.large} tokenize the prompts differently; comparing "
                          "activations needs the same tokens through both")
    sim = community_similarity(Z_small, Z_large, small.communities, large.communities)
    if alignment is None:
        alignment = {**community_alignment(db, small, config.tasks), **community_alignment(db, large, config.tasks)}
    ks, kl = sorted(small.communities), sorted(large.communities)
    rows = []
    for i, j in zip(*linear_sum_assignment(-sim), strict=True):
        ts, ps = alignment.get(ks[i], (None, 0.0))
        tl, pl = alignment.get(kl[j], (None, 0.0))
        s = float(sim[i, j])
        rows.append({"small": ks[i], "small_size": len(small.communities[ks[i]]), "small_task": ts,
                     "small_purity": ps, "large": kl[j], "large_size": len(large.communities[kl[j]]),
                     "large_task": tl, "large_purity": pl, "activation_similarity": s,
                     "same_task": ts is not None and ts == tl,
                     "recurs": s >= config.min_similarity and ts is not None and ts == tl})
    rows.sort(key=lambda r: -r["activation_similarity"])
    return SizesResult(small=small, large=large, similarity=sim, rows=rows, seconds=time.perf_counter() - t0)


def save_sizes(result: SizesResult, out_dir: Path) -> SizesResult:
    name = f"sizes-{result.small.run}-{result.large.run}.csv"
    result.csv = write_csv(result.rows, out_dir / name)
    return result
