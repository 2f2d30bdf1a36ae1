"""The attribution graphs of ``bench/byo.py``'s ingest, saved and compared: a change to the engine
must give the same graphs (issue 15, item 16).

``save`` runs the attribution engine (no Neo4j) on every batch of the bench's two tasks (the model
and tasks ``bench/byo.py`` last wrote under ``bench/out/byo/work``; run it once first), prints its
CPU seconds and writes the per-batch graphs; ``compare`` checks two such files: the same per-example
edge set, weights within ``--rtol``, and deltas, edge sums, node attributions and activity counts
within it (entries near zero: within ``--rtol`` of the tensor's largest). To compare a branch with
main, save with each on ``PYTHONPATH`` in turn:

    PYTHONPATH=/path/to/main python bench/byo_graphs.py save /tmp/before.pt
    PYTHONPATH=. python bench/byo_graphs.py save /tmp/after.pt
    python bench/byo_graphs.py compare /tmp/before.pt /tmp/after.pt
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

WORK = Path(__file__).parent / "out" / "byo" / "work"


def save(out: Path, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    import ingest.pipeline as pipeline
    from ingest.attribution.config import AttributionConfig
    from ingest.attribution.engine import AttributionEngine

    if not (WORK / "tiny-llama").is_dir():
        sys.exit(f"no bench model under {WORK}: run python bench/byo.py first")
    config = pipeline.IngestConfig(model=f"path:{WORK / 'tiny-llama'}",
                                   tasks=(f"jsonl:{WORK / 'recall.jsonl'}", f"jsonl:{WORK / 'pair.jsonl'}"),
                                   dicts=tuple(f"identity:64/blocks.{L}.hook_resid_post" for L in (0, 2, 4)),
                                   examples=32, attribution=AttributionConfig(steps=8, threshold=0.01))
    resolved = pipeline.resolve(config)
    graphs = []
    c0 = time.process_time()
    for batch in resolved.batches.values():
        engine = AttributionEngine(resolved.model, resolved.slots, config.attribution)
        for start in range(0, len(batch), config.batch_size):
            graphs.append(engine.attribute(batch[start:start + config.batch_size]))
    print(f"attribution: {time.process_time() - c0:.1f} CPU-s for {len(graphs)} batches "
          f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    torch.save(graphs, out)


def compare(a_path: Path, b_path: Path, rtol: float) -> int:
    import torch

    a: list[Any] = torch.load(a_path, weights_only=False)
    b: list[Any] = torch.load(b_path, weights_only=False)
    if len(a) != len(b):
        print(f"different numbers of batches: {len(a)} vs {len(b)}")
        return 1
    bad, worst, n = 0, 0.0, 0
    for i, (ga, gb) in enumerate(zip(a, b, strict=True)):
        if set(ga.edges) != set(gb.edges):
            print(f"batch {i}: different slot pairs")
            return 1
        for key in ga.edges:
            ka = {(int(e), int(d), int(s)): float(w) for e, d, s, w in zip(*(getattr(ga.edges[key], c) for c in
                                                                          ("example", "dst", "src", "weight")))}
            kb = {(int(e), int(d), int(s)): float(w) for e, d, s, w in zip(*(getattr(gb.edges[key], c) for c in
                                                                          ("example", "dst", "src", "weight")))}
            n += len(ka)
            if ka.keys() != kb.keys():
                bad += 1
                print(f"batch {i}, slots {key}: {len(ka.keys() ^ kb.keys())} edges in one graph only")
            for e in ka.keys() & kb.keys():
                worst = max(worst, abs(ka[e] - kb[e]) / max(abs(ka[e]), 1e-30))
        for name in ("delta", "edge_sums", "node_attr", "active"):
            da, db = getattr(ga, name), getattr(gb, name)
            for s in set(da) | set(db):
                x, y = (da[s].double(), db[s].double()) if s in da and s in db else (None, None)
                # near-zero entries (an edge sum that cancels) compare at rtol of the tensor's scale
                if x is None or y is None or not torch.allclose(x, y, rtol=rtol, atol=rtol * float(x.abs().max())):
                    bad += 1
                    print(f"batch {i}: {name}[{s}] differs")
    print(f"{n} per-example edges; largest relative weight difference {worst:.3g} (rtol {rtol:g})")
    return 1 if bad or worst > rtol else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("out", type=Path)
    s.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--rtol", type=float, default=1e-5)
    args = ap.parse_args()
    if args.cmd == "save":
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        save(args.out, args.threads)
        return 0
    return compare(args.a, args.b, args.rtol)


if __name__ == "__main__":
    raise SystemExit(main())
