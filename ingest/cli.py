"""``mechgraph zoo ...`` and ``mechgraph model ...``: build and inspect the model zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from graphdb.tables import Format, render

zoo_app = typer.Typer(help="Build and list the model zoo: toy multi-task transformers, their "
                           "training checkpoints and SAEs, plus SmolLM2-135M.", no_args_is_help=True)
model_app = typer.Typer(help="Load and check a model named by a spec (zoo:NAME@CKPT, smollm2-135m, "
                             "hf:NAME, path:DIR).", no_args_is_help=True)

ZooOpt = Annotated[str | None, typer.Option("--zoo", envvar="MECHGRAPH_ZOO",
                                            help="Zoo directory.", show_default="zoo/ in the mechgraph cache, shared by every clone")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def _device(value: str) -> str:
    # Checked while the command line is parsed: before the graph store opens or a model loads.
    from ingest.device import check_device
    return check_device(value)


#: The torch device of every command that runs a model.
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:N or mps.", callback=_device)]


class Bars:
    """``progress(description, total) -> advance`` on a rich progress display (stderr, when it is a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        console = Console(stderr=True)
        # Bars only on a terminal: captured stderr (a log file, a pipe, CI) holds the messages
        # and the error line, not frames of bars.
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 disable=not console.is_terminal)

    def __call__(self, description: str, total: int) -> Any:
        task = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task, n)

    def stages(self) -> Any:
        """A ``progress(stage, done, total)`` callback: one bar per stage name."""
        handles: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in handles:
                handles[stage] = self.progress.add_task(stage, total=total)
            self.progress.update(handles[stage], completed=done, total=total)

        return progress

    def ingest(self, prefix: str = "") -> Any:
        """An ingest progress callback: one bar per task, with the edges accumulated so far."""
        handles: dict[str, Any] = {}

        def progress(name: str, done: int, total: int, edges: int) -> None:
            if name not in handles:
                handles[name] = self.progress.add_task(prefix + name, total=total)
            self.progress.update(handles[name], completed=done, description=f"{prefix}{name}: {edges:,} accumulated edges")

        return progress


@zoo_app.command("build")
def build(
    size: Annotated[list[str] | None, typer.Option("--size", "-s", help="Build only this size (repeatable): mt-small, mt-large.")] = None,
    smollm2: Annotated[bool, typer.Option("--smollm2/--no-smollm2", help="Also train SAEs on SmolLM2-135M layers (needs the smollm2 extra).")] = False,
    transcoders: Annotated[bool, typer.Option("--transcoders/--no-transcoders", help="Also train TopK transcoders: every MLP of every mt-small checkpoint and of the final mt-large, and a cross-layer transcoder for the final mt-small (a separate cached step; `mechgraph demo` runs it); with --smollm2, also all 30 MLPs of SmolLM2-135M (~40 min on 2 CPU cores, cached).")] = False,
    device: DeviceOpt = "cpu",
    zoo: ZooOpt = None,
) -> None:
    """Train the toy models (2 sizes, log-spaced checkpoints) and an SAE per hook and checkpoint.

    Cached: models whose config is unchanged are not rebuilt, so a second run does nothing.
    Prints the emergence table (held-out accuracy per task per checkpoint) and SAE summary.
    """
    from ingest.zoo.build import build_zoo
    from ingest.zoo.store import list_models, zoo_root

    root = zoo_root(zoo)
    bars = Bars()
    with bars.progress:
        result = build_zoo(root, only=tuple(size or ()), device=device, progress=bars)
        if smollm2:  # says itself whether it was up to date
            from ingest.zoo.smollm2_saes import build_smollm2_saes
            build_smollm2_saes(root, device=device, progress=bars.progress.console.log)
        if transcoders:
            from ingest.zoo.transcoder_build import build_zoo_transcoders
            made, kept = build_zoo_transcoders(root, device=device, say=bars.progress.console.log)
            if not made:
                typer.echo(f"zoo transcoders up to date ({', '.join(kept) or 'no toy models'})", err=True)
        if smollm2 and transcoders:  # says itself whether it was up to date
            from ingest.zoo.smollm2_transcoders import build_smollm2_transcoders
            build_smollm2_transcoders(root, device=device, say=bars.progress.console.log, progress=bars.stages())
    if not result.built:
        typer.echo(f"toy models up to date in {root}: nothing to do ({', '.join(result.cached)} cached)",
                   err=True)
    else:
        typer.echo(f"built {', '.join(result.built) or 'nothing new'} in {result.seconds / 60:.1f} min "
                   f"into {root}", err=True)
    _print_zoo(list_models(root), root, Format.TABLE, saes=False)


