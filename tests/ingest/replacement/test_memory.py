"""The trace's memory estimate: its counts are the trace's own, and on a GPU it is near the measured peak."""

from __future__ import annotations

import copy

import pytest
import torch

from ingest.replacement.attribute import trace_prompt
from ingest.replacement.config import TraceConfig
from ingest.replacement.memory import estimate_memory
from tests.ingest.replacement.conftest import PROMPT, make_clt, make_set


@pytest.mark.parametrize("which", ["plt", "clt"])
def test_estimate_counts_the_traces_features_and_nodes(tiny_model, which: str) -> None:
    tcs = make_set("skip", seed=1) if which == "plt" else make_clt("relu", seed=2)
    tokens = tiny_model.to_tokens(PROMPT)[0]
    config = TraceConfig(batch_size=32)
    g = trace_prompt(tiny_model, tcs, tokens, config)
    est = estimate_memory(tiny_model, tcs, tokens, config, n_targets=g.n_targets)
    assert est.n_active == g.active_features.shape[0] and est.n_nodes == g.n_nodes
    assert est.adjacency == 4 * g.n_nodes ** 2 == g.adjacency.numel() * g.adjacency.element_size()
    n_out = [len(tcs.out_layers(layer)) for layer in range(tcs.n_layers)]
    assert est.sources == 4 * tiny_model.cfg.d_model * sum(n_out[int(layer)] for layer in g.active_features[:, 0])
    assert est.weights == sum(p.numel() * 4 for m in (tiny_model, tcs) for p in m.parameters())
    assert est.batch == min(32, g.n_features + g.n_targets) and est.total == est.weights + est.working
    # Fewer features selected: the adjacency shrinks to them, plus the rows computed before selection.
    small = estimate_memory(tiny_model, tcs, tokens, TraceConfig(batch_size=32, max_feature_nodes=5),
                            n_targets=g.n_targets)
    assert small.n_nodes == g.n_nodes - g.n_features + 5 and small.adjacency < est.adjacency


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the measured peak is exact only on CUDA (allocated bytes)")
def test_estimate_is_near_the_measured_gpu_peak(tiny_model) -> None:
    model = copy.deepcopy(tiny_model).to("cuda")  # the session's model stays on the CPU
    tcs = make_set("skip", seed=1).to("cuda")
    tokens = model.to_tokens(" ".join([PROMPT] * 3))[0]
    config = TraceConfig(batch_size=256)
    est = estimate_memory(model, tcs, tokens, config)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    trace_prompt(model, tcs, tokens, config)
    measured = torch.cuda.max_memory_allocated() - before
    assert 0.5 * est.working <= measured <= 2 * est.working, (measured, est.working)
