"""Component-level edges on a hand-built linear model, checked against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from ingest.attribution.components import component_edges


def _model() -> HookedTransformer:
    """Two attention-only layers, one head each, no LayerNorm, W_Q = W_K = 0 (uniform causal
    attention), so the metric is linear in every component's output. Head 0.0 copies dims 0,1
    of the embedding; head 1.0 reads only dims 2,3 (no connection to head 0.0)."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=4, n_ctx=4, d_head=4, n_heads=1, d_vocab=5,
                                  attn_only=True, normalization_type=None, act_fn="relu", seed=0)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E.copy_(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))
        model.blocks[0].attn.W_V[0] = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))
        model.blocks[0].attn.W_O[0] = torch.diag(torch.tensor([2.0, -1.0, 0.0, 0.0]))
        model.blocks[1].attn.W_V[0] = torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0]))
        model.blocks[1].attn.W_O[0] = torch.eye(4)
        model.W_U.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0],
                                      [0, 0, 0, 1.0, 0]]))
    return model


def _metric(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1, 0] + logits[:, -1, 1] - logits[:, -1, 2] + 0.5 * logits[:, -1, 3]


@pytest.mark.parametrize("steps", [1, 4])
def test_component_edges_equal_the_hand_computed_values(steps):
    model = _model()
    tokens, base = torch.tensor([[0, 1, 2, 3]]), torch.tensor([[4, 4, 1, 0]])
    g = component_edges(model, tokens, base, _metric, steps=steps)
    E, n = model.W_E.detach(), 4
    d = torch.tensor([1.0, 1.0, -1.0, 0.5])  # dM/d(final residual at the last position)
    # head 0.0 at the last position: mean of the embeddings, dims scaled by (2, -1, 0, 0)
    o00 = lambda t: (E[t].mean(0) * torch.tensor([2.0, -1.0, 0, 0]))  # noqa: E731
    assert g.weights[("L0.H0", "output")] == pytest.approx(float((o00(tokens[0]) - o00(base[0])) @ d), abs=1e-5)
    # head 1.0 reads dims 2, 3 only: head 0.0 writes dims 0, 1, so no connection at all
    assert abs(g.weights[("L0.H0", "L1.H0")]) < 1e-6
    # embed -> head 1.0: every position p feeds the last query with weight 1/n through dims 2, 3
    grad_in = d * torch.tensor([0, 0, 1.0, 1.0]) / n
    want = float(((E[tokens[0]] - E[base[0]]) * grad_in).sum())
    assert g.weights[("embed", "L1.H0")] == pytest.approx(want, abs=1e-5)
    # the metric is linear here, so the edges into the output add up to its change exactly
    with torch.no_grad():
        change = float(_metric(model(tokens)) - _metric(model(base)))
    assert sum(w for (u, v), w in g.weights.items() if v == "output") == pytest.approx(change, abs=1e-5)


def test_component_edges_do_not_depend_on_a_basis_rotation_of_the_residual():
    """Rotating the residual basis (W_E, W_O by Q; W_V, W_U by Q^T) changes every neuron and
    feature value but not one component edge."""
    model = _model()
    tokens, base = torch.tensor([[0, 1, 2, 3]]), torch.tensor([[4, 4, 1, 0]])
    before = component_edges(model, tokens, base, _metric, steps=2).weights
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        model.W_E.copy_(model.W_E @ Q)
        model.W_U.copy_(Q.T @ model.W_U)
        for block in model.blocks:
            block.attn.W_V[0] = Q.T @ block.attn.W_V[0]
            block.attn.W_O[0] = block.attn.W_O[0] @ Q
    after = component_edges(model, tokens, base, _metric, steps=2).weights
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=1e-5)


# -- ingest --graph component through the real server -------------------------------------------

def linear_model(d_vocab: int, tokenizer=None) -> HookedTransformer:
    """Two layers of two heads and an MLP, no LayerNorm, W_Q = W_K = 0 (uniform causal
    attention), every bias 0 but b_in = 20 (the ReLUs never switch off): the logits are affine in
    the embedding, so integrated gradients are exact at any K and an edge u -> v equals the
    effect of removing u's change from v's input alone. Residual dims 4, 5 are read only by head
    1.1 and written only by the embedding: layer-0 components have no edge into head 1.1."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=6, n_ctx=32, d_head=3, n_heads=2, d_mlp=4, d_vocab=d_vocab,
                                  act_fn="relu", normalization_type=None, seed=0)
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E.copy_(torch.randn(d_vocab, 6, generator=g))
        model.W_pos.copy_(0.3 * torch.randn(32, 6, generator=g))
        model.W_U.copy_(torch.randn(6, d_vocab, generator=g))
        for layer, block in enumerate(model.blocks):
            block.attn.W_V.copy_(0.5 * torch.randn(2, 6, 3, generator=g))
            block.attn.W_O.copy_(0.5 * torch.randn(2, 3, 6, generator=g))
            block.mlp.W_in.copy_(0.2 * torch.randn(6, 4, generator=g))
            block.mlp.b_in.fill_(20.0)
            block.mlp.W_out.copy_(0.2 * torch.randn(4, 6, generator=g))
            if layer == 0:  # layer 0 writes dims 0..3 only
                block.attn.W_O[:, :, 4:] = 0
                block.mlp.W_out[:, 4:] = 0
        model.blocks[1].attn.W_V[1, :4] = 0  # head 1.1 reads dims 4, 5 only
    return model


def linear_checkpoint(root: Path) -> Path:
    """``linear_model`` saved as a ``path:`` checkpoint with the zoo's word-level tokenizer."""
    from ingest.zoo.store import save_checkpoint
    from ingest.zoo.tokenizer import build_tokenizer

    tok = build_tokenizer(root / "ckpt" / "tokenizer")
    save_checkpoint(linear_model(len(tok), tok), root / "ckpt")
    return root / "ckpt"