@zoo_app.command("list")
def list_cmd(zoo: ZooOpt = None, fmt: FormatOpt = Format.TABLE,
             saes: Annotated[bool, typer.Option("--saes/--no-saes", help="Also list every SAE with its metrics.")] = True) -> None:
    """Models, checkpoints and SAEs in the zoo, with their metrics."""
    from ingest.zoo.store import list_models, zoo_root
    root = zoo_root(zoo)
    manifests = list_models(root)
    if not manifests:
        typer.echo(f"the zoo in {root} is empty; run `mechgraph zoo build`", err=True)
        return
    _print_zoo(manifests, root, fmt, saes=saes)


def _print_zoo(manifests: dict[str, Any], root: Path, fmt: Format, *, saes: bool) -> None:
    from ingest.zoo.build import median_decoder_cosine
    from ingest.zoo.report import emergence_rows, emergence_step, sae_rows

    rows = emergence_rows(manifests)
    if rows:
        render(rows, list(rows[0]), fmt, title="held-out accuracy per task per checkpoint (emergence)")
        diff = emergence_rows(manifests, "logit_diff")
        render(diff, list(diff[0]), fmt, title="mean logit difference (answer - counterfactual answer)")
        first = [{"model": n, **{t: emergence_step(m, t) for t in m["checkpoints"][0]["tasks"]}}
                 for n, m in manifests.items() if m.get("checkpoints")]
        render(first, list(first[0]), fmt, title="first checkpoint step with accuracy >= 0.95")
    summary = []
    for name, m in manifests.items():
        srows = sae_rows({name: m})
        if not srows:
            continue
        ratios = [r["spliced/clean"] for r in srows if r["spliced/clean"] is not None]
        final = [r for r in srows if r["step"] == srows[-1]["step"]]
        summary.append({"model": name, "saes": len(srows), "min_ev": min(r["ev"] for r in srows),
                        "mean_l0": round(sum(r["l0"] for r in srows) / len(srows), 1),
                        "max_dead": max(r["dead"] for r in srows),
                        "min_spliced/clean": min(ratios) if ratios else None,
                        "final_min_spliced/clean": min((r["spliced/clean"] for r in final if r["spliced/clean"] is not None), default=None),
                        "median_dec_cos_prev": None if (cos := median_decoder_cosine(m)) is None else round(cos, 3),
                        "build_min": round(m.get("build_seconds", 0) / 60, 1)})
    if summary:
        render(summary, list(summary[0]), fmt, title="SAEs per model")
    from ingest.zoo.transcoder_build import transcoder_rows
    trows = transcoder_rows(manifests, root)
    if trows:
        columns = list(dict.fromkeys(k for r in trows for k in r))
        render(trows, columns, fmt, title="transcoders: max FVU (unexplained MLP-output variance), mean L0 and max dead fraction over "
                                          "layers; per task, the replacement model's accuracy / the clean model's")
    from ingest.zoo.smollm2_transcoders import smollm2_transcoder_rows
    smol = smollm2_transcoder_rows(root)
    if smol:
        render(smol, list(smol[-1]), fmt, title="SmolLM2-135M transcoders (held-out corpus rows): FVU, L0 and dead fraction "
                                                "per layer; 'all': their means and the replacement model's next-token loss "
                                                "and top-1 agreement with the clean model")
    if saes:
        srows = sae_rows(manifests)
        if srows:
            render(srows, list(srows[0]), fmt, title="every SAE")
    png = root / "emergence.png"
    if png.is_file() and fmt is Format.TABLE:
        typer.echo(f"emergence plot: {png}", err=True)


