"""Import benchmark: a synthetic Neuronpedia graph JSON file of --links links (9 million by
default), imported streaming, next to the online writer on the same machine, in one invocation.

1. generates ``<--out>/synthetic-<links>.json`` (streamed out; deleted at the end): one
   prompt of --nodes nodes (features over 26 layers and 64 positions, error nodes, the tokens,
   10 logits), --links distinct links with random weights, two supernodes;
2. imports it with ``analysis.exchange.load.import_file`` in a child process (the streaming
   parse feeding the batched ``GraphWriter``) and reads that process's peak RSS;
3. writes the same prompt-graph edges (same node count, same (source, target) pairs, same
   weights' distribution) with ``GraphWriter`` straight from memory (the online writer, as
   ``mechgraph trace`` writes), under another run: all --links of them, or the first
   --baseline-links (a smaller slice, said so in the output: on this graph a MERGE gets slower
   as the nodes' degrees grow, so a slice flatters the writer);
   Steps 2 and 3 alternate for --rounds rounds (the machine may be shared); the fastest counts.
4. prints the file size, the import's peak memory (target <= 2 GB; the importing Python
   process only: the Neo4j JVM, whose heap MECHGRAPH_NEO4J_HEAP sets, is printed apart), its
   links/s and the online writer's edges/s, each with the load average while it ran (the
   machine may be shared), and their ratio (target: import >= writer); with the private server,
   also the server's CPU seconds per edge of each (a figure the load of a shared machine moves
   less than a wall rate).

Runs its own embedded Neo4j in ``<--out>/neo4j`` (wiped first; --out defaults to
bench/out/np-import) unless --external.

    python bench/import_neuronpedia.py                   # the acceptance size, 9,000,000 links
    python bench/import_neuronpedia.py --links 1000000   # a quicker look
    python bench/import_neuronpedia.py --out /tmp/np --rounds 1 --baseline-links 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "np-import"
ROOT = Path(__file__).resolve().parent.parent
N_LAYERS, N_POS = 26, 64


def node_ids(n_nodes: int) -> list[dict]:
    nodes = [{"node_id": f"E_{100 + p}_{p}", "feature": p, "layer": "E", "ctx_idx": p, "feature_type": "embedding",
              "jsNodeId": f"E_{100 + p}-{p}", "clerp": "", "influence": None, "activation": None} for p in range(N_POS)]
    nodes += [{"node_id": f"{layer}_-1_{p}", "feature": -1, "layer": str(layer), "ctx_idx": p,
               "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_{p}-0", "clerp": "",
               "influence": 0.5, "activation": None} for layer in range(N_LAYERS) for p in range(0, N_POS, 8)]
    nodes += [{"node_id": f"{N_LAYERS + 1}_{t}_{N_POS - 1}", "feature": t, "layer": str(N_LAYERS + 1),
               "ctx_idx": N_POS - 1, "feature_type": "logit", "token_prob": 0.1, "is_target_logit": t == 0,
               "jsNodeId": f"L_{t}-{N_POS - 1}", "clerp": f'Output "t{t}" (p=0.100)'} for t in range(10)]
    i = 0
    while len(nodes) < n_nodes:
        layer, p = i % N_LAYERS, (i // N_LAYERS) % N_POS
        nodes.append({"node_id": f"{layer}_{i}_{p}", "feature": i, "layer": str(layer), "ctx_idx": p,
                      "feature_type": "cross layer transcoder", "jsNodeId": f"{layer}_{i}-0", "clerp": "",
                      "influence": 0.1, "activation": 1.0})
        i += 1
    return nodes


def generate(path: Path, n_links: int, n_nodes: int, seed: int = 0) -> None:
    import numpy as np

    nodes = node_ids(n_nodes)
    ids = [n["node_id"] for n in nodes]
    rng = np.random.default_rng(seed)
    meta = {"slug": f"synthetic-{n_links}", "scan": "bench-np", "transcoder_list": [],
            "prompt_tokens": [f"t{p}" for p in range(N_POS)], "prompt": "synthetic", "schema_version": 1}
    q = {"pinnedIds": ids[:3], "supernodes": [["first", *ids[:5]], ["second", *ids[-5:]]], "linkType": "both",
         "clickedId": "", "sg_pos": ""}
    with path.open("w") as f:
        f.write('{"metadata": ' + json.dumps(meta) + ', "qParams": ' + json.dumps(q) + ', "nodes": ')
        json.dump(nodes, f)
        f.write(', "links": [')
        chunk = 100_000
        for start in range(0, n_links, chunk):
            k = np.arange(start, min(start + chunk, n_links))
            src, dst = np.divmod(k, n_nodes)           # distinct (source, target) pairs
            w = rng.standard_normal(len(k))
            f.write(("," if start else "") + ",".join(
                f'{{"source": "{ids[s]}", "target": "{ids[t]}", "weight": {x!r}}}'
                for s, t, x in zip(src.tolist(), dst.tolist(), w.tolist())))
        f.write("]}")


def import_side(path: str, settings_json: str, batch_size: int, task: str) -> None:
    """The child process: import the file, print seconds, links and peak RSS as JSON."""
    from analysis.exchange.load import ImportConfig, import_file
    from graphdb.connection import connect
    from graphdb.settings import Neo4jSettings

    import ingest.replacement.store  # noqa: F401 - its imports (torch) are a fixed cost, not part of the rate

    settings = Neo4jSettings(**json.loads(settings_json))
    with connect(settings) as db:
        t = time.perf_counter()
        r = import_file(db, path, ImportConfig(batch_size=batch_size, task=task))
        secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "links": r.links, "nodes": r.nodes,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def parse_side(path: str, batch_size: int) -> None:
    """The child process of --parse-only: everything the import does to the file but the writes
    (the header, the links decoded in blocks, the checked edge rows and their pairs, the
    parse-ahead thread, batches of rows as the writer cuts them), with the modules the import
    loads; prints seconds, links, peak RSS."""
    import io

    from analysis.exchange.load import Pairs, _edge_rows, _read_header
    from analysis.exchange.stream import Header, LinkArray, links_start, prefetched
    from graphdb.writer import batched

    import ingest.replacement.store  # noqa: F401 - the import's fixed cost in memory (torch)

    t = time.perf_counter()
    header, count = Header(), [0]
    with open(path, "rb") as f:
        start = links_start(f)
        f.seek(0)
        _read_header(io.BytesIO(f.read(start) + b"]}"), header)
        key_of = {n["node_id"]: n["node_id"] for n in header.nodes}
        pairs = Pairs(key_of)
        for batch in batched(prefetched(_edge_rows(iter(LinkArray(f, start)), key_of, count, pairs), batch_size),
                             batch_size):
            [dict(r) for r in batch]
        pairs.check()
    print(json.dumps({"seconds": time.perf_counter() - t, "links": count[0], "nodes": len(key_of),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def jvm_peak_mib(server) -> float | None:
    """Peak resident memory of the private server's JVM (``VmHWM``), or None (external store)."""
    state = server.state() if server is not None else None
    try:
        with open(f"/proc/{state.pid}/status") as f:
            return next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmHWM:"))
    except (AttributeError, OSError, StopIteration):
        return None


