"""Part M of ``bench/attribution.py``: attribution memory against dictionary width.

The same GPT-2-small-shaped random model (``--mem-layers`` blocks, d_model 768) and the same
random prompt, with random TopK SAEs of two widths (``--mem-widths``, default 16,384 and
65,536 latents, the same ``k``) on every ``hook_resid_post``; ``AttributionEngine.attribute``
(edges, completeness deltas, node attributions) runs once per width, each width in its own
subprocess (``ru_maxrss`` is a per-process high-water mark; on CUDA the peak is
``torch.cuda.max_memory_allocated``).

Printed per width: the dictionaries' weights (W_enc and W_dec: ``width × 768 × 2 × 4 B`` per SAE,
400 MiB at 64k), resident memory once the model and dictionaries are loaded, the peak during
attribution, and the **working memory** = peak − resident after loading. The weights are inputs
and scale with width by definition, so the target (working-memory ratio 64k / 16k ≤ 1.3) applies to
the working memory; the total peak is printed beside. Working memory should follow active latents
and kept edges: both are printed too (a wider random SAE has somewhat more distinct active latents
on the same prompt, hence more candidate edges).

CPU peaks are resident-set samples every 2 ms (the child runs with ``MALLOC_MMAP_THRESHOLD_`` fixed
so that freed tensors go back to the system and resident memory tracks live tensors).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULT = "MEMORY-RESULT "


def child(args: argparse.Namespace) -> None:
    """One width in this process; prints one ``MEMORY-RESULT {json}`` line."""
    from attribution import Measure, _rss, gpt2_small_shaped, random_prompt  # bench/ is on sys.path

    from ingest.attribution.config import AttributionConfig
    from ingest.attribution.engine import AttributionEngine

    device = args.device
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, slots = gpt2_small_shaped(device, d_sae=args.width, k=args.k, seed=0, n_layers=args.layers)
    batch = random_prompt(args.seq, model.cfg.d_vocab, device, seed=0)
    weights = sum(p.numel() * p.element_size() for s in slots if s.dictionary is not None
                  for name, p in s.dictionary.named_parameters() if name.rsplit(".", 1)[-1].startswith("W_"))
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    config = AttributionConfig(steps=args.steps, threshold=args.threshold, chunk=args.chunk)
    engine = AttributionEngine(model, slots, config)
    gc.collect()
    resident = torch.cuda.memory_allocated() if device.startswith("cuda") else (_rss() or 0)
    load_s = time.perf_counter() - t0
    with Measure(device) as meas:
        graph = engine.attribute(batch, node_attributions=True, heads=False)
    edges = sum(len(r) for r in graph.edges.values())
    edge_bytes = sum(sum(t.numel() * t.element_size() for t in (r.example, r.dst, r.src, r.weight))
                     for r in graph.edges.values())
    active = sum(int((a[:-1] > 0).sum()) for s, a in graph.active.items() if slots[s].dictionary is not None)
    print(RESULT + json.dumps({
        "width": args.width, "weights": weights, "model": model_bytes, "resident": resident,
        "peak": meas.peak, "working": meas.peak - resident, "edges": edges, "edge_bytes": edge_bytes,
        "active": active, "seconds": meas.seconds, "load_s": load_s,
    }), flush=True)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def part_m(args: argparse.Namespace, device: str) -> dict[int, dict[str, float]]:
    """Run each width in a subprocess and print the comparison; returns the per-width results."""
    print(f"\n== Part M: attribution memory vs dictionary width on {device}")
    print(f"   GPT-2-small-shaped random model, {args.mem_layers} of 12 blocks (d_model 768), random TopK SAEs "
          f"(k = {args.k}) on all {args.mem_layers} resid_post hooks; one random {args.mem_seq}-token prompt, "
          f"counterfactual baseline, K = {args.steps}, threshold {args.mem_threshold:g}, chunk {args.chunk}; "
          f"edges + deltas + node attributions (engine.attribute); each width in its own process")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    results: dict[int, dict[str, float]] = {}
    for width in args.mem_widths:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--width", str(width), "--k", str(args.k),
               "--layers", str(args.mem_layers), "--seq", str(args.mem_seq), "--steps", str(args.steps),
               "--threshold", str(args.mem_threshold), "--chunk", str(args.chunk), "--device", device]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
        if proc.returncode or not lines:
            print(f"   width {width:,}: the child failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
            continue
        r = results[width] = json.loads(lines[-1][len(RESULT):])
        print(f"   {width:>7,} latents: dictionary weights {_mib(r['weights'])} (model {_mib(r['model'])}); "
              f"resident after loading {_mib(r['resident'])}; attribution {r['seconds']:.1f}s, peak "
              f"{_mib(r['peak'])}, working memory {_mib(r['working'])}; {r['active']:,} active latents, "
              f"{r['edges']:,} kept edges ({_mib(r['edge_bytes'])} of edge rows)")
    if len(results) >= 2:
        lo, hi = results[min(results)], results[max(results)]
        what = "CUDA allocated" if device.startswith("cuda") else "RSS"
        print(f"   {max(results):,} / {min(results):,} latents ({what}): total peak ratio {hi['peak'] / lo['peak']:.2f} "
              f"(dictionary weights, which are inputs, ratio {hi['weights'] / max(lo['weights'], 1):.2f}); working memory "
              f"ratio {hi['working'] / max(lo['working'], 1):.2f} (target <= 1.3, "
              f"{'met' if hi['working'] <= 1.3 * lo['working'] else 'NOT met'}); active latents ratio "
              f"{hi['active'] / max(lo['active'], 1):.2f}, kept edges ratio {hi['edges'] / max(lo['edges'], 1):.2f}")
        print("   (the target applies to the working memory: the dictionaries' own weights grow with width "
              "by definition and are loaded before attribution starts)")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="one width of Part M (run by bench/attribution.py --part m)")
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--chunk", type=int, required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--threads", type=int, default=None)
    child(ap.parse_args())


if __name__ == "__main__":
    main()
