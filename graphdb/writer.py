"""Batched, idempotent, streaming writes into Neo4j.

Rows arrive as any iterable (a generator over a graph far larger than memory is fine); the
writer cuts them into batches of ``batch_size`` and sends each batch as one
``UNWIND $rows AS row MERGE ...`` in one managed transaction (retried by the driver on
transient errors). Nodes MERGE on their key, relationships on their endpoints plus the
identity properties of their type (``schema.REL_IDENTITY``), so writing the same run twice
leaves identical node and relationship counts. Constraints and indexes are created before
the first write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

from graphdb.connection import Database
from graphdb.errors import ConfigError, MechgraphError
from graphdb.schema import GRAPH_NODE_LABELS, KEYED_LABELS, REL_IDENTITY, Label, Rel, init_schema

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 10_000
_CYPHER_DIR = Path(__file__).parent / "cypher"


class MissingEndpointError(MechgraphError):
    """A relationship row names a node that has not been written."""


@cache
def _template(name: str) -> str:
    return (_CYPHER_DIR / f"{name}.cypher").read_text()


def node_query(label: Label) -> str:
    """The MERGE query for nodes of ``label`` (graph nodes MERGE through ``:Node``)."""
    label = Label(label)
    if label in GRAPH_NODE_LABELS:
        key_label, set_labels = Label.NODE, f"n:{label}, "
    elif label in KEYED_LABELS:
        key_label, set_labels = label, ""
    else:
        raise ConfigError(f"cannot MERGE nodes labelled {label}: it has no key constraint")
    return _template("merge_nodes").replace("__KEY_LABEL__", key_label).replace("__SET_LABELS__", set_labels)


def relationship_query(rel: Rel, src: Label = Label.NODE, dst: Label = Label.NODE) -> str:
    """The MERGE query for relationships ``(src)-[:rel]->(dst)``."""
    rel, src, dst = Rel(rel), Label(src), Label(dst)
    for end in (src, dst):
        if end not in KEYED_LABELS:
            raise ConfigError(f"relationship endpoints must have a key constraint; {end} has none (use Node)")
    identity = ", ".join(f"{p}: row.props.{p}" for p in REL_IDENTITY.get(rel, ()))
    return (
        _template("merge_relationships")
        .replace("__SRC_LABEL__", src).replace("__DST_LABEL__", dst).replace("__REL__", rel)
        .replace("__IDENTITY__", "{" + identity + "}" if identity else "")
    )


def batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


class GraphWriter:
    """Streams nodes and relationships into Neo4j in batched managed transactions.

    ``progress`` (optional) is called with the number of rows after each committed batch.
    """

    def __init__(self, db: Database, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: Callable[[int], None] | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.db = db
        self.batch_size = batch_size
        self.progress = progress
        self._schema_ready = False

    def ensure_schema(self) -> None:
        if not self._schema_ready:
            init_schema(self.db)
            self._schema_ready = True

    def write_nodes(self, label: Label, rows: Iterable[Mapping[str, Any]]) -> int:
        """MERGE nodes; each row is ``{"key": ..., **properties}``. Returns rows written."""
        query = node_query(label)
        self.ensure_schema()
        total = 0
        for batch in batched(rows, self.batch_size):
            payload = [_node_payload(row) for row in batch]
            total += self.db.execute_write(_run_batch, query, payload, None)
            if self.progress:
                self.progress(len(batch))
        return total

    def write_relationships(self, rel: Rel, rows: Iterable[Mapping[str, Any]], *,
                            src: Label = Label.NODE, dst: Label = Label.NODE) -> int:
        """MERGE relationships; each row is ``{"src": key, "dst": key, **properties}`` and must
        carry the type's identity properties (e.g. ``run`` and ``task`` for ATTRIBUTES_TO).

        A batch naming a node that does not exist is rolled back and raises
        ``MissingEndpointError``: no edge is silently dropped.
        """
        query = relationship_query(rel, src, dst)
        identity = REL_IDENTITY.get(Rel(rel), ())
        self.ensure_schema()
        total = 0
        for batch in batched(rows, self.batch_size):
            payload = [_rel_payload(row, identity, rel) for row in batch]
            total += self.db.execute_write(_run_batch, query, payload, rel)
            if self.progress:
                self.progress(len(batch))
        return total


def _node_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    props = dict(row)
    key = props.pop("key", None)
    if not key:
        raise ConfigError(f"a node row has no key: {dict(row)!r}")
    return {"key": key, "props": props}


def _rel_payload(row: Mapping[str, Any], identity: tuple[str, ...], rel: Rel) -> dict[str, Any]:
    props = dict(row)
    src, dst = props.pop("src", None), props.pop("dst", None)
    if not src or not dst:
        raise ConfigError(f"a {rel} row needs src and dst keys: {dict(row)!r}")
    for p in identity:
        if props.get(p) is None:
            raise ConfigError(f"a {rel} row needs the identity property {p!r}: {dict(row)!r}")
    return {"src": src, "dst": dst, "props": props}


def _run_batch(tx: Any, query: str, payload: list[dict[str, Any]], rel: Rel | None) -> int:
    written = int(tx.run(query, rows=payload).single()["written"])
    if rel is not None and written != len(payload):
        # Raising inside the managed transaction rolls the whole batch back.
        raise MissingEndpointError(
            f"{len(payload) - written} of {len(payload)} {rel} rows name a node that does not exist "
            f"(write the nodes first); e.g. one of {payload[0]['src']!r} -> {payload[0]['dst']!r}"
        )
    return written
