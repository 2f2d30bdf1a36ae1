"""The ``mechgraph`` command: one thin root that registers every capability's sub-app.

Each command's body lives beside its capability (``analysis/<capability>/cli.py``,
``ingest/cli.py``, ``graphdb/cli.py``, ``queries/cli.py``); this module only composes them and
owns the global options. Errors a user can cause (``MechgraphError``) become one line on
stderr and exit code 1; ``--debug`` shows the traceback instead. Nothing heavy is imported
here or by the sub-apps at import time, so ``mechgraph --help`` is instant.

Two rules hold for every option of every command, applied here once (:func:`numbers_checked`):
a float option takes only finite numbers (``nan`` compares false with everything, so a
threshold of ``nan`` would silently select nothing; no option gives ``inf`` a meaning), and an
integer option fits in 64 bits (what Neo4j and torch hold).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from analysis.communities.cli import communities
from analysis.demo.cli import demo
from analysis.disentangle.cli import disentangle
from analysis.evaluate.cli import evaluate, shortcut
from analysis.exchange.cli import export_app, import_app
from analysis.matching.cli import match_app
from analysis.report.cli import report
from analysis.roi.cli import roi_app
from analysis.view.cli import db_bloom_perspective, db_browser, view
from graphdb.cli import app as db_app
from ingest.cli import ingest_command, model_app, zoo_app
from ingest.describe.cli import describe_command
from ingest.dictionaries.cli import dict_app
from ingest.replacement.cli import trace_command
from mechgraph.errors import ConfigError, MechgraphError
from queries.cli import app as query_app


@dataclass
class CliState:
    data_dir: str | None
    debug: bool


class _OneLineErrors(TyperGroup):
    """Turns a ``MechgraphError`` raised anywhere below into one stderr line + exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MechgraphError as e:
            if isinstance(ctx.obj, CliState) and ctx.obj.debug:
                raise
            typer.echo(f"mechgraph: error: {e}", err=True)
            ctx.exit(1)


def numbers_checked(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` refusing (:class:`ConfigError`) a non-finite float or an integer outside 64
    bits in any of its options, lists included, before its body runs."""
    if getattr(command, "_numbers_checked", False):
        return command

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            option = "--" + name.replace("_", "-")
            for v in value if isinstance(value, list | tuple) else (value,):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{option} must be a finite number, got {v}")
                if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
                    raise ConfigError(f"{option} must fit in a 64-bit integer, got {v}")
        return command(*args, **kwargs)

    checked._numbers_checked = True  # type: ignore[attr-defined]
    return checked


def _check_numbers_of(sub_app: typer.Typer) -> typer.Typer:
    for info in sub_app.registered_commands:
        if info.callback is not None:
            info.callback = numbers_checked(info.callback)
    for group in sub_app.registered_groups:
        if group.typer_instance is not None:
            _check_numbers_of(group.typer_instance)
    return sub_app


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
# `db browser` and `db bloom-perspective` offer the query library, which graphdb may not import.
db_app.command("browser")(db_browser)
db_app.command("bloom-perspective")(db_bloom_perspective)
app.add_typer(_check_numbers_of(db_app), name="db")
app.add_typer(_check_numbers_of(query_app), name="query")
app.add_typer(_check_numbers_of(zoo_app), name="zoo")
app.add_typer(_check_numbers_of(model_app), name="model")
app.add_typer(_check_numbers_of(dict_app), name="dict", help="Make dictionaries for your own model on your own text: `dict train` (SAEs), `dict svd` (PCA bases), one per hook in -o DIR, for `ingest --dicts-all 'path:DIR/{hook}@SITES'`.")
app.add_typer(_check_numbers_of(roi_app), name="roi", help="Regions of Interest: fit blocks of functionally similar latents (SBM), list them.")
app.add_typer(_check_numbers_of(match_app), name="match", help="Match features and communities across checkpoints and model sizes: MATCHES, the emergence timeline, recurring communities.")
app.add_typer(_check_numbers_of(export_app), name="export")
app.add_typer(_check_numbers_of(import_app), name="import")
app.command("ingest")(numbers_checked(ingest_command))
for command in (demo, evaluate, report, shortcut, communities, disentangle, view):
    app.command()(numbers_checked(command))
app.command("trace")(numbers_checked(trace_command))
app.command("describe")(numbers_checked(describe_command))


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[str | None, typer.Option("--data-dir", envvar="MECHGRAPH_HOME",
                                                 help="Project data directory (embedded Neo4j, password, logs). [default: ./.mechgraph]")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    """mechgraph: transformer computational graphs in Neo4j, for mechanistic interpretability.

    Neo4j is the server named by NEO4J_URI / NEO4J_USER / NEO4J_PASSWORD / NEO4J_DATABASE when
    NEO4J_URI is set, else the embedded server of the data directory (`mechgraph db start`).
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(data_dir=data_dir, debug=debug)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # python -m analysis.cli
    main()
