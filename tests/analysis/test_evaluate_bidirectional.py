"""``evaluate`` (and ``disentangle``, through the same :class:`AblationSweep`) on a model with
bidirectional attention and prompts of unequal length: every metric is each prompt's own, as if
it ran alone, because such a model would read the right-padding of a padded batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from analysis.evaluate.sweep import AblationSweep, EvaluateConfig, evaluate
from ingest.attribution.config import AttributionConfig
from ingest.pipeline import IngestConfig, ingest, resolve
from ingest.tasks import get_task
from ingest.tasks.encode import encode_examples

D, N = 8, 6
DICTS = tuple(f"identity:{D}/blocks.{L}.hook_resid_post" for L in range(2))


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint, tmp_path_factory) -> Path:
    """A tiny mechgraph checkpoint whose attention is bidirectional."""
    out = tmp_path_factory.mktemp("bidirectional") / "ckpt"
    shutil.copytree(tiny_checkpoint(D, 16, 7), out)
    cfg = json.loads((out / "tl_config.json").read_text())
    (out / "tl_config.json").write_text(json.dumps({**cfg, "attention_dir": "bidirectional"}))
    return out


def _alone(model, examples, counterfactual: bool = False) -> float:
    """Mean logit difference of each prompt run alone (no padding), clean or counterfactual."""
    diffs = []
    for ex in examples:
        b = encode_examples(model.tokenizer, [ex])
        with torch.no_grad():
            logits = model(b.cf_tokens if counterfactual else b.tokens)[0, -1]
        diffs.append(float(logits[b.answer[0]] - logits[b.cf_answer[0]]))
    return sum(diffs) / len(diffs)


def test_evaluate_reads_each_prompt_alone(db, model_dir, tmp_path):
    examples = get_task("ioi").examples(N, seed=0, split="test")  # evaluate's (seed 0, held out)
    assert len({len(ex.clean.split()) for ex in examples}) > 1  # unequal lengths: a padded batch
    graph = ingest(db, IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=N, batch_size=N, dicts=DICTS,
                                    attribution=AttributionConfig(steps=1, threshold=0.0)),
                   state_root=tmp_path / "state")
    result = evaluate(db, EvaluateConfig(task="ioi", run=graph.run, examples=N, sweep=1), out_dir=tmp_path / "out")
    model = resolve(IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=N, dicts=DICTS)).model
    assert model.cfg.attention_dir == "bidirectional"
    # m(model): the clean prompts alone; m(∅) (every node at its counterfactual value, the last
    # residual slot included): the counterfactual prompts alone; ingest measured the same.
    assert result.clean_logit_diff == pytest.approx(_alone(model, examples), abs=1e-5)
    assert result.clean_logit_diff == pytest.approx(graph.tasks[0].metric_clean, abs=1e-5)
    assert result.ablated_logit_diff == pytest.approx(_alone(model, examples, counterfactual=True), abs=1e-5)
    for p in result.points:  # the complete stored graph is the model
        assert p.faithfulness == pytest.approx(1.0, abs=1e-4)


def test_an_ablated_graph_of_a_padded_batch_is_the_mean_of_its_prompts_alone(model_dir):
    from ingest.ablation import GraphMask
    from ingest.attribution.engine import AttributionEngine

    resolved = resolve(IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=N, dicts=DICTS))
    engine = AttributionEngine(resolved.model, resolved.slots, AttributionConfig(baseline="counterfactual"))
    batch = resolved.batches["ioi"]
    assert len(batch.unpadded()) > 1
    together = AblationSweep(engine, batch, batch_size=4)
    alone = [AblationSweep(engine, batch[i:i + 1].unpadded()[0][1], batch_size=1) for i in range(len(batch))]
    g = torch.Generator().manual_seed(0)
    nodes = {s: torch.rand(sl.n_nodes, generator=g) < 0.5 for s, sl in enumerate(engine.slots)}
    full = GraphMask.complete(engine, nodes)
    edges = GraphMask(nodes=nodes, edges={k: m & (torch.rand(m.shape, generator=g) < 0.5) for k, m in full.edges.items()})
    for kind, mask in (("node", full), ("edge", edges)):
        got = together.measure(kind, mask)
        want = [a.measure(kind, mask) for a in alone]
        for metric in ("logit_diff", "kl", "loss"):
            assert got[metric] == pytest.approx(sum(w[metric] for w in want) / len(want), abs=1e-5), (kind, metric)
    assert together.m_full == pytest.approx(sum(a.m_full for a in alone) / len(alone), abs=1e-5)
    assert together.m_empty == pytest.approx(sum(a.m_empty for a in alone) / len(alone), abs=1e-5)


def test_roi_signals_of_a_padded_batch_are_each_prompts_own(model_dir):
    """``roi fit``'s activations and attributions: the padded batch gives, prompt by prompt, the
    values of that prompt run alone."""
    from analysis.roi.fit import collect_signals
    from ingest.attribution.engine import AttributionEngine

    resolved = resolve(IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=N, dicts=DICTS))
    engine = AttributionEngine(resolved.model, resolved.slots, AttributionConfig(baseline="counterfactual"))
    batch = resolved.batches["ioi"]
    slots = [s for s, sl in enumerate(engine.slots) if sl.dictionary is not None]
    f_all, a_all = collect_signals(engine, {"ioi": batch}, slots, batch_size=N)
    groups = [g for _, g in batch.unpadded()]
    f_one, a_one = collect_signals(engine, {f"g{i}": g for i, g in enumerate(groups)}, slots, batch_size=1)
    for s in slots:  # same rows (one per valid token), same order: groups by length either way
        assert f_all[s].shape == f_one[s].shape
        assert abs(f_all[s] - f_one[s]).max() < 1e-5
        assert abs(a_all[s] - a_one[s]).max() < 1e-5
