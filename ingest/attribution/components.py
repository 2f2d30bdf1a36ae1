"""Component-level attribution: edges between whole components, basis-independent.

Nodes (keys in index order): ``embed`` (``blocks.0.hook_resid_pre``: token and position
embeddings), ``L{l}.H{h}`` (head h's output z_h W_O[h] at layer l, ``hook_result``), ``L{l}.MLP``
(``hook_mlp_out``) and ``output`` (the metric). The input of a component is the residual stream
it reads: head h of layer l reads ``blocks.l.hook_resid_pre`` (per head: ``hook_q_input``,
``hook_k_input``, ``hook_v_input``), the MLP reads ``hook_resid_mid`` (``hook_mlp_in``), the
output reads the final residual. That stream is the sum of every earlier component's output (and
constant biases), so u's output reaches v's input directly through the residual, and

    w(u -> v) = sum_p (o_u[p] - o_u^base[p]) . (1/K) sum_k dM/dx_v[p] |_(t=(k-1/2)/K)

(EAP-IG, Hanna et al. 2024): the integrated-gradients effect on the metric M of u's whole output
vector entering v's input, with the clean and baseline inputs interpolated at the embedding,
``x(t) = x^base + t (x - x^base)`` at ``blocks.0.hook_resid_pre``; ``o_u^base`` is u's output in
the forward pass from ``x^base``. It is a dot product of two vectors in the residual space, so it
does not depend on any basis or dictionary, no signed sum over features can cancel it, and a
pair with no connection (v reads nothing of the subspace u writes) gets exactly 0. The
embedding reaches M only through its readers' inputs, so dM/dx_embed = sum_v dM/dx_v and
sum_v w(embed -> v) is integrated gradients of M with respect to the embedding: it tends to
M(x) - M(x^base) as K grows (completeness; the ingest reports the gap). The edges into the
output need not add up to that: the final residual moves along a curved path. K = 1 is edge
attribution patching.

The baseline embedding ``x^base`` (:func:`baseline_embedding`): the counterfactual prompt's
embedding, zero, or the mean embedding over a reference set's graph positions; at positions that
carry no nodes (BOS, padding) it is the clean embedding, so they stay clean along the path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.errors import AttributionError

EMBED_HOOK = "blocks.0.hook_resid_pre"


@dataclass(frozen=True)
class ComponentGraph:
    """``weights[(u, v)]`` for every earlier-to-later component pair, keys as in the module docstring."""

    nodes: list[str]
    weights: dict[tuple[str, str], float]


@dataclass(frozen=True)
class ComponentScores:
    """Per-example, per-source-position terms of every edge, before any aggregation.

    ``scores[i, b, p]`` is example b's term of ``pairs[i]`` at source position p (the sum over p
    is w(u -> v) of that example); ``metric_clean`` / ``metric_base`` [batch] are M at the clean
    and the baseline embedding."""

    nodes: list[str]
    pairs: list[tuple[str, str]]
    scores: Any
    metric_clean: Any
    metric_base: Any


def component_nodes(cfg: Any) -> list[str]:
    nodes = ["embed"]
    for layer in range(cfg.n_layers):
        nodes += [f"L{layer}.H{h}" for h in range(cfg.n_heads)]
        if not cfg.attn_only:
            nodes.append(f"L{layer}.MLP")
    return nodes + ["output"]


def parse_component(node: str) -> tuple[str, int, int]:
    """``(kind, layer, head)`` of a component key: kind embed, head, mlp or output (layer -1 for
    the embedding, n_layers is not known here so the output has layer -1 too; head -1 if none)."""
    if node in ("embed", "output"):
        return node, -1, -1
    layer, part = node.split(".")
    if part == "MLP":
        return "mlp", int(layer[1:]), -1
    return "head", int(layer[1:]), int(part[1:])


def _writer(node: str) -> tuple[int, str]:
    """(layer, stage) ordering: a component writes after it reads; embed writes first."""
    if node == "embed":
        return (-1, "z")
    layer, part = node.split(".")
    return (int(layer[1:]), "a" if part.startswith("H") else "m")


def reads_after(u: str, v: str) -> bool:
    """Whether v reads the residual after u has written to it (the pair can carry an edge)."""
    if u == "output" or v == "embed":
        return False
    if v == "output":
        return True
    lu, su = _writer(u)
    lv, sv = _writer(v)
    return lu < lv or (lu == lv and su == "a" and sv == "m")


def component_edges(model: Any, tokens: Any, base_tokens: Any, metric: Callable[[Any], Any], *,
                    steps: int = 8, valid: Any = None) -> ComponentGraph:
    """Component edges of ``model`` (a ``HookedTransformer``) on ``tokens`` vs ``base_tokens``
    ([batch, pos], aligned), ``metric(logits) -> [batch]`` summed over the batch and positions.
    ``valid`` [batch, pos] bool: positions that carry nodes (default all)."""
    if tokens.shape != base_tokens.shape:
        raise AttributionError("clean and baseline tokens must have the same shape")
    x_base = embedding(model, base_tokens)
    s = component_scores(model, tokens, x_base, metric, steps=steps, valid=valid)
    sums = s.scores.sum((1, 2))
    return ComponentGraph(s.nodes, {pair: float(w) for pair, w in zip(s.pairs, sums, strict=True)})


def embedding(model: Any, tokens: Any) -> Any:
    """The residual stream entering block 0 [batch, pos, d_model]."""
    import torch

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=EMBED_HOOK)
    return cache[EMBED_HOOK]


def baseline_embedding(model: Any, tokens: Any, valid: Any, kind: str, *, cf_tokens: Any = None,
                       mean: Any = None) -> Any:
    """``x^base`` [batch, pos, d_model] for baseline ``kind`` (counterfactual, zero, mean; see
    the module docstring): the clean embedding wherever ``valid`` is off."""
    import torch

    clean = embedding(model, tokens)
    if kind == "counterfactual":
        raw = embedding(model, cf_tokens)
    elif kind == "mean":
        if mean is None:
            raise AttributionError("the mean baseline needs the reference set's mean embedding")
        raw = mean.to(clean.dtype).expand_as(clean)
    elif kind == "zero":
        raw = torch.zeros_like(clean)
    else:
        raise AttributionError(f"unknown baseline {kind!r}")
    return torch.where(valid[..., None], raw, clean)


def mean_embedding(model: Any, tokens: Any, valid: Any) -> Any:
    """The mean embedding [d_model] over the ``valid`` positions of a reference set."""
    x = embedding(model, tokens)
    if not bool(valid.any()):
        raise AttributionError("the mean baseline's reference set has no graph positions")
    return x[valid].mean(0)


class split_inputs:  # noqa: N801 (a context manager used like a function)
    """Turns on the hooks components are read at (``hook_result``, split q/k/v inputs,
    ``hook_mlp_in``; grouped-query attention ungrouped, so every head has its own key and value
    input) for the duration, and restores the model's settings after."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> Any:
        cfg = self.model.cfg
        self.saved = (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in,
                      getattr(cfg, "ungroup_grouped_query_attention", False))
        self.model.set_use_attn_result(True)
        self.model.set_use_split_qkv_input(True)
        if getattr(cfg, "n_key_value_heads", None) is not None:
            self.model.set_ungroup_grouped_query_attention(True)
        if not cfg.attn_only:
            self.model.set_use_hook_mlp_in(True)
        return self.model

    def __exit__(self, *exc: Any) -> None:
        self.model.set_use_attn_result(self.saved[0])
        self.model.set_use_split_qkv_input(self.saved[1])
        if not self.model.cfg.attn_only:
            self.model.set_use_hook_mlp_in(self.saved[2])
        if getattr(self.model.cfg, "n_key_value_heads", None) is not None:
            self.model.set_ungroup_grouped_query_attention(self.saved[3])


