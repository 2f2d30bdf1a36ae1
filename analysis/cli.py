"""The ``mechgraph`` command: composes the sub-apps of every package and the main job.

Errors a user can cause (``MechgraphError``) become one line on stderr and exit code 1;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from analysis.match_cli import match_app
from analysis.roi_cli import roi_app
from graphdb.cli import app as db_app
from graphdb.errors import MechgraphError
from graphdb.tables import Format, render
from ingest.cli import ingest_command, model_app, zoo_app
from ingest.replacement.cli import trace_command
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


app = typer.Typer(
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.add_typer(db_app, name="db")
app.add_typer(query_app, name="query")
app.add_typer(zoo_app, name="zoo")
app.add_typer(model_app, name="model")
app.add_typer(roi_app, name="roi", help="Regions of Interest: fit blocks of functionally similar latents (SBM), list them.")
app.add_typer(match_app, name="match", help="Match features and communities across checkpoints and model sizes: MATCHES, the emergence timeline, recurring communities.")
app.command("ingest")(ingest_command)
app.command("trace")(trace_command)


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


@app.command()
def demo(
    ctx: typer.Context,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Prompts per task for every graph and evaluation.")] = 32,
    step: Annotated[list[int] | None, typer.Option("--step", help="Training steps of the small model to ingest besides the final one (repeatable; nearest stored checkpoints). [default: 171, 717]")] = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu or cuda.")] = "cpu",
) -> None:
    """The main job, end to end on the embedded Neo4j: zoo, graphs, analyses, report.

    Builds the model zoo (cached after the first build), ingests the residual graphs of three
    tasks at three checkpoints of mt-small and at the final mt-large, finds communities and
    ROIs, evaluates faithfulness by edge and node ablation, runs the gender-shortcut showcase,
    the task-disentanglement kill table and the matching across checkpoints and sizes, and
    writes one HTML report. Prints where everything is and Cypher to paste into Neo4j Browser.
    """
    from analysis.demo import DemoConfig, run_demo
    from graphdb.settings import data_dir
    from ingest.cli import Bars

    try:
        config = DemoConfig(examples=examples, steps=tuple(step) if step else DemoConfig.steps, device=device)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    home = data_dir(ctx.obj.data_dir)
    bars = Bars()
    with bars.progress:
        state = run_demo(home, config, bars=bars)
    typer.echo("\n".join(state.lines))
    typer.echo("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in state.seconds.items())
               + f"; total {sum(state.seconds.values()) / 60:.1f} min")
    typer.echo(f"\nreport: {state.report}")
    where = f"user neo4j, password in {home / 'password'}"
    typer.echo(f"\nExplore it in Neo4j Browser or Bloom at {state.uri} ({where}), or with"
               " `mechgraph query list`. For example:")
    for cypher in demo_queries(state):
        typer.echo(f"  {cypher}")


def demo_queries(state: Any) -> list[str]:
    """Three Cypher queries on what the demo wrote: the strongest edges into the final small
    model's output, a community with its internal edges, and an ROI with its members."""
    from analysis.demo import final_small

    (model, ckpt), _ = final_small(state)
    task = state.config.eval_task
    comm = state.communities.get((model, ckpt), "")
    rois = state.results.get("rois")
    return [
        f"MATCH (a)-[r:ATTRIBUTES_TO {{task: '{task}', granularity: 'feature'}}]->(o:Output) "
        f"WHERE r.model = '{model}' AND r.checkpoint = '{ckpt}' RETURN a, r, o ORDER BY r.abs_weight DESC LIMIT 25",
        f"MATCH (n)-[:IN_COMMUNITY]->(c:Community {{run: '{comm}', index: 0}}) WITH c, collect(n) AS members "
        "MATCH (a)-[r:ATTRIBUTES_TO]->(b) WHERE a IN members AND b IN members RETURN a, r, b LIMIT 100",
        f"MATCH (f:Feature)-[:IN_ROI]->(g:ROI {{run: '{rois.run if rois else ''}'}}) WHERE g.size >= 3 "
        "RETURN g, f LIMIT 200",
    ]