def patched_edges(model: HookedTransformer, batch, baseline: str = "counterfactual",
                  reference=None) -> dict[tuple[str, str], torch.Tensor]:
    """Per-example w(u -> v), measured by patching: M(clean) - M(v's input without u's change
    from the baseline), the baseline embedding (the counterfactual prompt's, zero, or the mean
    over the graph positions of ``reference``) at every position but BOS."""
    from ingest.attribution.batch import logit_diff

    valid = (torch.arange(batch.tokens.shape[1])[None] <= batch.last[:, None])
    valid[:, 0] = False
    keep = valid[..., None].float()

    def run(tokens, hooks=()):
        cache = {}
        names = ["blocks.0.hook_resid_pre"] + [f"blocks.{L}.{n}" for L in range(2)
                                               for n in ("attn.hook_result", "hook_mlp_out")]
        save = [(n, lambda x, hook: cache.__setitem__(hook.name, x)) for n in names]
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks) + save)
        out = {"embed": cache["blocks.0.hook_resid_pre"]}
        for L in range(2):
            out |= {f"L{L}.H{h}": cache[f"blocks.{L}.attn.hook_result"][:, :, h] for h in range(2)}
            out[f"L{L}.MLP"] = cache[f"blocks.{L}.hook_mlp_out"]
        return logit_diff(logits, batch), out

    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        m_clean, clean = run(batch.tokens)
        if baseline == "counterfactual":
            raw = run(batch.cf_tokens)[1]["embed"]
        elif baseline == "zero":
            raw = torch.zeros_like(clean["embed"])
        else:
            ref = run(reference.tokens)[1]["embed"]
            pos = torch.arange(reference.tokens.shape[1])[None]
            raw = ref[(pos <= reference.last[:, None]) & (pos >= 1)].mean(0).expand_as(clean["embed"])
        x_base = torch.where(valid[..., None], raw, clean["embed"])
        _, base = run(batch.tokens, [("blocks.0.hook_resid_pre", lambda x, hook: x_base)])
        order = ["embed", "L0.H0", "L0.H1", "L0.MLP", "L1.H0", "L1.H1", "L1.MLP", "output"]
        where = {"L0.H0": ("blocks.0", 0), "L0.H1": ("blocks.0", 1), "L0.MLP": ("blocks.0", None),
                 "L1.H0": ("blocks.1", 0), "L1.H1": ("blocks.1", 1), "L1.MLP": ("blocks.1", None)}
        out = {}
        for i, u in enumerate(order[:-1]):
            delta = (clean[u] - base[u]) * keep
            for v in order[i + 1:]:
                if u[:2] == v[:2] and ".H" in v:
                    continue  # a head reads before anything of its own layer writes: no pair
                if v == "output":
                    hooks = [("blocks.1.hook_resid_post", lambda x, hook, d=delta: x - d)]
                elif v.endswith("MLP"):
                    hooks = [(f"{where[v][0]}.hook_mlp_in", lambda x, hook, d=delta: x - d)]
                else:
                    def head_in(x, hook, d=delta, h=where[v][1]):
                        x = x.clone()
                        x[:, :, h] -= d
                        return x
                    hooks = [(f"{where[v][0]}.hook_{k}_input", head_in) for k in "qkv"]
                out[u, v] = m_clean - run(batch.tokens, hooks)[0]
        return out
    finally:
        model.set_use_attn_result(False)
        model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)


@pytest.mark.parametrize("baseline", ["counterfactual", "zero", "mean"])
def test_ingest_component_graph_stores_the_patched_edge_weights(db, tmp_path, baseline):
    from ingest.attribution.config import AttributionConfig
    from ingest.component_graph import component_key
    from ingest.pipeline import IngestConfig, ingest, resolve
    from queries.loader import run_query

    ckpt = linear_checkpoint(tmp_path)
    config = IngestConfig(model=f"path:{ckpt}", tasks=("ioi",), graph="component", examples=6, batch_size=4,
                          attribution=AttributionConfig(steps=2, threshold=0.0, baseline=baseline))
    result = ingest(db, config, state_root=tmp_path / "state")
    (task,) = result.tasks
    assert task.residual < 1e-5 and task.steps == 2  # affine: IG is exact, the output's edges sum to ΔM
    resolved = resolve(config)
    want = {pair: float(w.mean()) for pair, w in patched_edges(resolved.model, resolved.batches["ioi"], baseline,
                                                                resolved.reference.get("ioi")).items()}
    rows = run_query(db, "run_edges", {"run": result.run, "task": "ioi", "granularity": "component"})
    stored = {(r["source"], r["target"]): r["weight"] for r in rows}
    key = {n: component_key(n, model="ckpt", checkpoint="path", task="ioi")
           for n in ["embed", "L0.H0", "L0.H1", "L0.MLP", "L1.H0", "L1.H1", "L1.MLP", "output"]}
    nonzero = {pair for pair, w in want.items() if abs(w) > 1e-5}
    assert {("L0.H0", "L1.H1"), ("L0.H1", "L1.H1"), ("L0.MLP", "L1.H1")}.isdisjoint(nonzero)
    assert set(stored) == {(key[u], key[v]) for u, v in nonzero}  # every real edge, none invented
    for u, v in nonzero:
        assert stored[key[u], key[v]] == pytest.approx(want[u, v], rel=1e-4, abs=1e-5)
    assert key["L0.MLP"] == "mlp|ckpt|path|0" and key["L1.H1"] == "head|ckpt|path|1|1"
    assert task.edges == len(nonzero)
