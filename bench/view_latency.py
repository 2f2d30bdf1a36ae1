"""`mechgraph view` latency benchmark: median and p95 of the explorer's requests on a
1,000,000-edge store (target: median <= 300 ms).

The store is the planted graph of ``bench/communities.py`` (model ``bench-1m``, 20,000 feature
nodes, written once and reused; ``--edges``/``--nodes`` change it). The explorer is served over
real HTTP on loopback (uvicorn in a thread, as ``mechgraph view`` runs it) and asked, in a
shuffled order, what a user's clicks ask: the filters (facets), a search by key and by text,
a node's neighbourhood page, its details panel, and the task graph's strongest page.

    python bench/view_latency.py [--requests 40] [--edges 1000000] [--nodes 20000] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from communities import CKPT, MODEL, RUN, TASK, planted  # noqa: E402  (the same stored graph)


def ensure_store(db: object, n_nodes: int, n_edges: int) -> list[str]:
    from graphdb.keys import node_key
    from graphdb.schema import Label, Rel
    from graphdb.writer import GraphWriter

    keys = [node_key(Label.FEATURE, model=MODEL, checkpoint=CKPT, hook="blocks.0.hook_resid_post",
                     dictionary="bench", index=i) for i in range(n_nodes)]
    have = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.model = $m AND r.checkpoint = $c AND r.task = $t "  # type: ignore[attr-defined]
                   "RETURN count(r) AS n", {"m": MODEL, "c": CKPT, "t": TASK})[0]["n"]
    if have >= n_edges:
        print(f"setup: the {have:,}-edge graph is already stored")
        return keys
    _, src, dst, weight = planted(n_nodes, n_edges, 20)
    t = time.perf_counter()
    writer = GraphWriter(db, batch_size=50_000)
    writer.write_nodes(Label.FEATURE, ({"key": k, "model": MODEL, "checkpoint": CKPT, "index": i, "layer": i % 4,
                                        "description": f"bench feature {i} of block {i % 20}"}
                                       for i, k in enumerate(keys)))
    writer.write_relationships(Rel.ATTRIBUTES_TO, ({"src": keys[s], "dst": keys[d], "weight": float(w)}
                                                   for s, d, w in zip(src, dst, weight)),
                               common={"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": RUN,
                                       "granularity": "feature"})
    print(f"setup (not timed): wrote {n_nodes:,} nodes and {len(weight):,} edges in {time.perf_counter() - t:.0f} s")
    return keys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=40, help="requests of each kind")
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=20_000)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    from analysis.view.server import TOKEN_HEADER, start_in_thread
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.settings import data_dir, external_settings

    home = data_dir(args.data_dir)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; Neo4j: "
          f"{'NEO4J_URI' if external_settings() else f'embedded ({home})'}")
    ensure_running(home)
    rng = random.Random(0)
    with connect(data=home) as db:
        keys = ensure_store(db, args.nodes, args.edges)
        server = start_in_thread(db)
        base = f"http://127.0.0.1:{server.port}"

        def get(path: str, **params: object) -> float:
            url = f"{base}{path}?{urllib.parse.urlencode(params)}"
            req = urllib.request.Request(url, headers={TOKEN_HEADER: server.token})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
                body = json.loads(r.read())
            dt = time.perf_counter() - t
            assert body is not None
            return dt

        filters = {"model": MODEL, "checkpoint": CKPT, "task": TASK}
        kinds = {
            "facets": lambda: get("/api/facets"),
            "search by key": lambda: get("/api/search", q=rng.choice(keys)[:-3], limit=25),
            "search by text": lambda: get("/api/search", q=f"feature {rng.randrange(args.nodes)} of", limit=25),
            "neighbourhood (50 edges)": lambda: get("/api/neighbourhood", key=rng.choice(keys), limit=50, **filters),
            "node details": lambda: get("/api/node", key=rng.choice(keys), limit=10, **filters),
            "task graph (100 strongest)": lambda: get("/api/task-graph", limit=100,
                                                      min_abs_weight=round(rng.uniform(0.0, 0.9), 2), **filters),
        }
        for fn in kinds.values():  # warm the page cache and the query plans once
            fn()
        order = [k for k in kinds for _ in range(args.requests)]
        rng.shuffle(order)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for k in order:
            times[k].append(kinds[k]())
        server.stop()

    def p95(xs: list[float]) -> float:
        return sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)]

    print(f"{'request':<28} {'n':>4} {'median ms':>10} {'p95 ms':>8}")
    for k, xs in times.items():
        print(f"{k:<28} {len(xs):>4} {1000 * statistics.median(xs):>10.1f} {1000 * p95(xs):>8.1f}")
    every = [x for xs in times.values() for x in xs]
    print(f"{'all':<28} {len(every):>4} {1000 * statistics.median(every):>10.1f} {1000 * p95(every):>8.1f}"
          "   (target: median <= 300 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
