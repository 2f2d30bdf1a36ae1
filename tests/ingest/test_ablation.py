"""Edge and node ablation against ground truth: the clean run, the fully ablated run, their
equivalence on complete graphs, and a hand-computed toy where one node feeds two paths."""

from __future__ import annotations

import pytest
import torch

from ingest.ablation import GraphMask, output_metrics
from ingest.attribution.config import AttributionConfig
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import build_slots
from ingest.dictionaries import IdentityDictionary
from ingest.tasks.encode import TaskBatch, final_logits


def edge_ablation(engine, batch, mask, prep):
    from ingest.ablation import edge_ablation as run
    logits = run(engine, batch, mask, prep)
    return output_metrics(logits, logits, batch)["logit_diff"]


def node_ablation(engine, batch, mask, prep):
    from ingest.ablation import node_ablation as run
    logits = run(engine, batch, mask, prep)
    return output_metrics(logits, logits, batch)["logit_diff"]

D = 8
HOOKS = ["blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out"]


@pytest.fixture(scope="module")
def setup():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=D, n_heads=2, d_head=4, d_mlp=16, n_ctx=16, d_vocab=20,
                                  act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    n, T = 3, 6
    tokens, cf = torch.randint(2, 20, (2, n, T), generator=g)
    last = torch.tensor([5, 4, 5])
    batch = TaskBatch(tokens, cf, last, last.clone(), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8]), ("t",) * n, 0)
    slots = build_slots(model, [IdentityDictionary(D, hook_name=h) for h in HOOKS])
    engine = AttributionEngine(model, slots, AttributionConfig(steps=1))
    prep = engine.prepare(batch)
    with torch.no_grad():
        clean = engine.metric(model(batch.tokens), batch)
        base = engine.metric(engine.frozen_forward(batch.tokens, prep.base)[0], batch)
    return engine, batch, prep, clean, base


def _nodes(engine, value: bool) -> dict[int, torch.Tensor]:
    return {s: torch.full((slot.n_nodes,), value) for s, slot in enumerate(engine.slots)}


def test_keeping_everything_reproduces_the_clean_run(setup):
    engine, batch, prep, clean, base = setup
    full = GraphMask.complete(engine, _nodes(engine, True))
    for run in (edge_ablation, node_ablation):
        m = run(engine, batch, full, prep)
        assert torch.allclose(m, clean, atol=1e-5)
        faithfulness = (m - base) / (clean - base)
        assert torch.allclose(faithfulness, torch.ones_like(faithfulness), atol=1e-5)


def test_keeping_nothing_reproduces_the_fully_ablated_run(setup):
    engine, batch, prep, clean, base = setup
    empty = GraphMask(nodes=_nodes(engine, False), edges={})
    for run in (edge_ablation, node_ablation):
        assert torch.allclose(run(engine, batch, empty, prep), base, atol=1e-5)
    assert not torch.allclose(clean, base, atol=1e-2)  # the test has something to tell apart


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_edge_ablation_of_a_complete_graph_equals_node_ablation(setup, seed):
    engine, batch, prep, clean, base = setup
    g = torch.Generator().manual_seed(seed)
    nodes = {s: torch.rand(slot.n_nodes, generator=g) < 0.5 for s, slot in enumerate(engine.slots)}
    mask = GraphMask.complete(engine, nodes)
    e, n = edge_ablation(engine, batch, mask, prep), node_ablation(engine, batch, mask, prep)
    assert torch.allclose(e, n, atol=1e-5)
    assert not torch.allclose(e, clean, atol=1e-3) and not torch.allclose(e, base, atol=1e-3)


def test_one_node_feeding_two_paths(setup):
    """Node u = dimension 3 of attn_out_0 feeds the MLP of layer 0 and everything later. Cut
    only its edges into mlp_out_0: node ablation (every node kept) is the clean run, while edge
    ablation equals the hand-built run in which MLP 0 alone sees u at its baseline."""
    engine, batch, prep, clean, base = setup
    model = engine.model
    mask = GraphMask.complete(engine, _nodes(engine, True))
    assert [slot.hook for slot in engine.slots[1:3]] == HOOKS[:2]  # slot 0 is the embedding
    mask.edges[1, 2][:, 3] = False  # no edge from u into any node of mlp_out_0
    assert torch.allclose(node_ablation(engine, batch, mask, prep), clean, atol=1e-5)

    # By hand: MLP 0 reads embed + attn_out_0 with u at its baseline; all else is clean.
    cache: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        model.run_with_hooks(batch.tokens, fwd_hooks=[
            ("blocks.0.hook_resid_pre", lambda x, hook: cache.__setitem__("pre", x)),
            ("blocks.0.hook_attn_out", lambda x, hook: cache.__setitem__("attn", x))])
        attn = cache["attn"].clone()
        valid = prep.valid
        attn[..., 3] = torch.where(valid, prep.base[1][..., 3], attn[..., 3])
        block = model.blocks[0]
        mlp_out = block.mlp(block.ln2(cache["pre"] + attn))
        mlp_out = torch.where(valid[..., None], mlp_out, prep.clean[2])
        logits = model.run_with_hooks(batch.tokens, fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, hook: mlp_out)])
        expected = output_metrics(final_logits(logits, batch.last), final_logits(logits, batch.last), batch)["logit_diff"]
    got = edge_ablation(engine, batch, mask, prep)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, clean, atol=1e-3)


def test_output_metrics_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    clean = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    batch = TaskBatch(torch.zeros((2, 3), dtype=torch.long), torch.zeros((2, 3), dtype=torch.long),
                      torch.tensor([2, 2]), torch.tensor([2, 2]), torch.tensor([0, 1]), torch.tensor([2, 0]), ("t", "t"), 0)
    m = output_metrics(logits, clean, batch)
    assert m["logit_diff"].tolist() == [3.0, 1.0]
    assert m["answer_logit"].tolist() == [2.0, 1.0]
    p0 = torch.softmax(logits[0], -1)[0]
    assert m["answer_prob"][0] == pytest.approx(float(p0)) and m["loss"][0] == pytest.approx(-float(p0.log()))
    q = torch.full((3,), 1 / 3)  # KL(clean || ablated) for row 0, and 0 where they agree
    assert m["kl"][0] == pytest.approx(float((q * (q.log() - torch.log_softmax(logits[0], -1))).sum()))
    assert m["kl"][1] == pytest.approx(0.0, abs=1e-7)