@model_app.command("check")
def check(spec: Annotated[str, typer.Argument(help="zoo:NAME[@CKPT], smollm2-135m, hf:NAME or path:DIR")],
          device: DeviceOpt = "cpu",
          prompt: Annotated[str, typer.Option(help="Prompt whose top next token is printed.")] = "The capital of France is",
          task: Annotated[list[str] | None, typer.Option("--task", "-t", help="Task spec to score (repeatable): a built-in name, jsonl:PATH, py:MODULE:FUNCTION.", show_default="every built-in task the tokenizer can encode")] = None,
          examples: Annotated[int, typer.Option("--examples", "-n", help="Held-out examples per task.")] = 256,
          zoo: ZooOpt = None) -> None:
    """Load a model and check it: SmolLM2 against the transformers implementation (max |logit
    difference| and top next token); any other model's accuracy and mean logit difference
    (answer - counterfactual answer) on each task's held-out prompts.

    A path:DIR is a mechgraph checkpoint (tl_config.json + model.safetensors) or a Hugging Face
    checkpoint (config.json + safetensors, loaded offline and converted by architecture), with a
    tokenizer: Hugging Face tokenizer files, a SentencePiece tokenizer.model or a vocab.txt (one
    token per line, line i = id i). Answers must be single tokens; prompts are right-padded and
    scored at their own last token.
    """
    from ingest.zoo.specs import load_model, parse_model_spec
    from ingest.zoo.store import zoo_root

    parsed = parse_model_spec(spec)
    if parsed.kind == "smollm2":
        from ingest.zoo.smollm2 import check_against_hf
        r = check_against_hf(prompt=prompt, device=device)
        typer.echo(f"{spec}: max |logit difference| TransformerLens vs transformers = "
                   f"{r.max_abs_logit_diff:.3g} over {r.n_tokens} tokens (tolerance {r.tolerance:g})")
        typer.echo(f"top next token of {prompt!r}: {r.top_token!r} (p={r.top_prob:.3f}; "
                   f"transformers: {r.hf_top_token!r})")
        if not r.ok:
            raise typer.Exit(1)
        return
    model = load_model(parsed, device=device, zoo=zoo_root(zoo))
    typer.echo(f"{parsed}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, {model.cfg.n_heads} heads, "
               f"d_vocab {model.cfg.d_vocab}")
    from ingest.errors import TaskError
    from ingest.tasks import builtin_task_names, get_task
    from ingest.tasks.encode import encode_examples, evaluate
    rows, skipped = [], []
    for name in task or builtin_task_names():
        t = get_task(name)
        n = min(examples, t.available("test"))  # a check clamps to what the task has, and says so
        if n < examples:
            typer.echo(f"{t.name}: {n} held-out examples (of the {examples} asked for) are all it has", err=True)
        try:
            batch = encode_examples(model.tokenizer, t.examples(n, seed=0, split="test")).to(device)
        except TaskError as e:
            if task:  # a task the user named must work
                raise
            skipped.append(f"{name} ({e})")
            continue
        m = evaluate(model, batch)[t.name]
        rows.append({"task": t.name, "accuracy": round(m["accuracy"], 3), "logit_diff": round(m["logit_diff"], 3), "n": m["n"]})
    for line in skipped:
        typer.echo(f"skipped {line}", err=True)
    if not rows:
        raise TaskError("no built-in task can be encoded by this model's tokenizer; name one with --task "
                        "(jsonl:PATH, py:MODULE:FUNCTION)")
    render(rows, ["task", "accuracy", "logit_diff", "n"], Format.TABLE, title="held-out prompts")


