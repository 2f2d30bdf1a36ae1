"""The trace configuration: every choice that defines a prompt graph, typed and checked."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mechgraph.errors import require_positive

#: The :Run kind of ``mechgraph ingest --graph transcoders`` (a task's prompt graphs and its task graph).
TASK_RUN_KIND = "ingest-transcoders"


@dataclass(frozen=True)
class TraceConfig:
    """How one prompt's replacement graph is computed and pruned.

    Attributes:
        max_n_logits: at most this many logit targets (salient targets only).
        desired_logit_prob: salient targets are the top logits whose cumulative probability
            first reaches this (circuit-tracer's rule: ``searchsorted(cumsum, p) + 1``).
        batch_size: targets per backward pass (one forward of this many copies serves all).
        max_feature_nodes: compute in-edges for at most this many features, picked by their
            running influence on the targets (``None``: every active feature).
        node_threshold: pruning keeps the smallest node set carrying this share of influence.
        edge_threshold: ... and the smallest edge set carrying this share of edge influence.
        zero_bos: position 0 (BOS) carries no feature activations and no error (its MLP output
            is a constant), as in circuit-tracer; token and error nodes exist there still.
    """

    max_n_logits: int = 10
    max_feature_nodes: int | None = None
    desired_logit_prob: float = 0.95
    batch_size: int = 256
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    zero_bos: bool = True

    def __post_init__(self) -> None:
        require_positive(max_n_logits=self.max_n_logits, batch_size=self.batch_size)
        if not 0 < self.desired_logit_prob <= 1:
            raise ValueError(f"desired_logit_prob must be in (0, 1], got {self.desired_logit_prob}")
        if self.max_feature_nodes is not None and self.max_feature_nodes < 1:
            raise ValueError(f"max_feature_nodes must be at least 1 (or unset), got {self.max_feature_nodes}")
        for name in ("node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
