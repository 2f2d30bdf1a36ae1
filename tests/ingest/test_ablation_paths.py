"""Edge ablation's shortcuts against the definition run node by node.

:func:`ingest.ablation.edge_ablation` groups downstream nodes by in-mask, starts each pass at the
latest layer whose incoming residual stream is a function of slot values (possibly below the
slot's own layer), ignores in-edges that cannot change a pass (from slots it does not read, or
from nodes at their baseline) and leaves nodes nothing reads at their baseline. Here it is
compared with a reference written straight from the module docstring: one pass from the tokens
per downstream node, every slot at its masked value, no grouping and no shortcut. Models: SAEs
with a nonzero error on ``resid_post`` (a start below the slot's layer, the output started below
the last layer), ``attn_out``/``mlp_out`` slots (a start from the embedding and the earlier
outputs), and slots with no usable start at all.
"""

from __future__ import annotations

import pytest
import torch

from ingest.ablation import GraphMask, edge_ablation
from ingest.attribution.config import AttributionConfig, Baseline
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.slots import build_slots
from ingest.dictionaries import IdentityDictionary
from ingest.tasks.encode import TaskBatch, final_logits
from tests.ingest.test_attribution import D_MODEL as D
from tests.ingest.test_attribution import random_sae

MODELS = {
    # slot at resid_post 2 starts at layer 1, mlp_out 3 at layer 3, the output at layer 3
    "resid_sae": (4, True, ["sae:blocks.0.hook_resid_post", "sae:blocks.2.hook_resid_post",
                            "sae:blocks.3.hook_mlp_out"]),
    # mlp_out 2 and the output start at layer 1 (embedding + attn_out 0 + mlp_out 0)
    "attn_mlp": (3, True, ["id:blocks.0.hook_attn_out", "sae:blocks.0.hook_mlp_out", "sae:blocks.2.hook_mlp_out"]),
    # no embedding slot: no layer's incoming stream is a function of the slots; all from the tokens
    "no_start": (3, False, ["sae:blocks.0.hook_attn_out", "id:blocks.1.hook_mlp_out", "sae:blocks.2.hook_attn_out"]),
}


def build(name: str, baseline: str):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    n_layers, embed, specs = MODELS[name]
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=D, n_heads=2, d_head=D // 2, d_mlp=16, n_ctx=16,
                                  d_vocab=20, act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg).eval()
    dicts = [random_sae(hook, i) if kind == "sae" else IdentityDictionary(D, hook_name=hook)
             for i, (kind, hook) in enumerate(s.split(":") for s in specs)]
    slots = build_slots(model, dicts, include_embed=embed)
    engine = AttributionEngine(model, slots, AttributionConfig(steps=1, baseline=Baseline(baseline)))
    g = torch.Generator().manual_seed(0)
    n, T = 4, 7
    tokens, cf = torch.randint(2, 20, (2, n, T), generator=g)
    cf[:, :2] = tokens[:, :2]  # the prompts agree at first, as task pairs do: nodes there do not move
    last = torch.tensor([6, 4, 6, 5])
    batch = TaskBatch(tokens, cf, last, last.clone(), torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8, 9, 10]),
                      ("t",) * n, 0)
    if baseline == "mean":
        engine.mean = engine.mean_baseline(batch)
    return engine, batch, engine.prepare(batch)


