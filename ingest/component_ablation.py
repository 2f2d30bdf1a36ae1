r"""Running a component graph: node and edge ablation of whole components.

Components and their outputs ``o_u`` are :mod:`ingest.attribution.components`' (the embedding
``blocks.0.hook_resid_pre``, each head's ``hook_result`` slice, each MLP's ``hook_mlp_out``;
the output reads the final ``hook_resid_post``). The baseline value ``o_u^base`` of a component
is its output in the forward pass from the baseline embedding ``x^base`` the graph was ingested
with (the counterfactual prompt's embedding, zero, or the reference mean embedding). BOS and
padding positions carry no nodes and always stay clean.

**Node ablation** (an ordinary forward pass): the output of every component outside the graph
is replaced by its baseline, ``o_u := o_u^base`` (the embedding at ``hook_resid_pre``, heads at
``hook_result``, MLPs at ``hook_mlp_out``); everything else is recomputed.

**Edge ablation** (EAP's circuit evaluation): every component ``v`` reads its own input,

    x_v' = x_v − Σ_{u → v not kept} (o_u − o_u^base)

where ``x_v`` is the residual stream v reads in this (ablated) run and ``o_u`` u's output in this
run; so v sees each kept upstream component's output as computed in the ablated run (its own
input ablated in turn) and every other upstream component at its baseline. A head's input is
set through ``hook_q_input``, ``hook_k_input`` and ``hook_v_input`` alike (an edge into a head
feeds its queries, keys and values), an MLP's through ``hook_mlp_in``, the output's at the last
``hook_resid_post``. A pair ``u → v`` exists when v reads the residual after u writes it
(:func:`~ingest.attribution.components.reads_after`).

With every edge kept both give the clean run; with nothing kept, the run from ``x^base``; and
edge ablation of the complete graph on a node set equals node ablation of that set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ingest.attribution.components import (EMBED_HOOK, baseline_embedding, component_nodes, reads_after,
                                           run_components, split_inputs)
from ingest.tasks.encode import TaskBatch, final_logits


@dataclass(frozen=True)
class ComponentMask:
    """Kept components (the output is always kept) and kept edges ``(u, v)``."""

    nodes: frozenset[str]
    edges: frozenset[tuple[str, str]]

    @classmethod
    def from_edges(cls, edges: set[tuple[str, str]] | frozenset[tuple[str, str]]) -> ComponentMask:
        return cls(nodes=frozenset({n for e in edges for n in e} | {"output"}), edges=frozenset(edges))

    @classmethod
    def complete(cls, every: list[str], nodes: set[str] | frozenset[str]) -> ComponentMask:
        """Every possible edge between ``nodes`` (and the output)."""
        keep = set(nodes) | {"output"}
        return cls(nodes=frozenset(keep), edges=frozenset((u, v) for u in every for v in every
                                                          if u in keep and v in keep and reads_after(u, v)))

    def complement(self, every: list[str], ablation: str) -> ComponentMask:
        """Everything but this graph: every other possible edge (edge ablation) or every other
        component (node ablation)."""
        if ablation == "edge":
            full = ComponentMask.complete(every, set(every))
            return ComponentMask(nodes=full.nodes, edges=full.edges - self.edges)
        return ComponentMask.complete(every, {n for n in every if n not in self.nodes})


@dataclass(frozen=True)
class ComponentPrep:
    """One batch's graph positions ``valid`` [batch, pos], baseline embedding and baseline outputs."""

    valid: Tensor
    x_base: Tensor
    base: dict[str, Tensor]


def prepare(model: Any, batch: TaskBatch, valid: Tensor, baseline: str, *, mean: Tensor | None = None) -> ComponentPrep:
    x_base = baseline_embedding(model, batch.tokens, valid, baseline, cf_tokens=batch.cf_tokens, mean=mean)
    with split_inputs(model):
        _, base = run_components(model, batch.tokens, x_base)
    return ComponentPrep(valid=valid, x_base=x_base, base=base)