def server_cpu(server) -> float | None:
    """CPU seconds the private server's JVM has used so far (user + system), or None."""
    state = server.state() if server is not None else None
    try:
        with open(f"/proc/{state.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, IndexError, ValueError):
        return None


def load() -> float:
    return os.getloadavg()[0]


def online(db, n_links: int, n_nodes: int, batch_size: int, prompt: str = "online") -> float:
    """Seconds for the online writer to write ``n_links`` prompt-graph edges from memory."""
    from graphdb.keys import node_key
    from graphdb.schema import Granularity, Label, Rel
    from graphdb.writer import GraphWriter

    keys = [node_key(Label.PROMPT_NODE, prompt=prompt, kind="feature", layer=0, position=0, index=i)
            for i in range(n_nodes)]
    writer = GraphWriter(db, batch_size=batch_size)
    writer.write_nodes(Label.PROMPT_NODE, ({"key": k, "prompt": prompt, "kind": "feature"} for k in keys))
    import numpy as np

    rng = np.random.default_rng(1)

    def rows():
        for start in range(0, n_links, 100_000):
            k = np.arange(start, min(start + 100_000, n_links))
            src, dst = np.divmod(k, n_nodes)
            for s, t, w in zip(src.tolist(), dst.tolist(), rng.standard_normal(len(k)).tolist()):
                yield {"src": keys[s], "dst": keys[t], "weight": w}

    t = time.perf_counter()
    writer.write_relationships(Rel.ATTRIBUTES_TO, rows(), common={"run": f"bench-{prompt}", "task": "bench",
                                                                 "model": "bench", "checkpoint": "final",
                                                                 "granularity": str(Granularity.PROMPT)})
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", type=int, default=9_000_000)
    ap.add_argument("--nodes", type=int, default=None, help="nodes in the graph (default: enough for the links, >= 4000)")
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of each; the fastest counts")
    ap.add_argument("--baseline-links", type=int, default=None,
                    help="edges the online writer writes (default: --links; fewer is a slice, said so in the output)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the file and the private store go (default: bench/out/np-import)")
    ap.add_argument("--keep-file", action="store_true", help="keep the generated file (default: deleted at the end)")
    ap.add_argument("--parse-only", action="store_true",
                    help="no database: the import's parse, checks and batching of the file alone (its peak memory and rate)")
    ap.add_argument("--external", action="store_true", help="use NEO4J_URI instead of a private embedded server")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "parse":
        parse_side(args.args[0], args.batch_size)
        return 0
    if args.side == "import":
        import_side(args.args[0], args.args[1], args.batch_size, args.args[2])
        return 0
    from _store import bench_store  # bench/ is on sys.path when a script here runs
    from graphdb.connection import connect

    n_nodes = args.nodes or max(4000, math.ceil(math.sqrt(args.links)) + 1000)
    base_links = min(args.baseline_links or args.links, args.links)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"synthetic-{args.links}.json"
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.links, n_nodes)
        print(f"generated {path} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    if args.parse_only:
        before = load()
        child = subprocess.run([sys.executable, __file__, "--side", "parse", "--batch-size", str(args.batch_size), str(path)],
                               check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        got = json.loads(child.stdout.strip().splitlines()[-1])
        size = path.stat().st_size
        if not args.keep_file:
            path.unlink()
        print(f"file: {path.name}, {size / 2**20:,.0f} MiB, {got['nodes']:,} nodes, {args.links:,} links")
        print(f"parse only (no database: stream parse, checked edge rows, parse-ahead thread, batches): "
              f"{got['links']:,} links in {got['seconds']:.1f}s = {got['links'] / got['seconds']:,.0f} links/s "
              f"(load average {(before + load()) / 2:.1f}); peak RSS {got['peak_rss_mib']:,.0f} MiB (target <= 2048 MiB)")
        return 0 if got["links"] == args.links else 1
    settings, server = bench_store(args.out, args.external)
    try:
        with connect(settings) as db:
            # Warm the server up (JIT, page cache) untimed, so neither timed pass pays for it.
            online(db, min(args.links, 100_000), n_nodes, args.batch_size, prompt="warm-up")
        blob = json.dumps({"uri": settings.uri, "user": settings.user, "password": settings.password})
        # The machine may be shared: the two run alternately for --rounds rounds, each one's
        # fastest round counts (each round imports under its own task, so a new prompt graph).
        imp, writer_secs, loads, jvm_cpu = None, math.inf, {}, {"import": [], "writer": []}
        for r in range(args.rounds):
            before, cpu0 = load(), server_cpu(server)
            child = subprocess.run([sys.executable, __file__, "--side", "import", "--batch-size", str(args.batch_size),
                                    str(path), blob, f"bench-{r}"], check=True, capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
            got = json.loads(child.stdout.strip().splitlines()[-1])
            got["load"] = (before + load()) / 2
            cpu1 = server_cpu(server)
            if cpu1 is not None:
                jvm_cpu["import"].append((cpu1 - cpu0) / got["links"] * 1e6)
            print(f"round {r}: import {got['links'] / got['seconds']:,.0f} links/s (load {got['load']:.1f}), "
                  f"peak RSS {got['peak_rss_mib']:,.0f} MiB", file=sys.stderr)
            if imp is None or got["seconds"] < imp["seconds"]:
                imp = got
            before, cpu0 = load(), server_cpu(server)
            with connect(settings) as db:
                secs = online(db, base_links, n_nodes, args.batch_size, prompt=f"online-{r}")
            now = (before + load()) / 2
            cpu1 = server_cpu(server)
            if cpu1 is not None:
                jvm_cpu["writer"].append((cpu1 - cpu0) / base_links * 1e6)
            print(f"round {r}: online writer {base_links / secs:,.0f} edges/s (load {now:.1f})", file=sys.stderr)
            if secs < writer_secs:
                writer_secs, loads["writer"] = secs, now
        with connect(settings) as db:
            stored = db.read("MATCH (p:Prompt {slug: $s})<-[:IN_PROMPT]-(a)-[r:ATTRIBUTES_TO]->(b) "
                             "RETURN count(r) AS n", {"s": f"synthetic-{args.links}"})[0]["n"]
        jvm = jvm_peak_mib(server)
    finally:
        if server is not None:
            server.stop()
    size = path.stat().st_size
    if not args.keep_file:
        path.unlink()
    import_rate, writer_rate = imp["links"] / imp["seconds"], base_links / writer_secs
    print(f"file: {path.name}, {size / 2**20:,.0f} MiB, {imp['nodes']:,} nodes, {args.links:,} links")
    print(f"import (streaming, batched writer): {imp['links']:,} links in {imp['seconds']:.1f}s = "
          f"{import_rate:,.0f} links/s (load average {imp['load']:.1f}); peak RSS of the importing process "
          f"{imp['peak_rss_mib']:,.0f} MiB (target <= 2048 MiB; the Neo4j JVM not counted)")
    print("Neo4j JVM (apart): " + (f"heap {server.heap} (MECHGRAPH_NEO4J_HEAP), page cache {server.page_cache}, "
                                   f"peak RSS {jvm:,.0f} MiB" if jvm else "an external server, not measured"))
    slice_ = "" if base_links == args.links else f" -- a SLICE: the first {base_links:,} of the {args.links:,} links"
    print(f"online writer (GraphWriter, rows from memory): {base_links:,} edges in {writer_secs:.1f}s = "
          f"{writer_rate:,.0f} edges/s (load average {loads['writer']:.1f}){slice_}")
    print(f"import / online writer: {import_rate / writer_rate:.2f}x (target >= 1)")
    if jvm_cpu["import"] and jvm_cpu["writer"]:
        # Wall rates follow the load on a shared machine; the server's own CPU per edge does not.
        imp_us, wr_us = min(jvm_cpu["import"]), min(jvm_cpu["writer"])
        print(f"Neo4j server CPU per edge (least of the rounds): import {imp_us:.1f} us/link, writer {wr_us:.1f} us/edge "
              f"(writer / import: {wr_us / imp_us:.2f}x)")
    print(f"links stored by the imports: {stored:,} (expected {args.rounds} x {args.links:,})")
    return 0 if stored == args.rounds * args.links else 1


if __name__ == "__main__":
    sys.exit(main())
