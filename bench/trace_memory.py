"""The transcoder prompt graph's memory estimate against its measured peak.

Loads a model and its transcoders (default ``zoo:mt-small@final`` and the zoo's per-layer
transcoders of that checkpoint), prints :func:`ingest.replacement.memory.estimate_memory` for a
prompt, then traces the prompt (``trace_prompt``) and prints the measured peak: on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before the trace; on CPU the
resident set sampled every 2 ms above the resident set before (the process runs with
``MALLOC_MMAP_THRESHOLD_`` fixed so that freed tensors leave the resident set). Prints the
ratio measured working memory / estimated working memory (the weights are resident in both).

    python bench/trace_memory.py [--model zoo:mt-small@final] [--transcoders SPEC] [--device cuda]
    python bench/trace_memory.py --repeat 3    # a longer prompt: the prompt repeated 3 times
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PROMPT = "When Mary and John went to the store, John gave a drink to"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:mt-small@final")
    ap.add_argument("--transcoders", default=None, help="default: the zoo's per-layer transcoders of --model")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--repeat", type=int, default=1, help="repeat the prompt this many times (a longer context)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.device == "cpu" and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"   # glibc reads it at start: re-run this process with it
        os.execv(sys.executable, [sys.executable, *sys.argv])

    import torch
    from attribution import Measure, _mib, _rss, machine  # bench/ is on sys.path

    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.attribute import trace_prompt
    from ingest.replacement.config import TraceConfig
    from ingest.replacement.jobs import check_transcoder_spec
    from ingest.replacement.memory import estimate_memory
    from ingest.zoo.specs import load_model

    print(f"machine: {machine(args.device)}")
    model = load_model(args.model, device=args.device)
    spec = check_transcoder_spec(args.transcoders, args.model)
    tcs = load_transcoders(spec, device=args.device)
    tokens = model.to_tokens(" ".join([args.prompt] * args.repeat))[0]
    config = TraceConfig(batch_size=args.batch_size)
    t = time.perf_counter()
    est = estimate_memory(model, tcs, tokens, config)
    print(f"{args.model} with {spec} ({tcs.kind}), {len(tokens)} tokens, batch {config.batch_size}, on {args.device}")
    print(f"   {est.describe()} (estimated in {time.perf_counter() - t:.2f}s)")
    trace_prompt(model, tcs, tokens[:4], config)  # warm-up of a short prompt (first-call kernels), untimed
    import gc

    gc.collect()
    before = torch.cuda.memory_allocated() if args.device.startswith("cuda") else (_rss() or 0)
    with Measure(args.device) as meas:
        graph = trace_prompt(model, tcs, tokens, config)
    measured = meas.peak - before
    what = "CUDA allocated" if args.device.startswith("cuda") else "RSS"
    print(f"   measured: trace {meas.seconds:.2f}s, {graph.active_features.shape[0]:,} active features, "
          f"{graph.n_nodes:,} nodes; peak {what} {_mib(meas.peak)}, working memory {_mib(measured)} "
          f"(peak minus {_mib(before)} resident before the trace)")
    print(f"   measured / estimated working memory: {measured / max(est.working, 1):.2f} "
          f"(estimated {_mib(est.working)}; the weights, {_mib(est.weights)}, are resident before)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
