"""The mean baseline's reference statistics: every slot's mean hook value and mean latents over a
reference batch (``AttributionEngine.mean_baseline``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ingest.attribution.batch import MeanBaseline
from ingest.errors import AttributionError
from ingest.tasks.encode import TaskBatch


def reference_mean(engine: Any, batch: TaskBatch, *, batch_size: int = 32) -> MeanBaseline:
    """Per-slot mean hook value and mean latents over ``engine``'s graph positions of ``batch``
    (BOS and padding left out; a non-causal model's prompts run per length, unpadded)."""
    sums_x: list[Tensor] = []
    sums_f: list[Tensor | None] = []
    count = 0
    parts = [batch[start:start + batch_size] for start in range(0, len(batch), batch_size)]
    if not engine.causal:  # no padding for a model that would attend to it
        parts = [p for part in parts for _, p in part.unpadded()]
    for part in parts:
        valid = engine.graph_positions(part)
        _, values = engine.run_cached(part.tokens)
        xs = [v[valid].sum(0) for v in values]
        with torch.no_grad():
            fs = [None if s.dictionary is None else s.dictionary.encode(v[valid]).sum(0)
                  for s, v in zip(engine.slots, values, strict=True)]
        sums_x = xs if not sums_x else [a + b for a, b in zip(sums_x, xs, strict=True)]
        sums_f = fs if not sums_f else [None if a is None else a + b for a, b in zip(sums_f, fs, strict=True)]
        count += int(valid.sum())
    if count == 0:
        raise AttributionError("the mean baseline's reference set has no graph positions")
    return MeanBaseline(x=[x / count for x in sums_x], f=[None if f is None else f / count for f in sums_f])
