"""Write the rows ``GraphWriter`` takes as shards for Neo4j's importer, not as transactions.

:class:`ShardWriter` has the writer's ``write_nodes`` / ``write_relationships`` signatures and
stores what the online writer's procedure path would store, so that ``mechgraph db load`` of
its shards gives the store an online write of the same rows gives (``tests/graphdb/test_bulk.py``
compares checksums):

* nodes: one per key within the label the writer MERGEs on (``Node`` for graph nodes, the
  label itself for ``Model``, ``Run``, ...), with that label plus the extra ones (``Feature``,
  ...); ``key``; ``nid = keys.key_id(key)``; the call's ``common`` properties and the row's
  (a row's ``None`` leaves ``common``'s value, or nothing). A key written twice is one node with
  the union of labels and properties, later values winning, as MERGE + ``SET +=`` does. Nodes
  are therefore held in memory until :meth:`ShardWriter.close`.
* relationships: ``abs_weight = |weight|`` and ``granularity = 'feature'`` on ATTRIBUTES_TO
  (``writer._derive``), the identity properties required, endpoints that must have been
  written as nodes before (``MissingEndpointError``, like the online writer). They stream to
  disk. The online writer MERGEs a relationship on its endpoints and identity properties; the
  importer creates one per row. Two rows with the same identity (type, endpoints, identity
  properties) would therefore give two relationships where the online writer keeps one, so
  :meth:`ShardWriter.close` refuses shards that hold any (a 64-bit hash per row, 8 bytes each,
  checked with one sort): write such graphs online, or each relationship once.

Shard files are CSV with the importer's header on their first line (``:ID``, ``key:string``,
``:LABEL``, ``:START_ID``, ``name:double``, ...). Node ids are the importer's *actual* ids
(``--id-type=actual``): every node gets the next integer, in the order first written, and a
relationship names its endpoints by those integers. The importer then has no id mapping to build
(no sort of the keys, no lookup per relationship), and the shards are half the size they would be
with key strings; the keys are still stored, as the ``key`` property. Values are typed per
column; rows whose values differ in type (an ``int`` where others have a ``float``) go to a
shard of their own, so every value keeps the type the online writer would give it. ``None`` is
an empty field (no property); strings are always quoted, so ``""`` stays an empty string. Arrays
use U+001F as the element delimiter. The importer reads an empty array as no property, so a node's empty lists are
listed in the manifest (``empty_lists``) and set after the import (``graphdb.bulk.load``); an
empty list on a relationship is refused. ``manifest.json`` lists the shards and how to read them.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from graphdb.keys import key_id
from graphdb.schema import KEYED_LABELS, REL_IDENTITY, Label, Rel
from graphdb.writer import (DEFAULT_BATCH_SIZE, MissingEndpointError, _check_endpoints, _node_labels, batched,
                            relationship_common, relationship_rows)
from mechgraph.errors import ConfigError

MANIFEST = "manifest.json"
FORMAT = "mechgraph-shards/2"   # 2: actual node ids (1: key strings as ids)
#: Between array elements and between labels; passed to the importer as --array-delimiter.
ARRAY_DELIMITER = "\x1f"
ARRAY_DELIMITER_ARG = "U+001F"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Signature = tuple[tuple[str, str], ...]


def _quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if '"' in s else '"' + s + '"'


def _double(v: float) -> str:
    if math.isfinite(v):
        return repr(float(v))   # shortest text that parses back to the same double
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _long(v: Any) -> str:
    return str(int(v))


def _bool(v: Any) -> str:
    return "true" if v else "false"


_SCALAR_TYPES = frozenset({str, int, float, bool})
_SCALAR_FMT = {"string": _quote, "long": _long, "double": _double, "boolean": _bool}


def value_type(v: Any) -> str:
    """The importer type the online writer's procedure would store ``v`` as."""
    t = type(v)
    if t is str:
        return "string"
    if t is float:
        return "double"
    if t is bool:
        return "boolean"
    if t is int:
        return "long"
    if isinstance(v, (list, tuple)):
        if not v:
            return "string[]"   # what Cypher and the procedure store for an empty list
        kinds = {value_type(e) for e in v}
        if kinds <= {"long", "double"}:
            return "long[]" if kinds == {"long"} else "double[]"
        if len(kinds) == 1 and next(iter(kinds)) in ("string", "boolean"):
            return next(iter(kinds)) + "[]"
        raise ConfigError(f"a list stored as a property must hold only strings, only booleans or only numbers: {v!r}")
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, float):
        return "double"
    if isinstance(v, int) or type(v).__name__.startswith(("int", "uint")):   # numpy integers
        return "long"
    if type(v).__name__.startswith("float"):
        return "double"
    raise ConfigError(f"values of type {type(v).__name__} cannot be stored as properties: {v!r}")