def ingest_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec: zoo:NAME[@CKPT], smollm2-135m, hf:NAME or path:DIR (a Hugging Face or mechgraph checkpoint directory with its tokenizer; `mechgraph model check --help` says what it may contain).")],
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task spec (repeatable): one task-labelled graph each. Built in: ioi, induction, greater_than, sva, bracket_depth, bias_in_bios.")],
    dicts: Annotated[list[str] | None, typer.Option("--dicts", "-d", help="Dictionary spec (repeatable): zoo:NAME@CKPT/HOOK, path:DIR, identity:D/HOOK, release:RELEASE/SAE_ID. [default: the model's zoo SAEs picked by --graph]")] = None,
    graph: Annotated[str, typer.Option(help="Which zoo SAEs to use without --dicts: resid (resid_post of every layer) or module (attn_out and mlp_out of every layer); or transcoders: one replacement graph per prompt (with --transcoders), aggregated into the task graph; or component: whole components (embedding, each head, each MLP, output) with EAP-IG edges, no dictionaries (README: the attribution graph).")] = "resid",
    dicts_all: Annotated[list[str] | None, typer.Option("--dicts-all", help="One dictionary kind on sites of every layer (repeatable): SOURCE[@SITES], SOURCE = identity, svd (fitted on the tasks' train prompts) or a spec with a {hook} / {layer} placeholder (path:DIR/{hook}); SITES = comma list of resid_pre, attn_out, resid_mid, mlp_out, resid_post [default: resid_post]. E.g. identity@resid_post, svd@attn_out,mlp_out.")] = None,
    transcoders: Annotated[str | None, typer.Option("--transcoders", "-T", help="With --graph transcoders: the transcoder spec (path:DIR, SPEC,SPEC,..., release:RELEASE, zoo:NAME@CKPT[/clt]); a zoo model defaults to the zoo's per-layer transcoders of its checkpoint.")] = None,
    examples: Annotated[int, typer.Option("--examples", "-n", help="Examples per task.")] = 32,
    batch_size: Annotated[int, typer.Option(help="Examples per forward/backward batch (memory vs speed).")] = 8,
    split: Annotated[str, typer.Option(help="Task split the examples come from: test (held out from training), train, or all (every example; a JSONL row's own \"split\" field otherwise decides, else a hash of its prompt).")] = "test",
    steps: Annotated[str, typer.Option("--steps", "-k", help="Integrated-gradients steps; 1 = attribution patching; auto = the first of 8, 16, 32, 64, 128 whose completeness residual on the task's first batch is within --tolerance.")] = "8",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest acceptable completeness residual: Σ|Σ in-edges - Δ| / Σ|Δ| over a dictionary's (or the output's) targets, Δ the target's change from baseline to clean; above it ingest warns.")] = 0.05,
    baseline: Annotated[str, typer.Option(help="Baseline of every node: zero, counterfactual (the task's counterfactual prompt) or mean (over a reference set).")] = "counterfactual",
    alpha: Annotated[str, typer.Option(help="Position aggregation of one example's u@p -> d@q weights: sum, mean or max (largest magnitude, signed).")] = "sum",
    alpha_abs: Annotated[bool, typer.Option("--alpha-abs", help="Aggregate |w| over positions instead of signed w.")] = False,
    beta: Annotated[str, typer.Option(help="Example aggregation: mean, sum or max (largest magnitude, signed).")] = "mean",
    threshold: Annotated[float, typer.Option("--threshold", help="Keep edges with |weight| >= this (after alpha and beta). Edges under the noise floor are never kept, 0 included: see --noise-rel.")] = 0.01,
    noise_rel: Annotated[float, typer.Option("--noise-rel", help="Noise floor: drop an edge with |weight| < this times the largest |weight| into its target (float32 rounding, e.g. exact zeros seen through a rotated basis); counted as noise_dropped. 0 keeps all.")] = 1e-6,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep at most this many in-edges per downstream node (0 = all).")] = 0,
    example_threshold: Annotated[float | None, typer.Option(help="Drop per-example weights below this before beta (memory); default threshold/10.")] = None,
    no_embed: Annotated[bool, typer.Option("--no-embed", help="No embedding input node (the embedding is held at its clean value).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the task examples.")] = 0,
    device: DeviceOpt = "cpu",
    fmt: FormatOpt = Format.TABLE,
    ray: Annotated[str | None, typer.Option("--ray", metavar="ADDRESS", help="Run the batches (or, with --graph transcoders, the prompts) as tasks on a Ray cluster: ADDRESS is local (a private single-node cluster on loopback), auto (the cluster this machine has joined) or the head node's HOST:PORT. The units' partial results are merged here into the graph one process would store, and written from here (README: Many workers on Ray). Needs the ray extra.")] = None,
    bulk: Annotated[Path | None, typer.Option("--bulk", metavar="SHARDS_DIR", help="Write the graph as shards for Neo4j's importer into SHARDS_DIR (new or empty) instead of sending transactions; nothing is written to Neo4j. Load them with `mechgraph --data-dir NEW_DIR db load SHARDS_DIR`: Neo4j Community imports only into an empty database, so a bulk load makes a NEW store (README: Bulk loading). Not with --graph transcoders.")] = None,
) -> None:
    """Compute a model's attribution graph for each task and write it into Neo4j.

    With --graph transcoders: one replacement graph per example (transcoders in place of the
    MLPs, the task's logit difference as target), each stored pruned and position-resolved,
    then aggregated into the task graph (--beta mean or sum over prompts).

    Nodes: the latents of each dictionary active on the task's prompts, one error node per
    dictionary, the embedding and the task's output (logit difference). Edges: integrated
    gradients of each downstream latent (or the metric) with respect to each upstream node,
    with every other dictionary node held fixed (direct effects), aggregated over positions
    (alpha) and examples (beta), then thresholded. A :Run node records the configuration.

    Resumable: interrupted, the same command continues where it stopped; re-running a
    finished run changes nothing. Starts the embedded Neo4j unless NEO4J_URI is set.
    """
    if ray is not None:
        from ingest.distributed.cluster import check_address
        try:
            ray = check_address(ray)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        if graph == "component":
            raise typer.BadParameter("--ray splits dictionary graphs (--graph resid, module, transcoders); "
                                     "--graph component runs in one process")
    if bulk is not None and graph == "transcoders":
        raise typer.BadParameter("--bulk writes --graph resid, module and component; --graph transcoders reads its "
                                 "stored prompt graphs back to aggregate the task graph, so it writes online")
    if graph == "transcoders":
        _ingest_transcoders(ctx, model, task, transcoders, examples, split, seed, beta, device, fmt, ray)
        return
    from ingest.attribution.config import AttributionConfig
    from ingest.pipeline import IngestConfig

    try:
        if steps != "auto" and not steps.strip().isdigit():
            raise ValueError(f"--steps must be a positive integer or auto, got {steps!r}")
        attribution = AttributionConfig(steps="auto" if steps == "auto" else int(steps), tolerance=tolerance,  # type: ignore[arg-type]
                                        baseline=baseline, alpha=alpha, alpha_abs=alpha_abs, beta=beta,
                                        threshold=threshold, top_k=top_k, example_threshold=example_threshold,
                                        noise_rel=noise_rel)
        config = IngestConfig(model=model, tasks=tuple(task), dicts=tuple(dicts or ()), graph=graph,  # type: ignore[arg-type]
                              dicts_all=tuple(dicts_all or ()),
                              examples=examples, batch_size=batch_size, split=split, seed=seed,  # type: ignore[arg-type]
                              include_embed=not no_embed, attribution=attribution)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    result = _run_ingest(ctx, config, device, ray, bulk)
    rows = [{"run": result.run, "task": t.task, "status": "up to date" if t.skipped else "written",
             "examples": None if t.skipped else t.examples, "features": None if t.skipped else t.features,
             "nodes_written": None if t.skipped else t.nodes, "edges": t.edges, "head_edges": t.head_edges,
             "noise_dropped": None if t.skipped else t.noise_dropped,
             "steps": None if t.skipped else t.steps,
             "residual": None if t.skipped else round(t.residual, 4),
             "metric_clean": None if t.skipped else round(t.metric_clean, 3),
             "metric_baseline": None if t.skipped else round(t.metric_base, 3),
             "seconds": round(t.seconds, 1)} for t in result.tasks]
    render(rows, list(rows[0]), fmt, title=f"run {result.run}: {result.model} @ {result.checkpoint}, "
                                           f"{len(result.dictionaries)} dictionaries, {result.seconds:.0f} s")
    typer.echo("nodes_written: every feature active somewhere in the task's data, the error nodes, the embedding "
               "and the output; `mechgraph report` counts the nodes with at least one stored edge (after "
               "--threshold and --top-k), so it is smaller", err=True)
    for t in result.tasks:
        if t.skipped:
            continue
        if config.attribution.steps == "auto":
            typer.echo(f"{t.task}: --steps auto chose K={t.steps} (completeness residual {t.residual:.3g}, "
                       f"tolerance {tolerance:g})", err=True)
        if not t.converged:
            where = max(t.residuals, key=t.residuals.__getitem__)
            typer.echo(f"warning: {t.task}: the integrated-gradients path has not converged at K={t.steps}: "
                       f"completeness residual {t.residual:.3g} at {where} (tolerance {tolerance:g}); "
                       "raise --steps or use --steps auto", err=True)
    for t in result.tasks:  # csv/json: stdout is the run table alone, one document
        heads = [h for h in t.heads if h["features"]]
        if heads and fmt is Format.TABLE:
            idle = len(t.heads) - len(heads)
            render(heads, list(heads[0]), fmt, title=f"{t.task}: features per argmax head (IN_HEAD), mean "
                                                     "share and assignment entropy (0 = one head, 1 = even)"
                                                     + (f"; {idle} heads are no active feature's argmax" if idle else ""))


