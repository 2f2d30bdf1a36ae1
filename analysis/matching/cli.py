"""``mechgraph match``: match features across checkpoints or models, the community emergence
timeline, and communities across model sizes.

Imports nothing heavy at import time (the analysis runs inside the commands), so that
``mechgraph --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ingest.cli import DeviceOpt

from graphdb.tables import Format, render

match_app = typer.Typer(no_args_is_help=True,
                        help="Match features and communities across checkpoints and model sizes.")


def _round(row: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def _bars() -> tuple[Any, Any]:
    """(rich progress display, progress(stage, done, total) callback)."""
    from ingest.cli import Bars

    bars = Bars()
    return bars, bars.stages()


@match_app.command("features")
def features(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Zoo model, e.g. zoo:mt-small (or mt-small).")],
    from_step: Annotated[str, typer.Option("--from", help="Earlier checkpoint: a step (1466, step-1466) or final.")],
    to_step: Annotated[str, typer.Option("--to", help="Later checkpoint: a step or final.")],
    to_model: Annotated[str | None, typer.Option("--to-model", help="Match into another zoo model at --to (activation only).")] = None,
    hook: Annotated[list[str] | None, typer.Option("--hook", help="Only this hook (repeatable). [default: every hook with an SAE at both]")] = None,
    method: Annotated[str, typer.Option(help="cosine (decoder rows), activation (correlation on shared prompts) or both.")] = "cosine",
    graph_match: Annotated[bool, typer.Option("--graph-match", help="Refine by seeded graph matching on the latents' decoder / co-activation graphs.")] = False,
    graph_weight: Annotated[float, typer.Option(help="Weight of the graph term against the similarity term in --graph-match.")] = 0.2,
    min_score: Annotated[float, typer.Option(help="Drop matched pairs whose similarity is below this.")] = 0.5,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Prompts for activations (repeatable). [default: the model's training tasks]")] = None,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Prompts per task for activations.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the prompts and the graph matching.")] = 0,
    write: Annotated[bool, typer.Option("--write/--no-write", help="Write MATCHES to Neo4j (the default) or only print.")] = True,
    device: DeviceOpt = "cpu",
) -> None:
    """Match the latents of two checkpoints' dictionaries, hook by hook (one-to-one, Hungarian).

    Prints, per hook and method, how many latents matched, their mean similarity and the fraction
    of the earlier dictionary matched above 0.5 / 0.7 / 0.9 (with --method both, how often the two
    methods agree), and writes (:Feature)-[:MATCHES {score, method, run}]->(:Feature), earlier to
    later; running the same settings again replaces them.
    """
    from analysis.matching.features import FeatureMatchConfig, match_features, write_feature_matches

    try:
        config = FeatureMatchConfig(model=model, from_checkpoint=from_step, to_checkpoint=to_step, to_model=to_model,
                                    hooks=tuple(hook or ()), method=method, graph_match=graph_match,  # type: ignore[arg-type]
                                    graph_weight=graph_weight, min_score=min_score, tasks=tuple(task or ()),
                                    examples=examples, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    bars, progress = _bars()
    with bars.progress:
        result = match_features(config, device=device, progress=progress)
    rows = [_round(r) for r in result.summary()]
    render(rows, list(dict.fromkeys(k for r in rows for k in r)), Format.TABLE,
           title=f"{result.source.spec} -> {result.target.spec}: latents matched (min score {min_score})")
    if write:
        from graphdb.cli import open_store
        with open_store(ctx) as (home, db):
            run = write_feature_matches(db, result)
        typer.echo(f"run {run}: MATCHES written ({result.seconds:.0f} s)")


@match_app.command("timeline")
def timeline(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name as stored, e.g. mt-small.")],
    communities: Annotated[list[str] | None, typer.Option("--communities", "-c", help="Community run (repeatable, one per checkpoint). [default: the newest run of each checkpoint]")] = None,
    level: Annotated[int, typer.Option(help="Community hierarchy level (0 = the only or finest).")] = 0,
    min_jaccard: Annotated[float, typer.Option(help="Link two communities only when their mapped overlap reaches this.")] = 0.1,
    method: Annotated[str, typer.Option(help="Use MATCHES of this method only (cosine, activation, ...), or * for any.")] = "*",
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Tasks whose edge weights give the alignment. [default: each run's tasks]")] = None,
    out: Annotated[str | None, typer.Option(help="Directory for the CSV and PNG. [default: DATA_DIR/matching]")] = None,
) -> None:
    """When did each community of the final checkpoint emerge, and which task did it serve?

    Matches the communities of consecutive checkpoints by the Jaccard overlap of their members
    (earlier features mapped through MATCHES, so run `mechgraph match features` on each
    consecutive pair first), follows each final community back until a link is missing, and
    writes a CSV and a PNG (one row per final community, markers coloured by dominant task).
    """
    from analysis.matching.timeline import TimelineConfig, build_timeline, save_timeline
    from graphdb.cli import open_store

    try:
        config = TimelineConfig(model=model, communities=tuple(communities or ()), level=level,
                                min_jaccard=min_jaccard, method=method, tasks=tuple(task or ()))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    with open_store(ctx) as (home, db):
        result = build_timeline(db, config)
    save_timeline(result, Path(out) if out else home / "matching")
    rows = []
    for final, chain in result.chains.items():
        task_now, purity = result.alignment.get(final, (None, 0.0))
        first = result.alignment.get(chain.communities[0], (None, 0.0))
        rows.append({"community": final.rsplit("|", 1)[-1], "size": len(result.runs[-1].communities[final]),
                     "emergence_step": chain.emergence, "links": len(chain.jaccard),
                     "task_then": first[0], "purity_then": first[1], "task_now": task_now, "purity_now": purity})
    render([_round(r) for r in rows], list(rows[0]) if rows else ["community"], Format.TABLE,
           title=f"{model}: emergence of the communities at {result.runs[-1].checkpoint} "
                 f"(checkpoints {', '.join(str(r.step) for r in result.runs)})")
    typer.echo(f"table: {result.csv}\nplot:  {result.png}")


@match_app.command("sizes")
def sizes(
    ctx: typer.Context,
    small: Annotated[str, typer.Option(help="The smaller model, as stored.")] = "mt-small",
    large: Annotated[str, typer.Option(help="The larger model, as stored.")] = "mt-large",
    small_run: Annotated[str | None, typer.Option(help="Community run of the small model. [default: newest at its final checkpoint]")] = None,
    large_run: Annotated[str | None, typer.Option(help="Community run of the large model. [default: newest at its final checkpoint]")] = None,
    level: Annotated[int, typer.Option(help="Community hierarchy level.")] = 0,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Prompts (repeatable). [default: the runs' tasks]")] = None,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Prompts per task.")] = 32,
    min_similarity: Annotated[float, typer.Option(help="A pair recurs at this activation similarity (and the same dominant task).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the prompts.")] = 0,
    out: Annotated[str | None, typer.Option(help="Directory for the CSV. [default: DATA_DIR/matching]")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Which communities recur across sizes: pairs by activation similarity of their members on
    the same prompts (mean of best matches), with each side's dominant task and purity."""
    from analysis.matching.sizes import SizesConfig, compare_sizes, save_sizes
    from graphdb.cli import open_store

    try:
        config = SizesConfig(small=small, large=large, small_run=small_run, large_run=large_run, level=level,
                             tasks=tuple(task or ()), examples=examples, seed=seed, min_similarity=min_similarity)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    bars, progress = _bars()
    with open_store(ctx) as (home, db), bars.progress:
        result = compare_sizes(db, config, device=device, progress=progress)
    save_sizes(result, Path(out) if out else home / "matching")
    rows = [_round({**r, "small": r["small"].rsplit("|", 1)[-1], "large": r["large"].rsplit("|", 1)[-1]})
            for r in result.rows]
    render(rows, list(rows[0]) if rows else ["small"], Format.TABLE,
           title=f"{small} ({result.small.run}) vs {large} ({result.large.run}): "
                 f"{sum(r['recurs'] for r in result.rows)} of {len(rows)} pairs recur")
    typer.echo(f"table: {result.csv}")
