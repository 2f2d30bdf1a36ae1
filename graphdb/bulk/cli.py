"""``mechgraph db load SHARDS``: a bulk load of shards into a new embedded store.

Registered on the ``db`` sub-app by ``graphdb/cli.py``; the work is :func:`graphdb.bulk.load.load_shards`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graphdb.settings import data_dir as resolve_data_dir
from graphdb.settings import external_settings
from mechgraph.errors import ConfigError


def load(
    ctx: typer.Context,
    shards: Annotated[Path, typer.Argument(help="A shard directory (manifest.json and CSV shards), written by "
                                                "graphdb.bulk.shards.ShardWriter.")],
    force: Annotated[bool, typer.Option(help="Replace the data directory's store (its server is stopped first). "
                                             "Without it, the data directory must hold no store yet.")] = False,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Bolt port of the server started on the new "
                                                                    "store [default: as `db start`]")] = None,
    heap: Annotated[str | None, typer.Option(help="Heap of the JVM that imports, then serves (the importer runs "
                                                  "in the server's JVM) [default: the server's, "
                                                  "$MECHGRAPH_NEO4J_HEAP or 2g]")] = None,
    memory: Annotated[str | None, typer.Option(help="The importer's off-heap cap [default: $MECHGRAPH_IMPORT_MEMORY "
                                                    "or 1g]")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Importer threads [default: the cores]")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the server may take to answer.")] = 180.0,
    wait_indexes: Annotated[bool, typer.Option(help="Return once the range indexes are online too, not only the "
                                                    "constraints (they populate in the background otherwise)")] = False,
) -> None:
    """Bulk-load SHARDS with Neo4j's own importer into a NEW store, start the server, create the schema.

    Neo4j Community has one user database and imports only into an empty one: a bulk load makes
    a new store (a fresh --data-dir), or replaces the current one with --force. It is the fast way
    to a first store or to many prompt graphs at once; later writes go through the online writer.
    """
    from rich.console import Console

    from graphdb.bulk.load import load_shards

    if external_settings() is not None:
        raise ConfigError("NEO4J_URI is set: a bulk load writes the embedded server's store offline; for an external "
                          "server run its own `neo4j-admin database import full` on the shards (see README)")
    home = resolve_data_dir(ctx.obj.data_dir if ctx.obj else None)
    with Console(stderr=True).status(f"importing {shards} with Neo4j's importer"):
        result = load_shards(shards, home, force=force, port=port, heap=heap, memory=memory, threads=threads,
                             timeout=timeout, await_indexes=wait_indexes)
    steps = ", ".join(f"{name} {s:.1f}s" for name, s in result.seconds.items())
    typer.echo(f"loaded {result.imported.nodes:,} nodes and {result.imported.relationships:,} relationships into "
               f"{home} in {result.total_seconds:.1f}s ({steps}); Neo4j {result.server.version} at {result.server.uri}"
               + ("" if wait_indexes else "; its range indexes are populating in the background"))