def _array(kind: str, v: Iterable[Any]) -> str:
    if kind == "string":
        parts = []
        for e in v:
            if ARRAY_DELIMITER in e:
                raise ConfigError(f"a string in a list property contains U+001F, the shards' array delimiter: {e!r}")
            parts.append(e.replace('"', '""'))
        return '"' + ARRAY_DELIMITER.join(parts) + '"'
    fmt = _SCALAR_FMT[kind]
    return '"' + ARRAY_DELIMITER.join(fmt(e) for e in v) + '"'


def format_value(kind: str, v: Any) -> str:
    """``v`` as one CSV field of type ``kind``; ``None`` is an empty field (no property)."""
    if v is None:
        return ""
    if kind.endswith("[]"):
        return _array(kind[:-2], v)
    return _SCALAR_FMT[kind](v)


class _Shard:
    """One CSV file: one header, rows appended in order."""

    def __init__(self, path: Path, header: list[str], entry: dict[str, Any]) -> None:
        self.path = path
        self.fh: IO[str] = path.open("w", encoding="utf-8", newline="")
        self.fh.write(",".join(header) + "\n")
        self.entry = entry
        self.rows = 0

    def write(self, lines: list[str]) -> None:
        if lines:
            self.fh.write("\n".join(lines))
            self.fh.write("\n")
            self.rows += len(lines)


