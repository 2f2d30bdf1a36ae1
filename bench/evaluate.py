"""Evaluation benchmark: a 10-point edge-ablation curve against the node-ablation curve of the
same graphs, on ``zoo:mt-small@final``, in one invocation (target: edge / node <= 3).

The graph is computed in-process (the engine and accumulator ``mechgraph ingest`` uses, default
settings: 32 held-out prompts, K = 8, counterfactual baseline, threshold 0.01), so no Neo4j is
needed. Both curves run the same 10 log-spaced edge budgets through
:class:`analysis.evaluate.sweep.AblationSweep`; each point measures the graph kept and the graph
removed (faithfulness and completeness), with the mean baseline, as ``mechgraph evaluate`` does.

    python bench/evaluate.py [--task ioi] [--examples 32] [--points 10] [--graph resid|module] [--batch-size 16]
    python bench/evaluate.py --device cuda      # on a GPU; peak GPU memory of each curve printed

Peak memory of each curve: ``torch.cuda.max_memory_allocated`` on CUDA (reset before each curve),
the process's ``ru_maxrss`` on CPU (a high-water mark since the process started).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:mt-small@final")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--graph", default="resid", choices=("resid", "module"))
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per ablated forward pass")
    ap.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    warnings.simplefilter("ignore", DeprecationWarning)

    from analysis.evaluate.sweep import AblationSweep, sweep_budgets
    from ingest.attribution.aggregate import GraphAccumulator
    from ingest.attribution.config import AttributionConfig
    from ingest.attribution.engine import AttributionEngine
    from ingest.pipeline import IngestConfig, resolve

    gpu = f"device {args.device} = {torch.cuda.get_device_name(0)}" if cuda else "no GPU used"
    print(f"machine: {platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}")
    config = IngestConfig(model=args.model, tasks=(args.task,), graph=args.graph, examples=args.examples,
                          attribution=AttributionConfig(baseline="mean"))
    resolved = resolve(config, device=args.device)
    batch = resolved.batches[args.task].to(args.device)
    # The graph, as `mechgraph ingest` computes it (counterfactual baseline, defaults).
    t = time.perf_counter()
    ingest_engine = AttributionEngine(resolved.model, resolved.slots, AttributionConfig())
    acc = GraphAccumulator(ingest_engine.config.beta, [s.n_nodes for s in resolved.slots] + [1])
    for start in range(0, len(batch), 8):
        acc.add(ingest_engine.attribute(batch[start:start + 8], node_attributions=False, heads=False))
    edges = acc.result(threshold=0.01)
    located = sorted(((s, int(u), m, int(d), float(w)) for (s, m), e in edges.items()
                      for d, u, w in zip(e.dst, e.src, e.weight, strict=True)), key=lambda r: -abs(r[4]))
    located4 = [[r[:4]] for r in located]
    print(f"graph: {args.model} {args.graph}, {args.task}, {len(batch)} prompts: {len(located):,} edges "
          f"(|w| >= 0.01), computed in {time.perf_counter() - t:.1f}s")

    engine = AttributionEngine(resolved.model, resolved.slots, AttributionConfig(baseline="mean"))
    engine.mean = engine.mean_baseline(resolved.reference[args.task])
    t = time.perf_counter()
    sweep = AblationSweep(engine, batch, args.batch_size)
    setup = time.perf_counter() - t
    budgets = sweep_budgets(len(located4), args.points)
    print(f"{len(budgets)} budgets: {budgets}; shared set-up (prepare, m(model), m(empty)) {setup:.1f}s")
    seconds, curves, peak = {}, {}, {}
    for kind in ("node", "edge"):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        curves[kind] = [sweep.point(located4, b, kind) for b in budgets]
        if cuda:
            torch.cuda.synchronize()
        seconds[kind] = time.perf_counter() - t
        peak[kind] = (torch.cuda.max_memory_allocated() if cuda
                      else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    print(f"{'edges':>7} {'nodes':>6}  {'F edge':>7} {'F node':>7}  {'C edge':>7} {'C node':>7}")
    for e, n in zip(curves["edge"], curves["node"], strict=True):
        print(f"{e.edges:>7} {e.nodes:>6}  {e.faithfulness:>7.3f} {n.faithfulness:>7.3f}  "
              f"{e.completeness:>7.3f} {n.completeness:>7.3f}")
    print(f"node-ablation curve: {seconds['node']:.2f}s; edge-ablation curve: {seconds['edge']:.2f}s; "
          f"ratio edge/node = {seconds['edge'] / seconds['node']:.1f} (target <= 3)")
    what = "peak GPU memory allocated" if cuda else "process peak RSS (ru_maxrss, cumulative)"
    print(f"{what}: node curve {peak['node']:,.0f} MiB, edge curve {peak['edge']:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
