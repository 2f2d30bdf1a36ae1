"""Write benchmark: the batched writer against a naive one-edge-per-transaction writer, and
the bulk path (shards + Neo4j's importer) against the batched writer.

In one invocation and against one server: writes --features feature nodes, then --edges
ATTRIBUTES_TO edges among them through ``GraphWriter`` (batched managed transactions, the
transport it picks: the procedure path on the embedded server), then the first --cypher of
the same edges through the writer's portable Cypher path (``UNWIND $rows ... MERGE``), then
the first --naive of them one edge per transaction. Each pass uses its own run id, so every
pass creates new edges rather than no-op merges. Prints edges/s for each, the ratios against
the naive writer, and the machine it ran on.

Then, that server stopped, the bulk path on the same graph (the feature nodes and the --edges
edges of the batched pass, same rows): ``ShardWriter`` writes shards into bench/out/shards,
``load_shards`` runs Neo4j's importer into a new store (bench/out/neo4j-bulk), starts a server
on it and creates the schema. Its edges/s is end to end (shards written + importer + server
start + schema), printed with each step and its ratio to the batched writer (target >= 4x).
--no-bulk skips it; it needs the embedded server (not --external).

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
import time
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from _machine import cpu_name  # bench/ is on sys.path when a script here runs
from _store import bench_store
from graphdb.bulk.load import FRESH_SERVER_RETRY
from graphdb.connection import connect
from graphdb.keys import node_key
from graphdb.schema import Label, Rel, init_schema
from graphdb.writer import GraphWriter, relationship_query

OUT = Path(__file__).parent / "out"


def machine() -> str:
    cpu = cpu_name()
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def feature_key(i: int, n_per_layer: int) -> str:
    return node_key(Label.FEATURE, model="bench", checkpoint="final", hook=f"blocks.{i // n_per_layer}.hook_resid_post",
                    dictionary="sae", index=i % n_per_layer)


def common(run: str) -> dict[str, str]:
    """The properties every edge of one graph shares."""
    return {"model": "bench", "checkpoint": "final", "task": "bench", "run": run, "granularity": "feature"}


def edge_list(n_edges: int, n_features: int, n_per_layer: int, seed: int = 0) -> tuple[list[str], list[int],
                                                                                 list[int], list[float]]:
    """``(keys, src, dst, weight)``: forward edges (layer of src < layer of dst), distinct pairs,
    deterministic for a seed: every feature above layer 0 takes an equal share of in-edges from
    earlier layers. Made once, before any timing: sampling them is not a writer's cost."""
    rng = np.random.default_rng(seed)
    keys = [feature_key(i, n_per_layer) for i in range(n_features)]
    n_dst = n_features - n_per_layer
    base, extra = divmod(n_edges, n_dst)
    src: list[int] = []
    dst: list[int] = []
    weight: list[float] = []
    for j, d in enumerate(range(n_per_layer, n_features)):
        k = base + (j < extra)
        if k == 0 or len(src) >= n_edges:
            continue
        upstream = d // n_per_layer * n_per_layer
        srcs = rng.choice(upstream, size=min(k, upstream), replace=False)
        src += srcs.tolist()
        dst += [d] * len(srcs)
        weight += (rng.standard_normal(len(srcs)) ** 3).tolist()
    return keys, src[:n_edges], dst[:n_edges], weight[:n_edges]


def edges(graph: tuple[list[str], list[int], list[int], list[float]], n: int):
    """The first ``n`` edges of ``graph`` as the rows a writer takes (built while it writes, as a
    caller's own producer would)."""
    keys, src, dst, weight = graph
    for s, d, w in zip(src[:n], dst[:n], weight[:n]):
        yield {"src": keys[s], "dst": keys[d], "weight": w}


