"""``mechgraph ingest --graph component``: one task's component graph, aggregated and written.

The edge weight is :mod:`ingest.attribution.components`' (EAP-IG between whole components:
the embedding, each head, each MLP, the output). No dictionaries are involved. The ingest run's
choices apply as they do to feature graphs (:class:`~ingest.attribution.config.AttributionConfig`):

* baseline: the path starts at the counterfactual prompt's embedding, zero, or the reference
  set's mean embedding; BOS and padding stay clean (they carry no nodes);
* steps K (``auto``: the first of ``AUTO_STEPS`` whose completeness residual on the task's first
  batch is within the tolerance); the residual is ``Σ_ex |Σ_v w_ex(embed → v) − ΔM_ex| /
  Σ_ex |ΔM_ex|``, ΔM the metric's change from the baseline to the clean embedding: the
  embedding's out-edges are integrated gradients of M at the embedding, so the gap is IG's
  quadrature error (component inputs are vectors; M is the one scalar to check against);
* alpha over source positions (sum, mean = sum / graph positions, max; ``alpha_abs``), beta over
  examples (mean, sum, max);
* the noise floor (``noise_rel`` of the largest |w| into the same target), then ``threshold``
  and ``top_k`` in-edges per target.

Nodes are keyed by :mod:`graphdb.keys`: the embedding is the feature graph's ``:Input`` node,
heads its ``:Head`` nodes, the output its ``:Output`` node, each MLP an ``:MLP`` node; edges
are ``ATTRIBUTES_TO`` with ``granularity = "component"``. A model whose attention is not causal
runs each prompt length without padding (:meth:`TaskBatch.unpadded`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from graphdb.keys import node_key
from graphdb.schema import Granularity, Label, Rel
from ingest.attribution.components import (baseline_embedding, component_nodes, component_scores,
                                           mean_embedding, parse_component)
from ingest.graph_rows import EMBED_NAME, METRIC

log = logging.getLogger(__name__)


def component_key(node: str, *, model: str, checkpoint: str, task: str) -> str:
    """The stored key of a component (``embed``, ``L{l}.H{h}``, ``L{l}.MLP``, ``output``)."""
    kind, layer, head = parse_component(node)
    base = {"model": model, "checkpoint": checkpoint}
    if kind == "embed":
        return node_key(Label.INPUT, **base, name=EMBED_NAME)
    if kind == "output":
        return node_key(Label.OUTPUT, **base, task=task, metric=METRIC)
    if kind == "mlp":
        return node_key(Label.MLP, **base, layer=layer)
    return node_key(Label.HEAD, **base, layer=layer, head=head)


def graph_positions(batch: Any) -> Any:
    """Positions that carry nodes: up to each prompt's last token, without BOS (as the feature graph)."""
    import torch

    pos = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)
    return (pos[None, :] <= batch.last[:, None]) & (pos[None, :] >= 1)


@dataclass
class ComponentAccumulator:
    """Sums over examples of each pair's per-example weight (after alpha), for beta."""

    nodes: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    total: Any = None        # [P] float64: sum over examples
    peak: Any = None         # [P]: the per-example weight of largest magnitude, signed
    n: int = 0
    metric_clean: float = 0.0
    metric_base: float = 0.0
    gap: float = 0.0         # Σ_ex |Σ_v w_ex(embed → v) − ΔM_ex|
    change: float = 0.0      # Σ_ex |ΔM_ex|

    def add(self, scores: Any, valid: Any, alpha: str, alpha_abs: bool) -> None:
        import torch

        s = scores.scores.double() * valid[None].double()      # [P, batch, pos]
        from_embed = torch.tensor([u == "embed" for u, _ in scores.pairs])
        dm = (scores.metric_clean - scores.metric_base).double()
        self.gap += float((s[from_embed].sum((0, 2)) - dm).abs().sum())
        self.change += float(dm.abs().sum())
        self.metric_clean += float(scores.metric_clean.sum())
        self.metric_base += float(scores.metric_base.sum())
        if alpha_abs:
            s = s.abs()
        if alpha == "max":
            idx = s.abs().argmax(-1, keepdim=True)
            w = s.gather(-1, idx)[..., 0]
        else:
            w = s.sum(-1)
            if alpha == "mean":
                w = w / valid.sum(-1).clamp(min=1).double()
        best = w.gather(1, w.abs().argmax(1, keepdim=True))[:, 0]  # [P]
        if self.total is None:
            self.nodes, self.pairs = scores.nodes, scores.pairs
            self.total, self.peak = w.sum(1), best
        else:
            self.total = self.total + w.sum(1)
            self.peak = torch.where(best.abs() > self.peak.abs(), best, self.peak)
        self.n += w.shape[1]

    @property
    def residual(self) -> float:
        return self.gap / self.change if self.change > 0 else 0.0

    def weights(self, beta: str) -> dict[tuple[str, str], float]:
        w = self.peak if beta == "max" else self.total / (max(self.n, 1) if beta == "mean" else 1)
        return {pair: float(x) for pair, x in zip(self.pairs, w.tolist(), strict=True)}


