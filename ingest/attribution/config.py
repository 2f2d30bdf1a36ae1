"""The attribution configuration: every choice that defines an edge weight, typed and checked.

The exact definition these options plug into is in :mod:`ingest.attribution.engine` (and the
README's "Attribution" section).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

#: The step counts ``steps="auto"`` tries in turn, stopping at the first whose completeness
#: residual is within ``tolerance`` (or at the last, with a warning).
AUTO_STEPS: tuple[int, ...] = (8, 16, 32, 64, 128)


class Baseline(StrEnum):
    """What a node is moved *from* along the integrated-gradients path."""

    ZERO = "zero"                      # latents 0 and error 0 (the hook then holds decode(0) = b_dec)
    COUNTERFACTUAL = "counterfactual"  # the node's value on the task's counterfactual prompt
    MEAN = "mean"                      # the node's mean over the positions of a reference set


class PositionAgg(StrEnum):
    """alpha: how an example's position pairs (u at p -> d at q, p <= q) contract to one weight."""

    SUM = "sum"    # sum over all pairs
    MEAN = "mean"  # the sum divided by the example's number of graph positions
    MAX = "max"    # the pair of largest magnitude, sign kept


class ExampleAgg(StrEnum):
    """beta: how the per-example weights of an edge aggregate over the dataset."""

    MEAN = "mean"  # sum / number of examples (an edge absent from an example counts 0 there)
    SUM = "sum"
    MAX = "max"    # the example of largest magnitude, sign kept


@dataclass(frozen=True)
class AttributionConfig:
    """How edges are measured, contracted and kept.

    Attributes:
        steps: integrated-gradients steps (midpoint rule); ``1`` is attribution patching (AtP),
            the gradient at the path's midpoint times the difference. ``"auto"``: the first of
            :data:`AUTO_STEPS` whose completeness residual on a task's first batch is within
            ``tolerance`` (chosen per task by the ingest pipeline).
        tolerance: the largest acceptable relative completeness residual, Σ |Σ in-edges - Δ| /
            Σ |Δ| over a downstream slot's targets (Δ: the target's change from baseline to
            clean, which IG's in-edges sum to as steps grow); above it ingest warns.
        baseline: see :class:`Baseline`.
        alpha: position aggregation (:class:`PositionAgg`); ``alpha_abs`` aggregates |w|.
        beta: example aggregation (:class:`ExampleAgg`).
        threshold: keep edges with |weight| >= threshold after alpha and beta (0 keeps all).
        top_k: then keep at most this many in-edges (largest |weight|) per downstream node
            (0 = no limit).
        example_threshold: per-example contributions with |w| below this are dropped before
            beta, so memory follows kept edges; each kept edge is then exact to within
            ``example_threshold`` (for beta = mean). ``None`` means ``threshold / 10``.
        noise_rel: the noise floor: an edge with |w| below ``noise_rel`` times the largest |w|
            into the same downstream node is floating-point rounding, not an edge, and is
            dropped before ``threshold`` (so ``threshold = 0`` does not store the ~1e-7-relative
            residue that exact zeros become in a rotated basis). 1e-6 suits float32; 0 keeps all.
        chunk: downstream nodes per batched backward pass (memory vs speed).
        error_edges: also compute in-edges of error nodes (see the engine's docstring).
    """

    steps: int | Literal["auto"] = 8
    tolerance: float = 0.05
    baseline: Baseline = Baseline.COUNTERFACTUAL
    alpha: PositionAgg = PositionAgg.SUM
    alpha_abs: bool = False
    beta: ExampleAgg = ExampleAgg.MEAN
    threshold: float = 0.0
    top_k: int = 0
    example_threshold: float | None = None
    noise_rel: float = 1e-6
    mean_examples: int = 64
    chunk: int = 256
    error_edges: bool = True

    def __post_init__(self) -> None:
        for name, enum in (("baseline", Baseline), ("alpha", PositionAgg), ("beta", ExampleAgg)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise ValueError(f"{name} must be one of {', '.join(e.value for e in enum)}; got {value!r}") from None
        if self.steps != "auto" and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer (1 = attribution patching) or auto, got {self.steps!r}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1) (a relative completeness residual), got {self.tolerance!r}")
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold!r}")
        if self.example_threshold is not None and not self.example_threshold >= 0:
            raise ValueError(f"example_threshold must be >= 0, got {self.example_threshold!r}")
        if not 0 <= self.noise_rel < 1:
            raise ValueError(f"noise_rel must be in [0, 1) (a fraction of a target's largest in-edge), got {self.noise_rel!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = no limit), got {self.top_k!r}")
        if self.mean_examples < 1:
            raise ValueError(f"mean_examples must be at least 1, got {self.mean_examples!r}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {self.chunk!r}")

    @property
    def epsilon(self) -> float:
        """The per-example pruning threshold actually used."""
        return self.threshold / 10 if self.example_threshold is None else self.example_threshold

    @property
    def merges_positions(self) -> bool:
        """Signed sum/mean over positions is linear: one backward per latent covers all its positions."""
        return self.alpha in (PositionAgg.SUM, PositionAgg.MEAN) and not self.alpha_abs

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}