@app.command()
def evaluate(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", "-t", help="Task whose graph is judged (and whose prompts are run).")],
    run: Annotated[str | None, typer.Option(help="The ingest run whose graph is evaluated (`mechgraph query run runs`).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Or: a model spec; its newest ingest run of --task is used.")] = None,
    ablation: Annotated[str, typer.Option(help="edge (each node reads only its kept in-edges), node (nodes outside the graph at baseline) or both.")] = "both",
    baseline: Annotated[str, typer.Option(help="Value of an ablated node: mean (over reference prompts), zero or counterfactual.")] = "mean",
    sweep: Annotated[int, typer.Option(help="Edge budgets: top-n edges by |weight|, log-spaced from 1% to 100% of the stored graph.")] = 10,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Held-out prompts the graph is run on.")] = 32,
    min_abs_weight: Annotated[float, typer.Option(help="Only stored edges with |weight| >= this.")] = 0.0,
    granularity: Annotated[str, typer.Option(help="Which stored graph of the run: feature, head (features contracted by head) or roi (a `mechgraph roi fit` run's graph; pass its run with --run). A coarse node is run as the set of its features.")] = "feature",
    query: Annotated[str | None, typer.Option(help="Or: the edges a library query returns (columns source, target, optionally weight), e.g. run_edges.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A --query parameter, name=value (repeatable).")] = None,
    community: Annotated[str | None, typer.Option(help="Only edges inside this :Community (its key; edges to the output count as inside).")] = None,
    roi: Annotated[str | None, typer.Option(help="Only edges inside this :ROI (its key).")] = None,
    touching: Annotated[bool, typer.Option("--touching", help="With --community/--roi: every edge with at least one member endpoint.")] = False,
    top_n: Annotated[int | None, typer.Option(help="At most the n strongest selected edges (the sweep runs inside them).")] = None,
    drop_errors: Annotated[bool, typer.Option("--drop-errors", help="Ablate error nodes too (default: they stay kept).")] = False,
    out: Annotated[str | None, typer.Option(help="Directory for the CSV and PNG. [default: <data dir>/evaluations]")] = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu or cuda.")] = "cpu",
) -> None:
    """Judge a stored graph by running it: faithfulness and completeness curves.

    For each edge budget, edge ablation (every node of the graph computes its value from its
    kept in-edges only, the rest of its input at baseline) and node ablation (nodes outside the
    graph at baseline in an ordinary forward pass) of the same graph; faithfulness
    F = (m(G) - m(empty)) / (m(model) - m(empty)) on the mean logit difference, completeness the
    same with the graph ablated and its complement kept, CPR and CMD areas. Writes a CSV, a PNG
    and :Evaluation nodes linked to the runs.
    """
    from analysis.evaluate import EvaluateConfig
    from analysis.evaluate import evaluate as run_evaluation
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.settings import data_dir
    from ingest.cli import Bars

    from analysis.selection import EdgeSelection

    kinds = ("edge", "node") if ablation == "both" else (ablation,)
    try:
        if community and roi:
            raise ValueError("restrict to one of --community or --roi")
        params = tuple(tuple(p.split("=", 1)) for p in param or ())
        if any(len(p) != 2 for p in params):
            raise ValueError("--param takes name=value")
        selection = EdgeSelection(granularity=granularity, min_abs_weight=min_abs_weight, query=query,
                                  params=params, group=community or roi, touching=touching,  # type: ignore[arg-type]
                                  top_n=top_n)
        config = EvaluateConfig(task=task, run=run, model=model, examples=examples, baseline=baseline,
                                ablations=kinds, sweep=sweep, selection=selection,  # type: ignore[arg-type]
                                keep_errors=not drop_errors)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    home = data_dir(ctx.obj.data_dir)
    ensure_running(home)
    bars = Bars()
    with connect(data=home) as db, bars.progress:
        handle = bars.progress.add_task(f"{task}: ablation curves", total=None)
        result = run_evaluation(db, config, out_dir=Path(out) if out else home / "evaluations", device=device,
                                progress=lambda done, total: bars.progress.update(handle, completed=done, total=total))
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(p).items() if k != "budget"}
            for p in result.points]
    render(rows, list(rows[0]), Format.TABLE,
           title=f"{result.model} @ {result.checkpoint}, {task}: graph {result.graph_run} ({result.total_edges} edges); "
                 f"m(model) = {result.clean_logit_diff:.3f}, m(empty) = {result.ablated_logit_diff:.3f}")
    for kind, area in result.summary.items():
        typer.echo(f"{kind} ablation: CPR {area['cpr']:.3f}, CMD {area['cmd']:.3f}")
    typer.echo(f"curve: {result.csv}\nplot:  {result.png}\n:Evaluation nodes of run {result.run} "
               f"({result.seconds:.0f} s)")


