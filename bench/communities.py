"""Communities benchmark: a planted graph in Neo4j, pulled, partitioned with Leiden and written
back; prints the time of each stage. Targets on the project's 2-core machine: <= 30 s end to end
at 1,000,000 edges; at 10,000,000 edges pull + Leiden + write-back <= 5 minutes and the pull's
peak memory <= 4 GB.

The graph is a planted partition (``--blocks`` blocks over ``--nodes`` feature nodes, 90% of
edges inside a block, signed weights) under the model name ``bench-1m``. Where it is written
(setup, timed separately):

* ``--store online`` (the default up to 1,000,000 edges): the online writer, into the store
  ``mechgraph`` uses (``MECHGRAPH_HOME`` / ``NEO4J_URI``), once; a later run finds it there.
* ``--store bulk`` (the default above): ``ShardWriter`` shards and Neo4j's importer
  (``graphdb.bulk``, what ``mechgraph db load`` does) into a fresh private store in a new
  directory under ``--tmp``, with its own embedded server (``--heap``, ``--page-cache``); the
  directory is removed afterwards (``--keep`` keeps it).

The timed stages are exactly what ``mechgraph communities`` does: ``pull_subgraph`` (the
``subgraph_columns`` bulk query, in pages keyed by source-nid ranges above 2M edges, into a CSR
matrix), ``partition``
(Leiden, modularity) and ``write_communities``. The pull's memory is the resident set of this
process, sampled every 10 ms by a thread during the pull (its peak, and its rise over the resident
set just before). The ARI against the planted blocks checks that the partition is real.

    python bench/communities.py [--edges 1000000] [--nodes N] [--blocks 20] [--store online|bulk] [--drop]
    nice -n 10 python bench/communities.py --edges 10000000          # bulk store under /tmp
    nice -n 10 python bench/communities.py --edges 10000000 --keep --setup-only   # the store, kept
    nice -n 10 python bench/communities.py --edges 10000000 --reuse /tmp/mg-communities-XXXX
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

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
    # Distinct (src, dst) pairs in lexicographic order, as one int64 code each (np.unique of the
    # code is np.unique(..., axis=0) of the pairs, without its row-wise sort).
    pairs = np.unique(src[keep].astype(np.int64) * n_nodes + dst[keep])
    pairs = pairs[rng.permutation(len(pairs))[:n_edges]]
    weight = rng.uniform(0.05, 1.0, len(pairs)) * rng.choice([-1.0, 1.0], len(pairs))
    return block, pairs // n_nodes, pairs % n_nodes, weight


class RssSampler:
    """The peak resident set of this process while in a ``with`` block (a thread reads
    /proc/self/statm every ``every`` seconds; ru_maxrss would be the whole run's high-water mark)."""

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.page = every, os.sysconf("SC_PAGE_SIZE")
        self.before = self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self.before = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=None, help="feature nodes [default: max(20,000, edges / 50)]")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--store", choices=("online", "bulk"), default=None,
                    help="online: the mechgraph store, online writer; bulk: a fresh private store through the "
                         "importer [default: online up to 1,000,000 edges, bulk above]")
    ap.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where the bulk store goes")
    ap.add_argument("--heap", default=None, help="the bulk store's Neo4j heap [default: 2g, 3g above 2M edges]")
    ap.add_argument("--page-cache", default=None,
                    help="the bulk store's Neo4j page cache [default: 512m, 2g above 2M edges]")
    ap.add_argument("--keep", action="store_true", help="keep the bulk store's directory")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="a bulk store directory kept with --keep: run the stages on it, without writing the graph")
    ap.add_argument("--setup-only", action="store_true",
                    help="write the bulk store and wait for its indexes, without the stages (with --keep)")
    ap.add_argument("--drop", action="store_true", help="delete the benchmark graph afterwards (online store)")
    args = ap.parse_args()
    nodes = args.nodes or max(20_000, args.edges // 50)
    store = args.store or ("online" if args.edges <= 1_000_000 else "bulk")
    big = args.edges > 2_000_000

    from graphdb.connection import connect
    from graphdb.keys import node_key
    from graphdb.schema import Label

    load = os.getloadavg()
    print(f"machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores; load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; store: {store}")
    key = [node_key(Label.FEATURE, model=MODEL, checkpoint=CKPT, hook="blocks.0.hook_resid_post",
                    dictionary="bench", index=i) for i in range(nodes)]
    block, src, dst, weight = planted(nodes, args.edges, args.blocks)
    if len(weight) < args.edges:
        print(f"note: the planted sampler found {len(weight):,} distinct edges, not {args.edges:,}: raise --nodes")
    home = None
    if store == "bulk":
        from graphdb.bulk.load import FRESH_SERVER_RETRY
        from graphdb.embedded import EmbeddedServer

        home = args.reuse or Path(tempfile.mkdtemp(prefix="mg-communities-", dir=args.tmp))
        server = EmbeddedServer(home / "data", heap=args.heap or ("3g" if big else "2g"),
                                page_cache=args.page_cache or ("2g" if big else "512m"))
        try:
            if args.reuse:
                server.start(timeout=1800)
            else:
                bulk_write(home, server, key, src, dst, weight, big)
            del src, dst, weight   # the pull's memory is measured from here
            with connect(server.settings(), retry=FRESH_SERVER_RETRY) as db:
                t = time.perf_counter()
                db.write("CALL db.awaitIndexes(7200)")
                print(f"setup (not timed below): indexes online after {time.perf_counter() - t:.1f}s more")
                if not args.setup_only:
                    stages(db, args, key, block)
        finally:
            server.stop()
            if not args.keep and not args.reuse:
                shutil.rmtree(home, ignore_errors=True)
    else:
        from graphdb.embedded import ensure_running
        from graphdb.settings import data_dir

        ensure_running(data_dir())
        with connect(data=data_dir()) as db:
            online_write(db, key, src, dst, weight)
            del src, dst, weight
            run = stages(db, args, key, block)
            if args.drop:
                while db.write("MATCH (n:Feature) WHERE n.model = $m WITH n LIMIT 2000 DETACH DELETE n "
                               "RETURN count(*) AS n", {"m": MODEL})[0]["n"]:
                    pass
                db.write("MATCH (c:Community {run: $run}) DETACH DELETE c", {"run": run})
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
          + (f"; {home} removed" if home is not None and not args.keep and not args.reuse else ""))
    return 0