def component_scores(model: Any, tokens: Any, x_base: Any, metric: Callable[[Any], Any], *,
                     steps: int = 8, valid: Any = None) -> ComponentScores:
    """Per-example, per-position edge terms (:class:`ComponentScores`) of ``model`` on ``tokens``
    against the baseline embedding ``x_base``; ``valid`` [batch, pos] bool masks the source
    positions (default all)."""
    import torch

    if steps < 1:
        raise AttributionError(f"component attribution needs at least 1 IG step, got {steps}")
    cfg = model.cfg
    with split_inputs(model):
        clean_logits, clean = run_components(model, tokens)
        base_logits, base = run_components(model, tokens, x_base)
        delta = {n: clean[n] - base[n] for n in clean}
        if valid is not None:
            delta = {n: d * valid[..., None].to(d.dtype) for n, d in delta.items()}
        grads = _mean_input_grads(model, tokens, x_base, metric, steps)
    nodes = component_nodes(cfg)
    ups, downs = nodes[:-1], nodes[1:]
    D = torch.stack([delta[u] for u in ups])          # [U, batch, pos, d_model]
    G = torch.stack([grads[v] for v in downs])        # [V, batch, pos, d_model]
    every = torch.einsum("ubpd,vbpd->uvbp", D, G)
    pairs, index = [], []
    for i, u in enumerate(ups):
        for j, v in enumerate(downs):
            if reads_after(u, v):
                pairs.append((u, v))
                index.append(i * len(downs) + j)
    scores = every.flatten(0, 1)[torch.tensor(index, dtype=torch.long)]
    return ComponentScores(nodes, pairs, scores.detach(), metric(clean_logits).detach(), metric(base_logits).detach())


