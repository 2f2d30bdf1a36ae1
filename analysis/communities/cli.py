"""``mechgraph communities``: partition a stored graph and write the communities back.

Imports nothing heavy at import time (the work runs inside the command), so ``mechgraph
--help`` stays instant. The root (``analysis/cli.py``) registers the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from graphdb.tables import Format, render


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
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json; csv and json rows carry the ids this command created (run) and read (graph_run), and notes go to stderr.")] = Format.TABLE,
) -> None:
    """Communities of a stored graph, written back as :Community nodes and IN_COMMUNITY edges.

    Pulls the subgraph through Cypher into a sparse matrix, partitions |A| + |A|^T (see
    analysis/communities/partition.py for direction and sign), and writes the result linked to a :Run;
    running the same selection and parameters again replaces it.

    Without --run, the graph is the newest finished ingest run of the model, checkpoint and
    tasks (one run: if the tasks' newest runs differ, name one). --run '*' sums every run of
    each task instead, which mixes e.g. a model's residual and module graphs.
    """
    from analysis.communities.partition import CommunityConfig, partition, write_communities
    from analysis.subgraph import Selection, newest_ingest_run, pull_subgraph
    from analysis.tasks import stored_tasks
    from graphdb.cli import open_store
    from graphdb.keys import node_key
    from graphdb.schema import Label

    try:
        config = CommunityConfig(method=method, objective=objective, resolution=resolution,  # type: ignore[arg-type]
                                 weights=weights, seed=seed)  # type: ignore[arg-type]
        # Checked before connecting; the default run is filled in once the graph can be read.
        Selection(model=model, checkpoint=checkpoint, tasks=tuple(task), granularity=granularity,
                  min_abs_weight=min_abs_weight, kinds=tuple(kind or ()), layers=tuple(layer or ()))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with open_store(ctx) as (home, db):
        task = list(stored_tasks(db, task))  # jsonl:PATH or its stored name
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
        rows.append({"run": run_id, "graph_run": graph_run, "level": level, "communities": len(sizes), "largest": int(sizes.max()),
                     "singletons": int((sizes == 1).sum()), "modularity": round(part.modularity[level], 4)})
    render(rows, list(rows[0]), fmt,
           title=f"{method} on {model} @ {checkpoint}, {', '.join(task)} (graph run {graph_run}): "
                 f"{sub.n} nodes, {sub.edges} edges")
    largest = node_key(Label.COMMUNITY, run=run_id, level=0, index=0)
    typer.echo(f"run {run_id}; the largest community: mechgraph query run community_members -p run={run_id} "
               f"-p index=0, or community_top_edges / community_output_links -p community='{largest}'",
               err=fmt is not Format.TABLE)  # machine-readable stdout holds the table only
