r"""Running a transcoder task graph: node and edge ablation in the replacement model.

The graph's nodes (as ``ingest --graph transcoders`` aggregates them) live on slots in forward
order: slot 0 the token embedding (``hook_embed``, one vector node), slot ``l + 1`` the
transcoder features read at layer ``l`` (latents ``0 .. d_dict-1``) and layer ``l``'s error
node (index ``d_dict``), and the output (the logit difference) at slot ``L + 1``, so
:class:`ingest.ablation.GraphMask` masks them as it masks dictionary slots.

The **replacement model**: every MLP output is the transcoders' reconstruction plus the error
term, ``mlp_out_l = Σ_{src ≤ l} f_src W_dec[src → l] + b_dec_l + skip_l(x_in_l) + e_l``
(``f_src = act(pre(x_in_src))``; a per-layer transcoder decodes into its own layer only, a
cross-layer one into its layer and every later one). As in the prompt graphs, the error node
and the token embedding are *inputs* (they have no in-edges): each takes its clean value when
kept and its baseline otherwise, so with every node kept the replacement model is the model
(``Σ f W + b + skip + (y − recon) = y``). Attention and normalisation are recomputed on what
flows in, as the dictionary evaluator does between slots; BOS and padding stay clean.

Baselines (the value an ablated node takes, per graph position): ``zero`` (a feature, error or
token absent: what the graph's direct effects are measured against, so the default), ``mean``
(over reference prompts) or ``counterfactual`` (the values on the counterfactual prompt).

**Node ablation**: one forward pass in which kept features are computed from what flows in
and the others take their baseline. **Edge ablation** (as :mod:`ingest.ablation` defines it):
each kept feature ``d`` at layer ``m`` computes its value from its own input, in which every
upstream node contributes its value in the ablated run if the edge ``u → d`` is kept and its
baseline otherwise (``x_in_m`` of a copy whose MLP outputs below ``m`` are built from those
masked values); layers in forward order, so ablations propagate; the output reads its own
masked input the same way. With every edge between kept nodes kept, edge ablation equals node
ablation; with every node and edge kept, the model; with nothing kept, the fully ablated run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from graphdb.keys import parse_key
from graphdb.schema import Label
from ingest.ablation import GraphMask, _mask_groups
from ingest.attribution.slots import Slot
from ingest.dictionaries.transcoder import in_hook, out_hook
from ingest.dictionaries.transcoder_set import Transcoders
from ingest.errors import AttributionError
from ingest.tasks.encode import TaskBatch, final_logits
from mechgraph.errors import ConfigError

Baseline = Literal["zero", "mean", "counterfactual"]
BASELINES = ("zero", "mean", "counterfactual")
EMBED_HOOK = "hook_embed"


@dataclass(frozen=True, eq=False)
class ReplacementSlot(Slot):
    """Nodes of one slot: the embedding (``layer`` -1, ``width`` 0: its one vector node) or one
    layer's ``width`` transcoder features plus its error node (index ``width``). The
    transcoders live on the engine (a cross-layer one has no per-layer dictionary)."""

    width: int = 0

    @property
    def n_latents(self) -> int:
        return self.width

    @property
    def is_embed(self) -> bool:
        return self.layer < 0


@dataclass(frozen=True)
class ReplacementConfig:
    baseline: Baseline = "zero"

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")


@dataclass
class ReplacementValues:
    """Per graph position: the token embedding, each layer's features and error node."""

    embed: Float[Tensor, "batch pos d_model"]
    f: list[Float[Tensor, "batch pos d_dict"]]
    e: list[Float[Tensor, "batch pos d_model"]]


@dataclass
class ReplacementPrepared:
    """Clean and baseline node values of one batch (they differ on graph positions only)."""

    valid: Bool[Tensor, "batch pos"]
    clean: ReplacementValues
    base: ReplacementValues


@dataclass(frozen=True)
class ReplacementNames:
    """Where a task graph's keys (``GraphLabels.position_free``) live on the slots."""

    model: str
    checkpoint: str
    dictionary: str
    d_dict: tuple[int, ...]   # per layer: its features; the error node is index d_dict

    @property
    def n_layers(self) -> int:
        return len(self.d_dict)

    def locate(self, key: str) -> tuple[int, int]:
        """(slot, index) of a feature, error, input or output key of this graph."""
        label, parts = parse_key(key)
        if parts.get("model") != self.model or parts.get("checkpoint") != self.checkpoint:
            raise ConfigError(f"{key} is not a node of {self.model} @ {self.checkpoint}")
        if label is Label.OUTPUT:
            return self.n_layers + 1, 0
        if label is Label.INPUT:
            return 0, 0
        if label in (Label.FEATURE, Label.ERROR) and parts.get("dictionary") == self.dictionary:
            for layer in range(self.n_layers):
                if label is Label.FEATURE and parts.get("hook") == in_hook(layer):
                    index = int(parts["index"])
                    if not 0 <= index < self.d_dict[layer]:
                        raise ConfigError(f"{key}: layer {layer}'s transcoder has {self.d_dict[layer]} features")
                    return layer + 1, index
                if label is Label.ERROR and parts.get("hook") == out_hook(layer):
                    return layer + 1, self.d_dict[layer]
        raise ConfigError(f"{key} is not a node of the transcoders {self.dictionary}")


