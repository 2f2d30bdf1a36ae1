"""Batched, idempotent, streaming writes into Neo4j.

Rows arrive as any iterable (a generator over a graph far larger than memory is fine); the
writer cuts them into batches of ``batch_size`` and writes each batch in one managed
transaction (retried by the driver on transient errors). Nodes MERGE on their key,
relationships on their endpoints plus the identity properties of their type
(``schema.REL_IDENTITY``), so writing the same run twice leaves identical node and
relationship counts. Constraints and indexes are created before the first write. Every node written gets
``nid = keys.key_id(key)`` here, whatever the caller passed: the integer id bulk reads use.

Two interchangeable paths carry a batch, with the same semantics (the tests run both):

* **procedure** (the embedded server, or any server with the mechgraph plugin jar): the
  batch travels as columns (a list of keys, one list per property, the properties shared
  by the whole batch once) to ``mechgraph.mergeNodes`` / ``mechgraph.mergeRelationships``,
  written against Neo4j's Core API. Community's slotted Cypher runtime costs ~25 us per
  ``UNWIND`` row on a small machine; the procedure does the same MERGE several times faster.
* **cypher** (any Neo4j 5): ``UNWIND $rows AS row MERGE ...`` from ``graphdb/cypher/``.

The writer uses the procedure when the server has it, unless told otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from graphdb.connection import Database
from graphdb.errors import QueryError
from graphdb.keys import key_id
from graphdb.schema import GRAPH_NODE_LABELS, KEYED_LABELS, REL_IDENTITY, Granularity, Label, Rel, init_schema
from mechgraph.errors import ConfigError, MechgraphError

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 10_000
PROCEDURES = ("mechgraph.mergeNodes", "mechgraph.mergeRelationships")
#: A jar older than ``create=True`` lacks it; the writer then CREATEs through Cypher.
CREATE_PROCEDURE = "mechgraph.createRelationships"
_CYPHER_DIR = Path(__file__).parent / "cypher"
_MISSING = "MissingEndpoint:"

Path_ = Literal["auto", "procedure", "cypher"]


class MissingEndpointError(MechgraphError):
    """A relationship row names a node that has not been written."""


@cache
def cypher_template(name: str) -> str:
    """The text of ``graphdb/cypher/<name>.cypher``."""
    return (_CYPHER_DIR / f"{name}.cypher").read_text()


def _node_labels(label: Label) -> tuple[Label, tuple[Label, ...]]:
    """(the label the MERGE keys on, extra labels). Graph nodes MERGE through ``:Node``."""
    label = Label(label)
    if label in GRAPH_NODE_LABELS:
        return Label.NODE, (label,)
    if label in KEYED_LABELS:
        return label, ()
    raise ConfigError(f"cannot MERGE nodes labelled {label}: it has no key constraint")


def _check_endpoints(src: Label, dst: Label) -> None:
    for end in (src, dst):
        if end not in KEYED_LABELS:
            raise ConfigError(f"relationship endpoints must have a key constraint; {end} has none (use Node)")


def node_query(label: Label) -> str:
    """The Cypher-path MERGE query for nodes of ``label``."""
    key_label, extra = _node_labels(label)
    set_labels = "".join(f"n:{x}, " for x in extra)
    return cypher_template("merge_nodes").replace("__KEY_LABEL__", key_label).replace("__SET_LABELS__", set_labels)


def relationship_query(rel: Rel, src: Label = Label.NODE, dst: Label = Label.NODE, *, create: bool = False) -> str:
    """The Cypher-path MERGE (or, with ``create``, CREATE) query for relationships ``(src)-[:rel]->(dst)``."""
    rel, src, dst = Rel(rel), Label(src), Label(dst)
    _check_endpoints(src, dst)
    identity = ", ".join(f"{p}: row.props.{p}" for p in REL_IDENTITY.get(rel, ()))
    return (
        cypher_template("create_relationships" if create else "merge_relationships")
        .replace("__SRC_LABEL__", src).replace("__DST_LABEL__", dst).replace("__REL__", rel)
        .replace("__IDENTITY__", "{" + identity + "}" if identity else "")
    )


def batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def relationship_common(rel: Rel, common: Mapping[str, Any] | None) -> dict[str, Any]:
    """The properties every row of a ``write_relationships`` call shares. Edges that do not say
    otherwise belong to the feature-level graph (a row's own granularity wins over common, as
    every row property does)."""
    out = dict(common or {})
    if rel is Rel.ATTRIBUTES_TO:
        out.setdefault("granularity", str(Granularity.FEATURE))
    return out


def relationship_rows(rel: Rel, batch: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """A batch's rows (derived properties added, ``src``/``dst`` taken out), sources and targets."""
    rows = [_derive(rel, dict(r)) for r in batch]
    srcs = [r.pop("src", None) for r in rows]
    dsts = [r.pop("dst", None) for r in rows]
    if not all(srcs) or not all(dsts):
        raise ConfigError(f"every {rel} row needs src and dst keys")
    return rows, srcs, dsts


def _derive(rel: Rel, row: dict[str, Any]) -> dict[str, Any]:
    """Properties derived in exactly one place: ``abs_weight = |weight|`` on attribution edges."""
    if rel is Rel.ATTRIBUTES_TO and "weight" in row and "abs_weight" not in row:
        row["abs_weight"] = abs(row["weight"])
    return row


def _columns(rows: list[dict[str, Any]], skip: tuple[str, ...]) -> dict[str, list[Any]]:
    """Rows -> {property: [value per row]} (None where a row lacks the property)."""
    names: dict[str, None] = {}
    for row in rows:
        for name in row:
            names.setdefault(name)
    return {name: [row.get(name) for row in rows] for name in names if name not in skip}