def _run_ingest(ctx: typer.Context, config: Any, device: str, ray: str | None, bulk: Path | None) -> Any:
    """The ingest into the store (here or on Ray), or into shards with --bulk."""
    from graphdb.cli import open_store
    from ingest.pipeline import ingest

    bars = Bars()
    if bulk is not None:
        from graphdb.settings import data_dir
        from ingest.bulk import bulk_ingest
        home = data_dir(ctx.obj.data_dir if ctx.obj else None)   # the runs' resume state; no server
        with bars.progress:
            result, manifest = bulk_ingest(config, bulk, state_root=home / "runs", device=device,
                                           progress=bars.ingest(), ray=ray)
        typer.echo(f"wrote {manifest['counts']['nodes']:,} nodes and {manifest['counts']['relationships']:,} "
                   f"relationships as shards into {bulk}; load them into a NEW store (Neo4j Community imports only "
                   f"into an empty database): mechgraph --data-dir NEW_DIR db load {bulk}", err=True)
        return result
    with open_store(ctx) as (home, db), bars.progress:
        if ray is None:
            return ingest(db, config, state_root=home / "runs", device=device, progress=bars.ingest())
        from ingest.distributed.attribution import ray_ingest
        result, units = ray_ingest(db, config, state_root=home / "runs", address=ray, device=device,
                                   progress=bars.ingest())
    typer.echo(f"Ray: {units.computed} units computed, {units.resumed} taken from saved state", err=True)
    return result