def online_write(db, key: list[str], src, dst, weight) -> None:  # noqa: ANN001
    """The graph through the online writer, unless the store already holds it."""
    from graphdb.schema import Label, Rel
    from graphdb.writer import GraphWriter

    have = db.read("MATCH ()-[r:ATTRIBUTES_TO]->() WHERE r.model = $m AND r.checkpoint = $c AND r.task = $t "
                   "RETURN count(r) AS n", {"m": MODEL, "c": CKPT, "t": TASK})[0]["n"]
    # A graph stored before nodes had an nid gets its nodes written again (the MERGE adds it).
    with_nid = db.read("MATCH (n:Feature) WHERE n.model = $m AND n.nid IS NOT NULL RETURN count(n) AS n",
                       {"m": MODEL})[0]["n"]
    if have == len(weight) and with_nid == len(key):
        print(f"setup: the {len(weight):,}-edge graph is already stored")
        return
    t = time.perf_counter()
    writer = GraphWriter(db, batch_size=50_000)
    writer.write_nodes(Label.FEATURE, ({"key": k, "model": MODEL, "checkpoint": CKPT, "index": i}
                                       for i, k in enumerate(key)))
    if have != len(weight):
        writer.write_relationships(Rel.ATTRIBUTES_TO, ({"src": key[s], "dst": key[d], "weight": float(w)}
                                                       for s, d, w in zip(src, dst, weight)),
                                   common={"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": RUN})
    print(f"setup (not timed below): wrote {len(key):,} nodes"
          + (f" and {len(weight):,} edges" if have != len(weight) else "")
          + f" online in {time.perf_counter() - t:.1f}s")