def keep_edges(weights: dict[tuple[str, str], float], *, noise_rel: float, threshold: float,
               top_k: int) -> tuple[dict[tuple[str, str], float], int]:
    """The noise floor (|w| < noise_rel × the largest |w| into the same target, counted when
    non-zero), then |w| >= threshold and w != 0, then the top_k in-edges of each target (0: all)."""
    peak: dict[str, float] = {}
    for (_, v), w in weights.items():
        peak[v] = max(peak.get(v, 0.0), abs(w))
    kept, noise = {}, 0
    for (u, v), w in weights.items():
        if noise_rel > 0 and abs(w) < noise_rel * peak[v]:
            noise += w != 0
        elif abs(w) >= threshold and w != 0:
            kept[u, v] = w
    if top_k > 0:
        by_target: dict[str, list[tuple[str, str]]] = {}
        for pair in kept:
            by_target.setdefault(pair[1], []).append(pair)
        kept = {p: kept[p] for ps in by_target.values()
                for p in sorted(ps, key=lambda p: -abs(kept[p]))[:top_k]}
    return kept, noise


def accumulate(model: Any, batch: Any, a: Any, *, steps: int, mean: Any = None, batch_size: int = 8,
               progress: Any = None, task: str = "") -> ComponentAccumulator:
    """The task's accumulated component weights at ``steps`` IG steps (``a``: the AttributionConfig)."""
    acc = ComponentAccumulator()
    for start in range(0, len(batch), batch_size):
        add_part(acc, model, batch[start:start + batch_size], a, steps=steps, mean=mean)
        if progress:
            progress(task, acc.n, len(batch), len(acc.pairs))
    return acc


def add_part(acc: ComponentAccumulator, model: Any, part: Any, a: Any, *, steps: int, mean: Any = None) -> None:
    from ingest.attribution.batch import logit_diff

    causal = getattr(model.cfg, "attention_dir", "causal") == "causal"
    groups = [part] if causal else [g for _, g in part.unpadded()]
    for g in groups:
        valid = graph_positions(g)
        x_base = baseline_embedding(model, g.tokens, valid, str(a.baseline), cf_tokens=g.cf_tokens, mean=mean)
        scores = component_scores(model, g.tokens, x_base, lambda logits, g=g: logit_diff(logits, g),
                                  steps=steps, valid=valid)
        acc.add(scores, valid, str(a.alpha), a.alpha_abs)


def reference_mean(model: Any, reference: Any) -> Any:
    """The mean embedding over a reference batch's graph positions (the mean baseline)."""
    return mean_embedding(model, reference.tokens, graph_positions(reference))


def choose_steps(model: Any, part: Any, a: Any, mean: Any) -> tuple[int, ComponentAccumulator]:
    """``--steps auto``: the first K of AUTO_STEPS whose residual on ``part`` is within the
    tolerance (else the last), and ``part``'s accumulator at that K."""
    from ingest.attribution.config import AUTO_STEPS

    for K in AUTO_STEPS:
        acc = ComponentAccumulator()
        add_part(acc, model, part, a, steps=K, mean=mean)
        log.info("components: completeness residual %.3g at K=%d (tolerance %g)", acc.residual, K, a.tolerance)
        if acc.residual <= a.tolerance:
            break
    return K, acc