def run_components(model: Any, tokens: Any, x_embed: Any = None) -> tuple[Any, dict[str, Any]]:
    """Logits and every component's output [batch, pos, d_model] of a forward pass (from the
    embedding ``x_embed`` when given); the model must be inside :class:`split_inputs`."""
    import torch

    hooks = [] if x_embed is None else [(EMBED_HOOK, lambda x, hook: x_embed)]
    names = {EMBED_HOOK} | {f"blocks.{L}.attn.hook_result" for L in range(model.cfg.n_layers)}
    names |= {f"blocks.{L}.hook_mlp_out" for L in range(model.cfg.n_layers)}
    cache: dict[str, Any] = {}
    hooks += [(n, lambda x, hook: cache.__setitem__(hook.name, x)) for n in sorted(names)]
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    return logits, _outputs(cache, model.cfg)


def _outputs(cache: Any, cfg: Any) -> dict[str, Any]:
    """Every component's output [batch, pos, d_model]."""
    out = {"embed": cache[EMBED_HOOK]}
    for layer in range(cfg.n_layers):
        result = cache[f"blocks.{layer}.attn.hook_result"]
        for h in range(cfg.n_heads):
            out[f"L{layer}.H{h}"] = result[:, :, h]
        if not cfg.attn_only:
            out[f"L{layer}.MLP"] = cache[f"blocks.{layer}.hook_mlp_out"]
    return out


def _mean_input_grads(model: Any, tokens: Any, x_base: Any, metric: Callable[[Any], Any],
                      steps: int) -> dict[str, Any]:
    """(1/K) sum_k dM/dx_v at the midpoints of the embedding interpolation, for every v."""
    x_clean = embedding(model, tokens)
    cfg = model.cfg
    last = f"blocks.{cfg.n_layers - 1}.hook_resid_post"
    names = [last] + [f"blocks.{L}.hook_{k}_input" for L in range(cfg.n_layers) for k in "qkv"]
    if not cfg.attn_only:
        names += [f"blocks.{L}.hook_mlp_in" for L in range(cfg.n_layers)]
    total: dict[str, Any] = {}
    for k in range(steps):
        t = (k + 0.5) / steps
        acts: dict[str, Any] = {}

        def keep(x: Any, hook: Any) -> Any:
            x.retain_grad()
            acts[hook.name] = x
            return x

        def interpolate(x: Any, hook: Any, t: float = t) -> Any:
            return (x_base + t * (x_clean - x_base)).requires_grad_(True)

        logits = model.run_with_hooks(tokens, fwd_hooks=[(EMBED_HOOK, interpolate)] + [(n, keep) for n in names])
        metric(logits).sum().backward()
        for n in names:
            g = acts[n].grad.detach()
            total[n] = g if n not in total else total[n] + g
        model.zero_grad(set_to_none=True)
    mean = {n: g / steps for n, g in total.items()}
    grads = {"output": mean[last]}
    for layer in range(cfg.n_layers):
        head_in = sum(mean[f"blocks.{layer}.hook_{k}_input"] for k in "qkv")  # [batch, pos, head, d_model]
        for h in range(cfg.n_heads):
            grads[f"L{layer}.H{h}"] = head_in[:, :, h]
        if not cfg.attn_only:
            grads[f"L{layer}.MLP"] = mean[f"blocks.{layer}.hook_mlp_in"]
    return grads