def bulk_write(home: Path, server, key: list[str], src, dst, weight, big: bool) -> None:  # noqa: ANN001
    """The graph as shards, imported into a new store (indexes online before the stages)."""
    from graphdb.bulk.load import load_shards
    from graphdb.bulk.shards import ShardWriter
    from graphdb.embedded import free_port
    from graphdb.schema import Label, Rel

    t = time.perf_counter()
    with ShardWriter(home / "shards", batch_size=100_000) as writer:
        writer.write_nodes(Label.FEATURE, ({"key": k, "model": MODEL, "checkpoint": CKPT, "index": i}
                                           for i, k in enumerate(key)))
        # The rows as columns: the same shards as write_relationships of one dict per edge.
        writer.write_relationship_columns(Rel.ATTRIBUTES_TO, [key[s] for s in src.tolist()],
                                          [key[d] for d in dst.tolist()], {"weight": weight},
                                          common={"model": MODEL, "checkpoint": CKPT, "task": TASK, "run": RUN})
    shards = time.perf_counter() - t
    size = sum(f.stat().st_size for f in (home / "shards").iterdir())
    result = load_shards(home / "shards", home / "data", port=free_port(), server=server, timeout=1800,
                         heap="2g" if big else "1g", memory="2g" if big else "1g")
    shutil.rmtree(home / "shards")
    steps = ", ".join(f"{name} {s:.1f}s" for name, s in {"shards": shards, **result.seconds}.items())
    print(f"setup (not timed below): bulk-loaded {len(key):,} nodes and {len(weight):,} edges into {home} in "
          f"{shards + result.total_seconds:.1f}s ({steps}; shards {size / 2**30:.2f} GiB)")


def stages(db, args: argparse.Namespace, key: list[str], block) -> str:  # noqa: ANN001
    """Pull, Leiden, write-back, as ``mechgraph communities`` runs them; prints each. Returns the run."""
    import gc
    import resource

    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph

    gc.collect()
    gib = 2**30
    t0 = time.perf_counter()
    with RssSampler() as rss:
        sub = pull_subgraph(db, Selection(MODEL, CKPT, (TASK,), run=RUN))
    t1 = time.perf_counter()
    print(f"pull  {t1 - t0:6.1f}s  ({sub.edges:,} edges, {sub.n:,} nodes into a CSR matrix); peak RSS during the pull "
          f"{rss.peak / gib:.2f} GiB, {(rss.peak - rss.before) / gib:.2f} GiB above the {rss.before / gib:.2f} GiB "
          f"before it (target <= 4 GB: {'met' if rss.peak <= 4e9 else 'NOT met'}; sampled every 10 ms; "
          f"ru_maxrss of the whole run so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)",
          flush=True)
    part = partition(sub, CommunityConfig(method="leiden", seed=0))
    t2 = time.perf_counter()
    pull_s, leiden_s = t1 - t0, t2 - t1
    from sklearn.metrics import adjusted_rand_score

    truth = block[[int(k.rsplit("|", 1)[1]) for k in sub.keys.tolist()]]
    print(f"leiden {leiden_s:5.1f}s  ({len(set(part.labels[0].tolist()))} communities, modularity "
          f"{part.modularity[0]:.3f}, ARI vs planted {adjusted_rand_score(truth, part.labels[0]):.3f})", flush=True)
    t2 = time.perf_counter()   # the ARI is a check, not a stage
    run = write_communities(db, sub, part, CommunityConfig(method="leiden", seed=0))
    write_s = time.perf_counter() - t2
    print(f"write {write_s:6.1f}s  ({sub.n:,} IN_COMMUNITY edges, run {run})")
    total, target = pull_s + leiden_s + write_s, (30 if args.edges <= 1_000_000 else 300)
    print(f"pull + leiden + write-back: {total:.1f}s (target <= {target} s: {'met' if total <= target else 'NOT met'})")
    return run


if __name__ == "__main__":
    raise SystemExit(main())
