"""mechgraph against circuit-tracer 0.5.0's own results, without circuit-tracer installed.

``tests/fixtures/circuit_tracer_{plt,clt}.npz`` were written by ``bench/vs_circuit_tracer.py
--fixture``: a tiny toy model (config and weights), its transcoders in circuit-tracer's file
layout, one prompt, and what circuit-tracer computed on it (adjacency, active and selected
features, target logits, pruned masks at 0.8/0.98, replacement and completeness scores of the
full and the pruned graph). Here mechgraph rebuilds the same model and transcoders from those
arrays and must reproduce every figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ingest.dictionaries.transcoder import (
    TranscoderDictionary,
    in_hook,
)
from ingest.dictionaries.transcoder_set import CrossLayerTranscoder, CrossLayerTranscoders, PerLayerTranscoders
from ingest.replacement.attribute import trace_prompt
from ingest.replacement.config import TraceConfig
from ingest.replacement.prune import Layout, prune, scores

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def load_case(kind: str) -> tuple[dict[str, np.ndarray], object, object]:
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    data = dict(np.load(FIXTURES / f"circuit_tracer_{kind}.npz"))
    cfg_dict = json.loads(str(data["tl_config"]))
    fields = HookedTransformerConfig.__dataclass_fields__
    cfg_dict = {k: v for k, v in cfg_dict.items() if k in fields and fields[k].init}
    cfg_dict["dtype"], cfg_dict["device"] = torch.float32, "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**cfg_dict), move_to_device=False)
    state = {k[len("model/"):]: torch.from_numpy(v) for k, v in data.items() if k.startswith("model/")}
    model.load_state_dict(state)
    model.eval()
    ct = {k[len("ct/"):]: torch.from_numpy(v) for k, v in data.items() if k.startswith("ct/")}
    L, d = model.cfg.n_layers, model.cfg.d_model
    if kind == "plt":
        from sae_lens.saes import SkipTranscoder, SkipTranscoderConfig

        layers = []
        for i in range(L):
            W_enc = ct[f"layer_{i}/W_enc"]                       # circuit-tracer: [d_dict d_model]
            c = SkipTranscoderConfig(d_in=d, d_sae=W_enc.shape[0], d_out=d, apply_b_dec_to_input=False)
            c.metadata.hook_name = in_hook(i)
            t = SkipTranscoder(c)
            with torch.no_grad():
                t.W_enc.copy_(W_enc.T)
                t.W_dec.copy_(ct[f"layer_{i}/W_dec"])
                t.b_enc.copy_(ct[f"layer_{i}/b_enc"])
                t.b_dec.copy_(ct[f"layer_{i}/b_dec"])
                t.W_skip.copy_(ct[f"layer_{i}/W_skip"])
            layers.append(TranscoderDictionary(t))
        tcs: object = PerLayerTranscoders(layers)
    else:
        d_dict = ct["W_enc_0/W_enc_0"].shape[0]
        clt = CrossLayerTranscoder(L, d, d_dict, activation="relu")
        with torch.no_grad():
            for i in range(L):
                clt.W_enc[i].copy_(ct[f"W_enc_{i}/W_enc_{i}"].T)
                clt.b_enc[i].copy_(ct[f"W_enc_{i}/b_enc_{i}"])
                clt.b_dec[i].copy_(ct[f"W_enc_{i}/b_dec_{i}"])
                clt.W_dec[i].copy_(ct[f"W_dec_{i}/W_dec_{i}"])
        tcs = CrossLayerTranscoders(clt)
    return data, model, tcs


@pytest.mark.parametrize("kind", ["plt", "clt"])
def test_mechgraph_reproduces_circuit_tracer(kind: str) -> None:
    data, model, tcs = load_case(kind)
    tokens = torch.from_numpy(data["tokens"])
    g = trace_prompt(model, tcs, tokens, TraceConfig())  # type: ignore[arg-type]
    assert [t.token for t in g.targets] == data["ct_logit_tokens"].tolist()
    assert np.allclose([t.weight for t in g.targets], data["ct_logit_probs"], rtol=1e-5)
    assert torch.equal(g.active_features, torch.from_numpy(data["ct_active"]).long())
    assert torch.equal(g.selected_features, torch.from_numpy(data["ct_selected"]).long())
    A_ct = torch.from_numpy(data["ct_adjacency"])
    assert (g.adjacency - A_ct).abs().max() / A_ct.abs().max() <= 1e-4
    layout = Layout(g.n_features, g.n_errors, g.n_pos, g.n_targets)
    p = prune(g.adjacency, layout, g.target_weights)
    assert torch.equal(p.node_mask, torch.from_numpy(data["ct_node_mask"]))
    assert torch.equal(p.edge_mask, torch.from_numpy(data["ct_edge_mask"]))
    full = scores(g.adjacency, layout, g.target_weights)
    pruned = scores(g.adjacency * p.edge_mask, layout, g.target_weights)
    ct_scores = data["ct_scores"].tolist()
    for ours, theirs in zip([full.replacement, full.completeness, pruned.replacement, pruned.completeness],
                            ct_scores, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-3)
