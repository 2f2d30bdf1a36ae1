r"""Regions of Interest: blocks of functionally similar latents of one dictionary.

For each dictionary of an ingest run, over the valid token positions (no BOS, no padding) of
the tasks' prompts, every latent ``i`` gets two signals per token ``t``:

* its activation ``f_i[t]``;
* its attribution to the task's metric, attribution patching with the counterfactual prompt's
  latents as baseline: ``a_i[t] = (f_i[t] − f_i^cf[t]) · ∂m/∂f_i[t]``, with
  ``∂m/∂f_i = W_dec[i] · ∂m/∂x`` (``decode`` is affine) and ``m`` the logit difference at the
  last position, ``∂m/∂x`` taken at the clean input (the engine's ``prepare`` computes both).

Latents active on fewer than ``min_active`` of the tokens are left out. The similarity of two
latents is the correlation (or covariance) of their signal columns; with ``signal = "both"``
the column is the concatenation of the standardised activation and attribution columns, so

    S_ij = ½ (ρ(f_i, f_j) + ρ(a_i, a_j))

(exactly, for correlation; NaN, from a constant column, is 0; with covariance the standardised
columns make S the same up to a factor n/(n−1), so covariance only differs from correlation
for a single signal). A latent constant in every signal is left out too. A weighted stochastic block
model is fitted to S the way graspologic's ``SBMEstimator`` does (adjacency spectral
embedding, then a Gaussian mixture; the number of blocks given, or chosen by BIC up to
``max_blocks``): the ROIs are its blocks.

Per ROI: its size, the mean cosine similarity of its members' decoder rows and their mean
correlation (off-diagonal pairs), against a random-partition baseline (the labels permuted,
block sizes kept, ``random_partitions`` times): baseline mean, std and z-score, per ROI and per
dictionary (pair-weighted over every within-ROI pair). Write-back and the ROI-level graph are
in :mod:`analysis.roi.graph`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from analysis.subgraph import ingest_run_config
from analysis.tasks import stored_tasks
from graphdb.provenance import RunRecord
from mechgraph.errors import ConfigError
from queries.loader import run_query

Signal = Literal["activation", "attribution", "both"]
Similarity = Literal["correlation", "covariance"]
Aggregate = Literal["sum", "mean", "max"]
Covariance = Literal["spherical", "diag", "full", "all"]
#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RoiConfig:
    """Which ingest run and data, which signal and similarity, how the SBM is fitted."""

    tasks: tuple[str, ...]
    run: str | None = None
    model: str | None = None
    hooks: tuple[str, ...] = ()
    signal: Signal = "both"
    similarity: Similarity = "correlation"
    n_blocks: int | None = None
    max_blocks: int = 20
    covariance: Covariance = "diag"
    min_active: float = 1e-3
    examples: int = 64
    batch_size: int = 16
    split: Literal["train", "test"] = "test"
    seed: int = 0
    random_partitions: int = 200
    aggregate: Aggregate = "sum"

    def __post_init__(self) -> None:
        if (self.run is None) == (self.model is None):
            raise ValueError("name the ingest run with exactly one of --run RUN or --model SPEC")
        if not self.tasks:
            raise ValueError("name at least one task (--task)")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"a task is named twice: {list(self.tasks)}")
        if len(set(self.hooks)) != len(self.hooks):
            raise ValueError(f"a hook is named twice: {list(self.hooks)}")
        if self.signal not in ("activation", "attribution", "both"):
            raise ValueError(f"signal must be activation, attribution or both, got {self.signal!r}")
        if self.similarity not in ("correlation", "covariance"):
            raise ValueError(f"similarity must be correlation or covariance, got {self.similarity!r}")
        if self.aggregate not in ("sum", "mean", "max"):
            raise ValueError(f"aggregate must be sum, mean or max, got {self.aggregate!r}")
        if self.covariance not in ("spherical", "diag", "full", "all"):
            raise ValueError(f"covariance must be spherical, diag, full or all, got {self.covariance!r}")
        if self.max_blocks < 1:
            raise ValueError(f"max_blocks must be at least 1, got {self.max_blocks}")
        if self.n_blocks is not None and self.n_blocks < 1:
            raise ValueError(f"the number of blocks must be at least 1, got {self.n_blocks}")
        if not 0 <= self.min_active < 1:
            raise ValueError(f"min_active is a fraction of tokens in [0, 1), got {self.min_active}")
        if self.examples < 1 or self.batch_size < 1:
            raise ValueError("examples and batch_size must be at least 1")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {self.split!r}")
        if self.random_partitions < 1:
            raise ValueError(f"random_partitions must be at least 1, got {self.random_partitions}")


@dataclass
class BlockStats:
    """Mean off-diagonal value of a matrix inside each block, against random partitions with
    the same block sizes. Per block (NaN for a block of one): ``observed``, ``baseline``,
    ``baseline_std``, ``z``; ``overall*`` the same pooled over every within-block pair."""

    observed: Any
    baseline: Any
    baseline_std: Any
    z: Any
    overall: float
    overall_baseline: float
    overall_std: float
    overall_z: float


@dataclass
class DictionaryRois:
    """The ROIs of one dictionary. ``indices[j]`` is the latent of row/column ``j`` of
    ``similarity``; ``features[j]`` its node key; ``labels[j]`` its ROI (0 = the largest)."""

    hook: str
    layer: int
    dictionary: str        # the key part (the dictionary's kind)
    dictionary_key: str    # the :Dictionary node's key
    n_latents: int         # the dictionary's width
    indices: Any
    features: list[str]
    labels: Any
    cosine: BlockStats
    correlation: BlockStats
    similarity: Any = None
    heads: Any = None      # head per used latent (-1: none), for attention dictionaries

    @property
    def n_rois(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


@dataclass
class RoiResult:
    run: str
    ingest_run: str
    model: str
    checkpoint: str
    tasks: list[str]
    rois: list[DictionaryRois] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    roi_edges: dict[str, int] = field(default_factory=dict)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


# -- the pure parts ---------------------------------------------------------------------------

def fit_rois(similarity: Any, n_blocks: int | None = None, max_blocks: int = 20, seed: int = 0,
             covariance: Covariance = "diag") -> Any:
    """ROI labels (0 = the largest block) of the latents of a symmetric similarity matrix.

    Adjacency spectral embedding (dimension by the elbow rule) and a Gaussian mixture with
    ``n_blocks`` components, or the BIC-best number in 1 .. ``max_blocks`` when it is None.
    """
    from graspologic.cluster import GaussianCluster
    from graspologic.embed import AdjacencySpectralEmbed

    from analysis.communities.partition import relabel

    S = np.nan_to_num(np.asarray(similarity, dtype=float))
    n = S.shape[0]
    if S.ndim != 2 or S.shape[1] != n:
        raise ConfigError(f"a similarity matrix must be square, got shape {S.shape}")
    if n_blocks is not None and n_blocks > n:
        raise ConfigError(f"{n_blocks} blocks asked of {n} latents")
    if n < 3 or n_blocks == 1:
        return np.zeros(n, dtype=int)
    # The diagonal of a correlation matrix is 1 (not a degree): no diagonal augmentation.
    X = AdjacencySpectralEmbed(algorithm="full", diag_aug=False, check_lcc=False).fit_transform((S + S.T) / 2)
    lo, hi = (n_blocks, n_blocks) if n_blocks is not None else (1, min(max_blocks, n - 1))
    gmm = GaussianCluster(min_components=lo, max_components=max(lo, hi), covariance_type=covariance,
                          random_state=seed)
    return relabel(np.asarray(gmm.fit_predict(X)))


def decoder_cosine(W_dec: Any) -> Any:
    """Cosine similarity of decoder rows ``W_dec`` [n d_in] (a zero row has cosine 0 to all)."""
    W = np.asarray(W_dec, dtype=float)
    norm = np.linalg.norm(W, axis=1, keepdims=True)
    U = np.divide(W, norm, out=np.zeros_like(W), where=norm > 0)
    return U @ U.T


def _within(M: Any, labels: Any, K: int) -> tuple[Any, Any]:
    """(sum of off-diagonal entries of M inside each block, ordered pairs per block).

    ``B = P M`` with ``P`` the sparse [K n] block indicator costs one pass over M (n² rather than
    the n²K of a dense one-hot product), which is what makes hundreds of random partitions cheap;
    the block sums are then ``Σ_{j ∈ b} B[b, j]``."""
    from scipy import sparse

    n = len(labels)
    P = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(K, n))
    B = np.asarray(P @ M)
    sums = np.bincount(labels, weights=B[labels, np.arange(n)] - np.diag(M), minlength=K)
    sizes = np.bincount(labels, minlength=K)
    return sums, sizes * (sizes - 1)


def block_stats(M: Any, labels: Any, random_partitions: int = 200, seed: int = 0) -> BlockStats:
    """Within-block means of ``M`` and their random-partition baseline (see :class:`BlockStats`)."""
    M = np.nan_to_num(np.asarray(M, dtype=float))
    labels = np.asarray(labels, dtype=int)
    K = int(labels.max()) + 1 if len(labels) else 0
    sums, pairs = _within(M, labels, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(pairs > 0, sums / np.maximum(pairs, 1), np.nan)
        rng = np.random.default_rng(seed)
        per, pooled = np.empty((random_partitions, K)), np.empty(random_partitions)
        for r in range(random_partitions):
            s, _ = _within(M, rng.permutation(labels), K)
            per[r] = s / np.maximum(pairs, 1)
            pooled[r] = s.sum() / max(pairs.sum(), 1)
        base, std = np.where(pairs > 0, per.mean(0), np.nan), np.where(pairs > 0, per.std(0), np.nan)
        z = np.where(std > 0, (observed - base) / std, np.nan)
        overall = float(sums.sum() / pairs.sum()) if pairs.sum() else float("nan")
        o_base, o_std = (float(pooled.mean()), float(pooled.std())) if pairs.sum() else (float("nan"),) * 2
        o_z = (overall - o_base) / o_std if o_std > 0 else float("nan")
    return BlockStats(observed=observed, baseline=base, baseline_std=std, z=z, overall=overall,
                      overall_baseline=o_base, overall_std=o_std, overall_z=float(o_z))


def similarity_matrix(f: Any, a: Any, signal: Signal = "both",
                      similarity: Similarity = "correlation") -> tuple[Any, Any]:
    """(S, R): the similarity the SBM sees and the correlation matrix, over the columns (latents)
    of activations ``f`` and attributions ``a`` [n_tokens n_latents] (module docstring)."""
    def standard(x: Any) -> Any:
        sd = x.std(0)
        return np.divide(x - x.mean(0), sd, out=np.zeros_like(x), where=sd > 0)

    if signal == "activation":
        X = np.asarray(f, dtype=float)
    elif signal == "attribution":
        X = np.asarray(a, dtype=float)
    else:
        X = np.concatenate([standard(np.asarray(f, dtype=float)), standard(np.asarray(a, dtype=float))])
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.nan_to_num(np.atleast_2d(np.corrcoef(X, rowvar=False)))
    S = R if similarity == "correlation" else np.nan_to_num(np.atleast_2d(np.cov(X, rowvar=False)))
    return S, R


# -- the run ----------------------------------------------------------------------------------

def fit_run_rois(db: Any, config: RoiConfig, *, out_root: Path, device: str = "cpu",
                 progress: Progress | None = None) -> RoiResult:
    """ROIs of every selected dictionary of an ingest run, written back (module docstring)."""
    config = replace(config, tasks=stored_tasks(db, config.tasks))  # jsonl:PATH or its stored name
    from analysis.roi.graph import head_tables, run_heads, write_outputs, write_rois
    from ingest.attribution.config import AttributionConfig
    from ingest.attribution.engine import AttributionEngine
    from ingest.graph_rows import GraphNames
    from ingest.pipeline import IngestConfig, resolve

    t0 = time.perf_counter()
    ingest_run, run_cfg = ingest_run_of(db, config)
    attribution = AttributionConfig(baseline="counterfactual")  # type: ignore[arg-type]
    resolved = resolve(IngestConfig(model=run_cfg["model"], tasks=config.tasks, dicts=tuple(run_cfg["dicts"]),
                                    graph=run_cfg.get("graph", "resid"), include_embed=run_cfg.get("include_embed", True),
                                    examples=config.examples, split=config.split, seed=config.seed,
                                    attribution=attribution), device=device)
    names = GraphNames(model=resolved.model_label, checkpoint=resolved.checkpoint, slots=tuple(resolved.slots),
                       n_layers=int(resolved.model.cfg.n_layers))
    slots = _selected_slots(resolved.slots, config.hooks)
    engine = AttributionEngine(resolved.model, resolved.slots, attribution)
    f, a = collect_signals(engine, resolved.batches, slots, config.batch_size, progress)
    record = RunRecord(kind="roi", seed=config.seed, config={
        **{k: v for k, v in asdict(config).items() if k not in ("run", "model", "batch_size")},
        "ingest_run": ingest_run, "model": run_cfg["model"], "hooks": [resolved.slots[s].hook for s in slots]})
    result = RoiResult(run=record.run_id, ingest_run=ingest_run, model=names.model, checkpoint=names.checkpoint,
                       tasks=list(config.tasks))
    for n, s in enumerate(slots):
        if progress:
            progress("fitting ROIs", n, len(slots))
        result.rois.append(_dictionary_rois(names, s, f[s], a[s], config))
    if progress:
        progress("fitting ROIs", len(slots), len(slots))
    for d, s in zip(result.rois, slots, strict=True):
        if resolved.slots[s].is_attention:
            d.heads = run_heads(db, ingest_run, d)
    result.summary = [summary_row(d) for d in result.rois]
    result.roi_edges = write_rois(db, record, names, result.rois, ingest_run, config)
    result.out_dir = out_root / record.run_id
    result.files = write_outputs(result, head_tables(result.rois))
    result.seconds = time.perf_counter() - t0
    return result


def ingest_run_of(db: Any, config: RoiConfig) -> tuple[str, dict[str, Any]]:
    """The ingest run the ROIs read (named, or the newest of the model with every task) and its
    configuration."""
    if config.run is not None:
        return config.run, ingest_run_config(db, config.run, config.tasks)
    from ingest.pipeline import model_labels
    from ingest.zoo.specs import parse_model_spec

    label, checkpoint, _ = model_labels(parse_model_spec(config.model or ""), "resid")
    found: dict[str, tuple[str, str]] = {}
    for task in config.tasks:
        rows = run_query(db, "latest_run", {"kind": "ingest", "model": label, "checkpoint": checkpoint, "task": task})
        if not rows:
            raise ConfigError(f"no ingested {task} graph of {label} @ {checkpoint}: run `mechgraph ingest` first")
        found[task] = (rows[0]["run"], rows[0]["config"])
    runs = {run for run, _ in found.values()}
    if len(runs) > 1:
        raise ConfigError(f"the newest graphs of {', '.join(config.tasks)} come from different ingest runs "
                          f"({', '.join(sorted(runs))}); name one with --run")
    run, cfg = next(iter(found.values()))
    return run, json.loads(cfg)


def _selected_slots(slots: list[Any], hooks: tuple[str, ...]) -> list[int]:
    have = {s.hook: i for i, s in enumerate(slots) if s.dictionary is not None}
    unknown = [h for h in hooks if h not in have]
    if unknown:
        raise ConfigError(f"no dictionary of this run on {', '.join(unknown)}; it has {', '.join(have)}")
    return sorted(have[h] for h in hooks) if hooks else sorted(have.values())


def collect_signals(engine: Any, batches: dict[str, Any], slots: list[int], batch_size: int,
                    progress: Progress | None = None) -> tuple[dict[int, Any], dict[int, Any]]:
    """Activations and attributions ({slot: [n_tokens n_latents]}) over the valid positions of
    every task's batches (module docstring for the attribution)."""
    import torch

    fs: dict[int, list[Any]] = {s: [] for s in slots}
    ats: dict[int, list[Any]] = {s: [] for s in slots}
    # A bidirectional model attends to right-padding: its prompts run grouped by length, unpadded.
    groups = [g for b in batches.values() for g in ([b] if engine.causal else [g for _, g in b.unpadded()])]
    parts = [(g, start) for g in groups for start in range(0, len(g), batch_size)]
    for n, (batch, start) in enumerate(parts):
        if progress:
            progress("activations and attributions", n, len(parts))
        prep = engine.prepare(batch[start:start + batch_size])
        with torch.no_grad():
            for s in slots:
                fc, fb, g = prep.f_clean[s], prep.f_base[s], prep.grad_metric[s]
                dmdf = g @ engine.slots[s].dictionary.W_dec.to(g.dtype).T   # ∂m/∂f = W_dec · ∂m/∂x
                fs[s].append(fc[prep.valid].double().cpu().numpy())
                ats[s].append(((fc - fb) * dmdf)[prep.valid].double().cpu().numpy())
    if progress:
        progress("activations and attributions", len(parts), len(parts))
    return {s: np.concatenate(v) for s, v in fs.items()}, {s: np.concatenate(v) for s, v in ats.items()}