class ReplacementEngine:
    """The replacement model of ``model`` with ``tcs`` on its MLPs, and its graph's slots.
    For the ``mean`` baseline give ``mean`` (from :meth:`mean_baseline`)."""

    def __init__(self, model: Any, tcs: Transcoders, config: ReplacementConfig, *,
                 mean: ReplacementValues | None = None) -> None:
        if tcs.n_layers != int(model.cfg.n_layers):
            raise ConfigError(f"the transcoders cover {tcs.n_layers} layers, the model has {model.cfg.n_layers}")
        self.model, self.tcs, self.config, self.mean = model, tcs, config, mean
        self.L = tcs.n_layers
        self.slots = [ReplacementSlot(EMBED_HOOK, None, -1)] + [
            ReplacementSlot(in_hook(l), None, l, width=tcs.d_dict(l)) for l in range(self.L)]
        self.S = len(self.slots)
        with torch.no_grad():  # W[src][l]: the decoder of layer src's features into layer l's MLP output
            self.W = [{l: tcs.decoder(src, torch.arange(tcs.d_dict(src), device=tcs.b_dec(src).device))[:, j]
                       for j, l in enumerate(tcs.out_layers(src))} for src in range(self.L)]

    @property
    def causal(self) -> bool:
        """Whether attention is causal (a bidirectional model's batches run unpadded)."""
        return getattr(self.model.cfg, "attention_dir", "causal") == "causal"

    # -- forward passes --------------------------------------------------------------------

    @contextmanager
    def _mlps(self, replace: Callable[[int, Tensor, Tensor], Tensor | None]) -> Iterator[None]:
        """Every MLP's output is ``replace(layer, x_in, out)`` (``None``: kept) meanwhile."""
        handles = [block.mlp.register_forward_hook(lambda mod, args, out, l=l: replace(l, args[0], out))
                   for l, block in enumerate(self.model.blocks)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def decoded(self, layer: int, f: list[Tensor], x: Tensor) -> Tensor:
        """Layer ``layer``'s reconstruction from the features ``f[src]`` and its MLP input ``x``."""
        y = self.tcs.b_dec(layer) + (self.tcs.skip(layer, x) if self.tcs.has_skip else 0)
        for src in range(layer + 1):
            if layer in self.W[src]:
                y = y + f[src] @ self.W[src][layer]
        return y

    def values(self, tokens: Tensor) -> tuple[Tensor, ReplacementValues]:
        """Logits and the node values of an ordinary forward pass of the model."""
        f: list[Tensor] = []
        e: list[Tensor] = []
        embed: list[Tensor] = []

        def split(layer: int, x: Tensor, out: Tensor) -> None:
            f.append(self.tcs.encode(layer, x))
            e.append(out - self.decoded(layer, f, x))

        with torch.no_grad(), self._mlps(split):
            logits = self.model.run_with_hooks(tokens, fwd_hooks=[(EMBED_HOOK, lambda x, hook: embed.append(x))])
        for layer in range(self.L):
            if not (torch.isfinite(f[layer]).all() and torch.isfinite(e[layer]).all()):
                raise AttributionError(f"non-finite transcoder activations or errors at layer {layer}")
        return logits, ReplacementValues(embed=embed[0], f=f, e=e)

    def graph_positions(self, batch: TaskBatch) -> Bool[Tensor, "batch pos"]:
        """Positions that carry nodes: up to each prompt's last token, without BOS."""
        pos = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)
        return (pos[None, :] <= batch.last[:, None]) & (pos[None, :] >= 1)

    def mean_baseline(self, batch: TaskBatch, *, batch_size: int = 32) -> ReplacementValues:
        """Mean node values over the graph positions of a reference ``batch``."""
        sums: list[Tensor] = []
        count = 0
        for start in range(0, len(batch), batch_size):
            part = batch[start:start + batch_size]
            valid = self.graph_positions(part)
            _, v = self.values(part.tokens)
            flat = [v.embed[valid].sum(0)] + [x[valid].sum(0) for x in v.f + v.e]
            sums = flat if not sums else [a + b for a, b in zip(sums, flat, strict=True)]
            count += int(valid.sum())
        if count == 0:
            raise AttributionError("the mean baseline's reference set has no graph positions")
        means = [s / count for s in sums]
        return ReplacementValues(embed=means[0], f=means[1:1 + self.L], e=means[1 + self.L:])

    def prepare(self, batch: TaskBatch) -> ReplacementPrepared:
        """Clean and baseline node values of ``batch``."""
        valid = self.graph_positions(batch)
        _, clean = self.values(batch.tokens)
        kind = self.config.baseline
        if kind == "counterfactual":
            _, raw = self.values(batch.cf_tokens)
        elif kind == "mean":
            if self.mean is None:
                raise AttributionError("the mean baseline needs reference means (ReplacementEngine.mean_baseline)")
            m = self.mean
            raw = ReplacementValues(embed=m.embed.expand_as(clean.embed),
                                    f=[a.expand_as(b) for a, b in zip(m.f, clean.f, strict=True)],
                                    e=[a.expand_as(b) for a, b in zip(m.e, clean.e, strict=True)])
        else:
            raw = ReplacementValues(embed=torch.zeros_like(clean.embed), f=[torch.zeros_like(x) for x in clean.f],
                                    e=[torch.zeros_like(x) for x in clean.e])
        keep = valid[..., None]

        def at(r: Tensor, c: Tensor) -> Tensor:
            return torch.where(keep, r, c)

        base = ReplacementValues(embed=at(raw.embed, clean.embed),
                                 f=[at(r, c) for r, c in zip(raw.f, clean.f, strict=True)],
                                 e=[at(r, c) for r, c in zip(raw.e, clean.e, strict=True)])
        return ReplacementPrepared(valid=valid, clean=clean, base=base)

    # -- masked copies ---------------------------------------------------------------------

    def masked_run(self, tokens: Tensor, prep: ReplacementPrepared, abl: ReplacementValues,
                   masks: list[Tensor], *, stop_layer: int | None = None) -> Tensor:
        """Copies of the batch, one per in-mask (``masks[s]``: bool ``[G, n_nodes_s]`` for the
        slots before the reader): each upstream node at its ablated-run value ``abl`` where its
        mask is set, at baseline elsewhere. Returns the logits ``[G * batch, pos, d_vocab]``,
        or with ``stop_layer`` the MLP input of that layer ``[G, batch, pos, d_model]``."""
        G, B = masks[0].shape[0], tokens.shape[0]
        masks = [m.to(tokens.device) for m in masks]
        valid = prep.valid[None, ..., None]
        base = prep.base
        embed = torch.where(masks[0][:, 0].view(G, 1, 1, 1), abl.embed, base.embed).flatten(0, 1)
        seen: list[Tensor] = []

        def mlp(layer: int, x: Tensor, out: Tensor) -> Tensor | None:
            if layer == stop_layer:
                seen.append(x.view(G, B, *x.shape[1:]))
                return None
            m = masks[layer + 1]
            n = self.slots[layer + 1].n_latents
            y = self.tcs.b_dec(layer) + base.e[layer] + torch.where(
                m[:, n].view(G, 1, 1, 1), abl.e[layer] - base.e[layer], torch.zeros((), dtype=out.dtype))
            for src in range(layer + 1):
                if layer not in self.W[src]:
                    continue
                W = self.W[src][layer]
                y = y + base.f[src] @ W
                ms = masks[src + 1][:, :self.slots[src + 1].n_latents]
                cols = ms.any(0).nonzero().flatten()
                if len(cols):
                    delta = (abl.f[src] - base.f[src])[..., cols]                     # [batch pos k]
                    y = y + (ms[:, cols].to(delta.dtype)[:, None, None, :] * delta) @ W[cols]
            if self.tcs.has_skip:
                y = y + self.tcs.skip(layer, x).view(G, B, *x.shape[1:])
            return torch.where(valid, y.expand(G, *y.shape[-3:]), out.view(G, B, *out.shape[1:])).flatten(0, 1)

        with self._mlps(mlp):
            logits = self.model.run_with_hooks(
                tokens.repeat(G, 1), fwd_hooks=[(EMBED_HOOK, lambda x, hook: embed)],
                stop_at_layer=None if stop_layer is None else stop_layer + 1)
        return seen[0] if stop_layer is not None else logits


