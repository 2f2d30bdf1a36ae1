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
vector entering v's input, with the clean and baseline inputs interpolated at the embedding.
It is a dot product of two vectors in the residual space, so it does not depend on any basis or
dictionary, no signed sum over features can cancel it, and a pair with no connection (v reads
nothing of the subspace u writes) gets exactly 0. For v = output, sum_u w(u -> output) is
M's first-order change through the final residual. K = 1 is edge attribution patching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.errors import AttributionError


@dataclass(frozen=True)
class ComponentGraph:
    """``weights[(u, v)]`` for every earlier-to-later component pair, keys as in the module docstring."""

    nodes: list[str]
    weights: dict[tuple[str, str], float]


def component_nodes(cfg: Any) -> list[str]:
    nodes = ["embed"]
    for layer in range(cfg.n_layers):
        nodes += [f"L{layer}.H{h}" for h in range(cfg.n_heads)]
        if not cfg.attn_only:
            nodes.append(f"L{layer}.MLP")
    return nodes + ["output"]


def _writer(node: str) -> tuple[int, str]:
    """(layer, stage) ordering: a component writes after it reads; embed writes first."""
    if node == "embed":
        return (-1, "z")
    layer, part = node.split(".")
    return (int(layer[1:]), "a" if part.startswith("H") else "m")


def _reads_after(u: str, v: str) -> bool:
    """Whether v reads the residual after u has written to it."""
    if v == "output":
        return u != "output"
    lu, su = _writer(u)
    lv, sv = _writer(v)
    return lu < lv or (lu == lv and su == "a" and sv == "m")


def component_edges(model: Any, tokens: Any, base_tokens: Any, metric: Callable[[Any], Any], *,
                    steps: int = 8, valid: Any = None) -> ComponentGraph:
    """Component edges of ``model`` (a ``HookedTransformer``) on ``tokens`` vs ``base_tokens``
    ([batch, pos], aligned), ``metric(logits) -> [batch]`` summed over the batch. ``valid``
    [batch, pos] bool: positions that count as sources (default all)."""
    import torch

    if steps < 1:
        raise AttributionError(f"component attribution needs at least 1 IG step, got {steps}")
    if tokens.shape != base_tokens.shape:
        raise AttributionError("clean and baseline tokens must have the same shape")
    cfg = model.cfg
    saved = (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    if not cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    try:
        outs = {}
        for name, toks in (("clean", tokens), ("base", base_tokens)):
            with torch.no_grad():
                _, cache = model.run_with_cache(toks)
            outs[name] = {n: o for n, o in _outputs(cache, cfg).items()}
        delta = {n: outs["clean"][n] - outs["base"][n] for n in outs["clean"]}
        if valid is not None:
            delta = {n: d * valid[..., None].to(d.dtype) for n, d in delta.items()}
        grads = _mean_input_grads(model, tokens, base_tokens, metric, steps)
    finally:
        model.set_use_attn_result(saved[0])
        model.set_use_split_qkv_input(saved[1])
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(saved[2])
    nodes = component_nodes(cfg)
    weights = {(u, v): float((delta[u] * grads[v]).sum())
               for u in nodes[:-1] for v in nodes[1:] if _reads_after(u, v)}
    return ComponentGraph(nodes, weights)


def _outputs(cache: Any, cfg: Any) -> dict[str, Any]:
    """Every component's output [batch, pos, d_model]."""
    out = {"embed": cache["blocks.0.hook_resid_pre"]}
    for layer in range(cfg.n_layers):
        result = cache[f"blocks.{layer}.attn.hook_result"]
        for h in range(cfg.n_heads):
            out[f"L{layer}.H{h}"] = result[:, :, h]
        if not cfg.attn_only:
            out[f"L{layer}.MLP"] = cache[f"blocks.{layer}.hook_mlp_out"]
    return out


def _mean_input_grads(model: Any, tokens: Any, base_tokens: Any, metric: Callable[[Any], Any],
                      steps: int) -> dict[str, Any]:
    """(1/K) sum_k dM/dx_v at the midpoints of the embedding interpolation, for every v."""
    import torch

    cfg = model.cfg
    with torch.no_grad():
        _, c = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_pre")
        _, b = model.run_with_cache(base_tokens, names_filter="blocks.0.hook_resid_pre")
    x_clean, x_base = c["blocks.0.hook_resid_pre"], b["blocks.0.hook_resid_pre"]
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

        def interpolate(x: Any, hook: Any) -> Any:
            return (x_base + t * (x_clean - x_base)).requires_grad_(True)

        logits = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pre", interpolate)]
                                      + [(n, keep) for n in names])
        metric(logits).sum().backward()
        for n in names:
            g = acts[n].grad
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
