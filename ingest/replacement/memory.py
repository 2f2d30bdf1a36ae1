"""What tracing one prompt will hold in memory, estimated before the run.

Like circuit-tracer's requested long-context estimator: the model's and transcoders' weights
(resident before attribution starts), then what :func:`.attribute.trace_prompt` allocates,
which grows with the prompt's length ``T``, its active features ``n`` and the backward batch
``B``, not with the transcoders' width:

* the frozen forward over ``B`` copies (built once, kept for every backward): per layer the
  attention pattern saved for ``pattern @ v`` and its scores ``[B H T T]``, and a handful of
  ``[B T d_model]`` tensors (the read point, the write point, the stream), plus each backward's
  gradients at every write point and the embedding (``[B T d_model]`` each);
* the sources: each active feature's decoder vector for every layer it writes to
  (``n × n_out × d_model``), padded per position;
* the adjacency, dense ``[N N]`` over ``N = n_selected + (L + 1) T + targets`` nodes (plus the
  feature rows ``[n_selected, n + (L + 1) T]`` when ``max_feature_nodes`` selects).

``n`` is counted, not guessed: one clean forward pass and the encoders (cheap next to the
backward passes). Float32 throughout, like the trace. The constants are calibrated against
``bench/trace_memory.py`` (a measured peak on ``zoo:mt-small``), which prints both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ingest.dictionaries.transcoder_set import Transcoders
from ingest.replacement.config import TraceConfig

#: ``[B T d_model]`` tensors the frozen forward keeps per layer, and ``[B H T T]`` ones (saved
#: pattern and the transient scores); calibrated in ``bench/trace_memory.py``.
STREAM_PER_LAYER = 6
PATTERN_PER_LAYER = 2


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, by what holds them. ``working`` is what the trace adds to the resident weights."""

    weights: int
    frozen_graph: int
    sources: int
    adjacency: int
    n_active: int
    n_nodes: int
    batch: int

    @property
    def working(self) -> int:
        return self.frozen_graph + self.sources + self.adjacency

    @property
    def total(self) -> int:
        return self.weights + self.working

    def describe(self) -> str:
        mib = 2 ** 20
        return (f"memory estimate: {self.total / mib:,.0f} MiB = weights {self.weights / mib:,.0f} MiB (model + "
                f"transcoders) + working {self.working / mib:,.0f} MiB (frozen graph over {self.batch} copies "
                f"{self.frozen_graph / mib:,.0f}, sources {self.sources / mib:,.0f}, adjacency {self.n_nodes:,}^2 "
                f"{self.adjacency / mib:,.0f}); {self.n_active:,} active features")


def _param_bytes(*modules: Any) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def count_active(model: Any, transcoders: Transcoders, tokens: Tensor, *, zero_bos: bool = True) -> tuple[int, int]:
    """(active features, Σ over them of the layers each writes to) on ``tokens`` [pos]."""
    from ingest.replacement.attribute import _clean_run

    clean = _clean_run(model, tokens.to(model.cfg.device).long())
    n = writes = 0
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            act = transcoders.activate(layer, transcoders.pre_activation(layer, clean.x_in[layer]))
            if zero_bos:
                act[0] = 0
            k = int((act != 0).sum())
            n += k
            writes += k * len(transcoders.out_layers(layer))
    return n, writes


def estimate_memory(model: Any, transcoders: Transcoders, tokens: Tensor, config: TraceConfig, *,
                    n_targets: int | None = None) -> MemoryEstimate:
    """The estimate for tracing ``tokens`` [pos] (BOS included) under ``config``; ``n_targets``
    defaults to ``config.max_n_logits`` (the most salient logits the trace may keep)."""
    cfg = model.cfg
    L, T, d, H = cfg.n_layers, int(tokens.shape[0]), cfg.d_model, cfg.n_heads
    n_active, writes = count_active(model, transcoders, tokens, zero_bos=config.zero_bos)
    K = config.max_n_logits if n_targets is None else n_targets
    n_sel = n_active if config.max_feature_nodes is None else min(config.max_feature_nodes, n_active)
    B = max(1, min(config.batch_size, n_sel + K))
    f32 = 4
    frozen = f32 * B * T * (L * (STREAM_PER_LAYER * d + PATTERN_PER_LAYER * H * T) + (L + 1) * d)
    sources = f32 * writes * d
    n_src = n_active + (L + 1) * T
    n_nodes = n_sel + (L + 1) * T + K
    adjacency = f32 * n_nodes * n_nodes + (f32 * (n_sel + K) * n_src if n_sel < n_active else 0)
    return MemoryEstimate(weights=_param_bytes(model, transcoders), frozen_graph=frozen, sources=sources,
                          adjacency=adjacency, n_active=n_active, n_nodes=n_nodes, batch=B)
