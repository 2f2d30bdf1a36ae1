"""Write benchmark: the batched writer against a naive one-edge-per-transaction writer.

In one invocation and against one server: writes --features feature nodes, then --edges
ATTRIBUTES_TO edges among them through ``GraphWriter`` (batched managed transactions, the
transport it picks: the procedure path on the embedded server), then the first --cypher of
the same edges through the writer's portable Cypher path (``UNWIND $rows ... MERGE``), then
the first --naive of them one edge per transaction. Each pass uses its own run id, so every
pass creates new edges rather than no-op merges. Prints edges/s for each, the ratios against
the naive writer, and the machine it ran on.

Runs its own embedded Neo4j in bench/out/neo4j (wiped first) unless --external is given,
in which case it uses NEO4J_URI and writes into that database (it never deletes there).

    python bench/write.py                  # the acceptance figures: 1,000,000 / 100,000 / 20,000
    python bench/write.py --edges 100000   # a quicker look
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from _store import bench_store  # bench/ is on sys.path when a script here runs
from graphdb.connection import connect
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


def common(run: str) -> dict[str, str]:
    """The properties every edge of one graph shares."""
    return {"model": "bench", "checkpoint": "final", "task": "bench", "run": run, "granularity": "feature"}


def edges(n_edges: int, n_features: int, n_per_layer: int, seed: int = 0):
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
            yield {"src": keys[s], "dst": keys[d], "weight": wt}
            if made >= n_edges:
                return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--cypher", type=int, default=100_000, help="edges through the portable Cypher path")
    ap.add_argument("--naive", type=int, default=20_000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--external", action="store_true", help="use NEO4J_URI instead of a private embedded server")
    args = ap.parse_args()
    n_per_layer = args.features // args.layers

    settings, server = bench_store(OUT, args.external)

    rates: dict[str, tuple[int, float]] = {}
    try:
        with connect(settings) as db:
            init_schema(db)
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*columns, transient=True) as progress:
                def bar(name: str, total: int):  # noqa: ANN202
                    task = progress.add_task(name, total=total)
                    return lambda n: progress.advance(task, n)

                writer = GraphWriter(db, batch_size=args.batch_size, progress=bar("features", args.features))
                writer.ensure_schema()
                t = time.perf_counter()
                writer.write_nodes(Label.FEATURE, ({"key": feature_key(i, n_per_layer), "layer": i // n_per_layer,
                                                    "index": i % n_per_layer} for i in range(args.features)),
                                   common={"model": "bench", "checkpoint": "final"})
                node_secs, node_path = time.perf_counter() - t, writer.path
                for path, n, run in (("auto", args.edges, "bench-batched"), ("cypher", args.cypher, "bench-cypher")):
                    if n == 0:
                        continue
                    writer = GraphWriter(db, batch_size=args.batch_size, progress=bar(f"{path} path", n), path=path)
                    t = time.perf_counter()
                    written = writer.write_relationships(Rel.ATTRIBUTES_TO, edges(n, args.features, n_per_layer),
                                                         common=common(run))
                    rates[f"batched writer, {writer.path} path"] = (written, time.perf_counter() - t)

                advance = bar("naive", args.naive)
                query = relationship_query(Rel.ATTRIBUTES_TO)
                t = time.perf_counter()
                with db.driver.session(database=db.database) as session:
                    for row in edges(args.naive, args.features, n_per_layer):
                        payload = [{"src": row.pop("src"), "dst": row.pop("dst"),
                                    "props": {**row, "abs_weight": abs(row["weight"]), **common("bench-naive")}}]
                        session.execute_write(lambda tx, p=payload: tx.run(query, rows=p).consume())
                        advance(1)
                rates["naive writer, one edge per transaction"] = (args.naive, time.perf_counter() - t)
            count = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.task = 'bench' RETURN count(r) AS n")[0]["n"]
    finally:
        if server is not None:
            server.stop()

    print(f"machine: {machine()}")
    print(f"graph: {args.features:,} features, ATTRIBUTES_TO edges in batches of {args.batch_size:,}")
    print(f"feature nodes ({node_path} path): {args.features:,} in {node_secs:.1f}s = "
          f"{args.features / node_secs:,.0f} nodes/s")
    naive_rate = rates["naive writer, one edge per transaction"][0] / rates["naive writer, one edge per transaction"][1]
    for name, (n, secs) in rates.items():
        rate = n / secs
        print(f"{name}: {n:,} edges in {secs:.1f}s = {rate:,.0f} edges/s ({rate / naive_rate:.1f}x naive)")
    expected = sum(n for n, _ in rates.values())
    print(f"edges in the store: {count:,} (expected {expected:,})")
    return 0 if count == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
