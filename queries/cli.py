"""``mechgraph query ...``: list, show and run the analyst query library."""

from __future__ import annotations

from typing import Annotated

import typer

from graphdb.errors import QueryError
from graphdb.tables import Format, render

app = typer.Typer(help="List, show and run the named Cypher queries of the analyst library.",
                  no_args_is_help=True)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a dict; a name given twice is refused rather than the last
    value silently winning."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"--param takes NAME=VALUE, got {pair!r}")
        if name.strip() in out:
            raise QueryError(f"--param {name.strip()} is given twice; give each parameter once")
        out[name.strip()] = value
    return out


@app.command("list")
def list_() -> None:
    """One line per library query: its name, parameters and what it answers."""
    from queries.loader import library

    rows = [{"name": q.name,
             "params": ", ".join(p.name if p.required else f"[{p.name}]" for p in q.params),
             "summary": q.summary} for q in library().values()]
    render(rows, ("name", "params", "summary"), Format.TABLE)


@app.command()
def show(name: Annotated[str, typer.Argument(help="Query name, from `mechgraph query list`.")]) -> None:
    """Print a query's file: header (parameters, returned columns) and Cypher."""
    from queries.loader import get_query

    typer.echo(get_query(name).text.rstrip())


@app.command()
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Query name, from `mechgraph query list`.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, repeatable; passed as a Cypher parameter.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.TABLE,
) -> None:
    """Run a library query against the configured Neo4j and print the records."""
    from graphdb.connection import connect
    from queries.loader import get_query, run_query

    query = get_query(name)
    values = parse_params(param or [])
    query.bind(values)  # bad parameters fail before any connection is made
    with connect(data=ctx.obj.data_dir if ctx.obj else None) as db:
        rows = run_query(db, name, values)
    render(rows, query.returns, fmt, title=f"{name} ({len(rows)} rows)")