class ShardWriter:
    """Writes nodes and relationships as importer shards into ``out`` (created; must be empty).

    The same calls as :class:`graphdb.writer.GraphWriter`; :meth:`close` (or leaving a ``with``
    block) writes the nodes and ``manifest.json``. ``mechgraph db load OUT`` loads them.
    """

    def __init__(self, out: Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.out = Path(out)
        self.batch_size = batch_size
        self.path = "shards"   # what GraphWriter.path reports: the transport
        # key label -> key -> [extra labels (dict as an ordered set), properties, node id]
        self._nodes: dict[Label, dict[str, list[Any]]] = {}
        self._next_id = 0   # the importer's actual node id of the next new node
        self._shards: dict[tuple[Any, ...], _Shard] = {}
        self._identity = array("q")   # a 64-bit hash of every relationship's MERGE identity
        self._multiline = False
        self._closed = False
        self._started = False

    def _start(self) -> None:
        if self._started:
            return
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ConfigError(f"the shard directory {self.out} exists and is not empty: choose a new one")
        self.out.mkdir(parents=True, exist_ok=True)
        self._started = True

    def ensure_schema(self) -> None:
        """Nothing to do: ``db load`` creates the schema after the import."""

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            for shard in self._shards.values():
                shard.fh.close()

    # -- nodes -------------------------------------------------------------------------
    def write_nodes(self, label: Label, rows: Iterable[Mapping[str, Any]],
                    common: Mapping[str, Any] | None = None) -> int:
        """Hold nodes (``{"key": ..., **properties}``) for :meth:`close`; returns rows taken."""
        self._check_open()
        key_label, extra = _node_labels(label)
        # As the procedure: nid comes from the key, and a None in common sets nothing.
        common = {k: v for k, v in (common or {}).items() if k != "nid" and v is not None}
        for name in common:
            _check_name(name)
        nodes = self._nodes.setdefault(key_label, {})
        extra_labels = dict.fromkeys(map(str, extra))
        checked = {"key", "nid", *common}   # property names known to be valid
        total = 0
        for row in rows:
            key = row.get("key")
            if not key:
                raise ConfigError(f"a {label} row has no key: {row!r}")
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = [{}, {"nid": key_id(key)}, self._next_id]
                self._next_id += 1
            node[0].update(extra_labels)
            props = node[1]
            props.update(common)
            for name, v in row.items():
                if v is None or name == "key" or name == "nid":
                    continue
                if name not in checked:
                    _check_name(name)
                    checked.add(name)
                props[name] = v
            total += 1
        return total

    # -- relationships -----------------------------------------------------------------
    def write_relationships(self, rel: Rel, rows: Iterable[Mapping[str, Any]], *,
                            src: Label = Label.NODE, dst: Label = Label.NODE,
                            common: Mapping[str, Any] | None = None) -> int:
        """Append relationships (``{"src": key, "dst": key, **properties}``) to shards."""
        self._check_open()
        rel, src, dst = Rel(rel), Label(src), Label(dst)
        _check_endpoints(src, dst)
        identity = REL_IDENTITY.get(rel, ())
        common = relationship_common(rel, common)
        for name in common:
            _check_name(name)
        total = 0
        for batch in batched(rows, self.batch_size):
            rows_, srcs, dsts = relationship_rows(rel, batch)
            src_ids, dst_ids = self._node_ids(rel, src, dst, srcs, dsts)
            for p in identity:
                if common.get(p) is None and any(r.get(p) is None for r in rows_):
                    raise ConfigError(f"a {rel} row needs the identity property {p!r} (in the row or in common)")
            self._start()
            self._write_rel_batch(rel, src, dst, identity, common, src_ids, dst_ids, rows_)
            total += len(batch)
        return total

    def write_relationship_columns(self, rel: Rel, srcs: Sequence[str], dsts: Sequence[str],
                                   columns: Mapping[str, Any], *, src: Label = Label.NODE, dst: Label = Label.NODE,
                                   common: Mapping[str, Any] | None = None) -> int:
        """:meth:`write_relationships` of the rows ``{"src": srcs[i], "dst": dsts[i], name: columns[name][i]}``
        (the same shards), for rows held as numpy columns of floats, integers or booleans."""
        import numpy as np

        self._check_open()
        rel, src, dst = Rel(rel), Label(src), Label(dst)
        _check_endpoints(src, dst)
        identity = REL_IDENTITY.get(rel, ())
        common = {k: v for k, v in relationship_common(rel, common).items() if v is not None}
        arrays = {name: np.asarray(v) for name, v in columns.items()}
        if rel is Rel.ATTRIBUTES_TO and "weight" in arrays and "abs_weight" not in arrays:
            arrays["abs_weight"] = np.abs(arrays["weight"])   # writer._derive, per element
        kinds = {"f": "double", "i": "long", "u": "long", "b": "boolean"}
        for name, a in arrays.items():
            _check_name(name)
            if a.dtype.kind not in kinds or a.shape != (len(srcs),):
                raise ConfigError(f"column {name!r} must be a 1-d array of floats, integers or booleans with one "
                                  f"value per edge ({len(srcs)}), got {a.dtype} of shape {a.shape}")
        for name in common:
            _check_name(name)
        missing = [p for p in identity if p not in common and p not in arrays]
        if missing:
            raise ConfigError(f"a {rel} row needs the identity property {missing[0]!r} (in the row or in common)")
        if len(dsts) != len(srcs):
            raise ConfigError(f"{len(srcs)} sources but {len(dsts)} targets")
        step = max(self.batch_size, 100_000)
        for i in range(0, len(srcs), step):
            src_ids, dst_ids = self._node_ids(rel, src, dst, srcs[i:i + step], dsts[i:i + step])
            n = len(src_ids)
            cols = {name: [v] * n for name, v in common.items() if name not in arrays}
            sig = {name: value_type(v) for name, v in common.items() if name not in arrays}
            for name, a in arrays.items():
                cols[name] = a[i:i + step].tolist()   # Python values, as a row's would be
                sig[name] = kinds[a.dtype.kind]
            self._start()
            self._emit_rels(rel, src, dst, identity, src_ids, dst_ids, cols, sig)
        return len(srcs)

    def _node_ids(self, rel: Rel, src: Label, dst: Label, srcs: Sequence[str],
                  dsts: Sequence[str]) -> tuple[list[int], list[int]]:
        """The node ids of the endpoints; ``MissingEndpointError`` for a key not written before."""
        src_nodes, dst_nodes = self._nodes.get(src, {}), self._nodes.get(dst, {})
        try:
            return [src_nodes[s][2] for s in srcs], [dst_nodes[d][2] for d in dsts]
        except KeyError:
            s, d = next((s, d) for s, d in zip(srcs, dsts) if s not in src_nodes or d not in dst_nodes)
            missing = s if s not in src_nodes else d
            raise MissingEndpointError(f"a {rel} row names {missing!r}, which was not written as a "
                                       f"{src if s not in src_nodes else dst} node before it") from None

    def _write_rel_batch(self, rel: Rel, src: Label, dst: Label, identity: tuple[str, ...], common: dict[str, Any],
                         srcs: list[int], dsts: list[int], rows: list[dict[str, Any]]) -> None:
        names: dict[str, None] = dict.fromkeys(common)
        in_rows: set[str] = set()
        for r in rows:
            if not in_rows.issuperset(r):
                for name in r:
                    if name not in names:
                        _check_name(name)
                        names[name] = None
                in_rows.update(r)
        columns: dict[str, list[Any]] = {}
        constant: set[str] = set()
        for name in names:
            c = common.get(name)
            if name not in in_rows:   # the call's common value on every row
                columns[name] = [c] * len(rows)
                constant.add(name)
            else:
                columns[name] = [r.get(name, c) if c is None else (v if (v := r.get(name)) is not None else c)
                                 for r in rows]
        kinds: dict[str, str] = {}
        for name, values in columns.items():
            if name in constant:
                if values and values[0] is not None:
                    kinds[name] = value_type(values[0])
                continue
            types = {type(v) for v in values}
            types.discard(type(None))
            if not types:
                continue
            if len(types) == 1 and (t := next(iter(types))) in (str, float, int, bool):
                kinds[name] = value_type(values[next(i for i, v in enumerate(values) if v is not None)])
                continue
            found = {value_type(v) for v in values if v is not None}
            if len(found) != 1:
                # Mixed types in one column: one shard per row type, so each value keeps its own.
                self._split_rows(rel, src, dst, identity, srcs, dsts, columns)
                return
            kinds[name] = found.pop()
        self._emit_rels(rel, src, dst, identity, srcs, dsts, columns, kinds)

    def _split_rows(self, rel: Rel, src: Label, dst: Label, identity: tuple[str, ...], srcs: list[int],
                    dsts: list[int], columns: dict[str, list[Any]]) -> None:
        groups: dict[Signature, list[int]] = {}
        for i in range(len(srcs)):
            sig = tuple(sorted((n, value_type(vals[i])) for n, vals in columns.items() if vals[i] is not None))
            groups.setdefault(sig, []).append(i)
        for sig, idx in groups.items():
            self._emit_rels(rel, src, dst, identity, [srcs[i] for i in idx], [dsts[i] for i in idx],
                            {n: [columns[n][i] for i in idx] for n, _ in sig}, dict(sig))

    def _emit_rels(self, rel: Rel, src: Label, dst: Label, identity: tuple[str, ...], srcs: list[int],
                   dsts: list[int], columns: dict[str, list[Any]], kinds: dict[str, str]) -> None:
        sig: Signature = tuple(sorted(kinds.items()))
        shard_key = ("rel", str(rel), str(src), str(dst), sig)
        shard = self._shards.get(shard_key)
        if shard is None:
            header = [":START_ID", ":END_ID", *(f"{n}:{k}" for n, k in sig)]
            name = f"rels-{len(self._shards):04d}-{rel}.csv"
            shard = self._shards[shard_key] = _Shard(self.out / name, header,
                                                     {"file": name, "kind": "relationships", "type": str(rel)})
        fields = [list(map(str, srcs)), list(map(str, dsts))]
        for n, k in sig:
            if k == "string[]" and any(v is not None and len(v) == 0 for v in columns[n]):
                raise ConfigError(f"an empty list in the {n!r} property of a {rel} row: Neo4j's importer cannot "
                                  "store one on a relationship; leave the property out, or write this graph online")
            fields.append(self._format_column(k, columns[n]))
        shard.write(list(map(",".join, zip(*fields))))
        # The identity MERGE would match on: endpoints (a node id is one key of one key label) and
        # the type's identity properties.
        ids = [columns[p] for p in identity]
        firsts = [c[0] for c in ids]
        if len(srcs) and max(max(srcs), max(dsts)) < 2**31 and all(all(v is f for v in c) for f, c in zip(firsts, ids)):
            # One identity for the whole batch (the call's run, task, ...): the endpoint pair, packed
            # in 62 bits and xor-ed with the identity's hash, without a tuple per row.
            import numpy as np

            pairs = np.asarray(srcs, dtype=np.int64) << 31 | np.asarray(dsts, dtype=np.int64)
            self._identity.frombytes((pairs ^ np.int64(hash((str(rel), *firsts)))).tobytes())
        else:
            self._identity.extend(hash((str(rel), s, d, *vals)) for s, d, *vals in zip(srcs, dsts, *ids))

    def _format_column(self, kind: str, values: list[Any]) -> list[str]:
        first = values[0]
        if first is not None and (values.count(first) == len(values) if kind == "string"   # a C loop
                                  else all(v is first for v in values)):   # a common value: format it once
            out = [format_value(kind, first)] * len(values)
            distinct = out[:1]
        else:
            out = distinct = _fast_column(kind, values) or [format_value(kind, v) for v in values]
        if kind.startswith("string") and not self._multiline:
            # A line break inside a value needs the importer's (slower) multi-line parsing.
            self._multiline = any("\n" in s or "\r" in s for s in distinct)
        return out

    # -- the end -----------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Write the nodes and the manifest; returns the manifest. Idempotent."""
        if self._closed:
            return json.loads((self.out / MANIFEST).read_text())
        self._start()
        for shard in self._shards.values():
            shard.fh.close()
        self._check_duplicates()
        rel_entries = [{**s.entry, "rows": s.rows} for s in self._shards.values()]
        node_entries, empty_lists = self._write_nodes()
        manifest = {
            "format": FORMAT,
            "array_delimiter": ARRAY_DELIMITER_ARG,
            "multiline_fields": self._multiline,
            "nodes": node_entries,
            "relationships": rel_entries,
            "empty_lists": empty_lists,
            "counts": {"nodes": sum(e["rows"] for e in node_entries),
                       "relationships": sum(e["rows"] for e in rel_entries)},
        }
        (self.out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        self._closed = True
        return manifest

    def _check_duplicates(self) -> None:
        import numpy as np

        hashes = np.frombuffer(self._identity, dtype=np.int64) if len(self._identity) else np.zeros(0, np.int64)
        repeats = len(hashes) - len(np.unique(hashes))
        if repeats:
            raise ConfigError(
                f"{repeats} relationship rows repeat the type, endpoints and identity properties of an earlier row: "
                "the online writer would MERGE them into one relationship, the importer would create two. Write each "
                "relationship once per identity, or write this graph online")

    def _write_nodes(self) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Group the held nodes by (key label, property signature) into one shard each. Returns
        the shard entries and the ``[key label, key, property]`` of every empty list."""
        entries = []
        empty_lists = []
        for key_label in KEYED_LABELS:
            groups: dict[Signature, list[tuple[str, list[Any]]]] = {}
            # A signature per (property names, Python types): the same for most nodes, and
            # value_type only looks into lists, so those are typed one by one.
            seen: dict[tuple[Any, ...], Signature] = {}
            for key, node in self._nodes.get(key_label, {}).items():
                props = node[1]
                types = tuple(map(type, props.values()))
                shape = (*props, *types)
                sig = seen.get(shape)
                if sig is None:
                    sig = tuple(sorted((n, value_type(v)) for n, v in props.items()))
                    if _SCALAR_TYPES.issuperset(types):
                        seen[shape] = sig
                groups.setdefault(sig, []).append((key, node))
            for sig, members in groups.items():
                name = f"nodes-{len(entries):04d}-{key_label}.csv"
                header = [":ID", "key:string", ":LABEL", *(f"{n}:{k}" for n, k in sig)]
                shard = _Shard(self.out / name, header, {"file": name, "kind": "nodes", "label": str(key_label)})
                fields = [[str(node[2]) for _, node in members], [_quote(k) for k, _ in members],
                          [ARRAY_DELIMITER.join((str(key_label), *node[0])) for _, node in members]]
                for n, k in sig:
                    values = [node[1][n] for _, node in members]
                    fields.append(self._format_column(k, values))
                    if k == "string[]":
                        empty_lists += [[str(key_label), key, n] for (key, _), v in zip(members, values) if not v]
                shard.write(list(map(",".join, zip(*fields))))
                shard.fh.close()
                entries.append({**shard.entry, "rows": shard.rows})
        return entries, empty_lists

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("this ShardWriter is closed: write to a new shard directory")


def _fast_column(kind: str, values: list[Any]) -> list[str] | None:
    """A column of finite doubles or of integers formatted without a call per value (the
    weights of millions of edges), or None: then each value goes through :func:`format_value`."""
    try:
        if kind == "double":
            out = list(map(float.__repr__, values))   # numpy floats too; None raises TypeError
            # Only the non-finite values' texts ('nan', 'inf', '-inf') hold an 'n'; they need
            # the importer's spelling.
            return None if "n" in "".join(out) else out
        if kind == "long":
            return list(map(int.__str__, map(int, values)))   # int(None) raises TypeError
    except TypeError:
        return None
    return None


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"invalid property name {name!r}: use letters, digits and _ (not starting with a digit)")
