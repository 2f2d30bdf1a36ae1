"""Communities benchmark: a 1,000,000-edge graph in Neo4j, pulled, partitioned with Leiden and
written back; prints the time of each stage (target: <= 30 s end to end on the project's
2-core machine).

The graph is a planted partition (``--blocks`` blocks over ``--nodes`` feature nodes, 90% of
edges inside a block, signed weights) written once under the model name ``bench-1m`` (setup,
timed separately and skipped when it is already there). The timed stages are exactly what
``mechgraph communities`` does: ``pull_subgraph`` (the ``subgraph_columns`` bulk query into a
CSR matrix), ``partition`` (Leiden, modularity) and ``write_communities``. The ARI against the
planted blocks is printed as a check that the partition is real.

    python bench/communities.py [--edges 1000000] [--nodes 20000] [--blocks 20] [--drop]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

MODEL, CKPT, TASK, RUN = "bench-1m", "final", "bench", "bench-graph"


def planted(n_nodes: int, n_edges: int, blocks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(block of each node, src, dst, weight): distinct directed edges, 90% inside blocks."""
    rng = np.random.default_rng(seed)
    block = np.arange(n_nodes) % blocks
    members = [np.flatnonzero(block == b) for b in range(blocks)]
    src = rng.integers(0, n_nodes, size=int(n_edges * 1.2))
    inside = rng.random(len(src)) < 0.9
    dst = rng.integers(0, n_nodes, size=len(src))
    for b in range(blocks):
        pick = inside & (block[src] == b)
        dst[pick] = rng.choice(members[b], size=int(pick.sum()))
    keep = src != dst
    pairs = np.unique(np.stack([src[keep], dst[keep]], 1), axis=0)
    pairs = pairs[rng.permutation(len(pairs))[:n_edges]]
    weight = rng.uniform(0.05, 1.0, len(pairs)) * rng.choice([-1.0, 1.0], len(pairs))
    return block, pairs[:, 0], pairs[:, 1], weight


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=20_000)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--drop", action="store_true", help="delete the benchmark graph afterwards")
    args = ap.parse_args()

    from sklearn.metrics import adjusted_rand_score

    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.keys import node_key
    from graphdb.schema import Label, Rel
    from graphdb.settings import data_dir, external_settings
    from graphdb.writer import GraphWriter

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; Neo4j: "
          f"{'NEO4J_URI' if external_settings() else 'embedded'}")
    ensure_running(data_dir())
    key = [node_key(Label.FEATURE, model=MODEL, checkpoint=CKPT, hook="blocks.0.hook_resid_post",
                    dictionary="bench", index=i) for i in range(args.nodes)]
    block, src, dst, weight = planted(args.nodes, args.edges, args.blocks)
    with connect(data=data_dir()) as db:
        have = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.model = $m AND r.checkpoint = $c AND r.task = $t "
                       "RETURN count(r) AS n", {"m": MODEL, "c": CKPT, "t": TASK})[0]["n"]
        # A graph stored before nodes had an nid gets its nodes written again (the MERGE adds it).
        with_nid = db.read("MATCH (n:Feature) WHERE n.model = $m AND n.nid IS NOT NULL RETURN count(n) AS n",
                           {"m": MODEL})[0]["n"]
        if have != len(weight) or with_nid != args.nodes:
            t = time.perf_counter()
            writer = GraphWriter(db, batch_size=50_000)
            writer.write_nodes(Label.FEATURE, ({"key": k, "model": MODEL, "checkpoint": CKPT, "index": i}
                                               for i, k in enumerate(key)))
            if have != len(weight):
                writer.write_relationships(Rel.ATTRIBUTES_TO, ({"src": key[s], "dst": key[d], "weight": float(w)}
                                                               for s, d, w in zip(src, dst, weight)),
                                           common={"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": RUN})
            print(f"setup (not timed below): wrote {args.nodes:,} nodes"
                  + (f" and {len(weight):,} edges" if have != len(weight) else "")
                  + f" in {time.perf_counter() - t:.1f}s")
        else:
            print(f"setup: the {len(weight):,}-edge graph is already stored")
        t0 = time.perf_counter()
        sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,), run=RUN))
        t1 = time.perf_counter()
        part = partition(sub, CommunityConfig(method="leiden", seed=0))
        t2 = time.perf_counter()
        run = write_communities(db, sub, part, CommunityConfig(method="leiden", seed=0))
        t3 = time.perf_counter()
        truth = block[[int(k.rsplit("|", 1)[1]) for k in sub.keys.tolist()]]
        print(f"pull  {t1 - t0:6.1f}s  ({sub.edges:,} edges, {sub.n:,} nodes into a CSR matrix)")
        print(f"leiden {t2 - t1:5.1f}s  ({len(set(part.labels[0].tolist()))} communities, modularity "
              f"{part.modularity[0]:.3f}, ARI vs planted {adjusted_rand_score(truth, part.labels[0]):.3f})")
        print(f"write {t3 - t2:6.1f}s  ({sub.n:,} IN_COMMUNITY edges, run {run})")
        print(f"end to end: {t3 - t0:.1f}s (target <= 30 s)")
        if args.drop:
            while db.write("MATCH (n:Feature) WHERE n.model = $m WITH n LIMIT 2000 DETACH DELETE n "
                           "RETURN count(*) AS n", {"m": MODEL})[0]["n"]:
                pass
            db.write("MATCH (c:Community {run: $run}) DETACH DELETE c", {"run": run})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