def node_ablation(model: Any, batch: TaskBatch, prep: ComponentPrep, mask: ComponentMask) -> Tensor:
    """Last-position logits [batch, d_vocab] with the components outside ``mask`` at baseline."""
    keep = prep.valid[..., None]
    cfg = model.cfg

    def embed(x: Tensor, hook: Any) -> Tensor:
        return torch.where(keep, prep.x_base, x)

    def heads(x: Tensor, hook: Any) -> Tensor:
        layer = int(hook.name.split(".")[1])
        out = x.clone()
        for h in range(cfg.n_heads):
            if f"L{layer}.H{h}" not in mask.nodes:
                out[:, :, h] = torch.where(keep, prep.base[f"L{layer}.H{h}"], x[:, :, h])
        return out

    def mlp(x: Tensor, hook: Any) -> Tensor:
        return torch.where(keep, prep.base[f"L{int(hook.name.split('.')[1])}.MLP"], x)

    hooks = [] if "embed" in mask.nodes else [(EMBED_HOOK, embed)]
    for layer in range(cfg.n_layers):
        hooks.append((f"blocks.{layer}.attn.hook_result", heads))
        if not cfg.attn_only and f"L{layer}.MLP" not in mask.nodes:
            hooks.append((f"blocks.{layer}.hook_mlp_out", mlp))
    with split_inputs(model), torch.no_grad():
        logits = model.run_with_hooks(batch.tokens, fwd_hooks=hooks)
    return final_logits(logits, batch.last)


def edge_ablation(model: Any, batch: TaskBatch, prep: ComponentPrep, mask: ComponentMask) -> Tensor:
    """Last-position logits [batch, d_vocab] when every component reads only its kept in-edges
    (module docstring)."""
    cfg = model.cfg
    every = component_nodes(cfg)
    keep = prep.valid[..., None].to(prep.x_base.dtype)
    diff: dict[str, Tensor] = {}  # o_u - o_u^base in this run, at graph positions

    def cut(v: str, x: Tensor) -> Tensor:
        """x_v minus the changes of the upstream components whose edge into v is not kept."""
        for u in every:
            if u in diff and reads_after(u, v) and (u, v) not in mask.edges:
                x = x - diff[u]
        return x

    def record_embed(x: Tensor, hook: Any) -> None:
        diff["embed"] = (x - prep.base["embed"]) * keep

    def record_heads(x: Tensor, hook: Any) -> None:
        layer = int(hook.name.split(".")[1])
        for h in range(cfg.n_heads):
            diff[f"L{layer}.H{h}"] = (x[:, :, h] - prep.base[f"L{layer}.H{h}"]) * keep

    def record_mlp(x: Tensor, hook: Any) -> None:
        name = f"L{int(hook.name.split('.')[1])}.MLP"
        diff[name] = (x - prep.base[name]) * keep

    def head_inputs(x: Tensor, hook: Any) -> Tensor:
        layer = int(hook.name.split(".")[1])
        return torch.stack([cut(f"L{layer}.H{h}", x[:, :, h]) for h in range(x.shape[2])], dim=2)

    def mlp_input(x: Tensor, hook: Any) -> Tensor:
        return cut(f"L{int(hook.name.split('.')[1])}.MLP", x)

    def output_input(x: Tensor, hook: Any) -> Tensor:
        return cut("output", x)

    hooks: list[tuple[str, Any]] = [(EMBED_HOOK, record_embed)]
    for layer in range(cfg.n_layers):
        hooks += [(f"blocks.{layer}.hook_{k}_input", head_inputs) for k in "qkv"]
        hooks.append((f"blocks.{layer}.attn.hook_result", record_heads))
        if not cfg.attn_only:
            hooks += [(f"blocks.{layer}.hook_mlp_in", mlp_input), (f"blocks.{layer}.hook_mlp_out", record_mlp)]
    hooks.append((f"blocks.{cfg.n_layers - 1}.hook_resid_post", output_input))
    with split_inputs(model), torch.no_grad():
        logits = model.run_with_hooks(batch.tokens, fwd_hooks=hooks)
    return final_logits(logits, batch.last)
