"""Neuronpedia / circuit-tracer graph JSON files into Neo4j as prompt graphs, streamed.

A file is parsed as a stream: ``metadata``, ``qParams`` and ``nodes`` (a few thousand nodes at
most; ijson) are built in memory, the ``links`` (millions; decoded a block of bytes at a time,
:class:`~analysis.exchange.stream.LinkArray`) are never all held: each becomes an edge row the
moment it is parsed and the batched writer takes them in batches,
through the same write path ``mechgraph trace`` uses (``ingest.replacement.store.
write_prompt_rows``), so imported and traced prompt graphs look alike (kinds, layers, positions,
the position-free ``feature`` key the cross-prompt queries group by). Files whose ``links``
come before their ``nodes`` are read twice (the nodes first). The prompt's nodes are new, so
its edges are CREATEd, not MERGEd (a MERGE searches the endpoints' relationships, a cost that
grows with their degree); a file that repeats a (source, target) pair is refused, and a prompt
that an earlier, interrupted import left incomplete is deleted before it is written again.

What a file becomes (the format's fields kept on the nodes, ``np_*``, so that an export writes
the file back)::

    (:Prompt {prompt, slug, scan, text, token_strs, model, checkpoint, task, run, source: 'neuronpedia', ...})
    (:PromptNode {kind, layer, position, index, feature, activation, influence, clerp, np_node_id, ...})
    (:Community {label, member_ids, source: 'neuronpedia'})   one per supernode, its members IN_COMMUNITY

A file that fails (invalid JSON, a missing field, a link to an unknown node) raises
:class:`~analysis.exchange.neuronpedia.FormatError` naming the file, and what it had written
is deleted: nothing half-written stays. A file already imported completely is skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from analysis.exchange import neuronpedia as np_
from analysis.exchange.neuronpedia import FormatError
from analysis.exchange.stream import Header, LinkArray, events, links_start, prefetched, top
from mechgraph.errors import ConfigError

SOURCE = "neuronpedia"
#: Files in a directory that are not graphs (circuit-tracer writes this index beside them).
NOT_GRAPHS = {"graph-metadata.json"}
_CYPHER = Path(__file__).parent / "cypher"


@dataclass(frozen=True)
class ImportConfig:
    """Names the imported graphs are stored under. ``model`` defaults to the file's ``scan``."""

    model: str | None = None
    checkpoint: str = "final"
    dictionary: str = "transcoders"
    task: str = SOURCE
    batch_size: int = 10_000

    def __post_init__(self) -> None:
        from graphdb.keys import check_part

        for name in ("checkpoint", "dictionary", "task"):
            check_part(name, getattr(self, name))
        if self.model is not None:
            check_part("model", self.model)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class Imported:
    path: str
    prompt: str
    slug: str
    nodes: int
    links: int
    supernodes: int
    skipped: bool = False


def cypher(name: str) -> str:
    return (_CYPHER / f"{name}.cypher").read_text()


# -- conversion ----------------------------------------------------------------------------
def _need(obj: dict[str, Any], name: str, what: str) -> Any:
    if not isinstance(obj, dict) or name not in obj or obj[name] is None:
        raise FormatError(f"{what} has no {name!r}")
    return obj[name]