@app.command()
def report(
    ctx: typer.Context,
    out: Annotated[str | None, typer.Option(help="HTML file to write. [default: <data dir>/report/index.html]")] = None,
    title: Annotated[str, typer.Option(help="The page's title.")] = "mechgraph report",
) -> None:
    """One self-contained HTML report of everything in the graph store.

    Read back from Neo4j: models, checkpoints, tasks and graph sizes; the evaluations'
    faithfulness curves (edge vs node ablation) and the gender-shortcut table; communities and
    ROIs; task disentanglement and its kill table; matching and the emergence timeline. Plots
    are embedded, so the one file is the whole report.
    """
    from analysis.report import write_report
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.settings import data_dir

    home = data_dir(ctx.obj.data_dir)
    ensure_running(home)
    with connect(data=home) as db:
        path = write_report(db, home, Path(out) if out else home / "report" / "index.html", title=title)
    typer.echo(f"report: {path}")


@app.command()
def shortcut(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="A model trained on bias_in_bios (zoo models are).")] = "zoo:mt-small@final",
    examples: Annotated[int, typer.Option("--examples", "-n", help="Held-out bios per condition.")] = 128,
    min_selectivity: Annotated[float, typer.Option(help="Gender feature: d' at the profession position at least this ...")] = 3.0,
    min_pronoun_selectivity: Annotated[float, typer.Option(help="... or d' at the pronoun position at least this.")] = 0.7,
    out: Annotated[str | None, typer.Option(help="CSV path. [default: <data dir>/evaluations/shortcut-<model>.csv]")] = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu or cuda.")] = "cpu",
) -> None:
    """The gender shortcut: node ablation vs edge ablation of the gender features.

    On bias_in_bios the model answers the profession from gender. Gender features G (latents
    of the slot the logits read, selective for gender) are node-ablated (at baseline for every
    reader) or edge-ablated (only the profession output's in-edges from G cut; the pronoun
    output, she/he after the '.', keeps them). Prints the shortcut gap (profession logit
    difference, female minus male bios), accuracy on anti-stereotypical bios, the pronoun's
    accuracy and logit difference, and how much of G's gender difference is still there.
    """
    from analysis.shortcut import ShortcutConfig, run_shortcut
    from graphdb.settings import data_dir

    try:
        config = ShortcutConfig(model=model, examples=examples, min_selectivity=min_selectivity,
                                min_pronoun_selectivity=min_pronoun_selectivity)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with console_status(f"{model}: gender features, node and edge ablation"):
        result = run_shortcut(config, device=device)
    rows = result.table()
    render(rows, list(rows[0]), Format.TABLE,
           title=f"{model}: {len(result.gender_features)} gender features of {result.hook}")
    name = model.replace(":", "-").replace("@", "-").replace("/", "-")
    path = result.write_csv(Path(out) if out else data_dir(ctx.obj.data_dir) / "evaluations" / f"shortcut-{name}.csv")
    typer.echo(f"table: {path}")


def console_status(text: str) -> Any:
    """A spinner on stderr while ``text`` runs."""
    from rich.console import Console

    return Console(stderr=True).status(text)


