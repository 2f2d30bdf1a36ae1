"""``mechgraph trace``: the replacement graph of one prompt, pruned, scored and stored.

Registered by the CLI root (``analysis/cli.py``) as ``app.command("trace")(trace_command)``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from graphdb.tables import Format, render


def trace_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec: zoo:NAME[@CKPT], smollm2-135m, hf:NAME or path:DIR.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt (BOS is prepended).")],
    transcoders: Annotated[str | None, typer.Option("--transcoders", "-T", help="Transcoder spec: path:DIR (a CLT, a set directory, or one transcoder), SPEC,SPEC,... (one per layer), release:RELEASE, or zoo:NAME@CKPT[/clt] (the zoo's, from `zoo build --transcoders`).", show_default="for a zoo model, the zoo's per-layer transcoders of its checkpoint; for smollm2-135m, zoo:smollm2-135m")] = None,
    target: Annotated[str | None, typer.Option("--target", help="ANSWER/COUNTERFACTUAL: trace this logit difference instead of the top logits.")] = None,
    node_threshold: Annotated[float, typer.Option(help="Pruning keeps the nodes carrying this share of influence.")] = 0.8,
    edge_threshold: Annotated[float, typer.Option(help="Pruning keeps the edges carrying this share of edge influence.")] = 0.98,
    max_feature_nodes: Annotated[int | None, typer.Option(help="Compute in-edges of at most this many features (most influential first).")] = None,
    max_n_logits: Annotated[int, typer.Option(help="At most this many logit targets.")] = 10,
    desired_logit_prob: Annotated[float, typer.Option(help="Logit targets cover this much probability.")] = 0.95,
    batch_size: Annotated[int, typer.Option(help="Targets per backward pass (memory vs speed).")] = 256,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Write the pruned graph into Neo4j.")] = True,
    device: Annotated[str, typer.Option(help="Torch device: cpu or cuda.")] = "cpu",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.TABLE,
    ray: Annotated[str | None, typer.Option("--ray", metavar="ADDRESS", help="Compute the adjacency rows (batches of --batch-size targets) as tasks on a Ray cluster: ADDRESS is local (a private single-node cluster on loopback), auto (the cluster this machine has joined) or the head node's HOST:PORT. The rows are merged, pruned and stored here: the graph one process stores (README: Many workers on Ray). Needs the ray extra.")] = None,
) -> None:
    """Trace one prompt through the local replacement model (transcoders in place of MLPs,
    attention patterns and normalisation frozen): every active feature, error node, token and
    target, with exact direct-effect edges; prune by influence and print node/edge counts, the
    replacement and completeness scores and the run and prompt ids. Stores the pruned graph
    (idempotently) unless --no-store; starts the embedded Neo4j unless NEO4J_URI is set."""
    from ingest.cli import Bars
    from ingest.replacement.config import TraceConfig
    from ingest.replacement.jobs import TraceRequest, check_transcoder_spec, trace

    try:
        if ray is not None:
            from ingest.distributed.cluster import check_address
            ray = check_address(ray)
        transcoders = check_transcoder_spec(transcoders, model)
        config = TraceConfig(max_n_logits=max_n_logits, desired_logit_prob=desired_logit_prob, batch_size=batch_size,
                             max_feature_nodes=max_feature_nodes, node_threshold=node_threshold,
                             edge_threshold=edge_threshold)
        request = TraceRequest(model=model, transcoders=transcoders, prompt=prompt, target=target, config=config,
                               device=device)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    bars = Bars()
    progress = bars.stages()

    def estimate(e: Any) -> None:  # before the run, on stderr with the progress bars (not in JSON mode:
        if fmt is not Format.JSON:   # a runner that merges the streams would read it as part of the document)
            typer.echo(e.describe(), err=True)

    def run(db: Any = None) -> Any:
        if ray is None:
            return trace(request, db=db, progress=progress, on_estimate=estimate)
        from ingest.distributed.trace import ray_trace
        result, units = ray_trace(request, db=db, address=ray, progress=progress, on_estimate=estimate)
        typer.echo(f"Ray: {units.computed} units computed", err=True)
        return result

    if store:
        from graphdb.connection import connect
        from graphdb.embedded import ensure_running
        from graphdb.settings import data_dir

        home = data_dir(ctx.obj.data_dir if ctx.obj else None)
        ensure_running(home)
        with connect(data=home) as db, bars.progress:
            result = run(db)
    else:
        with bars.progress:
            result = run()
    targets = [{"target": t.label, "weight": round(t.weight, 4),
                "value": round(float(result.graph.value[result.graph.target_start + j]), 4)}
               for j, t in enumerate(result.graph.targets)]
    if fmt is Format.JSON:  # one JSON document: the summary (run and prompt ids first) with its targets
        render([{**_summary(result), "targets": targets}], [], fmt)
        return
    render([_summary(result)], list(_summary(result)), fmt,
           title=f"run {result.run}" + (f", prompt {result.prompt}" if result.prompt else " (not stored)"))
    render(targets, ["target", "weight", "value"], fmt, title="targets")


def _summary(result: Any) -> dict[str, Any]:
    g = result.graph
    return {"run": result.run, "prompt": result.prompt, "tokens": g.n_pos, "active_features": int(g.active_features.shape[0]), "nodes": g.n_nodes,
            "edges": int((g.adjacency != 0).sum()), "pruned_nodes": result.pruned_nodes,
            "pruned_edges": result.pruned_edges, "replacement": round(result.full.replacement, 4),
            "completeness": round(result.full.completeness, 4),
            "pruned_replacement": round(result.pruned_scores.replacement, 4),
            "pruned_completeness": round(result.pruned_scores.completeness, 4),
            "seconds": round(result.seconds, 1)}
