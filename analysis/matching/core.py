r"""Matching latents and communities across checkpoints and model sizes: the pure parts.

**Features.** Two dictionaries ``a`` (earlier) and ``b`` (later) on the same hook. A
similarity matrix ``S`` [n_a, n_b] is one of

* decoder cosine, ``S_ij = cos(W_dec^a[i], W_dec^b[j])`` (both decoders must live in the same
  activation space, so only within one model: ``d_in`` must agree);
* activation correlation, ``S_ij = ρ(f^a_i, f^b_j)``, Pearson over the tokens of a shared set
  of prompts (the same prompts through both models; it works across sizes). A latent that is
  constant on those tokens (dead there) has correlation 0 with everything.

The matching is the one-to-one assignment maximising ``Σ S_ij`` over matched pairs (the
Hungarian algorithm, ``scipy.optimize.linear_sum_assignment`` on ``−S``; rectangular when the
widths differ); pairs scoring below ``min_score`` are dropped. Optionally the assignment is
refined by graph matching (FAQ, ``graspologic.match.graph_match``): the two dictionaries'
latent-latent graphs (co-activation correlations, or decoder Gram matrices) are aligned with
``S`` as the linear term, seeded with the assignment's confident pairs (score ≥ ``seed_score``),
which resolves latents whose own similarity is ambiguous by where they sit among the others.

**Communities.** Communities at consecutive checkpoints are matched by the Jaccard overlap of
their member sets after mapping the earlier members through the feature matches (a member
without a match stays as itself, so it counts in the union and never in the intersection),
with the same Hungarian assignment on ``−J`` and a threshold. The emergence of a community at
the final checkpoint is the first checkpoint from which its chain of matches persists unbroken
to the final one (:func:`emergence_chains`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mechgraph.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class PromptSample:
    """The prompts latents are compared on (a base of the matching configs): ``examples`` per
    task of ``tasks`` (empty: the configs' default tasks), from ``split``, drawn with ``seed``,
    run ``batch_size`` at a time."""

    tasks: tuple[str, ...] = ()
    examples: int = 32
    batch_size: int = 16
    split: Literal["train", "test"] = "test"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.examples < 1 or self.batch_size < 1:
            raise ValueError("examples and batch_size must be at least 1")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"a task is named twice: {list(self.tasks)}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {self.split!r}")


@dataclass
class FeatureMatch:
    """Matched latent pairs, by ``src`` (latent of the earlier dictionary) ascending:
    ``src[k]`` ↔ ``dst[k]`` (latent of the later one) with similarity ``score[k]``."""

    src: Any
    dst: Any
    score: Any
    method: str

    def __len__(self) -> int:
        return len(self.src)

    def mapping(self) -> dict[int, int]:
        return dict(zip(self.src.tolist(), self.dst.tolist(), strict=True))

    def accuracy(self, truth: Sequence[int] | Any) -> float:
        """Fraction of latents ``i`` (all of ``truth``) matched to ``truth[i]``; a dropped
        latent counts as wrong."""
        truth = np.asarray(truth)
        got = self.mapping()
        return float(np.mean([got.get(i) == int(t) for i, t in enumerate(truth.tolist())])) if len(truth) else 1.0

    def summary(self, n_a: int, n_b: int, thresholds: Sequence[float] = (0.5, 0.7, 0.9)) -> dict[str, Any]:
        """Number matched, mean score, fraction of the earlier dictionary matched above each threshold."""
        row: dict[str, Any] = {"method": self.method, "n_from": n_a, "n_to": n_b, "matched": len(self),
                               "mean_score": float(self.score.mean()) if len(self) else float("nan")}
        for t in thresholds:
            row[f"frac>={t:g}"] = float((self.score >= t).sum() / max(n_a, 1))
        return row


# -- similarities ------------------------------------------------------------------------------

def _unit_rows(W: Any) -> Any:
    W = np.asarray(W, dtype=float)
    norm = np.linalg.norm(W, axis=1, keepdims=True)
    return np.divide(W, norm, out=np.zeros_like(W), where=norm > 0)


def cosine_similarity(W_a: Any, W_b: Any) -> Any:
    """[n_a, n_b] cosine of decoder rows (a zero row has cosine 0 to every row)."""
    W_a, W_b = np.asarray(W_a), np.asarray(W_b)
    if W_a.ndim != 2 or W_b.ndim != 2:
        raise ConfigError(f"decoders must be matrices [d_dict d_in], got {W_a.shape} and {W_b.shape}")
    if W_a.shape[1] != W_b.shape[1]:
        raise ConfigError(f"decoder cosine needs one activation space; the decoders have d_in {W_a.shape[1]} and "
                          f"{W_b.shape[1]} (across model sizes, match by activation)")
    return _unit_rows(W_a) @ _unit_rows(W_b).T


def standardise(F: Any) -> Any:
    F = np.asarray(F, dtype=float)
    F = F - F.mean(axis=0, keepdims=True)
    sd = np.sqrt((F ** 2).mean(axis=0, keepdims=True))
    return np.divide(F, sd, out=np.zeros_like(F), where=sd > 1e-12)


def correlation_similarity(F_a: Any, F_b: Any) -> Any:
    """[n_a, n_b] Pearson correlation of latent columns over the same tokens (rows); a constant
    column correlates 0 with everything."""
    F_a, F_b = np.asarray(F_a), np.asarray(F_b)
    if F_a.ndim != 2 or F_b.ndim != 2 or F_a.shape[0] != F_b.shape[0]:
        raise ConfigError(f"activation correlation needs the same tokens on both sides: activations are "
                          f"{F_a.shape} and {F_b.shape} (rows are tokens)")
    if F_a.shape[0] < 2:
        raise ConfigError("activation correlation needs at least two tokens")
    return standardise(F_a).T @ standardise(F_b) / F_a.shape[0]


# -- assignment and refinement ---------------------------------------------------------------

def assign(S: Any, *, min_score: float = 0.0, method: str = "cosine") -> FeatureMatch:
    """The one-to-one assignment maximising the summed similarity; pairs below ``min_score`` dropped."""
    from scipy.optimize import linear_sum_assignment

    S = np.nan_to_num(np.asarray(S, dtype=float))
    if S.ndim != 2 or 0 in S.shape:
        raise ConfigError(f"a similarity matrix must be a non-empty matrix, got shape {S.shape}")
    rows, cols = linear_sum_assignment(-S)
    return _keep(rows, cols, S, min_score, method)


def _keep(rows: Any, cols: Any, S: Any, min_score: float, method: str) -> FeatureMatch:
    score = S[rows, cols]
    keep = score >= min_score
    order = np.argsort(rows[keep], kind="stable")
    return FeatureMatch(src=rows[keep][order], dst=cols[keep][order], score=score[keep][order], method=method)


def graph_refine(S: Any, G_a: Any, G_b: Any, start: FeatureMatch, *, seed_score: float = 0.9,
                 graph_weight: float = 0.2, min_score: float = 0.0, seed: int = 0,
                 max_iter: int = 30) -> FeatureMatch:
    """Refine an assignment by seeded graph matching (module docstring).

    ``G_a`` [n_a n_a] and ``G_b`` [n_b n_b] are the latent-latent graphs (diagonals ignored);
    pairs of ``start`` scoring at least ``seed_score`` are kept fixed as seeds. The linear term
    is ``S`` scaled so that the quadratic one weighs ``graph_weight`` times as much
    (graspologic notes that the scale of ``S`` sets the balance): ``S · ‖G_a‖_F ‖G_b‖_F /
    (min(n_a, n_b) · graph_weight)``. Start ``start`` from the full assignment (``min_score``
    0), so that every latent begins at its assigned partner.

    Graph matching maximises edge agreement, which is the truth only when the two graphs are
    strongly correlated: on unstructured graphs (random decoders) under heavy noise the FAQ
    optimum is a *wrong* matching of higher objective, so a large ``graph_weight`` can lower
    accuracy. The default keeps the similarity term dominant.
    """
    if not graph_weight > 0:
        raise ConfigError(f"graph_weight must be > 0, got {graph_weight}")
    from graspologic.match import graph_match

    S = np.nan_to_num(np.asarray(S, dtype=float))
    A = np.nan_to_num(np.asarray(G_a, dtype=float)).copy()
    B = np.nan_to_num(np.asarray(G_b, dtype=float)).copy()
    n_a, n_b = S.shape
    if A.shape != (n_a, n_a) or B.shape != (n_b, n_b):
        raise ConfigError(f"graphs {A.shape} and {B.shape} do not fit a similarity matrix of shape {S.shape}")
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(B, 0.0)
    confident = start.score >= seed_score
    seeds = np.column_stack([start.src[confident], start.dst[confident]]).astype(int)
    if len(seeds) >= min(n_a, n_b):
        return _keep(start.src, start.dst, S, min_score, start.method + "+graph")
    scale = np.linalg.norm(A) * np.linalg.norm(B) / max(min(n_a, n_b), 1)
    result = graph_match(A, B, S=S * (scale / graph_weight if scale > 0 else 1.0), partial_match=seeds if len(seeds) else None,
                         init=_start_matrix(start, seeds, max(n_a, n_b)), rng=seed, maximize=True,
                         max_iter=max_iter, padding="naive")
    rows, cols = np.asarray(result.indices_A), np.asarray(result.indices_B)
    real = (rows < n_a) & (cols < n_b)
    return _keep(rows[real], cols[real], S, min_score, start.method + "+graph")


def _start_matrix(start: FeatureMatch, seeds: Any, n: int) -> Any:
    """The doubly stochastic initialisation graspologic's FAQ takes over the unseeded nodes
    (sorted, as its solver orders them): the assignment's pairs, and a flat block over the
    latents (and padding) it left unmatched, so the refinement starts from the assignment."""
    free_a = np.setdiff1d(np.arange(n), seeds[:, 0])
    free_b = np.setdiff1d(np.arange(n), seeds[:, 1])
    pos_a = {int(v): i for i, v in enumerate(free_a)}
    pos_b = {int(v): i for i, v in enumerate(free_b)}
    P = np.zeros((len(free_a), len(free_b)))
    for i, j in zip(start.src.tolist(), start.dst.tolist(), strict=True):
        if i in pos_a and j in pos_b:
            P[pos_a[i], pos_b[j]] = 1.0
    rest_r, rest_c = np.flatnonzero(P.sum(1) == 0), np.flatnonzero(P.sum(0) == 0)
    if len(rest_r):
        P[np.ix_(rest_r, rest_c)] = 1.0 / len(rest_r)
    return P


def coactivation_graph(F: Any) -> Any:
    """[n n] correlation of a dictionary's latents with each other over tokens (0 on the diagonal)."""
    Z = standardise(F)
    G = Z.T @ Z / max(Z.shape[0], 1)
    np.fill_diagonal(G, 0.0)
    return G


def decoder_graph(W: Any) -> Any:
    """[n n] cosine of a dictionary's decoder rows with each other (0 on the diagonal)."""
    U = _unit_rows(W)
    G = U @ U.T
    np.fill_diagonal(G, 0.0)
    return G


# -- communities -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CommunityMatch:
    earlier: str
    later: str
    jaccard: float


def jaccard_matrix(earlier: Sequence[set[str]], later: Sequence[set[str]]) -> Any:
    """[len(earlier), len(later)] Jaccard index |E ∩ L| / |E ∪ L| (0 for two empty sets)."""
    J = np.zeros((len(earlier), len(later)))
    for i, e in enumerate(earlier):
        for j, lat in enumerate(later):
            union = len(e | lat)
            J[i, j] = len(e & lat) / union if union else 0.0
    return J


def match_communities(earlier: Mapping[str, Iterable[str]], later: Mapping[str, Iterable[str]],
                      translate: Mapping[str, str] | Callable[[str], str | None], *,
                      min_jaccard: float = 0.1) -> list[CommunityMatch]:
    """One-to-one matches of earlier to later communities by Jaccard overlap after mapping the
    earlier members through ``translate`` (a member it maps to None stays itself); pairs
    below ``min_jaccard`` (and pairs with no overlap at all) dropped."""
    from scipy.optimize import linear_sum_assignment

    if not earlier or not later:
        return []
    get = translate.get if isinstance(translate, Mapping) else translate
    e_keys, l_keys = sorted(earlier), sorted(later)
    e_sets = [{get(m) or m for m in earlier[k]} for k in e_keys]
    l_sets = [set(later[k]) for k in l_keys]
    J = jaccard_matrix(e_sets, l_sets)
    rows, cols = linear_sum_assignment(-J)
    return [CommunityMatch(e_keys[r], l_keys[c], float(J[r, c])) for r, c in zip(rows, cols, strict=True)
            if J[r, c] > 0 and J[r, c] >= min_jaccard]


@dataclass
class Chain:
    """A final community's chain of matches back in time: ``steps[k]`` at ``communities[k]``,
    oldest first; ``jaccard[k]`` is the overlap of link k → k+1 (one fewer than steps)."""

    final: str
    steps: list[int]
    communities: list[str]
    jaccard: list[float]

    @property
    def emergence(self) -> int:
        return self.steps[0]


def emergence_chains(steps: Sequence[int], links: Sequence[Sequence[CommunityMatch]],
                     finals: Iterable[str]) -> dict[str, Chain]:
    """Follow each final community back through ``links[k]`` (matches from ``steps[k]`` to
    ``steps[k + 1]``) until a link is missing: its emergence is the oldest step reached."""
    if len(links) != len(steps) - 1:
        raise ConfigError(f"{len(steps)} checkpoints need {len(steps) - 1} sets of links, got {len(links)}")
    back = [{m.later: m for m in ms} for ms in links]
    out = {}
    for final in finals:
        chain = Chain(final=final, steps=[steps[-1]], communities=[final], jaccard=[])
        for k in range(len(links) - 1, -1, -1):
            m = back[k].get(chain.communities[0])
            if m is None:
                break
            chain.steps.insert(0, steps[k])
            chain.communities.insert(0, m.earlier)
            chain.jaccard.insert(0, m.jaccard)
        out[final] = chain
    return out


def dominant_task(weights: Mapping[str, float]) -> tuple[str | None, float]:
    """(task with the largest weight, its share of the total: the purity); (None, 0) if all 0."""
    total = float(sum(abs(v) for v in weights.values()))
    if total <= 0:
        return None, 0.0
    task = max(sorted(weights), key=lambda t: abs(weights[t]))
    return task, abs(weights[task]) / total


def incident_weight(matrix: Any, index: Mapping[str, int], members: Iterable[str]) -> float:
    """Σ |w| over the edges of ``matrix`` (sparse, [n n]) with at least one endpoint in
    ``members`` (each edge counted once); members absent from ``index`` contribute nothing."""
    idx = np.array(sorted({index[m] for m in members if m in index}), dtype=int)
    if len(idx) == 0:
        return 0.0
    A = abs(matrix.tocsr())
    inside = np.zeros(A.shape[0], dtype=bool)
    inside[idx] = True
    out_rows = float(A[idx].sum())                 # edges leaving a member (inside ones included)
    into = float(A[~inside][:, idx].sum())          # edges from outside into a member
    return out_rows + into