@app.command()
def communities(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name as stored (e.g. mt-small).")],
    checkpoint: Annotated[str, typer.Option(help="Checkpoint name as stored (e.g. step-3000).")],
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task (repeatable: their graphs are summed).")],
    run: Annotated[str | None, typer.Option(
        help="One ingest run id, or '*' to sum every run of the tasks (e.g. a model's residual and module "
             "graphs together).", show_default="the newest finished ingest run of the model, checkpoint and tasks")] = None,
    granularity: Annotated[str, typer.Option(help="feature, head or roi.")] = "feature",
    min_abs_weight: Annotated[float, typer.Option(help="Only edges with |weight| >= this.")] = 0.0,
    method: Annotated[str, typer.Option(help="leiden, louvain, sbm or hleiden (hierarchical Leiden).")] = "leiden",
    objective: Annotated[str, typer.Option(help="Leiden objective: modularity or cpm.")] = "modularity",
    resolution: Annotated[float, typer.Option(help="Resolution parameter (Leiden, Louvain, hierarchical Leiden).")] = 1.0,
    weights: Annotated[str, typer.Option(help="abs (|w|, both signs bind) or positive (only w > 0); direction is dropped.")] = "abs",
    seed: Annotated[int, typer.Option(help="Seed of the method.")] = 0,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only nodes with this label (repeatable): Feature, ErrorNode, Input, Output, Head, ROI; edges between two such nodes.")] = None,
    layer: Annotated[list[int] | None, typer.Option("--layer", help="Only nodes in this layer (repeatable; the embedding input is -1, the output n_layers).")] = None,
) -> None:
    """Communities of a stored graph, written back as :Community nodes and IN_COMMUNITY edges.

    Pulls the subgraph through Cypher into a sparse matrix, partitions |A| + |A|^T (see
    analysis/communities.py for direction and sign), and writes the result linked to a :Run;
    running the same selection and parameters again replaces it.

    Without --run, the graph is the newest finished ingest run of the model, checkpoint and
    tasks (one run: if the tasks' newest runs differ, name one). --run '*' sums every run of
    each task instead, which mixes e.g. a model's residual and module graphs.
    """
    from analysis.communities import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, newest_ingest_run, pull_subgraph
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.keys import node_key
    from graphdb.schema import Label
    from graphdb.settings import data_dir

    try:
        config = CommunityConfig(method=method, objective=objective, resolution=resolution,  # type: ignore[arg-type]
                                 weights=weights, seed=seed)  # type: ignore[arg-type]
        # Checked before connecting; the default run is filled in once the graph can be read.
        Selection(model=model, checkpoint=checkpoint, tasks=tuple(task), granularity=granularity,
                  min_abs_weight=min_abs_weight, kinds=tuple(kind or ()), layers=tuple(layer or ()))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    home = data_dir(ctx.obj.data_dir)
    ensure_running(home)
    with connect(data=home) as db:
        graph_run = run if run is not None else newest_ingest_run(db, model, checkpoint, tuple(task))
        selection = Selection(model=model, checkpoint=checkpoint, tasks=tuple(task), run=graph_run,
                              granularity=granularity, min_abs_weight=min_abs_weight, kinds=tuple(kind or ()),
                              layers=tuple(layer or ()))
        sub = pull_subgraph(db, selection)
        part = partition(sub, config)
        run_id = write_communities(db, sub, part, config)
    import numpy as np

    rows = []
    for level, labels in enumerate(part.labels):
        sizes = np.bincount(labels)
        rows.append({"level": level, "communities": len(sizes), "largest": int(sizes.max()),
                     "singletons": int((sizes == 1).sum()), "modularity": round(part.modularity[level], 4)})
    render(rows, list(rows[0]), Format.TABLE,
           title=f"{method} on {model} @ {checkpoint}, {', '.join(task)} (graph run {graph_run}): "
                 f"{sub.n} nodes, {sub.edges} edges")
    largest = node_key(Label.COMMUNITY, run=run_id, level=0, index=0)
    typer.echo(f"run {run_id}; the largest community: mechgraph query run community_members -p run={run_id} "
               f"-p index=0, or community_top_edges / community_output_links -p community='{largest}'")