def _ablated_inputs(engine: ReplacementEngine, prep: ReplacementPrepared, mask: GraphMask) -> ReplacementValues:
    """The ablated run's embedding and error nodes (inputs: clean if kept, baseline if not);
    features are filled in by the caller."""
    clean, base = prep.clean, prep.base
    return ReplacementValues(
        embed=clean.embed if bool(mask.kept(0)[0]) else base.embed,
        f=[],
        e=[clean.e[l] if bool(mask.kept(l + 1)[engine.slots[l + 1].vector]) else base.e[l] for l in range(engine.L)])


def node_ablation(engine: ReplacementEngine, batch: TaskBatch, mask: GraphMask,
                  prep: ReplacementPrepared | None = None) -> Tensor:
    """Last-position logits ``[batch, d_vocab]`` of the replacement model with the nodes
    outside ``mask`` at their baseline (module docstring)."""
    prep = prep or engine.prepare(batch)
    abl = _ablated_inputs(engine, prep, mask)
    valid = prep.valid[..., None]
    f: list[Tensor] = []

    def mlp(layer: int, x: Tensor, out: Tensor) -> Tensor:
        keep = mask.kept(layer + 1).to(x.device)[:engine.slots[layer + 1].n_latents]
        f.append(torch.where(valid & keep, engine.tcs.encode(layer, x), prep.base.f[layer]))
        return torch.where(valid, engine.decoded(layer, f, x) + abl.e[layer], out)

    with torch.no_grad(), engine._mlps(mlp):
        logits = engine.model.run_with_hooks(batch.tokens, fwd_hooks=[(EMBED_HOOK, lambda x, hook: abl.embed)])
    return final_logits(logits, batch.last)


