"""Write benchmark: the batched writer against a naive one-edge-per-transaction writer.

Writes N_FEATURES feature nodes, then N_EDGES ATTRIBUTES_TO edges among them through
``GraphWriter`` (UNWIND batches in managed transactions), then the first N_NAIVE of the same
edges (under another run id, so they are new edges, not no-op merges) one edge per
transaction, in the same invocation and against the same server. Prints edges/s for both
and their ratio, and the machine it ran on.

Runs its own embedded Neo4j in bench/out/neo4j (wiped first) unless --external is given,
in which case it uses NEO4J_URI and writes into that database (it never deletes there).

    python bench/write.py                  # the acceptance figures: 1,000,000 / 100,000 / 20,000
    python bench/write.py --edges 100000   # a quicker look
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from graphdb.connection import connect, resolve_settings
from graphdb.embedded import EmbeddedServer, free_port
from graphdb.keys import node_key
from graphdb.schema import Label, Rel, init_schema
from graphdb.writer import GraphWriter, relationship_query

OUT = Path(__file__).parent / "out"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def feature_key(i: int, n_per_layer: int) -> str:
    return node_key(Label.FEATURE, model="bench", checkpoint="final", hook=f"blocks.{i // n_per_layer}.hook_resid_post",
                    dictionary="sae", index=i % n_per_layer)


def edges(n_edges: int, n_features: int, n_per_layer: int, run: str, seed: int = 0):
    """Forward edges (layer of src < layer of dst), distinct pairs, deterministic for a seed:
    every feature above layer 0 takes an equal share of in-edges from earlier layers."""
    rng = np.random.default_rng(seed)
    keys = [feature_key(i, n_per_layer) for i in range(n_features)]
    n_dst = n_features - n_per_layer
    base, extra = divmod(n_edges, n_dst)
    made = 0
    for j, d in enumerate(range(n_per_layer, n_features)):
        k = base + (j < extra)
        if k == 0 or made >= n_edges:
            continue
        upstream = d // n_per_layer * n_per_layer
        srcs = rng.choice(upstream, size=min(k, upstream), replace=False)
        weights = rng.standard_normal(len(srcs)) ** 3
        for s, wt in zip(srcs.tolist(), weights.tolist()):
            made += 1
            yield {"src": keys[s], "dst": keys[d], "weight": wt, "abs_weight": abs(wt), "model": "bench",
                   "checkpoint": "final", "task": "bench", "run": run, "granularity": "feature"}
            if made >= n_edges:
                return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--naive", type=int, default=20_000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--external", action="store_true", help="use NEO4J_URI instead of a private embedded server")
    args = ap.parse_args()
    n_per_layer = args.features // args.layers

    server = None
    if args.external:
        settings = resolve_settings()
    else:
        data = OUT / "neo4j"
        shutil.rmtree(data, ignore_errors=True)
        server = EmbeddedServer(data)
        t = time.perf_counter()
        server.start(port=free_port())
        print(f"embedded Neo4j started in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        settings = server.settings()

    try:
        with connect(settings) as db:
            init_schema(db)
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*columns, transient=True) as progress:
                bar = progress.add_task("features", total=args.features)
                writer = GraphWriter(db, batch_size=args.batch_size, progress=lambda n: progress.advance(bar, n))
                writer.write_nodes(Label.FEATURE, ({"key": feature_key(i, n_per_layer), "layer": i // n_per_layer,
                                                    "index": i % n_per_layer} for i in range(args.features)))
                bar = progress.add_task("batched edges", total=args.edges)
                t = time.perf_counter()
                written = writer.write_relationships(Rel.ATTRIBUTES_TO, edges(args.edges, args.features, n_per_layer, "bench-batched"))
                batched_s = time.perf_counter() - t

                bar = progress.add_task("naive edges", total=args.naive)
                query = relationship_query(Rel.ATTRIBUTES_TO)
                t = time.perf_counter()
                with db.driver.session(database=db.database) as session:
                    for row in edges(args.naive, args.features, n_per_layer, "bench-naive"):
                        payload = [{"src": row.pop("src"), "dst": row.pop("dst"), "props": row}]
                        session.execute_write(lambda tx, p=payload: tx.run(query, rows=p).consume())
                        progress.advance(bar)
                naive_s = time.perf_counter() - t
            count = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.task = 'bench' RETURN count(r) AS n")[0]["n"]
    finally:
        if server is not None:
            server.stop()

    batched_rate = written / batched_s
    naive_rate = args.naive / naive_s
    print(f"machine: {machine()}")
    print(f"graph: {args.features:,} features, {args.edges:,} ATTRIBUTES_TO edges, batch size {args.batch_size:,}")
    print(f"batched writer: {written:,} edges in {batched_s:.1f}s = {batched_rate:,.0f} edges/s")
    print(f"naive writer (one edge per transaction): {args.naive:,} edges in {naive_s:.1f}s = {naive_rate:,.0f} edges/s")
    print(f"ratio batched/naive: {batched_rate / naive_rate:.1f}x")
    print(f"edges in the store: {count:,} (expected {written + args.naive:,})")
    return 0 if count == written + args.naive else 1


if __name__ == "__main__":
    raise SystemExit(main())