def _int(value: Any, what: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise FormatError(f"{what} is not an integer: {value!r}") from None
    if isinstance(value, float) and not value.is_integer():
        raise FormatError(f"{what} is not an integer: {value!r}")
    return out


def _middle(node_id: str, default: int) -> int:
    parts = str(node_id).split("_")
    try:
        return int(parts[1]) if len(parts) == 3 else default
    except ValueError:
        return default


@dataclass(frozen=True)
class _Names:
    model: str
    labels: Any          # ingest.replacement.store.GraphLabels
    run: Any             # graphdb.provenance.RunRecord
    prompt: str


def _node_rows(header: Header, names: _Names) -> tuple[list[dict[str, Any]], dict[str, str]]:
    from ingest.replacement.store import prompt_node_key

    nodes = header.nodes
    if not isinstance(nodes, list):
        raise FormatError("the file has no 'nodes' list")
    tokens = (header.metadata or {}).get("prompt_tokens") or []
    rows, key_of = [], {}
    target = 0
    for i, n in enumerate(nodes):
        what = f"node {i}"
        node_id = str(_need(n, "node_id", what))
        what = f"node {node_id!r}"
        ftype = str(_need(n, "feature_type", what))
        kind = np_.kind_of(ftype)
        if kind is None:
            raise FormatError(f"{what} has an unknown feature_type {ftype!r}")
        pos = _int(_need(n, "ctx_idx", what), f"{what}'s ctx_idx")
        raw_layer = _need(n, "layer", what)
        feature_num = n.get("feature")
        node: dict[str, Any] = {"kind": kind, "position": pos}
        if kind == "token":
            node["layer"] = -1
            node["token"] = _middle(node_id, -1)
        elif kind == "target":
            node["layer"] = _int(raw_layer, f"{what}'s layer") - 1
            node["token"] = _int(_need(n, "feature", what), f"{what}'s feature")
            node["counter_token"] = None
        else:
            node["layer"] = _int(raw_layer, f"{what}'s layer")
            if kind == "feature":
                node["feature"] = _middle(node_id, _int(_need(n, "feature", what), f"{what}'s feature"))
        key = prompt_node_key(names.prompt, node, target)
        if key in key_of.values():
            raise FormatError(f"{what} is a second node at the same layer, position and feature")
        if node_id in key_of:
            raise FormatError(f"{what} appears twice")
        key_of[node_id] = key
        row = {"key": key, "prompt": names.prompt, "kind": kind, "layer": node["layer"], "position": pos,
               "index": node.get("feature", target if kind == "target" else 0),
               "feature": names.labels.position_free(node), "influence": n.get("influence"),
               "model": names.model, "checkpoint": names.labels.checkpoint, "task": names.labels.task,
               "run": names.run.run_id, "clerp": n.get("clerp", ""), "np_node_id": node_id,
               "np_feature": feature_num, "np_layer": str(raw_layer), "np_feature_type": ftype,
               "np_js_id": n.get("jsNodeId", node_id), "np_token_prob": n.get("token_prob", 0.0),
               "np_is_target_logit": bool(n.get("is_target_logit", False)), "np_run_idx": n.get("run_idx", 0),
               "np_reverse_ctx_idx": n.get("reverse_ctx_idx", 0), "np_order": i}
        if kind == "feature":
            row["activation"] = n.get("activation")
        elif n.get("activation") is not None:
            row["np_activation"] = n["activation"]
        if kind == "token":
            row["token"] = node["token"]
            row["text"] = tokens[pos] if 0 <= pos < len(tokens) else ""
        if kind == "target":
            row["token"], row["label"] = node["token"], n.get("clerp", "")
            row["weight"] = float(n.get("token_prob", 0.0) or 0.0)
            target += 1
        rows.append(row)
    return rows, key_of


def _edge_rows(links: Iterator[dict[str, Any]], key_of: dict[str, str], counter: list[int],
               pairs: Pairs | None = None) -> Iterator[dict[str, Any]]:
    """Checked edge rows of ``links``; ``counter[0]`` counts them; ``pairs``, if given, records
    each link's (source, target) to find a repeated pair afterwards."""
    for link in links:
        n = counter[0]
        try:
            src, dst, weight = key_of[link["source"]], key_of[link["target"]], link["weight"]
            if pairs is not None:
                pairs.add(link["source"], link["target"])
        except KeyError as e:
            if isinstance(link, dict) and {"source", "target", "weight"} <= set(link):
                raise FormatError(f"link {n} names node {e.args[0]!r}, which is not in 'nodes'") from None
            raise FormatError(f"link {n} has no {e.args[0]!r}") from None
        except TypeError:
            raise FormatError(f"link {n} is not an object") from None
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not math.isfinite(weight):
            raise FormatError(f"link {n} has weight {weight!r}, not a finite number")
        counter[0] = n + 1
        yield {"src": src, "dst": dst, "weight": float(weight)}


class Pairs:
    """The (source, target) pairs of a file's links, 8 bytes each (node numbers packed in an
    int64), to check once all are read that no pair repeats: the import CREATEs its edges, which
    is MERGE only when every pair is new."""

    def __init__(self, node_ids: Iterator[str]) -> None:
        from array import array

        self.index = {node_id: i for i, node_id in enumerate(node_ids)}
        self.codes = array("q")

    def add(self, source: str, target: str) -> None:
        index = self.index
        self.codes.append(index[source] * len(index) + index[target])

    def check(self) -> None:
        """Raise :class:`FormatError` naming the first link whose pair an earlier link has."""
        import numpy as np

        codes = np.frombuffer(self.codes, dtype=np.int64) if len(self.codes) else np.zeros(0, np.int64)
        order = np.argsort(codes, kind="stable")
        same = np.flatnonzero(codes[order][1:] == codes[order][:-1])
        if len(same):
            later = order[same + 1]
            j = int(later.min())
            i = int(order[same[np.argmin(later)]])
            raise FormatError(f"link {j} repeats the source and target of link {i}")


def prompt_id(model: str, checkpoint: str, task: str, metadata: dict[str, Any]) -> str:
    blob = json.dumps({"source": SOURCE, "model": model, "checkpoint": checkpoint, "task": task,
                       "slug": metadata.get("slug"), "prompt": metadata.get("prompt")}, sort_keys=True)
    return "np-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prompt_row(header: Header, names: _Names, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    from graphdb.keys import node_key
    from graphdb.schema import Label

    meta = header.metadata or {}
    q = header.qparams or {}
    known = {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold", "schema_version", "info"}
    targets = [r for r in nodes if r["kind"] == "target"]
    layers = [r["layer"] for r in targets] or [r["layer"] + 1 for r in nodes if r["kind"] in ("feature", "error")]
    return {"key": node_key(Label.PROMPT, prompt=names.prompt), "prompt": names.prompt, "source": SOURCE,
            "text": meta.get("prompt", ""), "token_strs": [str(t) for t in meta.get("prompt_tokens") or []],
            "slug": str(meta.get("slug", "")), "scan": str(meta.get("scan", "")),
            "transcoder_list": [str(t) for t in meta.get("transcoder_list") or []],
            "transcoders": str(meta.get("scan", "")), "node_threshold": meta.get("node_threshold"),
            "schema_version": meta.get("schema_version"),
            "metadata_extra": json.dumps({k: v for k, v in meta.items() if k not in known}, sort_keys=True),
            "file_extra": json.dumps(header.extra, sort_keys=True),
            "pinned_ids": [str(x) for x in q.get("pinnedIds") or []],
            "link_type": str(q.get("linkType", "both")), "clicked_id": str(q.get("clickedId", "")),
            "sg_pos": str(q.get("sg_pos", "")), "model": names.model, "checkpoint": names.labels.checkpoint,
            "task": names.labels.task, "run": names.run.run_id, "n_layers": max(layers, default=0),
            "targets": [r["label"] for r in targets], "target_tokens": [r["token"] for r in targets],
            "target_weights": [r["weight"] for r in targets], "pruned_nodes": len(nodes), "complete": False}


def _supernodes(header: Header, names: _Names, key_of: dict[str, str]) -> tuple[list[dict], list[dict]]:
    from graphdb.keys import node_key
    from graphdb.schema import Label

    raw = (header.qparams or {}).get("supernodes") or []
    if not isinstance(raw, list):
        raise FormatError("qParams.supernodes is not a list")
    comms, members = [], []
    run = supernode_run(names.prompt)
    for i, sn in enumerate(raw):
        if not isinstance(sn, list) or not sn or not all(isinstance(x, str) for x in sn):
            raise FormatError(f"supernode {i} is not a list of strings [label, node ids...]")
        key = node_key(Label.COMMUNITY, run=run, level=0, index=i)
        comms.append({"key": key, "run": run, "level": 0, "index": i, "label": sn[0], "member_ids": sn[1:],
                      "size": len(sn) - 1, "source": SOURCE, "prompt": names.prompt, "model": names.model,
                      "checkpoint": names.labels.checkpoint})
        members += [{"src": key_of[m], "dst": key, "run": run, "rank": j}
                    for j, m in enumerate(sn[1:]) if m in key_of]
    return comms, members


def supernode_run(prompt: str) -> str:
    """The ``run`` of an imported prompt's supernode communities (one partition per prompt)."""
    return f"supernodes-{prompt}"


# -- import --------------------------------------------------------------------------------
def import_file(db: Any, path: str | Path, config: ImportConfig = ImportConfig(), *,
                progress: Callable[[int], None] | None = None, path_mode: str = "auto") -> Imported:
    """Import one graph JSON file (see the module docstring)."""
    import ijson

    path = Path(path)
    try:
        with path.open("rb") as f:
            start = links_start(f)
            if start is None:
                return _import_events(db, f, path, config, progress, path_mode)
            # The header is what surrounds the links array: before it now, after it once read.
            header = Header()
            f.seek(0)
            _read_header(io.BytesIO(f.read(start) + b"]}"), header)
            if header.nodes is None or header.metadata is None:     # links first: the rest, then them
                first = LinkArray(f, start)
                for _ in first:
                    pass
                _read_tail(f, first.end, header)
                return _write(db, path, header, config, lambda: iter(LinkArray(f, start)), progress, path_mode)
            array = LinkArray(f, start)

            def links() -> Iterator[dict[str, Any]]:
                yield from array
                _read_tail(f, array.end, header)

            return _write(db, path, header, config, links, progress, path_mode)
    except ijson.JSONError as e:
        raise FormatError(f"{path}: not valid JSON ({_short(e)})") from None
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None


def _read_header(f: IO[bytes], header: Header) -> None:
    for _ in top(events(f), header, links_ok=False):
        pass


def _read_tail(f: IO[bytes], end: int | None, header: Header) -> None:
    """The keys after the links array (``end``: just after its ``]``) into ``header``."""
    f.seek(end or 0)
    _read_header(_Prefixed(b'{"links": []', f), header)


class _Prefixed:
    """A binary reader: ``prefix``, then the rest of ``f``."""

    def __init__(self, prefix: bytes, f: IO[bytes]) -> None:
        self.prefix, self.f = prefix, f

    def read(self, n: int = -1) -> bytes:
        if self.prefix and n != 0:     # ijson reads 0 bytes first to learn the type
            out, self.prefix = self.prefix, b""
            return out
        return self.f.read(n)


def _import_events(db: Any, f: IO[bytes], path: Path, config: ImportConfig,
                   progress: Callable[[int], None] | None, path_mode: str) -> Imported:
    """The whole file through ijson's events (a file :func:`links_start` could not place)."""
    f.seek(0)
    header = Header()
    stream = top(events(f), header, links_ok=True)
    first = next(stream, None)
    if first is not None and (header.nodes is None or header.metadata is None):
        for _ in stream:
            pass
        return _write(db, path, header, config, lambda: _reread_links(path), progress, path_mode)

    def links() -> Iterator[dict[str, Any]]:
        if first is not None:
            yield first
            yield from stream

    return _write(db, path, header, config, links, progress, path_mode)


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:160]


def _reread_links(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        yield from top(events(f), Header(), links_ok=True)


def _write(db: Any, path: Path, header: Header, config: ImportConfig, links: Callable[[], Iterator[dict]],
           progress: Callable[[int], None] | None, path_mode: str) -> Imported:
    from graphdb.keys import check_part, node_key
    from graphdb.provenance import RunRecord
    from graphdb.schema import Label, Rel
    from graphdb.writer import GraphWriter
    from ingest.replacement.store import GraphLabels, write_prompt_rows

    if not isinstance(header.metadata, dict):
        raise FormatError("the file has no 'metadata' object")
    meta = header.metadata
    model = config.model or str(_need(meta, "scan", "metadata"))
    try:
        check_part("model", model)
    except ConfigError as e:
        raise FormatError(str(e)) from None
    labels = GraphLabels(model=model, checkpoint=config.checkpoint, dictionary=config.dictionary, task=config.task)
    run = RunRecord(kind="import", seed=0, config={"format": SOURCE, "model": model, "checkpoint": config.checkpoint,
                                                   "dictionary": config.dictionary, "task": config.task})
    pid = prompt_id(model, config.checkpoint, config.task, meta)
    names = _Names(model=model, labels=labels, run=run, prompt=pid)
    nodes, key_of = _node_rows(header, names)
    prompt_row = _prompt_row(header, names, nodes)
    slug = str(meta.get("slug", ""))
    done = db.read(cypher("prompt_complete"), {"key": prompt_row["key"]})
    if done and done[0]["complete"]:
        return Imported(str(path), pid, slug, len(nodes), done[0]["links"],
                        len((header.qparams or {}).get("supernodes") or []), skipped=True)
    delete = {"key": prompt_row["key"], "prompt": pid, "run": supernode_run(pid)}
    if done:    # an import that stopped half-way (a killed process): start it afresh
        db.write(cypher("prompt_delete"), delete)
    writer = GraphWriter(db, batch_size=config.batch_size, progress=progress, path=path_mode)  # type: ignore[arg-type]
    counter = [0]
    pairs = Pairs(key_of)
    try:
        # The prompt's nodes are new, so its edges are CREATEd (no MERGE search, whose cost grows
        # with the nodes' degrees); that no pair repeats is checked once the links are read.
        rows = prefetched(_edge_rows(links(), key_of, counter, pairs), config.batch_size)
        written = write_prompt_rows(writer, prompt_row, nodes, rows, labels, run, create_edges=True)
        pairs.check()
        # The links are read: a qParams after them is known now.
        comms, members = _supernodes(header, names, key_of)
        if comms:
            writer.write_nodes(Label.COMMUNITY, comms)
            writer.write_relationships(Rel.PRODUCED_BY, [{"src": c["key"], "dst": run.key} for c in comms],
                                       src=Label.COMMUNITY, dst=Label.RUN)
            writer.write_relationships(Rel.IN_COMMUNITY, members, src=Label.NODE, dst=Label.COMMUNITY)
        q = _prompt_row(header, names, nodes)
        props = {k: q[k] for k in ("pinned_ids", "link_type", "clicked_id", "sg_pos", "file_extra")}
        db.write(cypher("prompt_finish"), {"key": node_key(Label.PROMPT, prompt=pid), "links": written,
                                           "props": props})
    except BaseException:
        # Nothing half-written: what this import wrote goes (the prompt was not complete before).
        db.write(cypher("prompt_delete"), delete)
        raise
    return Imported(str(path), pid, slug, len(nodes), written, len(comms))


def graph_files(path: str | Path) -> list[Path]:
    """``path`` itself, or the ``*.json`` graph files of a directory (sorted)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.json") if f.name not in NOT_GRAPHS)
        if not files:
            raise ConfigError(f"{p} holds no graph .json files")
        return files
    if not p.exists():
        raise ConfigError(f"{p} does not exist")
    return [p]


def import_path(db: Any, path: str | Path, config: ImportConfig = ImportConfig(), *,
                progress: Callable[[int], None] | None = None,
                on_file: Callable[[Imported], None] | None = None) -> list[Imported]:
    """Import one file or every graph file of a directory; stops at the first bad file (the
    files before it stay imported, each whole)."""
    out = []
    for f in graph_files(path):
        result = import_file(db, f, config, progress=progress)
        out.append(result)
        if on_file:
            on_file(result)
    return out
