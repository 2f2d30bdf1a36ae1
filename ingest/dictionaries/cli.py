"""``mechgraph dict train`` and ``mechgraph dict svd``: dictionaries for any model, on your text.

Both write one directory per hook under ``-o DIR``, loadable as ``path:DIR/<hook>`` by
``ingest --dicts`` or all at once by ``ingest --dicts-all 'path:DIR/{hook}@SITES'``, and print
the zoo's metrics table (explained variance, L0, dead fraction, spliced/clean accuracy with
``--task``) on held-out rows of the text. The work is :func:`ingest.dictionaries.make.make_dictionaries`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from graphdb.tables import Format, render

dict_app = typer.Typer(help="Make dictionaries for any model on your own text: SAEs (sae_lens) or SVD/PCA "
                            "bases, one directory per hook, for `ingest --dicts-all 'path:DIR/{hook}@...'`.",
                       no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec: zoo:NAME[@CKPT], smollm2-135m, hf:NAME or path:DIR.")]
TextOpt = Annotated[str | None, typer.Option("--text", help="FILE (a text file, one prompt per non-empty line) or jsonl:FILE (rows: a string, {\"text\": ...}, {\"prompt\": ...}, or task rows with clean/counterfactual).")]
SampleOpt = Annotated[int | None, typer.Option("--sample", help="Instead of --text: N sequences sampled from the model, from BOS (seeded).")]
HookOpt = Annotated[list[str], typer.Option("--hook", "--hooks", help="Hook (repeatable): a full name (blocks.0.hook_mlp_out) or a site for every layer: resid_pre, attn_out, resid_mid, mlp_out, resid_post.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory: one dictionary per hook in DIR/<hook>, and DIR/manifest.json.")]
ContextOpt = Annotated[int, typer.Option("--context-size", help="Tokens per row (BOS included); longer prompts are cut, shorter ones padded.")]
TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Also score task accuracy with each dictionary spliced in (spliced/clean), on this task's held-out prompts.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sampling, the train/held-out split and the training.")]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu or cuda.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


@dict_app.command("train")
def train(model: ModelOpt, hook: HookOpt, out: OutOpt, text: TextOpt = None, sample: SampleOpt = None,
          architecture: Annotated[str, typer.Option(help="SAE architecture: topk, standard or jumprelu.")] = "topk",
          expansion: Annotated[int, typer.Option(help="Latents per activation dimension (d_sae = expansion * d_in).")] = 4,
          k: Annotated[int, typer.Option("--k", help="Active latents per token (topk).")] = 16,
          l1: Annotated[float, typer.Option("--l1", help="Sparsity coefficient (standard: L1, jumprelu: L0).")] = 5.0,
          tokens: Annotated[int, typer.Option("--tokens", help="Training tokens per SAE (the text is looped over).")] = 120_000,
          batch_tokens: Annotated[int, typer.Option(help="Tokens per training batch.")] = 1024,
          lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-3,
          context_size: ContextOpt = 64, task: TaskOpt = None, seed: SeedOpt = 0,
          device: DeviceOpt = "cpu", fmt: FormatOpt = Format.TABLE) -> None:
    """Train one SAE per hook with sae_lens on your text (BOS and padding positions excluded).

    Each lands in OUT/<hook> in sae_lens' format, its config recording the text it was trained
    on (dataset_path); the metrics are measured on a held-out tenth of the rows.
    """
    from ingest.zoo.saes import SAETrainConfig
    try:
        cfg = SAETrainConfig(architecture=architecture, expansion=expansion, k=k, l1_coefficient=l1,  # type: ignore[arg-type]
                             training_tokens=tokens, warm_tokens=tokens, batch_tokens=batch_tokens, lr=lr,
                             context_size=context_size, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    _make(model, hook, out, text, sample, context_size, task, seed, device, fmt, kind="sae", sae=cfg)


@dict_app.command("svd")
def svd(model: ModelOpt, hook: HookOpt, out: OutOpt, text: TextOpt = None, sample: SampleOpt = None,
        rank: Annotated[int | None, typer.Option(help="Components kept.", show_default="d_in, the full basis (exact reconstruction)")] = None,
        center: Annotated[bool, typer.Option("--center/--no-center", help="Subtract the mean before the SVD.")] = True,
        context_size: ContextOpt = 64, task: TaskOpt = None, seed: SeedOpt = 0,
        device: DeviceOpt = "cpu", fmt: FormatOpt = Format.TABLE) -> None:
    """Fit one SVD/PCA basis per hook on the activations of your text (BOS and padding left out).

    Each is saved in OUT/<hook> (svd.json + svd.safetensors); the metrics are measured on a
    held-out tenth of the rows.
    """
    _make(model, hook, out, text, sample, context_size, task, seed, device, fmt, kind="svd", rank=rank, center=center)


def _make(model_spec: str, hooks: list[str], out: Path, text: str | None, sample: int | None, context_size: int,
          task: str | None, seed: int, device: str, fmt: Format, **kwargs: Any) -> None:
    from ingest.cli import Bars
    from ingest.dictionaries.make import expand_hooks, make_dictionaries, text_rows
    from ingest.zoo.specs import load_model

    model = load_model(model_spec, device=device)
    names = expand_hooks(hooks, int(model.cfg.n_layers))
    data = text_rows(model, text=text, sample=sample, context_size=context_size, seed=seed)
    task_batch = None
    if task is not None:
        from ingest.tasks import get_task
        from ingest.tasks.encode import encode_examples
        task_batch = encode_examples(model.tokenizer, get_task(task).examples(64, seed=seed, split="test")).to(device)
    bars = Bars()
    with bars.progress:
        manifest = make_dictionaries(model, model_spec, names, data, out, task_batch=task_batch, seed=seed,
                                     device=device, progress=bars.stages(), **kwargs)
    typer.echo(f"{len(names)} {kwargs['kind'].upper()} dictionaries in {out.resolve()} from {data.source}; "
               f"use them with ingest --dicts-all 'path:{out.resolve()}/{{hook}}@SITES'", err=True)
    rows = [_row(model_spec, hook, m) for hook, m in manifest["dictionaries"].items()]
    render(rows, list(rows[0]), fmt, title=f"{kwargs['kind'].upper()} dictionaries on "
                                           f"{manifest['held_out_tokens']} held-out tokens")


def _row(model: str, hook: str, m: dict[str, Any]) -> dict[str, Any]:
    """The zoo's SAE row (:func:`ingest.zoo.report.sae_row`) plus the spec to load it by."""
    from ingest.zoo.report import sae_row
    row = sae_row(model, None, hook, m)
    del row["step"], row["dec_cos_prev"]  # no checkpoints here
    return {**row, "spec": m["spec"]}
