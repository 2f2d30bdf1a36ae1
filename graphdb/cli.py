"""``mechgraph db ...``: the embedded Neo4j server's lifecycle, the schema, the sample graph."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from graphdb.bulk.cli import load
from graphdb.connection import Database
from graphdb.settings import data_dir as resolve_data_dir
from graphdb.settings import external_settings

app = typer.Typer(help="Run the embedded Neo4j server, create the schema, write the sample graph.",
                  no_args_is_help=True)


def _data_dir(ctx: typer.Context) -> Path:
    return resolve_data_dir(ctx.obj.data_dir if ctx.obj else None)


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[tuple[Path, Database]]:
    """For a command that reads or writes the graph: its data directory and a connection, the
    embedded server started first unless ``NEO4J_URI`` names another one."""
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running

    home = _data_dir(ctx)
    ensure_running(home)
    with connect(data=home) as db:
        yield home, db


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


@app.command()
def install(force: Annotated[bool, typer.Option(help="Rebuild even if a build exists.")] = False) -> None:
    """Fetch the Neo4j jars from Maven Central and build the launcher (once; `start` does it too)."""
    from graphdb.embedded import build_launcher

    build = build_launcher(force=force)
    typer.echo(f"Neo4j {(build / 'BUILD-OK').read_text().strip()} launcher ready in {build}")


@app.command()
def start(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Bolt port on 127.0.0.1 [default: $MECHGRAPH_BOLT_PORT, else 7687 or any free port]")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Bolt to answer.")] = 180.0,
) -> None:
    """Start the embedded Neo4j server (idempotent) and wait until Bolt answers."""
    from graphdb.embedded import EmbeddedServer

    if not timeout > 0:
        raise typer.BadParameter(f"--timeout must be a positive number of seconds, got {timeout}")

    if external_settings() is not None:
        typer.echo("NEO4J_URI is set: mechgraph uses that server, not the embedded one; nothing to start.", err=True)
        return
    server = EmbeddedServer(_data_dir(ctx))
    with _spinner("starting Neo4j (the first start downloads its jars with Maven)"):
        state, started = server.start(port=port, timeout=timeout)
    verb = "started" if started else "already running"
    typer.echo(f"Neo4j {state.version} {verb} at {state.uri} (pid {state.pid}; data {server.data_dir}; "
               f"password in {server.password_file})")


@app.command()
def stop(ctx: typer.Context) -> None:
    """Shut the embedded Neo4j server down cleanly."""
    from graphdb.embedded import EmbeddedServer

    server = EmbeddedServer(_data_dir(ctx))
    with _spinner("stopping Neo4j"):
        stopped = server.stop()
    typer.echo("Neo4j stopped." if stopped else f"Neo4j is not running (data {server.data_dir}).")


@app.command()
def status(ctx: typer.Context) -> None:
    """Print the Bolt URI, Neo4j version, edition and store size. Exit code 3 if not running."""
    from graphdb.connection import connect
    from graphdb.embedded import EmbeddedServer

    ext = external_settings()
    lines: dict[str, str] = {}
    if ext is None:
        server = EmbeddedServer(_data_dir(ctx))
        state = server.state()
        if state is None:
            typer.echo(f"embedded Neo4j: not running (data {server.data_dir}; start it with `mechgraph db start`)")
            raise typer.Exit(3)
        settings = server.settings()
        lines["server"] = f"embedded, pid {state.pid}"
    else:
        settings = ext
        lines["server"] = "external (NEO4J_URI)"
    with connect(settings) as db:
        info = db.server_info()
    lines.update({
        "uri": settings.uri,
        "version": info.get("version", "?"),
        "edition": info.get("edition", "?"),
        "database": settings.database or "(server default)",
        "store size": "n/a (external server)" if ext else _human_bytes(server.store_size()),
    })
    if ext is None:
        lines["data dir"] = str(server.data_dir)
    for k, v in lines.items():
        typer.echo(f"{k + ':':<12} {v}")


@app.command()
def init(ctx: typer.Context) -> None:
    """Create every constraint and index of the data model (idempotent)."""
    from graphdb.connection import connect
    from graphdb.schema import constraint_statements, index_statements, init_schema

    with connect(data=_data_dir(ctx)) as db:
        init_schema(db)
    typer.echo(f"schema ready: {len(constraint_statements())} constraints, {len(index_statements())} indexes")


@app.command()
def sample(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option(help="Seed of the sample graph's weights.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per write transaction.")] = 10_000,
) -> None:
    """Write the small sample graph (two tasks, two checkpoints, three layers) idempotently."""
    from graphdb.connection import connect
    from graphdb.sample import SampleSpec, write_sample
    from graphdb.writer import GraphWriter

    with connect(data=_data_dir(ctx)) as db:
        counts = write_sample(GraphWriter(db, batch_size=batch_size), SampleSpec(seed=seed))
    typer.echo("wrote " + ", ".join(f"{n} {k}" for k, n in counts.items()))


app.command()(load)   # `db load SHARDS`: graphdb/bulk/cli.py


def _spinner(text: str):  # noqa: ANN202 - a rich Status context manager
    from rich.console import Console

    return Console(stderr=True).status(text)