def reference(engine: AttributionEngine, batch: TaskBatch, mask: GraphMask, prep) -> tuple[torch.Tensor, list]:
    """Logits and per-slot latents of the frozen graph, straight from the definition: each kept
    downstream node reads its own pass from the tokens, in which every upstream slot holds
    ``decode(f^b + M_d ∘ (f' − f^b)) + e^b + [e → d kept](e' − e^b)``."""
    S = engine.S
    f_abl: list = [None] * S
    e_abl: list = [None] * S

    def values(row: list[torch.Tensor], upto: int) -> list[torch.Tensor]:
        out = []
        for s, slot in enumerate(engine.slots):
            if s >= upto:
                out.append(prep.clean[s])
            elif slot.dictionary is None:
                out.append(e_abl[s] if bool(row[s][slot.vector]) else prep.base[s])
            else:
                fb = prep.f_base[s]
                f = torch.where(row[s][:slot.n_latents], f_abl[s], fb)
                e = e_abl[s] if bool(row[s][slot.vector]) else prep.base[s] - slot.dictionary.decode(fb)
                out.append(slot.dictionary.decode(f) + e)
        return out

    def in_row(m: int, d: int) -> list[torch.Tensor]:
        return [mask.edges[s, m][d] if (s, m) in mask.edges else torch.zeros(engine.slots[s].n_nodes, dtype=torch.bool)
                for s in range(m)]

    valid = prep.valid[..., None]
    with torch.no_grad():
        for m, slot in enumerate(engine.slots):
            keep = mask.kept(m)
            if slot.dictionary is None:
                e_abl[m] = prep.clean[m] if bool(keep[slot.vector]) else prep.base[m]
                continue
            dec = slot.dictionary.decode
            fb = prep.f_base[m]
            f_new, e_new = fb.clone(), prep.base[m] - dec(fb)
            for d in keep.nonzero().flatten().tolist():
                _, incoming = engine.frozen_forward(batch.tokens, values(in_row(m, d), m), stop_at_layer=slot.layer + 1)
                y = incoming[m].view_as(prep.clean[m])
                f = slot.dictionary.encode(y)
                if d < slot.n_latents:
                    f_new[..., d] = f[..., d]
                else:
                    e_new = y - dec(f)
            f_abl[m] = torch.where(valid, f_new, prep.f_clean[m])
            e_abl[m] = torch.where(valid, e_new, prep.clean[m] - dec(prep.f_clean[m]))
        logits, _ = engine.frozen_forward(batch.tokens, values(in_row(S, 0), S))
    return final_logits(logits, batch.last), f_abl


def random_graph(engine: AttributionEngine, seed: int, p_node: float, p_edge: float) -> GraphMask:
    """Random kept nodes and random kept edges between them (dead ends and unread nodes
    included); the output reads a random subset of the last slots."""
    g = torch.Generator().manual_seed(seed)
    nodes = {s: torch.rand(slot.n_nodes, generator=g) < p_node for s, slot in enumerate(engine.slots)}
    full = GraphMask.complete(engine, nodes)
    edges = {p: M & (torch.rand(M.shape, generator=g) < p_edge) for p, M in full.edges.items()}
    return GraphMask(nodes=nodes, edges=edges)


def graphs(engine: AttributionEngine) -> dict[str, GraphMask]:
    every = {s: torch.ones(slot.n_nodes, dtype=torch.bool) for s, slot in enumerate(engine.slots)}
    sparse = random_graph(engine, 1, 0.6, 0.3)
    return {"sparse": sparse, "dense": random_graph(engine, 2, 0.8, 0.7),
            "complement": sparse.complement(engine, "edge"), "complete": GraphMask.complete(engine, every)}


@pytest.mark.parametrize("baseline", ["counterfactual", "mean"])
@pytest.mark.parametrize("name", list(MODELS))
def test_edge_ablation_equals_the_definition(name, baseline):
    engine, batch, prep = build(name, baseline)
    clean = final_logits(engine.model(batch.tokens), batch.last)
    for label, mask in graphs(engine).items():
        want, _ = reference(engine, batch, mask, prep)
        got = edge_ablation(engine, batch, mask, prep)
        assert torch.allclose(got, want, atol=1e-5), (label, (got - want).abs().max())
        if label != "complete":  # the graph changes the output, so the comparison has teeth
            assert not torch.allclose(got, clean, atol=1e-3), label
    errors = [s for s, slot in enumerate(engine.slots) if slot.dictionary is not None and slot.dictionary.kind != "identity"]
    err = prep.clean[errors[0]] - engine.slots[errors[0]].dictionary.decode(prep.f_clean[errors[0]])
    assert err.abs().max() > 0.1  # an SAE with a real error node


@pytest.mark.parametrize("name", list(MODELS))
def test_latents_of_every_kept_node_equal_the_definition(name):
    """With ``latents`` asked for, every kept node is computed (none is left at its baseline)."""
    engine, batch, prep = build(name, "counterfactual")
    mask = random_graph(engine, 3, 0.6, 0.3)
    _, want = reference(engine, batch, mask, prep)
    got: dict[int, torch.Tensor] = {}
    edge_ablation(engine, batch, mask, prep, latents=got)
    for s, slot in enumerate(engine.slots):
        if slot.dictionary is None:
            continue
        keep = mask.kept(s)[:slot.n_latents]
        if s == engine.S - 1:  # the last slot's latents are exact at each prompt's last position
            rows = torch.arange(len(batch))
            got[s], want[s] = got[s][rows, batch.last], want[s][rows, batch.last]
        assert torch.allclose(got[s][..., keep], want[s][..., keep], atol=1e-5), (s, slot.hook)
