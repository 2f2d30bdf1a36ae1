"""``mechgraph ingest --bulk DIR``: the ingest's rows as importer shards, not transactions.

:class:`BulkSink` takes the calls the ingest makes on its ``GraphWriter`` and writes them with
:class:`graphdb.bulk.shards.ShardWriter`, so ``mechgraph db load DIR`` gives the store the
online ingest gives. One difference needs care: the online writer MERGEs, the importer creates
one relationship per row, and an ingest writes some relationships more than once (the
``FOR_TASK`` link of a task before and after its graph, a feature's structural links once per
task it is active in). So relationships other than ``ATTRIBUTES_TO`` are held here until
:meth:`BulkSink.close` and merged as ``MERGE (a)-[r:T {identity}]->(b) SET r += props`` does
(later values win; a ``None`` removes the property). ``ATTRIBUTES_TO`` rows, the bulk of a
graph, are unique per (run, task, granularity) and stream straight to the shards.

A bulk ingest has no store to read: no task of the run counts as done already (a shard
directory is always a whole new store; ``db load`` refuses a non-empty one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from graphdb.schema import REL_IDENTITY, Label, Rel
from graphdb.writer import relationship_common, relationship_rows


class BulkSink:
    """The ``writer`` of :func:`ingest.pipeline.ingest` that writes shards into ``out``."""

    path = "shards"

    def __init__(self, out: Path) -> None:
        from graphdb.bulk.shards import ShardWriter

        self.out = Path(out)
        self.shards = ShardWriter(self.out)
        # (type, src label, dst label) -> (src, dst, identity values) -> properties
        self._held: dict[tuple[Rel, Label, Label], dict[tuple[Any, ...], dict[str, Any]]] = {}

    def ensure_schema(self) -> None:
        """Nothing to do: ``db load`` creates the schema after the import."""

    def write_nodes(self, label: Label, rows: Iterable[Mapping[str, Any]],
                    common: Mapping[str, Any] | None = None) -> int:
        return self.shards.write_nodes(label, rows, common)

    def write_relationships(self, rel: Rel, rows: Iterable[Mapping[str, Any]], *, src: Label = Label.NODE,
                            dst: Label = Label.NODE, common: Mapping[str, Any] | None = None) -> int:
        rel, src, dst = Rel(rel), Label(src), Label(dst)
        if rel is Rel.ATTRIBUTES_TO:
            return self.shards.write_relationships(rel, rows, src=src, dst=dst, common=common)
        shared = relationship_common(rel, common)
        rows_, srcs, dsts = relationship_rows(rel, list(rows))
        held = self._held.setdefault((rel, src, dst), {})
        identity = REL_IDENTITY.get(rel, ())
        for s, d, row in zip(srcs, dsts, rows_, strict=True):
            props = {**shared, **row}   # what the online writer sends as row.props
            key = (s, d, *(props.get(p) for p in identity))
            merged = held.setdefault(key, {})
            for name, value in props.items():   # SET r += props
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
        return len(rows_)

    def close(self) -> dict[str, Any]:
        """Write the held relationships, the nodes and the manifest; returns the manifest."""
        for (rel, src, dst), held in self._held.items():
            self.shards.write_relationships(rel, ({"src": k[0], "dst": k[1], **props} for k, props in held.items()),
                                            src=src, dst=dst)
        self._held.clear()
        return self.shards.close()


def bulk_ingest(config: Any, out: Path, *, state_root: Path, device: str = "cpu", progress: Any = None,
                ray: str | None = None) -> tuple[Any, dict[str, Any]]:
    """:func:`ingest.pipeline.ingest` (or its ``--ray`` form) into shards in ``out``; returns the
    ingest's result and the shards' manifest. Nothing is written to Neo4j."""
    from mechgraph.errors import ConfigError

    if config.graph == "transcoders":   # not an IngestConfig: guarded for notebooks
        raise ConfigError("--bulk writes --graph resid, module and component; --graph transcoders reads its "
                          "stored prompt graphs back to aggregate the task graph, so it writes online")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # checked before hours of compute, not after
        raise ConfigError(f"the shard directory {out} exists and is not empty: choose a new one")
    sink = BulkSink(out)
    if ray is None:
        from ingest.pipeline import ingest
        result = ingest(None, config, state_root=state_root, device=device, progress=progress, writer=sink)  # type: ignore[arg-type]
    else:
        from ingest.distributed.attribution import ray_ingest
        result, _ = ray_ingest(None, config, state_root=state_root, address=ray, device=device, progress=progress,
                               writer=sink)
    return result, sink.close()