def node_rows(keys: list[str], n_per_layer: int):
    return ({"key": k, "layer": i // n_per_layer, "index": i % n_per_layer} for i, k in enumerate(keys))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--cypher", type=int, default=100_000, help="edges through the portable Cypher path")
    ap.add_argument("--naive", type=int, default=20_000)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--external", action="store_true", help="use NEO4J_URI instead of a private embedded server")
    ap.add_argument("--no-bulk", dest="bulk", action="store_false", help="skip the bulk path (shards + importer)")
    ap.add_argument("--no-online", dest="online", action="store_false",
                    help="skip the online writers (a quicker look at the bulk path alone; no ratios)")
    args = ap.parse_args()
    n_per_layer = args.features // args.layers
    graph = edge_list(args.edges, args.features, n_per_layer)
    load_before = os.getloadavg()

    online = online_passes(args, graph, n_per_layer) if args.online else None
    bulk = bulk_path(args, graph, n_per_layer) if args.bulk and not args.external else None

    print(f"machine: {machine()}; load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"graph: {args.features:,} features, ATTRIBUTES_TO edges in batches of {args.batch_size:,}")
    ok = True
    online_rate = naive_rate = None
    if online is not None:
        rates = online["rates"]
        print(f"feature nodes ({online['node_path']} path): {args.features:,} in {online['node_secs']:.1f}s = "
              f"{args.features / online['node_secs']:,.0f} nodes/s")
        naive = rates.get("naive writer, one edge per transaction")
        naive_rate = naive[0] / naive[1] if naive else None
        for name, (n, secs) in rates.items():
            rate = n / secs
            print(f"{name}: {n:,} edges in {secs:.1f}s = {rate:,.0f} edges/s"
                  + (f" ({rate / naive_rate:.1f}x naive)" if naive_rate else ""))
        expected = sum(n for n, _ in rates.values())
        print(f"edges in the store: {online['count']:,} (expected {expected:,})")
        ok = online["count"] == expected
        if online["key"]:
            online_rate = rates[online["key"]][0] / rates[online["key"]][1]
    if bulk is not None:
        steps = ", ".join(f"{name} {secs:.1f}s" for name, secs in bulk["steps"].items())
        rate = args.edges / bulk["total"]
        print(f"bulk path (shards + importer + server start + schema), same {args.features:,} features and "
              f"{args.edges:,} edges: {bulk['total']:.1f}s = {rate:,.0f} edges/s end to end ({steps})")
        print(f"  the store answers (constraints online) at that point; its indexes were populating in the "
              f"background and were all online {bulk['indexes']:.1f}s later "
              f"({args.edges / (bulk['total'] + bulk['indexes']):,.0f} edges/s counting that too)")
        offline = bulk["steps"]["shards"] + bulk["steps"]["import"]
        print(f"  of which shards + importer alone: {offline:.1f}s = {args.edges / offline:,.0f} edges/s"
              + (f" ({args.edges / offline / online_rate:.1f}x the online writer)" if online_rate else ""))
        if online_rate:
            print(f"bulk / online batched writer: {rate / online_rate:.1f}x (target >= 4x: "
                  f"{'met' if rate >= 4 * online_rate else 'NOT met'})")
        print(f"edges in the bulk store: {bulk['count']:,} (expected {args.edges:,})")
        ok = ok and bulk["count"] == args.edges
    if online_rate and naive_rate:
        print(f"online batched writer / naive: {online_rate / naive_rate:.1f}x (target >= 40x: "
              f"{'met' if online_rate >= 40 * naive_rate else 'NOT met'})")
    return 0 if ok else 1


def online_passes(args: argparse.Namespace, graph: tuple, n_per_layer: int) -> dict:
    """The batched writer (procedure path, then Cypher path) and the naive writer, one server."""
    settings, server = bench_store(OUT, args.external)
    keys = graph[0]
    rates: dict[str, tuple[int, float]] = {}
    online_key = ""
    try:
        with connect(settings, retry=None if server is None else FRESH_SERVER_RETRY) as db:
            init_schema(db)
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            with Progress(*columns, transient=True) as progress:
                def bar(name: str, total: int):  # noqa: ANN202
                    task = progress.add_task(name, total=total)
                    return lambda n: progress.advance(task, n)

                writer = GraphWriter(db, batch_size=args.batch_size, progress=bar("features", args.features))
                writer.ensure_schema()
                t = time.perf_counter()
                writer.write_nodes(Label.FEATURE, node_rows(keys, n_per_layer),
                                   common={"model": "bench", "checkpoint": "final"})
                node_secs, node_path = time.perf_counter() - t, writer.path
                for path, n, run in (("auto", args.edges, "bench-batched"), ("cypher", args.cypher, "bench-cypher")):
                    if n == 0:
                        continue
                    writer = GraphWriter(db, batch_size=args.batch_size, progress=bar(f"{path} path", n), path=path)
                    t = time.perf_counter()
                    written = writer.write_relationships(Rel.ATTRIBUTES_TO, edges(graph, n), common=common(run))
                    rates[f"batched writer, {writer.path} path"] = (written, time.perf_counter() - t)
                    if path == "auto":
                        online_key = f"batched writer, {writer.path} path"

                if args.naive:
                    advance = bar("naive", args.naive)
                    query = relationship_query(Rel.ATTRIBUTES_TO)
                    t = time.perf_counter()
                    with db.driver.session(database=db.database) as session:
                        for row in edges(graph, args.naive):
                            payload = [{"src": row.pop("src"), "dst": row.pop("dst"),
                                        "props": {**row, "abs_weight": abs(row["weight"]), **common("bench-naive")}}]
                            session.execute_write(lambda tx, p=payload: tx.run(query, rows=p).consume())
                            advance(1)
                    rates["naive writer, one edge per transaction"] = (args.naive, time.perf_counter() - t)
            count = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.task = 'bench' RETURN count(r) AS n")[0]["n"]
    finally:
        if server is not None:
            server.stop()
    return {"rates": rates, "key": online_key, "node_secs": node_secs, "node_path": node_path, "count": count}


def bulk_path(args: argparse.Namespace, graph: tuple, n_per_layer: int) -> dict:
    """The same graph through ShardWriter + Neo4j's importer into a new store; seconds per step,
    and how much longer the indexes took to come online in the background."""
    from graphdb.bulk.load import load_shards
    from graphdb.bulk.shards import ShardWriter
    from graphdb.embedded import EmbeddedServer, free_port

    shards, data = OUT / "shards", OUT / "neo4j-bulk"
    for old in (shards, data):
        shutil.rmtree(old, ignore_errors=True)
    server = EmbeddedServer(data)
    t = time.perf_counter()
    with ShardWriter(shards, batch_size=args.batch_size) as writer:
        writer.write_nodes(Label.FEATURE, node_rows(graph[0], n_per_layer), common={"model": "bench", "checkpoint": "final"})
        writer.write_relationships(Rel.ATTRIBUTES_TO, edges(graph, args.edges), common=common("bench-batched"))
    steps = {"shards": time.perf_counter() - t}
    try:
        result = load_shards(shards, data, port=free_port(), server=server, timeout=600)
        steps.update(result.seconds)
        with connect(server.settings(), retry=FRESH_SERVER_RETRY) as db:
            t = time.perf_counter()
            db.write("CALL db.awaitIndexes(3600)")
            indexes = time.perf_counter() - t
            count = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.task = 'bench' RETURN count(r) AS n")[0]["n"]
    finally:
        server.stop()
    return {"steps": steps, "total": sum(steps.values()), "indexes": indexes, "count": count}


if __name__ == "__main__":
    raise SystemExit(main())
