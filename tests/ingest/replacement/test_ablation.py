"""Node and edge ablation in the replacement model (transcoders in place of the MLPs).

Ground truth: with every node kept the replacement model (error terms kept) is the model, so
faithfulness is 1; with nothing kept it is the fully ablated run, faithfulness 0; edge
ablation of the complete graph between kept nodes is node ablation; and on a hand-built
model with hand-made transcoders, ablating one feature (or one of its edges) gives the logit
difference computed by hand.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ingest.ablation import GraphMask
from ingest.dictionaries.transcoder import TopKTranscoder, TranscoderDictionary
from ingest.dictionaries.transcoder_set import PerLayerTranscoders
from ingest.replacement.ablation import (
    ReplacementConfig,
    ReplacementEngine,
    ReplacementNames,
    edge_ablation,
    node_ablation,
)
from ingest.tasks.encode import TaskBatch, encode_examples, final_logits
from tests.ingest.replacement.conftest import make_clt, make_set

SETS = {"relu": lambda: make_set("relu", seed=4), "topk_skip": lambda: make_set("topk_skip", seed=5),
        "clt": lambda: make_clt("relu", skip=False, seed=6), "clt_topk_skip": lambda: make_clt("topk", True, seed=7)}


@pytest.fixture(scope="module")
def ioi(tiny_model) -> TaskBatch:
    from ingest.tasks import get_task

    return encode_examples(tiny_model.tokenizer, get_task("ioi").examples(6, seed=0, split="test"))


def _engine(model: Any, tcs: Any, baseline: str, ioi: TaskBatch) -> ReplacementEngine:
    engine = ReplacementEngine(model, tcs, ReplacementConfig(baseline=baseline))  # type: ignore[arg-type]
    if baseline == "mean":
        engine.mean = engine.mean_baseline(ioi)
    return engine


def _every(engine: ReplacementEngine) -> dict[int, torch.Tensor]:
    return {s: torch.ones(slot.n_nodes, dtype=torch.bool) for s, slot in enumerate(engine.slots)}


@pytest.mark.parametrize("kind", list(SETS))
def test_every_node_kept_is_the_model(tiny_model, ioi, kind: str) -> None:
    engine = _engine(tiny_model, SETS[kind](), "zero", ioi)
    everything = GraphMask.complete(engine, _every(engine))
    with torch.no_grad():
        model = final_logits(tiny_model(ioi.tokens), ioi.last)
    for run in (node_ablation, edge_ablation):
        torch.testing.assert_close(run(engine, ioi, everything), model, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("baseline", ["zero", "mean", "counterfactual"])
@pytest.mark.parametrize("kind", list(SETS))
def test_edge_ablation_of_the_complete_graph_is_node_ablation(tiny_model, ioi, kind: str, baseline: str) -> None:
    engine = _engine(tiny_model, SETS[kind](), baseline, ioi)
    g = torch.Generator().manual_seed(1)
    nodes = {s: torch.rand(slot.n_nodes, generator=g) < 0.5 for s, slot in enumerate(engine.slots)}
    complete = GraphMask.complete(engine, nodes)
    node = node_ablation(engine, ioi, complete)
    torch.testing.assert_close(edge_ablation(engine, ioi, complete, max_copies=3), node, atol=2e-5, rtol=1e-5)
    nothing = GraphMask(nodes={s: torch.zeros_like(k) for s, k in nodes.items()}, edges={})
    torch.testing.assert_close(edge_ablation(engine, ioi, nothing), node_ablation(engine, ioi, nothing),
                               atol=2e-5, rtol=1e-5)
    with torch.no_grad():
        clean = final_logits(tiny_model(ioi.tokens), ioi.last)
    assert (node - clean).abs().max() > 1e-3  # the masks do something


@pytest.mark.parametrize("kind", ["relu", "clt"])
def test_faithfulness_bounds(tiny_model, ioi, kind: str) -> None:
    """Faithfulness of the complete graph (error nodes kept) is 1 under both ablations and the
    sweep's m(model) is the model's own logit difference; with nothing kept it is 0."""
    from analysis.evaluate.sweep import AblationSweep

    engine = _engine(tiny_model, SETS[kind](), "mean", ioi)
    sweep = AblationSweep(engine, ioi, batch_size=4)
    with torch.no_grad():
        lg = final_logits(tiny_model(ioi.tokens), ioi.last)
    rows = torch.arange(len(ioi))
    assert sweep.m_full == pytest.approx(float((lg[rows, ioi.answer] - lg[rows, ioi.cf_answer]).mean()), abs=1e-5)
    span = sweep.m_full - sweep.m_empty
    everything = GraphMask.complete(engine, _every(engine))
    nothing = GraphMask(nodes={s: ~k for s, k in _every(engine).items()}, edges={})
    for kind_ in ("edge", "node"):
        assert (sweep.measure(kind_, everything)["logit_diff"] - sweep.m_empty) / span == pytest.approx(1.0, abs=1e-5)
        assert (sweep.measure(kind_, nothing)["logit_diff"] - sweep.m_empty) / span == pytest.approx(0.0, abs=1e-5)


# -- a hand-built model ---------------------------------------------------------------------------
#
# Two layers, d_model 4, no normalisation, attention writing nothing (W_O = 0), no positional
# embedding, every MLP a ReLU MLP of width 2 and its transcoder the *same* map (so error nodes
# are 0). Prompt [0, 1, 2]: the last position's embedding is W_E[2] = (0, 0, 2, 1).
#   layer 0, feature A = relu(x[2] - 0.5) = 1.5, writes (0, 1, 0, 1) * A;
#   layer 1, feature B = relu(x[1]) = 1.5 (A's write), writes (0, 0, 0, 2) * B;
# logits read the answer (token 3) from x[3] and the counterfactual (token 1) from x[0]:
#   clean logit difference = 1 (embedding) + 1.5 (A) + 3 (B) = 5.5.


def _hand_model() -> tuple[Any, PerLayerTranscoders]:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=4, d_head=2, n_heads=1, d_mlp=2, d_vocab=4, n_ctx=8,
                                  act_fn="relu", normalization_type=None, positional_embedding_type="standard")
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E[1] = torch.tensor([0.0, 1, 0, 0])
        model.W_E[2] = torch.tensor([0.0, 0, 2, 1])
        model.W_U[3, 3] = 1.0
        model.W_U[0, 1] = 1.0
        mlp0, mlp1 = model.blocks[0].mlp, model.blocks[1].mlp
        mlp0.W_in[2, 0], mlp0.b_in[0] = 1.0, -0.5
        mlp0.W_out[0] = torch.tensor([0.0, 1, 0, 1])
        mlp1.W_in[1, 0] = 1.0
        mlp1.W_out[0] = torch.tensor([0.0, 0, 0, 2])
    tcs = []
    for layer, mlp in enumerate((mlp0, mlp1)):
        tc = TopKTranscoder(4, 2, 4, k=2, layer=layer)  # k = d_dict: a ReLU transcoder
        with torch.no_grad():
            tc.W_enc.copy_(mlp.W_in)
            tc.b_enc.copy_(mlp.b_in)
            tc.W_dec.copy_(mlp.W_out)
            tc.b_dec.copy_(mlp.b_out)
        tcs.append(TranscoderDictionary(tc))
    return model.eval(), PerLayerTranscoders(tcs)


def _hand_batch() -> TaskBatch:
    tokens = torch.tensor([[0, 1, 2]])
    return TaskBatch(tokens, tokens.clone(), torch.tensor([2]), torch.tensor([2]), torch.tensor([3]),
                     torch.tensor([1]), ("hand",), 0)


def _logit_diff(logits: torch.Tensor) -> float:
    return float(logits[0, 3] - logits[0, 1])


A, B, OUT = (1, 0), (2, 0), 3   # (slot, index) of A and B; the output's slot


def _graph(edges: list[tuple[tuple[int, int], tuple[int, int]]]) -> GraphMask:
    """Every node kept; only ``edges`` ((src slot, idx), (dst slot, idx)) kept."""
    sizes = [1, 3, 3, 1]
    nodes = {s: torch.ones(sizes[s], dtype=torch.bool) for s in range(3)}
    kept: dict[tuple[int, int], torch.Tensor] = {}
    for (s, u), (m, d) in edges:
        kept.setdefault((s, m), torch.zeros(sizes[m], sizes[s], dtype=torch.bool))[d, u] = True
    return GraphMask(nodes=nodes, edges=kept)


def test_hand_built_feature_ablation() -> None:
    model, tcs = _hand_model()
    engine = ReplacementEngine(model, tcs, ReplacementConfig(baseline="zero"))
    batch = _hand_batch()
    prep = engine.prepare(batch)
    assert float(prep.clean.f[0][0, 2, 0]) == pytest.approx(1.5) and float(prep.clean.f[1][0, 2, 0]) == pytest.approx(1.5)
    assert all(float(e.abs().max()) < 1e-6 for e in prep.clean.e)  # the transcoders are exact
    every = {s: torch.ones(n, dtype=torch.bool) for s, n in enumerate([1, 3, 3])}
    assert _logit_diff(node_ablation(engine, batch, GraphMask.complete(engine, every))) == pytest.approx(5.5)
    # A at 0: B reads nothing (B = 0), so only the embedding's 1 is left.
    without_a = {**every, 1: torch.tensor([False, True, True])}
    assert _logit_diff(node_ablation(engine, batch, GraphMask.complete(engine, without_a))) == pytest.approx(1.0)
    # B at 0: 1 + 1.5.
    without_b = {**every, 2: torch.tensor([False, True, True])}
    assert _logit_diff(node_ablation(engine, batch, GraphMask.complete(engine, without_b))) == pytest.approx(2.5)


def test_hand_built_edge_ablation() -> None:
    model, tcs = _hand_model()
    engine = ReplacementEngine(model, tcs, ReplacementConfig(baseline="zero"))
    batch = _hand_batch()
    embed = (0, 0)
    base = [(embed, A), (embed, (OUT, 0)), (B, (OUT, 0))]
    # A -> output cut, A -> B kept: the output reads A at 0 but B at 1.5: 1 + 0 + 3.
    assert _logit_diff(edge_ablation(engine, batch, _graph(base + [(A, B)]))) == pytest.approx(4.0)
    # A -> B cut, A -> output kept: B reads A at 0: 1 + 1.5 + 0.
    assert _logit_diff(edge_ablation(engine, batch, _graph(base + [(A, (OUT, 0))]))) == pytest.approx(2.5)
    # embedding -> A cut as well: A reads a zero embedding, relu(-0.5) = 0: 1 + 0 + 0.
    no_embed_a = [(embed, (OUT, 0)), (B, (OUT, 0)), (A, (OUT, 0)), (A, B)]
    assert _logit_diff(edge_ablation(engine, batch, _graph(no_embed_a))) == pytest.approx(1.0)
    # Node ablation of the same graphs (every node kept) is the clean 5.5 whatever the edges.
    assert _logit_diff(node_ablation(engine, batch, _graph(base))) == pytest.approx(5.5)


def test_names_locate_the_task_graph_keys() -> None:
    from ingest.replacement.store import GraphLabels

    labels = GraphLabels("m", "final", "plt:transcoder/topk_transcoder", task="ioi")
    names = ReplacementNames("m", "final", "plt:transcoder/topk_transcoder", d_dict=(8, 8))
    assert names.locate(labels.position_free({"kind": "feature", "layer": 1, "feature": 5})) == (2, 5)
    assert names.locate(labels.position_free({"kind": "error", "layer": 0})) == (1, 8)
    assert names.locate(labels.position_free({"kind": "token"})) == (0, 0)
    assert names.locate(labels.position_free({"kind": "target", "counter_token": 2, "token": 1})) == (3, 0)
    from mechgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="8 features"):
        names.locate(labels.position_free({"kind": "feature", "layer": 0, "feature": 8}))
    with pytest.raises(ConfigError, match="not a node of the transcoders"):
        names.locate(GraphLabels("m", "final", "other").position_free({"kind": "error", "layer": 0}))
