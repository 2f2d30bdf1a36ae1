"""A prompt's replacement graph: a dense adjacency over its nodes, and what each node is.

Node order (circuit-tracer's ``Graph`` order, so the two tools' matrices line up)::

    [ selected features (in (layer, position, feature) order of ``active_features``),
      error nodes  error[layer 0][pos 0], error[0][1], ..., error[L-1][T-1],
      token nodes  token[0], ..., token[T-1],
      target nodes target[0], ..., target[K-1] ]

``adjacency[t, s]`` is the direct effect of source ``s`` on target ``t`` (rows are targets,
columns sources): ``s``'s decoded contribution times the derivative of ``t``'s pre-activation
(a feature) or logit (a target node) through the residual stream with attention patterns,
normalisation scales and every MLP frozen. Error and token rows are zero (they have no inputs).
``fixed[t]`` is the part of ``t``'s value that no node carries (biases, the positional
embedding, what reaches ``t`` from position 0's frozen MLP outputs), so that
``adjacency[t].sum() + fixed[t] == value[t]`` for every feature and target node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.replacement.targets import Target


@dataclass
class PromptGraph:
    """The full (unpruned) replacement graph of one prompt. See the module docstring."""

    prompt: str
    tokens: Int[Tensor, " pos"]
    token_strs: list[str]
    n_layers: int
    active_features: Int[Tensor, "n_active 3"]       # (layer, position, feature index)
    activation_values: Float[Tensor, " n_active"]
    selected_features: Int[Tensor, " n_selected"]    # indices into active_features, increasing
    targets: list[Target]
    adjacency: Float[Tensor, "n_nodes n_nodes"]
    fixed: Float[Tensor, " n_nodes"]
    value: Float[Tensor, " n_nodes"]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.selected_features.shape[0])

    @property
    def n_errors(self) -> int:
        return self.n_layers * self.n_pos

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_pos + self.n_targets

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_errors

    @property
    def target_start(self) -> int:
        return self.token_start + self.n_pos

    @property
    def target_weights(self) -> Float[Tensor, " n_targets"]:
        return torch.tensor([t.weight for t in self.targets], dtype=self.adjacency.dtype)

    def node(self, i: int) -> dict[str, Any]:
        """What node ``i`` is: kind plus layer/position/feature or target fields."""
        if i < self.n_features:
            layer, pos, feat = self.active_features[self.selected_features[i]].tolist()
            return {"kind": "feature", "layer": layer, "position": pos, "feature": feat,
                    "activation": float(self.activation_values[self.selected_features[i]])}
        if i < self.token_start:
            layer, pos = divmod(i - self.error_start, self.n_pos)
            return {"kind": "error", "layer": layer, "position": pos}
        if i < self.target_start:
            pos = i - self.token_start
            return {"kind": "token", "layer": -1, "position": pos, "token": int(self.tokens[pos]),
                    "text": self.token_strs[pos]}
        t = self.targets[i - self.target_start]
        return {"kind": "target", "layer": self.n_layers, "position": self.n_pos - 1, "label": t.label,
                "token": t.token, "counter_token": t.counter_token, "weight": t.weight}
