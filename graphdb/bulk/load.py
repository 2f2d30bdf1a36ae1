"""A bulk load end to end: shards -> Neo4j's importer -> the embedded server -> the schema.

The importer and the server run in one JVM, one after the other (the launcher's
``--import-args``): the import's seconds are the importer's own, the server's start the rest.

The importer writes nodes, relationships and properties only; the constraints and indexes the
online writer relies on (``graphdb.schema``) are created once the server is up, on the loaded
data. The constraints (the writer's MERGE needs them) are waited for; the range indexes populate
in the background unless asked to be waited for: on millions of relationships that takes about
as long as the import itself, and every query answers meanwhile, only without the index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from graphdb.bulk.importer import ImportResult, import_result, prepare_import, read_manifest
from graphdb.connection import Database, RetryPolicy, connect
from graphdb.embedded import EmbeddedServer, ServerState
from graphdb.errors import ServerError
from graphdb.schema import Label, init_schema


_CYPHER = Path(__file__).parent / "cypher"
#: A server that has just opened a freshly imported store can take seconds to answer its first
#: Bolt handshake on a busy machine; the embedded default (3 s) gives up too soon for that.
FRESH_SERVER_RETRY = RetryPolicy(connect_timeout_s=30.0, unavailable_s=30.0)


def set_empty_lists(db: Database, empty: list[list[str]]) -> None:
    """Set the empty-list node properties the importer cannot write (``manifest.empty_lists``):
    ``[]`` set through Cypher is stored as the online writer stores it."""
    by_label: dict[Label, list[dict[str, object]]] = {}
    for label, key, name in empty:
        by_label.setdefault(Label(label), []).append({"key": key, "props": {name: []}})
    template = (_CYPHER / "set_empty_lists.cypher").read_text()
    for label, rows in by_label.items():   # the label comes from the schema's enum, never from the file
        db.write(template.replace("__KEY_LABEL__", str(label)), {"rows": rows})


@dataclass(frozen=True)
class LoadResult:
    """What a bulk load did, with the seconds of each step."""

    imported: ImportResult
    server: ServerState
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def load_shards(shards: Path, data_dir: Path, *, force: bool = False, port: int | None = None,
                heap: str | None = None, memory: str | None = None, threads: int | None = None,
                server: EmbeddedServer | None = None, timeout: float = 180.0,
                await_indexes: bool = False) -> LoadResult:
    """Import ``shards`` into a new store in ``data_dir`` (``force``: replace its store, stopping
    its server first), start the embedded server on it and create the schema. The importer runs
    in the server's JVM, before the server starts (:func:`graphdb.bulk.importer.prepare_import`);
    ``heap`` is that JVM's heap (default: the server's), ``memory`` the importer's off-heap cap.

    ``server`` overrides the :class:`EmbeddedServer` of ``data_dir`` (its heap and page cache);
    ``timeout`` is how long the server may take to answer, and the schema to come online. The constraints are online when it
    returns; the range indexes are still populating unless ``await_indexes`` (queries answer
    meanwhile, without them)."""
    server = server or EmbeddedServer(Path(data_dir))
    seconds: dict[str, float] = {}
    if force and server.state() is not None:
        t = time.perf_counter()
        server.stop()
        seconds["stop"] = time.perf_counter() - t
    args = prepare_import(Path(shards), server, force=force, memory=memory, threads=threads)
    t = time.perf_counter()
    try:
        state, _ = server.start(port=port, timeout=timeout, import_args=args, heap=heap)
    except ServerError:
        import_result(server.launcher_log)   # the importer's own failure, with its last lines
        raise                                # the import went through: the server failed
    finally:
        args.unlink(missing_ok=True)
    elapsed = time.perf_counter() - t
    imported = import_result(server.launcher_log)
    seconds["import"] = imported.seconds
    seconds["server start"] = elapsed - imported.seconds
    t = time.perf_counter()
    with connect(server.settings(), retry=FRESH_SERVER_RETRY) as db:
        init_schema(db, await_indexes=await_indexes, timeout_s=max(300, int(timeout)))
        set_empty_lists(db, read_manifest(Path(shards)).get("empty_lists", []))
    seconds["schema"] = time.perf_counter() - t
    return LoadResult(imported, state, seconds)