class GraphWriter:
    """Streams nodes and relationships into Neo4j in batched managed transactions.

    ``common`` properties (e.g. model, checkpoint, task, run of a whole graph) are given once
    per call instead of once per row. ``progress`` is called with the number of rows after
    each committed batch. ``path`` picks the transport: ``auto`` (the procedure when the
    server has it), ``procedure`` or ``cypher``.
    """

    def __init__(self, db: Database, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: Callable[[int], None] | None = None, path: Path_ = "auto") -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if path not in ("auto", "procedure", "cypher"):
            raise ConfigError(f"path must be auto, procedure or cypher, got {path!r}")
        self.db = db
        self.batch_size = batch_size
        self.progress = progress
        self.path = path
        self._ready = False
        self._create_procedure = False

    def ensure_schema(self) -> None:
        """Create constraints and indexes (once per writer) and choose the transport."""
        if self._ready:
            return
        init_schema(self.db)
        if self.path != "cypher":
            names = {r["name"] for r in self.db.read(
                "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'mechgraph.' RETURN name")}
            has = all(p in names for p in PROCEDURES)
            self._create_procedure = CREATE_PROCEDURE in names
            if self.path == "procedure" and not has:
                raise ConfigError("this Neo4j server has no mechgraph procedures: use the embedded server, "
                                  "install the mechgraph plugin jar, or write with path='cypher'")
            self.path = "procedure" if has else "cypher"
        log.info("writing through the %s path", self.path)
        self._ready = True

    # -- nodes -------------------------------------------------------------------------
    def write_nodes(self, label: Label, rows: Iterable[Mapping[str, Any]],
                    common: Mapping[str, Any] | None = None) -> int:
        """MERGE nodes; each row is ``{"key": ..., **properties}``. Returns rows written.

        ``nid`` is derived from the key (``keys.key_id``) and set on every node."""
        key_label, extra = _node_labels(label)
        self.ensure_schema()
        common = {k: v for k, v in (common or {}).items() if k != "nid"}
        total = 0
        for batch in batched(rows, self.batch_size):
            rows_ = [dict(r) for r in batch]
            keys = [r.pop("key", None) for r in rows_]
            if not all(keys):
                raise ConfigError(f"a {label} row has no key: {batch[keys.index(None)]!r}")
            for r, k in zip(rows_, keys):
                r["nid"] = key_id(k)
            if self.path == "procedure":
                params = {"key_label": str(key_label), "extra_labels": [str(x) for x in extra],
                          "common": common, "keys": keys, "columns": _columns(rows_, ())}
                query = cypher_template("merge_nodes_procedure")
            else:
                params = {"rows": [{"key": k, "props": {**common, **r}} for k, r in zip(keys, rows_)]}
                query = node_query(label)
            total += self.db.execute_write(_run_batch, query, params)
            if self.progress:
                self.progress(len(batch))
        return total

    # -- relationships -----------------------------------------------------------------
    def write_relationships(self, rel: Rel, rows: Iterable[Mapping[str, Any]], *,
                            src: Label = Label.NODE, dst: Label = Label.NODE,
                            common: Mapping[str, Any] | None = None, create: bool = False) -> int:
        """MERGE relationships; each row is ``{"src": key, "dst": key, **properties}``.

        ``create``: CREATE instead, without looking for an existing relationship (a MERGE walks
        the smaller endpoint degree per row, which grows with the graph). Only for a caller that
        knows that none of these relationships exists and that no pair repeats, e.g. the links of
        a prompt graph written for the first time; otherwise it duplicates edges.

        The type's identity properties (``run``, ``task`` and ``granularity`` for ATTRIBUTES_TO;
        granularity defaults to ``feature``) must be in
        ``common`` or in every row. A batch naming a node that does not exist is rolled back
        and raises ``MissingEndpointError``: no edge is silently dropped.
        """
        rel, src, dst = Rel(rel), Label(src), Label(dst)
        _check_endpoints(src, dst)
        identity = REL_IDENTITY.get(rel, ())
        self.ensure_schema()
        common = relationship_common(rel, common)
        total = 0
        for batch in batched(rows, self.batch_size):
            rows_, srcs, dsts = relationship_rows(rel, batch)
            for p in identity:
                if common.get(p) is None and any(r.get(p) is None for r in rows_):
                    raise ConfigError(f"a {rel} row needs the identity property {p!r} (in the row or in common)")
            if self.path == "procedure" and (self._create_procedure or not create):
                params = {"type": str(rel), "src_label": str(src), "dst_label": str(dst),
                          "identity": list(identity), "common": common, "src": srcs, "dst": dsts,
                          "columns": _columns(rows_, ())}
                query = cypher_template("create_relationships_procedure" if create else "merge_relationships_procedure")
            else:
                params = {"rows": [{"src": s, "dst": d, "props": {**common, **r}}
                                   for s, d, r in zip(srcs, dsts, rows_)]}
                query = relationship_query(rel, src, dst, create=create)
            try:
                total += self.db.execute_write(_run_batch, query, params, len(batch))
            except QueryError as e:
                if _MISSING in str(e):
                    raise MissingEndpointError(str(e)[str(e).index(_MISSING) + len(_MISSING):].strip()) from None
                raise
            if self.progress:
                self.progress(len(batch))
        return total


def _run_batch(tx: Any, query: str, params: dict[str, Any], expected: int | None = None) -> int:
    written = int(tx.run(query, params).single()["written"])
    if expected is not None and written != expected:
        # The Cypher path drops rows whose endpoint MATCH fails; raising inside the managed
        # transaction rolls the whole batch back (the procedure path fails by itself).
        raise MissingEndpointError(
            f"{expected - written} of {expected} rows name a node that does not exist (write the nodes first)"
        )
    return written
