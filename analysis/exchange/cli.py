"""``mechgraph export neuronpedia`` and ``mechgraph import neuronpedia``.

Registered by the CLI root (``analysis/cli.py``) as the ``export`` and ``import`` sub-apps.
Nothing heavy is imported here; the work runs inside the commands.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Any

import typer

from graphdb.tables import Format, render

export_app = typer.Typer(no_args_is_help=True, help="Stored graphs out to the field's formats: `export neuronpedia`.")
import_app = typer.Typer(no_args_is_help=True, help="The field's graph files in: `import neuronpedia`.")


@contextmanager
def _database(ctx: typer.Context) -> Any:
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.settings import data_dir

    home = data_dir(ctx.obj.data_dir if ctx.obj else None)
    ensure_running(home)
    with connect(data=home) as db:
        yield db


@export_app.command("neuronpedia")
def export_neuronpedia(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("--output", "-o", help="The JSON file to write (replaced atomically).")],
    prompt: Annotated[str | None, typer.Option("--prompt", help="A stored prompt graph's id (`mechgraph trace` and `import` print it).")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="A task graph: the task (with --model and --checkpoint).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name as stored (task graphs).")] = None,
    checkpoint: Annotated[str, typer.Option(help="Checkpoint name as stored (task graphs).")] = "final",
    run: Annotated[str, typer.Option(help="Task graphs: the run id, or newest.")] = "newest",
    granularity: Annotated[str, typer.Option(help="Task graphs: feature, head or roi.")] = "feature",
    community: Annotated[str | None, typer.Option(help="A community's key (community|<run>|<level>|<index>): its members and their edges.")] = None,
    query: Annotated[str | None, typer.Option(help="Any library query returning source, target, weight (node keys); parameters with -p.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE for --query, repeatable.")] = None,
    communities: Annotated[str | None, typer.Option(help="A communities run whose communities become supernodes (ROIs always do). Prompt graphs: through each node's feature, as `mechgraph view` groups them; default newest (the newest run covering the prompt's features), or none.")] = None,
    min_abs_weight: Annotated[float, typer.Option(help="Only edges with |weight| >= this.")] = 0.0,
    node_threshold: Annotated[float | None, typer.Option(help="Prompt graphs: prune the stored graph again, keeping the nodes carrying this share of influence.")] = None,
    edge_threshold: Annotated[float | None, typer.Option(help="Prompt graphs: prune again, keeping the edges carrying this share of edge influence.")] = None,
    slug: Annotated[str | None, typer.Option(help="metadata.slug (default: the prompt's, or one made of the selection).")] = None,
) -> None:
    """A stored graph as Neuronpedia graph JSON: a prompt graph (--prompt), a task graph (--task,
    --model), a community (--community) or a library query's edges (--query). Feature
    descriptions become clerps; communities and ROIs become qParams.supernodes."""
    from analysis.exchange.export import (NEWEST, export_community, export_prompt, export_query, export_task,
                                          write_json)
    from mechgraph.errors import ConfigError
    from queries.cli import parse_params

    chosen = [name for name, v in (("--prompt", prompt), ("--task", task), ("--community", community),
                                   ("--query", query)) if v is not None]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --prompt, --task, --community or --query"
                          + (f" (got {', '.join(chosen)})" if chosen else ""))
    if task is not None and model is None:
        raise ConfigError("--task needs --model")
    values = parse_params(param or [])
    with _database(ctx) as db:
        if prompt is not None:
            doc = export_prompt(db, prompt, min_abs_weight=min_abs_weight, node_threshold=node_threshold,
                                edge_threshold=edge_threshold, slug=slug, communities=communities or NEWEST)
        elif task is not None:
            doc = export_task(db, model=str(model), checkpoint=checkpoint, task=task, run=run,
                              granularity=granularity, min_abs_weight=min_abs_weight, community_run=communities)
        elif community is not None:
            doc = export_community(db, community)
        else:
            doc = export_query(db, str(query), values, community_run=communities)
    if slug:
        doc["metadata"]["slug"] = slug
    if prompt is None and min_abs_weight > 0:
        doc["links"] = [link for link in doc["links"] if abs(link["weight"]) >= min_abs_weight]
    path = write_json(doc, output)
    typer.echo(f"{path}: {len(doc['nodes'])} nodes, {len(doc['links'])} links, "
               f"{len(doc['qParams']['supernodes'])} supernodes")
    if prompt is not None:
        used = doc["metadata"]["info"].get("communities_run")
        typer.echo(f"communities run: {used}" if used else "communities run: none (no run covers the prompt's "
                   "features, or it has its own supernodes; `--communities RUN` to choose one)")


@import_app.command("neuronpedia")
def import_neuronpedia(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A graph JSON file, or a directory of them.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name to store under.", show_default="each file's metadata.scan")] = None,
    checkpoint: Annotated[str, typer.Option(help="Checkpoint name to store under.")] = "final",
    dictionary: Annotated[str, typer.Option(help="The transcoders' name in the position-free feature keys.")] = "transcoders",
    task: Annotated[str, typer.Option(help="Task name of the imported prompts (the cross-prompt queries filter on it).")] = "neuronpedia",
    batch_size: Annotated[int, typer.Option(help="Links per write transaction.")] = 10_000,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.TABLE,
) -> None:
    """Neuronpedia / circuit-tracer graph JSON files into Neo4j as prompt graphs (streamed: a
    file's links are never all in memory), with their prompt, model, slug and supernodes. A bad
    file stops the import with one line; nothing of it stays written (earlier files stay)."""
    from analysis.exchange.load import ImportConfig, graph_files, import_file
    from ingest.cli import Bars

    try:
        config = ImportConfig(model=model, checkpoint=checkpoint, dictionary=dictionary, task=task,
                              batch_size=batch_size)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    files = graph_files(path)
    bars = Bars()
    rows = []
    with _database(ctx) as db, bars.progress:
        overall = bars(f"{len(files)} file(s)", len(files))
        for f in files:
            links = bars(f.name + ": rows written", None)  # type: ignore[arg-type]
            r = import_file(db, f, config, progress=links)
            overall(1)
            rows.append({"file": f.name, "prompt": r.prompt, "slug": r.slug, "nodes": r.nodes, "links": r.links,
                         "supernodes": r.supernodes, "status": "already imported" if r.skipped else "imported"})
    render(rows, ["file", "prompt", "slug", "nodes", "links", "supernodes", "status"], fmt,
           title=f"{len(rows)} prompt graph(s), task {task}")
