"""``mechgraph report``: one self-contained HTML page about the graph store.

Imports nothing heavy at import time (the work runs inside the command), so ``mechgraph
--help`` stays instant. The root (``analysis/cli.py``) registers the command.
"""

from __future__ import annotations

from typing import Annotated

import typer


def report(
    ctx: typer.Context,
    out: Annotated[str | None, typer.Option(help="HTML file to write. [default: DATA_DIR/report/index.html]")] = None,
    title: Annotated[str, typer.Option(help="The page's title.")] = "mechgraph report",
) -> None:
    """One self-contained HTML report of everything in the graph store.

    Read back from Neo4j: models, checkpoints, tasks and graph sizes; the evaluations'
    faithfulness curves (edge vs node ablation) and the gender-shortcut table; communities and
    ROIs; task disentanglement and its kill table; matching and the emergence timeline. Plots
    are embedded, so the one file is the whole report.
    """
    from analysis.report.html import write_report
    from graphdb.cli import open_store
    from graphdb.settings import output_file

    target = output_file(out, what="the report") if out else None  # checked before the store opens
    with open_store(ctx) as (home, db):
        path = write_report(db, home, target or home / "report" / "index.html", title=title)
    typer.echo(f"report: {path}")
