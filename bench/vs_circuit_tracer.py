"""mechgraph's prompt graphs side by side with circuit-tracer 0.5.0, on the same model,
transcoders, prompts and targets, in one invocation.

    .venv/bin/python bench/vs_circuit_tracer.py                 # per-layer (skip) and cross-layer cases
    .venv/bin/python bench/vs_circuit_tracer.py --fixture       # also rewrite tests/fixtures/circuit_tracer_*.npz

What it does, per case (``plt``: one ReLU skip transcoder per layer; ``clt``: a ReLU
cross-layer transcoder):

1. builds a toy HookedTransformer (the zoo's architecture and word-level tokenizer, random
   weights, seeded) and random sparse transcoders, and saves them twice: in mechgraph's formats
   (``path:DIR``) and in circuit-tracer's (``layer_<i>.safetensors``; ``W_enc_<i>``/``W_dec_<i>``);
2. builds circuit-tracer 0.5.0 in its own virtualenv (``bench/peer_venv.sh``, bench/out/ct-venv)
   and runs ``bench/ct_side.py`` there: the model through circuit-tracer's ``from_config`` plus
   the state dict, the transcoders through its loaders, ``attribute``/``prune_graph``/
   ``compute_graph_scores``;
3. runs mechgraph's ``trace_prompt``/``prune``/``scores`` in a subprocess of this venv;
4. prints, per prompt and overall: max |A_mechgraph - A_ct| / max |A_ct| (nodes matched by
   layer, position, feature; target <= 1e-4), whether the pruned node sets at 0.8/0.98 are
   identical, both tools' replacement and completeness scores (full and pruned graph), and both
   tools' wall time (attribution only, after one untimed warm-up prompt) and peak memory (RSS
   of each tool's process; GPU peak on CUDA) with their ratio. The tools run alternately for
   ``--rounds`` rounds and each one's fastest round counts.

Each side runs in a fresh process, so peak RSS includes each tool's imports (torch and
friends), identical in both. Benchmarks print measured figures; they are not timed tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "ct-bench"
FIXTURES = ROOT / "tests" / "fixtures"

#: Case sizes: the bench cases, and the tiny ones whose circuit-tracer results CI keeps.
#: ``gpt2``: GPT-2-small's shape (the zoo's word-level vocabulary), 16k-latent per-layer transcoders
#: with encoder biases low enough that ~0.1% fire, and 64-token prompts (task prompts repeated).
SIZES = {"bench": dict(n_layers=4, d_model=64, n_heads=4, d_mlp=256, d_dict=256, clt_dict=192),
         "fixture": dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_dict=24, clt_dict=24),
         "gpt2": dict(n_layers=12, d_model=768, n_heads=12, d_mlp=3072, d_dict=16384, clt_dict=4096,
                      b_enc=-3.5, prompt_len=64)}


# -- building a case (mechgraph venv) ----------------------------------------------------------

def prompts(tokenizer: Any, n: int) -> list[list[int]]:
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples

    out = []
    for name in ("ioi", "induction", "greater_than", "sva"):
        batch = encode_examples(tokenizer, get_task(name).examples(n, seed=0, split="test"))
        for row, last in zip(batch.tokens.tolist(), batch.last.tolist(), strict=True):
            out.append(row[:last + 1])
    return out[: max(1, n * 4)]


def build_case(kind: str, size: str, seed: int, n_prompts: int, batch_size: int, device: str) -> Path:
    import torch
    from safetensors.torch import save_file
    from sae_lens.saes import SkipTranscoder, SkipTranscoderConfig

    from ingest.dictionaries.transcoder import in_hook
    from ingest.dictionaries.transcoder_set import CrossLayerTranscoder
    from ingest.zoo.store import save_checkpoint
    from ingest.zoo.tokenizer import build_tokenizer
    from ingest.zoo.train import ToyModelConfig, build_model

    s = SIZES[size]
    case = OUT / f"{size}-{kind}"
    (case / "ct_transcoders").mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(case / "model" / "tokenizer")
    build_tokenizer(case / "tokenizer")
    cfg = ToyModelConfig(name=f"bench-{size}", n_layers=s["n_layers"], d_model=s["d_model"], n_heads=s["n_heads"],
                         d_mlp=s["d_mlp"], steps=100, seed=seed)
    model = build_model(cfg, tok)
    save_checkpoint(model, case / "model")
    g = torch.Generator().manual_seed(seed + 1)
    d, L = s["d_model"], s["n_layers"]

    def rnd(*shape: int, scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    if kind == "plt":
        for layer in range(L):
            c = SkipTranscoderConfig(d_in=d, d_sae=s["d_dict"], d_out=d, apply_b_dec_to_input=False)
            c.metadata.hook_name = in_hook(layer)
            t = SkipTranscoder(c)
            with torch.no_grad():
                t.W_enc.copy_(rnd(d, s["d_dict"], scale=d ** -0.5))
                t.b_enc.copy_(rnd(s["d_dict"], scale=0.5) + s.get("b_enc", -1.5))
                t.W_dec.copy_(rnd(s["d_dict"], d, scale=0.05))
                t.b_dec.copy_(rnd(d, scale=0.02))
                t.W_skip.copy_(rnd(d, d, scale=0.05))
            t.save_model(case / "mg_transcoders" / f"layer_{layer}")
            save_file({"W_enc": t.W_enc.detach().T.contiguous(), "W_dec": t.W_dec.detach().contiguous(),
                       "b_enc": t.b_enc.detach().clone(), "b_dec": t.b_dec.detach().clone(),
                       "W_skip": t.W_skip.detach().contiguous()},
                      str(case / "ct_transcoders" / f"layer_{layer}.safetensors"))
    else:
        clt = CrossLayerTranscoder(L, d, s["clt_dict"], activation="relu")
        with torch.no_grad():
            clt.W_enc.copy_(rnd(L, d, s["clt_dict"], scale=d ** -0.5))
            clt.b_enc.copy_(rnd(L, s["clt_dict"], scale=0.5) + s.get("b_enc", -1.5))
            for i in range(L):
                clt.W_dec[i].copy_(rnd(s["clt_dict"], L - i, d, scale=0.05))
            clt.b_dec.copy_(rnd(L, d, scale=0.02))
        clt.save(case / "mg_transcoders")
        for i in range(L):
            save_file({f"W_enc_{i}": clt.W_enc[i].detach().T.contiguous(), f"b_enc_{i}": clt.b_enc[i].detach().clone(),
                       f"b_dec_{i}": clt.b_dec[i].detach().clone()},
                      str(case / "ct_transcoders" / f"W_enc_{i}.safetensors"))
            save_file({f"W_dec_{i}": clt.W_dec[i].detach().contiguous()},
                      str(case / "ct_transcoders" / f"W_dec_{i}.safetensors"))
    rows = prompts(tok, n_prompts)
    if "prompt_len" in s:  # BOS, then the prompt's tokens repeated up to the length
        rows = [(r + r[1:] * (s["prompt_len"] // max(1, len(r) - 1) + 1))[:s["prompt_len"]] for r in rows]
    spec = {"kind": kind, "size": size, "device": device, "batch_size": batch_size, "prompts": rows}
    (case / "case.json").write_text(json.dumps(spec))
    return case


# -- mechgraph's side (a subprocess of this venv) ----------------------------------------------

def mechgraph_side(case: Path) -> None:
    import numpy as np
    import torch

    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.attribute import trace_prompt
    from ingest.replacement.config import TraceConfig
    from ingest.replacement.prune import Layout, prune, scores
    from ingest.zoo.specs import load_model

    spec = json.loads((case / "case.json").read_text())
    device = spec["device"]
    model = load_model(f"path:{case / 'model'}", device=device)
    tcs = load_transcoders(f"path:{case / 'mg_transcoders'}", device=device)
    config = TraceConfig(batch_size=spec["batch_size"])
    toks = [torch.tensor(p) for p in spec["prompts"]]
    trace_prompt(model, tcs, toks[0], config)                         # warm-up, untimed
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    out: dict[str, Any] = {}
    seconds = []
    for i, tokens in enumerate(toks):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        g = trace_prompt(model, tcs, tokens, config)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        layout = Layout(g.n_features, g.n_errors, g.n_pos, g.n_targets)
        p = prune(g.adjacency, layout, g.target_weights, node_threshold=0.8, edge_threshold=0.98)
        full = scores(g.adjacency, layout, g.target_weights)
        pruned = scores(g.adjacency * p.edge_mask, layout, g.target_weights)
        out[f"adjacency_{i}"] = g.adjacency.numpy()
        out[f"active_{i}"] = g.active_features.numpy()
        out[f"selected_{i}"] = g.selected_features.numpy()
        out[f"logit_tokens_{i}"] = np.array([t.token for t in g.targets])
        out[f"node_mask_{i}"] = p.node_mask.numpy()
        out[f"scores_{i}"] = np.array([full.replacement, full.completeness, pruned.replacement, pruned.completeness])
    out["seconds"] = np.array(seconds)
    out["peak_rss_mib"] = np.array(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak_gpu_mib"] = np.array(torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0)
    np.savez_compressed(case / "mg_result.npz", **out)


# -- comparing ---------------------------------------------------------------------------------

def node_ids(active: Any, selected: Any, n_layers: int, n_pos: int, n_targets: int) -> list[tuple]:
    ids: list[tuple] = [("feature", *map(int, active[i])) for i in selected]
    ids += [("error", layer, p) for layer in range(n_layers) for p in range(n_pos)]
    ids += [("token", p) for p in range(n_pos)] + [("target", j) for j in range(n_targets)]
    return ids


def compare(case: Path) -> dict[str, Any]:
    import numpy as np

    spec = json.loads((case / "case.json").read_text())
    mg, ct = np.load(case / "mg_result.npz"), np.load(case / "ct_result.npz")
    n_layers = json.loads((case / "model" / "tl_config.json").read_text())["n_layers"]
    rows = []
    for i, p in enumerate(spec["prompts"]):
        if not np.array_equal(mg[f"logit_tokens_{i}"], ct[f"logit_tokens_{i}"]):
            raise SystemExit(f"prompt {i}: the tools chose different target logits")
        k = len(ct[f"logit_tokens_{i}"])
        ids_ct = node_ids(ct[f"active_{i}"], ct[f"selected_{i}"], n_layers, len(p), k)
        ids_mg = node_ids(mg[f"active_{i}"], mg[f"selected_{i}"], n_layers, len(p), k)
        where = {n: j for j, n in enumerate(ids_mg)}
        if set(where) != set(ids_ct):
            raise SystemExit(f"prompt {i}: the tools' node sets differ "
                             f"({len(set(ids_ct) - set(where))} only in circuit-tracer, "
                             f"{len(set(where) - set(ids_ct))} only in mechgraph)")
        perm = np.array([where[n] for n in ids_ct])
        A_mg = mg[f"adjacency_{i}"][np.ix_(perm, perm)]
        A_ct = ct[f"adjacency_{i}"]
        rel = float(np.abs(A_mg - A_ct).max() / np.abs(A_ct).max())
        same_nodes = bool(np.array_equal(mg[f"node_mask_{i}"][perm], ct[f"node_mask_{i}"]))
        rows.append({"prompt": i, "tokens": len(p), "features": int(len(ct[f"selected_{i}"])), "targets": k,
                     "rel_err": rel, "pruned_nodes_equal": same_nodes,
                     "n_pruned": int(ct[f"node_mask_{i}"].sum()),
                     "mg_scores": mg[f"scores_{i}"].tolist(), "ct_scores": ct[f"scores_{i}"].tolist()})
    return {"case": case.name, "rows": rows, "mg_seconds": float(mg["seconds"].sum()),
            "ct_seconds": float(ct["seconds"].sum()), "mg_rss": float(mg["peak_rss_mib"]),
            "ct_rss": float(ct["peak_rss_mib"]), "mg_gpu": float(mg["peak_gpu_mib"]),
            "ct_gpu": float(ct["peak_gpu_mib"]), "logits_0_ct": ct["logits_0"]}


def report(r: dict[str, Any]) -> bool:
    ok = True
    print(f"\n== {r['case']}: {len(r['rows'])} prompts ==")
    print(f"{'prompt':>6} {'tok':>4} {'feat':>5} {'tgt':>4} {'max|dA|/max|A_ct|':>18} {'pruned=':>8} "
          f"{'rep mg':>8} {'rep ct':>8} {'comp mg':>8} {'comp ct':>8} {'rep(pruned) mg/ct':>18} {'comp(pruned) mg/ct':>19}")
    for row in r["rows"]:
        m, c = row["mg_scores"], row["ct_scores"]
        print(f"{row['prompt']:>6} {row['tokens']:>4} {row['features']:>5} {row['targets']:>4} {row['rel_err']:>18.3e} "
              f"{str(row['pruned_nodes_equal']):>8} {m[0]:>8.5f} {c[0]:>8.5f} {m[1]:>8.5f} {c[1]:>8.5f} "
              f"{m[2]:>8.5f}/{c[2]:<8.5f} {m[3]:>9.5f}/{c[3]:<8.5f}")
        ok &= row["rel_err"] <= 1e-4 and row["pruned_nodes_equal"]
        ok &= all(abs(a - b) <= 1e-3 for a, b in zip(m, c, strict=True) if not (math.isnan(a) and math.isnan(b)))
    worst = max(row["rel_err"] for row in r["rows"])
    same = sum(row["pruned_nodes_equal"] for row in r["rows"])
    dscore = max(abs(a - b) for row in r["rows"] for a, b in zip(row["mg_scores"], row["ct_scores"], strict=True))
    ratio = r["mg_seconds"] / r["ct_seconds"]
    mean = [[sum(row[k][j] for row in r["rows"]) / len(r["rows"]) for j in range(4)] for k in ("mg_scores", "ct_scores")]
    print(f"max relative adjacency difference {worst:.3e} (target <= 1e-4); pruned node sets identical in "
          f"{same}/{len(r['rows'])} prompts; max score difference {dscore:.2e} (target <= 1e-3)")
    print(f"mean scores mechgraph / circuit-tracer: replacement {mean[0][0]:.5f} / {mean[1][0]:.5f}, completeness "
          f"{mean[0][1]:.5f} / {mean[1][1]:.5f}; pruned graph: replacement {mean[0][2]:.5f} / {mean[1][2]:.5f}, "
          f"completeness {mean[0][3]:.5f} / {mean[1][3]:.5f}")
    print(f"wall time (attribution, {len(r['rows'])} prompts, fastest of {len(r['rounds'])} rounds): mechgraph "
          f"{r['mg_seconds']:.3f} s, circuit-tracer {r['ct_seconds']:.3f} s, ratio {ratio:.2f}x (target <= 1.0x)")
    for i, x in enumerate(r["rounds"]):
        print(f"  round {i + 1}: mechgraph {x['mg']:.3f} s, circuit-tracer {x['ct']:.3f} s, ratio {x['mg'] / x['ct']:.2f}x, "
              f"load average (1 min) {x['load']:.1f} on {os.cpu_count()} CPUs")
    mem = f"peak RSS: mechgraph {r['mg_rss']:.0f} MiB, circuit-tracer {r['ct_rss']:.0f} MiB, ratio {r['mg_rss'] / r['ct_rss']:.2f}x"
    if r["ct_gpu"]:
        mem += (f"; peak GPU: mechgraph {r['mg_gpu']:.0f} MiB, circuit-tracer {r['ct_gpu']:.0f} MiB, "
                f"ratio {r['mg_gpu'] / r['ct_gpu']:.2f}x")
    print(mem)
    return bool(ok and ratio <= 1.0)


def write_fixture(case: Path) -> Path:
    """The tiny case's model, transcoders, first prompt and circuit-tracer's results, for CI."""
    import numpy as np
    from safetensors.torch import load_file

    spec = json.loads((case / "case.json").read_text())
    ct = np.load(case / "ct_result.npz")
    out: dict[str, Any] = {"tl_config": np.array(json.dumps(json.loads((case / "model" / "tl_config.json").read_text()))),
                           "tokens": np.array(spec["prompts"][0]), "kind": np.array(spec["kind"])}
    for k, v in load_file(str(case / "model" / "model.safetensors")).items():
        out[f"model/{k}"] = v.numpy()
    tdir = case / "ct_transcoders"
    for f in sorted(tdir.glob("*.safetensors")):
        for k, v in load_file(str(f)).items():
            out[f"ct/{f.stem}/{k}"] = v.numpy()
    for k in ("adjacency", "active", "selected", "logit_tokens", "logit_probs", "node_mask", "edge_mask", "scores"):
        out[f"ct_{k}"] = ct[f"{k}_0"]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    path = FIXTURES / f"circuit_tracer_{spec['kind']}.npz"
    np.savez_compressed(path, **out)
    return path


def mechgraph_only(args: argparse.Namespace) -> None:
    """mechgraph's side alone: wall time and peak memory, no comparison."""
    import numpy as np

    for kind in args.kinds.split(","):
        case = build_case(kind, args.size, args.seed, args.prompts, args.batch_size, args.device)
        subprocess.run([sys.executable, str(Path(__file__)), "--side", "mechgraph", str(case)], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        mg = np.load(case / "mg_result.npz")
        n = len(mg["seconds"])
        feats = [int(len(mg[f"selected_{i}"])) for i in range(n)]
        gpu = f", peak GPU {float(mg['peak_gpu_mib']):,.0f} MiB" if float(mg["peak_gpu_mib"]) else ""
        print(f"== {case.name} (mechgraph only, no circuit-tracer): {n} prompts, features {feats}; "
              f"{float(mg['seconds'].sum()):.3f} s ({float(mg['seconds'].mean()):.3f} s/prompt); "
              f"peak RSS {float(mg['peak_rss_mib']):,.0f} MiB{gpu}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("case_dir", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--kinds", default="plt,clt")
    ap.add_argument("--prompts", type=int, default=2, help="prompts per task (4 tasks)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs of each tool; the fastest counts")
    ap.add_argument("--fixture", action="store_true", help="also rewrite the CI fixtures from the tiny cases")
    ap.add_argument("--size", default="bench", choices=("bench", "gpt2"),
                    help="bench: the 4-layer toy; gpt2: GPT-2-small's shape, 16k-latent transcoders, 64 tokens")
    ap.add_argument("--no-peer", action="store_true",
                    help="mechgraph's side only (no circuit-tracer venv, e.g. on a machine without internet)")
    args = ap.parse_args()
    if args.side == "mechgraph":
        mechgraph_side(Path(args.case_dir))
        return
    if args.no_peer:
        mechgraph_only(args)
        return
    venv = subprocess.run(["bash", str(HERE / "peer_venv.sh")], check=True, capture_output=True, text=True,
                          env={**os.environ, "MECHGRAPH_PYTHON": sys.executable}).stdout.strip().splitlines()[-1]
    ct_python = str(Path(venv) / "bin" / "python")
    sizes = [args.size] + (["fixture"] if args.fixture else [])
    ok = True
    for size in sizes:
        for kind in args.kinds.split(","):
            n = args.prompts if size != "fixture" else 1
            case = build_case(kind, size, args.seed, n, args.batch_size, args.device)
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            rounds: list[dict[str, float]] = []
            # Alternate the tools for --rounds rounds and keep each one's fastest: the machine
            # is shared, so a single run of each measures the neighbours as much as the tools.
            for _ in range(args.rounds if size != "fixture" else 1):
                load = os.getloadavg()[0]
                subprocess.run([sys.executable, str(Path(__file__)), "--side", "mechgraph", str(case)], check=True,
                               env=env)
                subprocess.run([ct_python, str(HERE / "ct_side.py"), str(case)], check=True)
                result = compare(case)
                rounds.append({"mg": result["mg_seconds"], "ct": result["ct_seconds"],
                               "load": (load + os.getloadavg()[0]) / 2})
            result["mg_seconds"] = min(r["mg"] for r in rounds)
            result["ct_seconds"] = min(r["ct"] for r in rounds)
            result["rounds"] = rounds
            ok &= report(result)
            if size == "fixture":
                print(f"fixture written: {write_fixture(case).relative_to(ROOT)}")
    print("\nall figures within their targets" if ok else "\nSOME FIGURES MISS THEIR TARGETS")


if __name__ == "__main__":
    main()
