"""``mechgraph disentangle``: do a multi-task graph's communities follow the tasks?

Imports nothing heavy at import time (the work runs inside the command), so ``mechgraph
--help`` stays instant. The root (``analysis/cli.py``) registers the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ingest.cli import DeviceOpt

from graphdb.tables import Format, render


def disentangle(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec, e.g. zoo:mt-small@final.")],
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task (repeat: at least two).")],
    run: Annotated[str | None, typer.Option(help="One ingest run holding every task's graph. [default: the newest ingest run of each task]")] = None,
    method: Annotated[str, typer.Option(help="Communities of the union graph: leiden, louvain, sbm or hleiden.")] = "leiden",
    resolution: Annotated[float, typer.Option(help="Resolution parameter of the community method.")] = 1.0,
    null: Annotated[str, typer.Option(help="Null model of the z-score: permutation (task labels shuffled across nodes) or rewire (degree-preserving edge swaps, re-partitioned).")] = "permutation",
    draws: Annotated[int | None, typer.Option(help="Null draws. [default: 200 permutation, 20 rewire]")] = None,
    kill: Annotated[bool, typer.Option("--kill/--no-kill", help="Measure the kill table (runs the model).")] = True,
    ablation: Annotated[str, typer.Option(help="Kill table ablation: edge, node or both.")] = "both",
    top_k: Annotated[int, typer.Option(help="Kill table rows: the k largest communities.")] = 12,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Held-out prompts per task.")] = 32,
    baseline: Annotated[str, typer.Option(help="Value of an ablated node: mean, zero or counterfactual.")] = "mean",
    min_abs_weight: Annotated[float, typer.Option(help="Only stored edges with |weight| >= this.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the community method, the null and the prompts.")] = 0,
    out: Annotated[str | None, typer.Option(help="Directory for the CSVs and PNGs. [default: DATA_DIR/disentangle]")] = None,
    device: DeviceOpt = "cpu",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json; csv and json print the purity table only, its rows carrying the ids this command created (run, communities_run), and notes go to stderr (the kill table is in its CSV file).")] = Format.TABLE,
) -> None:
    """Task disentanglement: do the union graph's communities follow the tasks?

    Each node's dominant task is the task whose graph gives it the most incident |weight|; NMI
    and ARI compare it with the communities of the summed graphs (output nodes left out), a
    null model gives a z-score, and each community's purity is its strength share per task.
    The kill table runs each community against each task's prompts: F with the community
    killed (it reads and sends nothing) and with only its stored edges kept. Writes CSVs, one
    heatmap per ablation and :Disentanglement nodes linked to a :Run.
    """
    from analysis.communities.partition import CommunityConfig
    from analysis.disentangle.measure import DisentangleConfig
    from analysis.disentangle.measure import disentangle as run_disentangle
    from graphdb.settings import output_dir
    from graphdb.cli import open_store
    from ingest.cli import Bars

    try:
        config = DisentangleConfig(
            model=model, tasks=tuple(task), run=run, null=null, draws=draws, kill=kill,  # type: ignore[arg-type]
            community=CommunityConfig(method=method, resolution=resolution, seed=seed),  # type: ignore[arg-type]
            ablations=("edge", "node") if ablation == "both" else (ablation,),  # type: ignore[arg-type]
            top_k=top_k, examples=examples, baseline=baseline, min_abs_weight=min_abs_weight, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    out_root = output_dir(out) if out else None
    bars = Bars()
    with open_store(ctx) as (home, db), bars.progress:
        progress = bars.stages()  # the bar appears with the first measurement, not before an early error
        result = run_disentangle(db, config, out_root=out_root or home / "disentangle", device=device,
                                 progress=lambda done, total: progress("communities × tasks: kill table", done, total))
    a = result.analysis
    notes = fmt is not Format.TABLE  # machine-readable stdout holds one table only
    typer.echo(f"{result.model} @ {result.checkpoint}, {', '.join(config.tasks)} (graphs "
               f"{', '.join(sorted(set(result.graph_runs.values())))}): {len(a.keys)} nodes "
               f"({a.alignment.excluded_outputs} outputs and {a.alignment.excluded_zero} nodes without strength left out), "
               f"{len(a.purity)} communities, modularity {a.modularity:.3f}", err=notes)
    typer.echo(f"NMI {a.nmi:.3f}, ARI {a.ari:.3f}; {a.null} null over {len(a.null_nmi)} draws: "
               f"NMI {a.null_mean:.3f} ± {a.null_std:.3f}, z = {a.z:.1f}", err=notes)
    rows = [{"run": result.run, "communities_run": result.communities_run, "community": p.index, "size": p.size, "dominant task": p.dominant_task, "purity": round(p.purity, 3),
             "majority task": p.majority_task, "members dominated": round(p.majority_fraction, 3),
             **{f"share {t}": round(s, 3) for t, s in zip(config.tasks, p.shares, strict=True)}} for p in a.purity]
    render(rows, list(rows[0]), fmt, title="task purity per community")
    if result.kill is not None and not notes:
        table = result.kill
        for kind in config.ablations:
            kill_rows = [{"community": c, "size": n,
                          **{f"{cond} C: {t}": round(float(table.values[kind, cond][i, j]), 3)
                             for cond in ("kill", "keep") for j, t in enumerate(table.tasks)}}
                         for i, (c, n) in enumerate(zip(table.communities, table.sizes, strict=True))]
            render(kill_rows, list(kill_rows[0]), Format.TABLE,
                   title=f"F on each task's prompts, {kind} ablation, {config.baseline} baseline: kill C / keep only C")
        typer.echo(f"kill table: {result.csv}\nheatmaps:   " + ", ".join(str(p) for p in result.pngs))
    typer.echo(f"run {result.run} (communities run {result.communities_run}; "
               f"`mechgraph query run disentanglement -p run={result.run}`), {result.seconds:.0f} s", err=notes)
    if result.kill is not None and notes:
        typer.echo(f"kill table: {result.csv}", err=True)
