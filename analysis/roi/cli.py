"""``mechgraph roi``: fit Regions of Interest of an ingest run's dictionaries, and list them.

Imports nothing heavy at import time (the analysis runs inside the commands), so that
``mechgraph --help`` stays instant.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ingest.cli import DeviceOpt

from graphdb.tables import Format, render

roi_app = typer.Typer(no_args_is_help=True, help="Regions of Interest: blocks of functionally similar latents.")


def _round(row: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


@roi_app.command("fit")
def fit(
    ctx: typer.Context,
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task whose prompts give the signals (repeatable: tokens of every task pooled).")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="A model spec; its newest ingest run with every --task is used.")] = None,
    run: Annotated[str | None, typer.Option(help="Or: the ingest run whose dictionaries and graph are read (`mechgraph query run runs`).")] = None,
    hook: Annotated[list[str] | None, typer.Option("--hook", help="Only this dictionary hook (repeatable). [default: every dictionary of the run]")] = None,
    signal: Annotated[str, typer.Option(help="activation, attribution ((f - f_cf) * dm/df per token) or both (their standardised columns concatenated).")] = "both",
    similarity: Annotated[str, typer.Option(help="correlation or covariance of the latents' signal columns.")] = "correlation",
    blocks: Annotated[int | None, typer.Option("--blocks", help="Number of ROIs per dictionary. [default: chosen by BIC up to --max-blocks]")] = None,
    max_blocks: Annotated[int, typer.Option(help="Largest number of ROIs BIC may choose.")] = 20,
    covariance: Annotated[str, typer.Option(help="Gaussian mixture covariance: spherical, diag, full or all (BIC picks).")] = "diag",
    min_active: Annotated[float, typer.Option(help="Leave out latents active on fewer than this fraction of tokens.")] = 1e-3,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Prompts per task.")] = 64,
    partitions: Annotated[int, typer.Option(help="Random partitions (same ROI sizes) of the baseline.")] = 200,
    aggregate: Annotated[str, typer.Option(help="ROI-level graph: sum, mean or max (largest |w|, sign kept) of the contracted edges.")] = "sum",
    seed: Annotated[int, typer.Option(help="Seed of the examples, the mixture and the baseline.")] = 0,
    out: Annotated[str | None, typer.Option(help="Directory for the CSVs and PNGs. [default: DATA_DIR/rois]")] = None,
    device: DeviceOpt = "cpu",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json; csv and json rows carry the ids this command created (run) and read (ingest_run), and notes go to stderr.")] = Format.TABLE,
) -> None:
    """Fit ROIs: per dictionary, an SBM on the latent x latent similarity of activations and/or
    attributions; ROIs written as :ROI nodes with IN_ROI members, and the ingest graph contracted
    by them as ATTRIBUTES_TO edges with granularity roi. Running the same settings again
    replaces them.
    """
    from analysis.roi.fit import RoiConfig, fit_run_rois
    from graphdb.cli import open_store
    from ingest.cli import Bars

    try:
        config = RoiConfig(tasks=tuple(task), run=run, model=model, hooks=tuple(hook or ()), signal=signal,  # type: ignore[arg-type]
                           similarity=similarity, n_blocks=blocks, max_blocks=max_blocks, covariance=covariance,  # type: ignore[arg-type]
                           min_active=min_active, examples=examples, seed=seed, random_partitions=partitions,
                           aggregate=aggregate)  # type: ignore[arg-type]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    from graphdb.settings import output_dir

    out_root = output_dir(out) if out else None
    bars = Bars()
    progress = bars.stages()

    with open_store(ctx) as (home, db), bars.progress:
        result = fit_run_rois(db, config, out_root=out_root or home / "rois", device=device,
                              progress=progress)
    summary = [{"run": result.run, "ingest_run": result.ingest_run, **_round(r)} for r in result.summary]
    render(summary, list(summary[0]) if summary else ["run", "ingest_run", "hook"], fmt,
           title=f"ROIs of {result.model} @ {result.checkpoint}, {', '.join(result.tasks)} (ingest run "
                 f"{result.ingest_run}): decoder cosine and correlation within ROIs vs random partitions")
    edges = ", ".join(f"{t} {n}" for t, n in result.roi_edges.items())
    typer.echo(f"run {result.run}; ROI-level edges: {edges}; files in {result.out_dir} ({result.seconds:.0f} s)\n"
               f"list them: mechgraph roi show {result.run}", err=fmt is not Format.TABLE)


@roi_app.command("show")
def show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="ROI run id (printed by `mechgraph roi fit`).")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = Format.TABLE,
) -> None:
    """List the ROIs of an ROI run: key, size, decoder cosine and correlation vs baseline."""
    from graphdb.cli import open_store
    from mechgraph.errors import ConfigError
    from queries.loader import get_query, run_query
    with open_store(ctx) as (home, db):
        rows = run_query(db, "rois", {"run": run})
    if not rows:
        raise ConfigError(f"no ROIs of run {run!r} (`mechgraph query run runs` lists the roi runs)")
    render([_round(r) for r in rows], get_query("rois").returns, fmt, title=f"ROIs of run {run} ({len(rows)})")
