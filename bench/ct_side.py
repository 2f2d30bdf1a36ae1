"""circuit-tracer's side of bench/vs_circuit_tracer.py; runs inside bench/out/ct-venv only.

Loads the case's HookedTransformer through circuit-tracer's own ``from_config`` plus the saved
state dict, its transcoders through circuit-tracer's own loaders (``load_transcoder_set`` for
per-layer transcoders, ``load_clt`` for a cross-layer one), runs ``attribute`` on every prompt
(the first once more beforehand, untimed, to warm up), then ``prune_graph`` and
``compute_graph_scores``, and writes everything to ``<case>/ct_result.npz``.

Usage: ct-venv/bin/python bench/ct_side.py CASE_DIR
       ct-venv/bin/python bench/ct_side.py CASE_DIR OUT_DIR SLUG   (circuit-tracer's graph JSON of the first prompt)
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from circuit_tracer import attribute
from circuit_tracer.graph import Graph, compute_graph_scores, prune_graph
from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
from circuit_tracer.transcoder import load_transcoder_set
from circuit_tracer.transcoder.cross_layer_transcoder import load_clt
from safetensors.torch import load_file
from transformer_lens import HookedTransformerConfig
from transformers import PreTrainedTokenizerFast


def load(case: Path) -> tuple[dict, torch.device, HookedTransformerConfig, TransformerLensReplacementModel]:
    """The case's spec, device, model config and circuit-tracer replacement model."""
    spec = json.loads((case / "case.json").read_text())
    device = torch.device(spec["device"])
    cfg_dict = json.loads((case / "model" / "tl_config.json").read_text())
    fields = HookedTransformerConfig.__dataclass_fields__
    cfg_dict["dtype"] = getattr(torch, cfg_dict.get("dtype", "float32"))
    cfg = HookedTransformerConfig(**{k: v for k, v in cfg_dict.items() if k in fields and fields[k].init})
    cfg.device = str(device)
    tok = PreTrainedTokenizerFast.from_pretrained(str(_tokenizer_for_this_transformers(case)))
    tdir = case / "ct_transcoders"
    if spec["kind"] == "clt":
        tcs = load_clt(str(tdir), feature_input_hook="mlp.hook_in", feature_output_hook="mlp.hook_out",
                       device=device, dtype=torch.float32, lazy_decoder=False, scan="bench")
    else:
        paths = {i: str(tdir / f"layer_{i}.safetensors") for i in range(cfg.n_layers)}
        tcs = load_transcoder_set(paths, scan="bench", feature_input_hook="mlp.hook_in",
                                  feature_output_hook="mlp.hook_out", device=device, dtype=torch.float32,
                                  lazy_encoder=False, lazy_decoder=False)
    model = TransformerLensReplacementModel.from_config(cfg, tcs, tokenizer=tok)
    state = load_file(str(case / "model" / "model.safetensors"))
    remapped = {}
    for k, v in state.items():
        if k.endswith((".mask", ".IGNORE")):   # buffers TransformerLens rebuilds itself (causal mask)
            continue
        k = k.replace(".mlp.", ".mlp.old_mlp.") if ".mlp." in k else k
        k = k.replace("unembed.", "unembed.old_unembed.") if k.startswith("unembed.") else k
        remapped[k] = v
    missing, unexpected = model.load_state_dict(remapped, strict=False)
    missing = [m for m in missing if not m.endswith((".mask", ".IGNORE", "rotary_sin", "rotary_cos"))
               and not m.startswith("transcoders.")]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.to(device).eval()
    return spec, device, cfg, model


def main(case: Path) -> None:
    spec, device, cfg, model = load(case)
    prompts = [torch.tensor(p, dtype=torch.long, device=device) for p in spec["prompts"]]
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        out["logits_0"] = model(prompts[0][None])[0, -1].float().cpu().numpy()
    attribute(prompts[0], model, batch_size=spec["batch_size"])          # warm-up, untimed
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for i, tokens in enumerate(prompts):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        g: Graph = attribute(tokens, model, batch_size=spec["batch_size"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        pr = prune_graph(g, node_threshold=0.8, edge_threshold=0.98)
        rep, comp = compute_graph_scores(g)
        pruned = Graph(input_string=g.input_string, input_tokens=g.input_tokens, active_features=g.active_features,
                       adjacency_matrix=g.adjacency_matrix * pr.edge_mask, cfg=cfg,
                       selected_features=g.selected_features, activation_values=g.activation_values,
                       logit_targets=g.logit_targets, logit_probabilities=g.logit_probabilities, scan="bench")
        prep, pcomp = compute_graph_scores(pruned)
        out[f"adjacency_{i}"] = g.adjacency_matrix.float().cpu().numpy()
        out[f"active_{i}"] = g.active_features.cpu().numpy()
        out[f"selected_{i}"] = g.selected_features.cpu().numpy()
        out[f"logit_tokens_{i}"] = g.logit_token_ids.cpu().numpy()
        out[f"logit_probs_{i}"] = g.logit_probabilities.float().cpu().numpy()
        out[f"node_mask_{i}"] = pr.node_mask.cpu().numpy()
        out[f"edge_mask_{i}"] = pr.edge_mask.cpu().numpy()
        out[f"scores_{i}"] = np.array([rep, comp, prep, pcomp])
    out["seconds"] = np.array(seconds)
    out["peak_rss_mib"] = np.array(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak_gpu_mib"] = np.array(torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0)
    np.savez_compressed(case / "ct_result.npz", **out)


def _tokenizer_for_this_transformers(case: Path) -> Path:
    """The zoo tokenizer, its config naming the class transformers 4.x knows (transformers 5,
    in mechgraph's venv, writes ``TokenizersBackend``, which 4.57 cannot load)."""
    src, dst = case / "tokenizer", case / "ct_tokenizer"
    dst.mkdir(exist_ok=True)
    (dst / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dst


def graph_file(case: Path, out: Path, slug: str) -> Path:
    """circuit-tracer's own Neuronpedia graph JSON (``create_graph_files``, pruned at 0.8/0.98)
    of the case's first prompt, written to ``out/<slug>.json``."""
    from circuit_tracer.utils.create_graph_files import create_graph_files

    spec, device, cfg, model = load(case)
    g: Graph = attribute(torch.tensor(spec["prompts"][0], dtype=torch.long, device=device), model,
                         batch_size=spec["batch_size"])
    g.cfg.tokenizer_name = str(_tokenizer_for_this_transformers(case))
    create_graph_files(g, slug=slug, output_path=str(out), scan="bench", node_threshold=0.8, edge_threshold=0.98)
    return out / f"{slug}.json"


if __name__ == "__main__":
    if len(sys.argv) == 4:      # ct_side.py CASE_DIR OUT_DIR SLUG: a graph JSON file only
        print(graph_file(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
    else:
        main(Path(sys.argv[1]))