def edge_ablation(engine: ReplacementEngine, batch: TaskBatch, mask: GraphMask,
                  prep: ReplacementPrepared | None = None, *, max_copies: int = 64) -> Tensor:
    """Last-position logits ``[batch, d_vocab]`` when every node reads only its kept in-edges
    (module docstring). Kept features with the same in-mask share one copy of the batch."""
    prep = prep or engine.prepare(batch)
    abl = _ablated_inputs(engine, prep, mask)
    widths = [slot.n_nodes for slot in engine.slots]
    with torch.no_grad():
        for layer in range(engine.L):
            s = layer + 1
            n = engine.slots[s].n_latents
            f_new = prep.base.f[layer].clone()
            groups, members = _mask_groups(mask, s, mask.kept(s)[:n].nonzero().flatten(), widths[:s])
            for a in range(0, len(members), max_copies):
                x = engine.masked_run(batch.tokens, prep, abl, [g[a:a + max_copies] for g in groups], stop_layer=layer)
                f = engine.tcs.encode(layer, x)                                       # [G batch pos d_dict]
                for g, d in enumerate(members[a:a + max_copies]):
                    f_new[..., d] = f[g][..., d]
            abl.f.append(torch.where(prep.valid[..., None], f_new, prep.clean.f[layer]))
        out_masks, _ = _mask_groups(mask, engine.S, torch.zeros(1, dtype=torch.long), widths)
        logits = engine.masked_run(batch.tokens, prep, abl, out_masks)
    return final_logits(logits, batch.last)


def is_transcoder_run(run_config: dict[str, Any]) -> bool:
    """Whether an ingest run's configuration is a transcoder task graph's."""
    return "transcoders" in run_config and "transcoder_kind" in run_config


def replacement_setup(run_config: dict[str, Any], *, task: str, examples: int, split: str, seed: int,
                      baseline: Baseline, device: str = "cpu",
                      mean_examples: int = 64) -> tuple[ReplacementEngine, ReplacementNames, TaskBatch]:
    """The engine, key locator and task data to evaluate the transcoder task graph of an
    ``ingest --graph transcoders`` run (``run_config``: its :Run configuration)."""
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.replacement.jobs import model_and_labels
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples

    spec = get_task(task)
    spec.check_count(examples, split)
    model, label, checkpoint = model_and_labels(run_config["model"], device)
    tcs = load_transcoders(run_config["transcoders"], device=device)
    if tcs.kind != run_config["transcoder_kind"]:
        raise ConfigError(f"the transcoders {run_config['transcoders']} are now {tcs.kind}; the graph was "
                          f"ingested with {run_config['transcoder_kind']}")
    engine = ReplacementEngine(model, tcs, ReplacementConfig(baseline=baseline))
    batch = encode_examples(model.tokenizer, spec.examples(examples, seed=seed, split=split),
                            n_ctx=model.cfg.n_ctx).to(device)
    if baseline == "mean":
        ref_split = "all" if split == "all" else "train"
        ref = spec.examples(min(mean_examples, max(spec.available(ref_split), 1)), seed=seed + 1, split=ref_split)
        engine.mean = engine.mean_baseline(encode_examples(model.tokenizer, ref, n_ctx=model.cfg.n_ctx).to(device))
    names = ReplacementNames(model=label, checkpoint=checkpoint, dictionary=tcs.kind,
                             d_dict=tuple(tcs.d_dict(l) for l in range(tcs.n_layers)))
    return engine, names, batch