def _ingest_transcoders(ctx: typer.Context, model: str, tasks: list[str], transcoders: str | None, examples: int,
                        split: str, seed: int, beta: str, device: str, fmt: Format, ray: str | None) -> None:
    """``ingest --graph transcoders``: the prompt graphs of each task and their task graph."""
    from graphdb.cli import open_store
    from ingest.replacement.jobs import TaskTraceConfig, check_transcoder_spec, ingest_task

    try:
        config = TaskTraceConfig(model=model, transcoders=check_transcoder_spec(transcoders, model), tasks=tuple(tasks),
                                 examples=examples, split=split, seed=seed, beta=beta)  # type: ignore[arg-type]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    bars = Bars()
    with open_store(ctx) as (home, db), bars.progress:
        if ray is None:
            run, results = ingest_task(db, config, device=device, progress=bars.stages())
        else:
            from ingest.distributed.prompts import ray_ingest_task
            run, results, units = ray_ingest_task(db, config, state_root=home / "runs", address=ray, device=device,
                                                  progress=bars.stages())
            typer.echo(f"Ray: {units.computed} units computed, {units.resumed} taken from saved state", err=True)
    rows = [{"run": run, "task": r.task, "prompts": len(r.prompts), "prompt_nodes": r.nodes, "prompt_edges": r.edges,
             "task_edges": r.task_edges, "replacement": round(r.replacement, 4),
             "completeness": round(r.completeness, 4), "seconds": round(r.seconds, 1)} for r in results]
    render(rows, list(rows[0]), fmt, title=f"run {run}: {model}, transcoders {config.transcoders}, beta {beta}")
