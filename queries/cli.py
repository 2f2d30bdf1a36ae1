"""``mechgraph query ...``: list, show and run the analyst query library."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from graphdb.errors import QueryError

app = typer.Typer(help="List, show and run the named Cypher queries of the analyst library.",
                  no_args_is_help=True)


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return " -> ".join(map(str, value)) if all(isinstance(v, str) for v in value) else json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def render(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str], fmt: Format, title: str = "") -> None:
    """Print records to stdout as a rich table, CSV or JSON lines-free JSON array."""
    if fmt is Format.JSON:
        json.dump(rows, sys.stdout, default=str, indent=1)
        sys.stdout.write("\n")
    elif fmt is Format.CSV:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[_cell(r.get(c)) for c in columns] for r in rows])
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title or None, title_justify="left")
        for c in columns:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(Text(_cell(r.get(c))) for c in columns))  # no markup in data
        console = Console(soft_wrap=False)
        if not console.is_terminal:  # piped or captured: don't fold keys into 80 columns
            console = Console(soft_wrap=False, width=240)
        console.print(table)


def parse_params(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"--param takes NAME=VALUE, got {pair!r}")
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
