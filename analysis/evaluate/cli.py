"""``mechgraph evaluate`` and ``mechgraph shortcut``: judge stored graphs by running them.

Imports nothing heavy at import time (the work runs inside the command), so ``mechgraph
--help`` stays instant. The root (``analysis/cli.py``) registers the commands.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from ingest.cli import DeviceOpt

from graphdb.tables import Format, render


def evaluate(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", "-t", help="Task whose graph is judged (and whose prompts are run).")],
    run: Annotated[str | None, typer.Option(help="The ingest run whose graph is evaluated (`mechgraph query run runs`).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Or: a model spec; its newest ingest run of --task is used.")] = None,
    ablation: Annotated[str, typer.Option(help="edge (each node reads only its kept in-edges), node (nodes outside the graph at baseline) or both.")] = "both",
    baseline: Annotated[str | None, typer.Option(help="Value of an ablated node: mean (over reference prompts), zero or counterfactual.", show_default="the baseline the graph was ingested with")] = None,
    sweep: Annotated[int, typer.Option(help="Edge budgets: top-n edges by |weight|, log-spaced from 1% to 100% of the stored graph (at most 100; a small graph has fewer distinct budgets, each measured once).")] = 10,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Held-out prompts the graph is run on.")] = 32,
    min_abs_weight: Annotated[float, typer.Option(help="Only stored edges with |weight| >= this.")] = 0.0,
    granularity: Annotated[str, typer.Option(help="Which stored graph of the run: feature, head (features contracted by head), roi (a `mechgraph roi fit` run's graph; pass its run with --run) or component (an `ingest --graph component` run: node ablation puts whole heads/MLPs/the embedding at their baseline output; edge ablation makes each component read its kept in-edges and every other upstream component's baseline output). A head or ROI node is run as the set of its features.")] = "feature",
    query: Annotated[str | None, typer.Option(help="Or: the edges a query returns (columns source, target, optionally weight): a library query by name (e.g. run_edges) or your own FILE.cypher with the library's header (// name, // param, // returns).")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A --query parameter, name=value (repeatable).")] = None,
    edges: Annotated[str | None, typer.Option(help="Or: an edge list, FILE.csv (header src,dst[,weight]) or FILE.json ([{\"src\": KEY, \"dst\": KEY, \"weight\": w}, ...]), node keys as stored.")] = None,
    community: Annotated[str | None, typer.Option(help="Only edges inside this :Community (its key; edges to the output count as inside).")] = None,
    roi: Annotated[str | None, typer.Option(help="Only edges inside this :ROI (its key).")] = None,
    touching: Annotated[bool, typer.Option("--touching", help="With --community/--roi: every edge with at least one member endpoint.")] = False,
    top_n: Annotated[int | None, typer.Option(help="At most the n strongest selected edges (the sweep runs inside them).")] = None,
    drop_errors: Annotated[bool, typer.Option("--drop-errors", help="Ablate error nodes too (default: they stay kept).")] = False,
    out: Annotated[str | None, typer.Option(help="Directory for the CSV and PNG. [default: DATA_DIR/evaluations]")] = None,
    device: DeviceOpt = "cpu",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json; csv and json rows carry the ids this command created (run) and read (graph_run), and notes go to stderr.")] = Format.TABLE,
) -> None:
    """Judge a stored graph by running it: faithfulness and completeness curves.

    For each edge budget, edge ablation (every node of the graph computes its value from its
    kept in-edges only, the rest of its input at baseline) and node ablation (nodes outside the
    graph at baseline in an ordinary forward pass) of the same graph; faithfulness
    F = (m(G) - m(empty)) / (m(model) - m(empty)) on the mean logit difference, completeness the
    same with the graph ablated and its complement kept, CPR and CMD areas. Writes a CSV, a PNG
    and :Evaluation nodes linked to the runs.
    """
    from analysis.evaluate.selection import EdgeSelection, selection_query
    from analysis.evaluate.sweep import EvaluateConfig
    from analysis.evaluate.sweep import evaluate as run_evaluation
    from graphdb.cli import open_store
    from ingest.cli import Bars
    from graphdb.settings import output_dir
    from queries.cli import parse_params

    kinds = ("edge", "node") if ablation == "both" else (ablation,)
    try:
        if community and roi:
            raise ValueError("restrict to one of --community or --roi")
        params = tuple(parse_params(param or []).items())  # QueryError (one line) on a malformed or repeated name
        selection = EdgeSelection(granularity=granularity, min_abs_weight=min_abs_weight, query=query,
                                  params=params, edges=edges, group=community or roi, touching=touching,  # type: ignore[arg-type]
                                  top_n=top_n)
        config = EvaluateConfig(task=task, run=run, model=model, examples=examples, baseline=baseline,
                                ablations=kinds, sweep=sweep, selection=selection,  # type: ignore[arg-type]
                                keep_errors=not drop_errors)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if query is not None:  # an unknown query or file, or bad parameters, fail before the store opens or a model loads
        selection_query(query).bind(dict(params))
    out_dir = output_dir(out) if out else None
    bars = Bars()
    with open_store(ctx) as (home, db), bars.progress:
        progress = bars.stages()  # the bar appears with the first point, not before an early error
        result = run_evaluation(db, config, out_dir=out_dir or home / "evaluations", device=device,
                                progress=lambda done, total: progress(f"{task}: ablation curves", done, total))
    if len(result.budgets) < sweep:
        typer.echo(f"--sweep {sweep}: the graph's {result.total_edges} edges give {len(result.budgets)} distinct "
                   f"budgets between 1% and 100%; measured those", err=True)
    rows = [{"run": result.run, "graph_run": result.graph_run,
             **{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(p).items() if k != "budget"}}
            for p in result.points]
    render(rows, list(rows[0]), fmt,
           title=f"{result.model} @ {result.checkpoint}, {task}: graph {result.graph_run} ({result.total_edges} edges), "
                 f"{result.baseline} baseline; m(model) = {result.clean_logit_diff:.3f}, "
                 f"m(empty) = {result.ablated_logit_diff:.3f}")
    notes = fmt is not Format.TABLE  # machine-readable stdout holds the table only
    for kind, area in result.summary.items():
        typer.echo(f"{kind} ablation ({result.baseline} baseline): CPR {area['cpr']:.3f}, CMD {area['cmd']:.3f}", err=notes)
    typer.echo(f"curve: {result.csv}\nplot:  {result.png}\n:Evaluation nodes of run {result.run} "
               f"({result.seconds:.0f} s)", err=notes)


def shortcut(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="A model trained on bias_in_bios (zoo models are).")] = "zoo:mt-small@final",
    examples: Annotated[int, typer.Option("--examples", "-n", help="Held-out bios per condition.")] = 128,
    min_selectivity: Annotated[float, typer.Option(help="Gender feature: d' at the profession position at least this ...")] = 3.0,
    min_pronoun_selectivity: Annotated[float, typer.Option(help="... or d' at the pronoun position at least this.")] = 0.7,
    device: DeviceOpt = "cpu",
    out: Annotated[str | None, typer.Option(help="CSV path. [default: DATA_DIR/evaluations/shortcut-<model>.csv]")] = None,
) -> None:
    """The gender shortcut: node ablation vs edge ablation of the gender features.

    On bias_in_bios the model answers the profession from gender. Gender features G (latents
    of the slot the logits read, selective for gender) are node-ablated (at baseline for every
    reader) or edge-ablated (only the profession output's in-edges from G cut; the pronoun
    output, she/he after the '.', keeps them). Prints the shortcut gap (profession logit
    difference, female minus male bios), accuracy on anti-stereotypical bios, the pronoun's
    accuracy and logit difference, and how much of G's gender difference is still there.
    """
    from analysis.evaluate.shortcut import ShortcutConfig, run_shortcut
    from graphdb.settings import data_dir, output_file

    try:
        config = ShortcutConfig(model=model, examples=examples, min_selectivity=min_selectivity,
                                min_pronoun_selectivity=min_pronoun_selectivity)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    target = output_file(out, what="the shortcut table") if out else None
    with console_status(f"{model}: gender features, node and edge ablation"):
        result = run_shortcut(config, device=device)
    rows = result.table()
    render(rows, list(rows[0]), Format.TABLE,
           title=f"{model}: {len(result.gender_features)} gender features of {result.hook}")
    name = model.replace(":", "-").replace("@", "-").replace("/", "-")
    path = result.write_csv(target or data_dir(ctx.obj.data_dir) / "evaluations" / f"shortcut-{name}.csv")
    typer.echo(f"table: {path}")


def console_status(text: str) -> Any:
    """A spinner on stderr while ``text`` runs."""
    from rich.console import Console

    return Console(stderr=True).status(text)
