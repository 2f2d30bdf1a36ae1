"""``mechgraph describe``: feature descriptions (top contexts and a label) onto :Feature nodes.

Registered by the CLI root (``analysis/cli.py``); nothing heavy is imported at import time.
"""

from __future__ import annotations

from typing import Annotated

import typer

from graphdb.tables import Format, render


def describe_command(
    ctx: typer.Context,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model spec (zoo:NAME[@CKPT], smollm2-135m, hf:NAME, path:DIR); repeatable.")] = None,
    zoo: Annotated[bool, typer.Option("--zoo", help="Every checkpoint of every built zoo model, its SAEs and transcoder sets (and SmolLM2 if its SAEs are built).")] = False,
    dict_: Annotated[list[str] | None, typer.Option("--dict", "-d", help="Dictionary spec (repeatable); default: the zoo model's SAEs (and its transcoders).")] = None,
    transcoders: Annotated[list[str] | None, typer.Option("--transcoders", "-T", help="Transcoder set spec (zoo:NAME@CKPT[/clt], path:DIR, ...); repeatable. Default for a zoo model without --dict: its checkpoint's zoo sets.")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Task whose prompts are run (repeatable), or 'corpus' for the zoo's text corpus.")] = None,
    examples: Annotated[int, typer.Option(help="Prompts per task (or corpus sequences).")] = 32,
    top_k: Annotated[int, typer.Option(help="Top-activating contexts kept per latent.")] = 8,
    window: Annotated[int, typer.Option(help="Tokens of context shown, up to the activating one.")] = 6,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the prompts drawn.")] = 0,
    device: Annotated[str, typer.Option(help="Torch device: cpu or cuda.")] = "cpu",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.TABLE,
) -> None:
    """Describe dictionary latents: each latent's top-activating contexts on task prompts (or the
    corpus) and a short automatic label from them, written on its :Feature node (description,
    top_contexts, top_activations); exports show the label as the clerp."""
    from ingest.cli import Bars
    from ingest.describe.contexts import DEFAULT_TASKS, DescribeConfig, describe, zoo_model_specs
    from mechgraph.errors import ConfigError

    models = list(model or [])
    if zoo:
        models += zoo_model_specs()
        if not models:
            raise ConfigError("the zoo has no built models (`mechgraph zoo build`)")
    if not models:
        raise ConfigError("name a model with --model, or --zoo for every zoo model")
    if (dict_ or transcoders) and len(models) > 1:
        raise ConfigError("--dict and --transcoders name dictionaries of one model; give one --model with them")
    try:
        configs = [DescribeConfig(model=m, dicts=tuple(dict_ or ()), transcoders=tuple(transcoders or ()),
                                  tasks=tuple(task or DEFAULT_TASKS), examples=examples, top_k=top_k, window=window,
                                  batch_size=batch_size, seed=seed)
                   for m in models]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    from graphdb.connection import connect
    from graphdb.embedded import ensure_running
    from graphdb.settings import data_dir

    home = data_dir(ctx.obj.data_dir if ctx.obj else None)
    ensure_running(home)
    bars = Bars()
    rows = []
    with connect(data=home) as db, bars.progress:
        progress = bars.stages()
        for c in configs:
            for d in describe(db, c, device=device, progress=lambda h, n, t, m=c.model: progress(f"{m} {h}", n, t)):
                rows.append(d.__dict__)
    render(rows, ["model", "checkpoint", "hook", "dictionary", "latents", "active", "run"], fmt,
           title=f"described {sum(r['latents'] for r in rows)} latents of {len(rows)} dictionaries")