def component_task(writer: Any, resolved: Any, config: Any, run_key: str, run: str, task: str,
                   progress: Any = None) -> dict[str, Any]:
    """Compute and write ``task``'s component graph; the :class:`~ingest.pipeline.TaskGraph`
    fields it came to. ``resolved``: the pipeline's ``Resolved`` (model, batches, reference)."""
    a, model, batch = config.attribution, resolved.model, resolved.batches[task]
    mean = reference_mean(model, resolved.reference[task]) if str(a.baseline) == "mean" else None
    if a.steps == "auto":
        steps, acc = choose_steps(model, batch[:config.batch_size], a, mean)
        for start in range(config.batch_size, len(batch), config.batch_size):
            add_part(acc, model, batch[start:start + config.batch_size], a, steps=steps, mean=mean)
    else:
        steps = int(a.steps)
        acc = accumulate(model, batch, a, steps=steps, mean=mean, batch_size=config.batch_size,
                         progress=progress, task=task)
    edges, noise = keep_edges(acc.weights(str(a.beta)), noise_rel=a.noise_rel, threshold=a.threshold, top_k=a.top_k)
    writer.write_nodes(Label.RUN, [{"key": run_key, "tasks_writing": [task]}])
    base = {"model": resolved.model_label, "checkpoint": resolved.checkpoint}
    nodes = _write_nodes(writer, model, base, task, resolved.task_specs.get(task, task), run_key)
    key = {n: component_key(n, **base, task=task) for n in acc.nodes}
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": key[u], "dst": key[v], "weight": w}
                                                    for (u, v), w in edges.items()],
                               common={**base, "task": task, "run": run, "granularity": str(Granularity.COMPONENT)})
    residual = acc.residual
    converged = residual <= a.tolerance
    writer.write_relationships(Rel.FOR_TASK, [{
        "src": run_key, "dst": node_key(Label.TASK, task=task), "ig_steps": steps, "residual": residual,
        "residual_tolerance": a.tolerance,
        "residual_targets": [f"embed={residual:.6g}"]}], src=Label.RUN, dst=Label.TASK)
    if noise:
        log.info("%s: %d component edges below the noise floor (%g of their target's largest in-edge) not stored",
                 task, noise, a.noise_rel)
    n = max(acc.n, 1)
    return {"examples": acc.n, "nodes": nodes, "edges": len(edges), "noise_dropped": noise, "steps": steps,
            "residuals": {"embed": residual}, "residual": residual, "converged": converged,
            "metric_clean": acc.metric_clean / n, "metric_base": acc.metric_base / n}


def _write_nodes(writer: Any, model: Any, base: dict[str, str], task: str, spec: str, run_key: str) -> int:
    """Model, checkpoint, task and every component node; returns the number of component nodes."""
    cfg = model.cfg
    model_key = node_key(Label.MODEL, model=base["model"])
    ckpt_key = node_key(Label.CHECKPOINT, **base)
    task_key = node_key(Label.TASK, task=task)
    writer.write_nodes(Label.MODEL, [{"key": model_key, "name": base["model"], "n_layers": int(cfg.n_layers)}])
    writer.write_nodes(Label.CHECKPOINT, [{"key": ckpt_key, "name": base["checkpoint"], **base}])
    writer.write_relationships(Rel.OF_MODEL, [{"src": ckpt_key, "dst": model_key}], src=Label.CHECKPOINT, dst=Label.MODEL)
    writer.write_nodes(Label.TASK, [{"key": task_key, "name": task, "spec": spec}])
    writer.write_relationships(Rel.FOR_TASK, [{"src": run_key, "dst": task_key}], src=Label.RUN, dst=Label.TASK)
    rows: dict[Label, list[dict[str, Any]]] = {}
    for n in component_nodes(cfg):
        kind, layer, head = parse_component(n)
        row = {"key": component_key(n, **base, task=task), **base}
        if kind == "embed":
            rows.setdefault(Label.INPUT, []).append({**row, "name": EMBED_NAME, "hook": "blocks.0.hook_resid_pre",
                                                     "layer": -1})
        elif kind == "output":
            rows.setdefault(Label.OUTPUT, []).append({**row, "task": task, "metric": METRIC,
                                                      "layer": int(cfg.n_layers)})
        elif kind == "mlp":
            rows.setdefault(Label.MLP, []).append({**row, "layer": layer, "hook": f"blocks.{layer}.hook_mlp_out"})
        else:
            rows.setdefault(Label.HEAD, []).append({**row, "layer": layer, "head": head})
    for label, rs in rows.items():
        writer.write_nodes(label, rs)
    return sum(len(r) for r in rows.values())