@app.command()
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
    out: Annotated[str | None, typer.Option(help="Directory for the CSVs and PNGs. [default: <data dir>/disentangle]")] = None,
    device: Annotated[str, typer.Option(help="Torch device: cpu or cuda.")] = "cpu",
) -> None:
    """Task disentanglement: do the union graph's communities follow the tasks?

    Each node's dominant task is the task whose graph gives it the most incident |weight|; NMI
    and ARI compare it with the communities of the summed graphs (output nodes left out), a
    null model gives a z-score, and each community's purity is its strength share per task.
    The kill table runs each community against each task's prompts: F with the community
    killed (it reads and sends nothing) and with only its stored edges kept. Writes CSVs, one
    heatmap per ablation and :Disentanglement nodes linked to a :Run.
    """
    from analysis.communities import CommunityConfig
    from analysis.disentangle import DisentangleConfig
    from analysis.disentangle import disentangle as run_disentangle
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.settings import data_dir
    from ingest.cli import Bars

    try:
        config = DisentangleConfig(
            model=model, tasks=tuple(task), run=run, null=null, draws=draws, kill=kill,  # type: ignore[arg-type]
            community=CommunityConfig(method=method, resolution=resolution, seed=seed),  # type: ignore[arg-type]
            ablations=("edge", "node") if ablation == "both" else (ablation,),  # type: ignore[arg-type]
            top_k=top_k, examples=examples, baseline=baseline, min_abs_weight=min_abs_weight, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    home = data_dir(ctx.obj.data_dir)
    ensure_running(home)
    bars = Bars()
    with connect(data=home) as db, bars.progress:
        handle = bars.progress.add_task("communities × tasks: kill table", total=None, visible=kill)
        result = run_disentangle(db, config, out_root=Path(out) if out else home / "disentangle", device=device,
                                 progress=lambda done, total: bars.progress.update(handle, completed=done, total=total))
    a = result.analysis
    typer.echo(f"{result.model} @ {result.checkpoint}, {', '.join(config.tasks)} (graphs "
               f"{', '.join(sorted(set(result.graph_runs.values())))}): {len(a.keys)} nodes "
               f"({a.alignment.excluded_outputs} outputs and {a.alignment.excluded_zero} nodes without strength left out), "
               f"{len(a.purity)} communities, modularity {a.modularity:.3f}")
    typer.echo(f"NMI {a.nmi:.3f}, ARI {a.ari:.3f}; {a.null} null over {len(a.null_nmi)} draws: "
               f"NMI {a.null_mean:.3f} ± {a.null_std:.3f}, z = {a.z:.1f}")
    rows = [{"community": p.index, "size": p.size, "dominant task": p.dominant_task, "purity": round(p.purity, 3),
             "majority task": p.majority_task, "members dominated": round(p.majority_fraction, 3),
             **{f"share {t}": round(s, 3) for t, s in zip(config.tasks, p.shares, strict=True)}} for p in a.purity]
    render(rows, list(rows[0]), Format.TABLE, title="task purity per community")
    if result.kill is not None:
        table = result.kill
        for kind in config.ablations:
            kill_rows = [{"community": c, "size": n,
                          **{f"{cond} C: {t}": round(float(table.values[kind, cond][i, j]), 3)
                             for cond in ("kill", "keep") for j, t in enumerate(table.tasks)}}
                         for i, (c, n) in enumerate(zip(table.communities, table.sizes, strict=True))]
            render(kill_rows, list(kill_rows[0]), Format.TABLE,
                   title=f"F on each task's prompts, {kind} ablation: kill C / keep only C")
        typer.echo(f"kill table: {result.csv}\nheatmaps:   " + ", ".join(str(p) for p in result.pngs))
    typer.echo(f"run {result.run} (communities run {result.communities_run}; "
               f"`mechgraph query run disentanglement -p run={result.run}`), {result.seconds:.0f} s")


#: Cypher the demo suggests to paste into Neo4j Browser: the graphs `make demo` ingests from
#: zoo:mt-small (feature-level residual and module graphs, the head-level graph, IN_HEAD).


def main() -> None:
    """Console-script entry point."""
    app()
