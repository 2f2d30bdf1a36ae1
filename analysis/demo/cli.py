"""``mechgraph demo``: the main job, end to end on the embedded Neo4j.

Imports nothing heavy at import time (the work runs inside the command), so ``mechgraph
--help`` stays instant. The root (``analysis/cli.py``) registers the command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ingest.cli import DeviceOpt


def demo(
    ctx: typer.Context,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Prompts per task for every graph and evaluation.")] = 32,
    step: Annotated[list[int] | None, typer.Option("--step", help="Training steps of the small model to ingest besides the final one (repeatable; nearest stored checkpoints). [default: 171, 717]")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The main job, end to end on the embedded Neo4j: zoo, graphs, analyses, report.

    Builds the model zoo (cached after the first build), ingests the residual graphs of three
    tasks at three checkpoints of mt-small and at the final mt-large, finds communities and
    ROIs, evaluates faithfulness by edge and node ablation, runs the gender-shortcut showcase,
    the task-disentanglement kill table and the matching across checkpoints and sizes, and
    writes one HTML report. Prints where everything is and Cypher to paste into Neo4j Browser.
    """
    from analysis.demo.pipeline import DemoConfig, run_demo
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
    dd = f" --data-dir {home}" if ctx.obj.data_dir else ""
    typer.echo(f"\nThe graph explorer (prompt graphs, the task graphs, evaluations): run `mechgraph{dd} view` and open the"
               " http://127.0.0.1:.../?token=... URL it prints. Neo4j Browser, served locally:"
               f" `mechgraph{dd} db browser`.")


def demo_queries(state: Any) -> list[str]:
    """Three Cypher queries on what the demo wrote: the strongest edges into the final small
    model's output, a community with its internal edges, and an ROI with its members."""
    from analysis.demo.pipeline import final_small

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