def _dictionary_rois(names: Any, s: int, f: Any, a: Any, config: RoiConfig) -> DictionaryRois:
    slot = names.slots[s]
    keep = ((f != 0).mean(0) >= config.min_active) & ((f.std(0) > 0) | (a.std(0) > 0))
    indices = np.flatnonzero(keep)
    S, R = similarity_matrix(f[:, indices], a[:, indices], config.signal, config.similarity)
    if len(indices) and config.n_blocks is not None and config.n_blocks > len(indices):
        raise ConfigError(f"{slot.hook}: only {len(indices)} latents are active on at least {config.min_active:g} "
                          f"of the tokens, fewer than --blocks {config.n_blocks}")
    labels = fit_rois(S, config.n_blocks, config.max_blocks, config.seed, config.covariance) if len(indices) \
        else np.zeros(0, dtype=int)
    W = slot.dictionary.W_dec.detach().double().cpu().numpy()[indices]
    return DictionaryRois(
        hook=slot.hook, layer=slot.layer, dictionary=names.dictionary_name(slot),
        dictionary_key=names.dictionary_key(slot), n_latents=slot.n_latents, indices=indices,
        features=[names.node_key(s, int(i), "") for i in indices], labels=labels,
        cosine=block_stats(decoder_cosine(W), labels, config.random_partitions, config.seed),
        correlation=block_stats(R, labels, config.random_partitions, config.seed + 1), similarity=S)


def summary_row(d: DictionaryRois) -> dict[str, Any]:
    """One dictionary's line of the summary table."""
    c, r = d.cosine, d.correlation
    return {"hook": d.hook, "latents": len(d.indices), "of": d.n_latents, "rois": d.n_rois,
            "mean_size": round(len(d.indices) / d.n_rois, 2) if d.n_rois else 0.0,
            "cosine": c.overall, "cosine_baseline": c.overall_baseline, "cosine_std": c.overall_std,
            "cosine_z": c.overall_z, "correlation": r.overall, "correlation_baseline": r.overall_baseline,
            "correlation_std": r.overall_std, "correlation_z": r.overall_z}
