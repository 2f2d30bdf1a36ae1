r"""Running the graph itself: edge ablation and node ablation of an attribution graph.

A graph ``G`` is a set of kept nodes and kept edges over the slots of an
:class:`~ingest.attribution.engine.AttributionEngine` (node indices as in :mod:`ingest.attribution.slots`;
the output is slot ``len(slots)``). Every node has a baseline value ``b`` (the engine's: mean over
a reference set, zero, or the counterfactual prompt's value); BOS and padding stay clean.

**Node ablation** (an ordinary forward pass): at each slot's hook, in forward order, the latents
and error node computed from what flows in are kept if they are in ``G`` and replaced by their
baseline otherwise, ``x'_s = decode(f') + e'``. The kept nodes between two others are all joined:
node ablation silently keeps the complete graph between the remaining nodes.

**Edge ablation** (the frozen graph): each downstream node ``d`` of slot ``m`` computes its value
from its own input, in which every upstream node contributes its value *in the ablated run* if the
edge ``u → d`` is kept and its baseline otherwise:

    v_s^{(d)} = decode_s(f_s^b + M_d ∘ (f'_s − f_s^b)) + e_s^b + [e_s → d kept] (e'_s − e_s^b)
    f'_d = encode_m(F_m(v^{(d)}))[d]          (an error node: e'_m = e_m(F_m(v^{(e)})))

where ``F_m`` is the model between the slots and hook ``m``; a node outside ``G`` takes its baseline.
Slots are computed in forward order, so ablations propagate. The output reads its own masked
input the same way. Downstream nodes with the same in-mask share one forward pass; distinct
masks run as copies of the batch.

The passes do only work that can change the result: a pass starts at the latest layer at or below
its hook's whose incoming residual stream is a function of slot values (:func:`residual_starts`),
so it reads only those slots and the ones after; in-edges from slots it does not read, or from
nodes whose value equals their baseline, are ignored when grouping (their bit changes nothing);
and a kept node that no computed node reads through a kept edge is left at its baseline (unless
the caller asks for the ``latents``).

With every edge between kept nodes kept, edge ablation equals node ablation; with every node and
edge kept it reproduces the clean run; with nothing kept, the fully ablated run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ingest.attribution.batch import Prepared
from ingest.attribution.engine import AttributionEngine
from ingest.attribution.hooks import run_hooked
from ingest.errors import AttributionError
from ingest.tasks.encode import TaskBatch, final_logits

Pair = tuple[int, int]
#: where a pass may start: the residual stream entering a layer as a function of the slot
#: values, and the slots such a pass reads
Start = tuple[Callable[[list[Tensor]], Tensor], set[int]]


@dataclass(frozen=True)
class GraphMask:
    """Kept nodes per slot (bool ``[n_nodes]``) and kept edges per (upstream slot ``s``,
    downstream slot ``m``) as a dense bool matrix ``[n_nodes_m, n_nodes_s]`` (the output, slot
    ``len(slots)``, has one node and is always kept). A missing pair keeps no edge."""

    nodes: Mapping[int, Tensor]
    edges: Mapping[Pair, Tensor]

    @classmethod
    def complete(cls, engine: AttributionEngine, nodes: Mapping[int, Tensor]) -> GraphMask:
        """Every edge between kept nodes (the graph node ablation runs implicitly)."""
        full = {**{s: nodes[s].bool() for s in range(engine.S)}, engine.S: torch.ones(1, dtype=torch.bool)}
        edges = {(s, m): full[m][:, None] & full[s][None, :] for m in range(1, engine.S + 1) for s in range(m)}
        return cls(nodes={s: full[s] for s in range(engine.S)}, edges=edges)

    @classmethod
    def from_edges(cls, engine: AttributionEngine, edges: Mapping[Pair, Any], *, keep_errors: bool = True) -> GraphMask:
        """The graph of some edges (anything with ``dst`` and ``src`` index tensors, e.g. the
        accumulator's result): their endpoints, plus every slot's vector node (the error nodes and
        the embedding input) if ``keep_errors``."""
        sizes = [slot.n_nodes for slot in engine.slots] + [1]
        nodes = {s: torch.zeros(sizes[s], dtype=torch.bool) for s in range(engine.S)}
        kept = {}
        for (s, m), e in edges.items():
            M = torch.zeros((sizes[m], sizes[s]), dtype=torch.bool)
            M[e.dst.long(), e.src.long()] = True
            kept[s, m] = M
            nodes[s][e.src.long()] = True
            if m < engine.S:
                nodes[m][e.dst.long()] = True
        if keep_errors:
            for s, slot in enumerate(engine.slots):
                nodes[s][slot.vector] = True
        return cls(nodes=nodes, edges=kept)

    def complement(self, engine: AttributionEngine, ablation: str, *, keep_errors: bool = True) -> GraphMask:
        """Everything but this graph. For edge ablation: every node, and every edge of the
        complete graph that is not in this one. For node ablation: every node not in this one
        (error nodes stay kept if ``keep_errors``)."""
        every = {s: torch.ones(slot.n_nodes, dtype=torch.bool) for s, slot in enumerate(engine.slots)}
        full = GraphMask.complete(engine, every)
        if ablation == "edge":
            return GraphMask(nodes=every, edges={p: M & ~self.edges[p] if p in self.edges else M
                                                 for p, M in full.edges.items()})
        nodes = {s: ~k for s, k in self.nodes.items()}
        if keep_errors:
            for s, slot in enumerate(engine.slots):
                nodes[s][slot.vector] = True
        return GraphMask.complete(engine, nodes)

    def kept(self, s: int) -> Tensor:
        return self.nodes[s]

    @property
    def n_edges(self) -> int:
        return int(sum(int(M.sum()) for M in self.edges.values()))

    @property
    def n_nodes(self) -> int:
        return int(sum(int(k.sum()) for k in self.nodes.values())) + 1  # + the output


def node_ablation(engine: AttributionEngine, batch: TaskBatch, mask: GraphMask,
                  prep: Prepared | None = None, *, latents: dict[int, Tensor] | None = None) -> Tensor:
    """Last-position logits [batch, d_vocab] of an ordinary forward pass with the nodes outside
    ``mask`` at their baseline; ``latents``, if given, receives each slot's latents in that run."""
    prep = prep or engine.prepare(batch)
    index = {slot.hook: s for s, slot in enumerate(engine.slots)}

    def ablate(x: Tensor, hook: Any) -> Tensor:
        s = index[hook.name]
        slot = engine.slots[s]
        flat = x.flatten(-2) if x.ndim == 4 else x
        keep = mask.kept(s).to(flat.device)
        valid = prep.valid[..., None]
        if slot.dictionary is None:
            out = torch.where(valid & keep[slot.vector], flat, prep.base[s])
        else:
            f = slot.dictionary.encode(flat)
            e = flat - slot.dictionary.decode(f)
            fb = prep.f_base[s]
            eb = prep.base[s] - slot.dictionary.decode(fb)
            f2 = torch.where(keep[:slot.n_latents], f, fb)
            if latents is not None:
                latents[s] = torch.where(valid, f2, f)
            e2 = e if bool(keep[slot.vector]) else eb
            out = torch.where(valid, slot.dictionary.decode(f2) + e2, flat)
        return out.view(x.shape)

    with torch.no_grad():
        logits = run_hooked(engine.model, batch.tokens, fwd_hooks=[(s.hook, ablate) for s in engine.slots])
    return final_logits(logits, batch.last)


def edge_ablation(engine: AttributionEngine, batch: TaskBatch, mask: GraphMask,
                  prep: Prepared | None = None, *, max_copies: int = 64,
                  latents: dict[int, Tensor] | None = None, starts: dict[int, Start] | None = None) -> Tensor:
    """Last-position logits [batch, d_vocab] when every node of the graph reads only its kept
    in-edges (see the module docstring); ``latents``, if given, receives each slot's latents in
    the ablated run (the last slot's at each prompt's last position only, when only the
    output reads it). ``starts``: :func:`residual_starts` of ``batch`` and ``prep``, when the
    caller runs many graphs on one batch (it costs a forward pass)."""
    prep = prep or engine.prepare(batch)
    S = engine.S
    starts = residual_starts(engine, batch, prep) if starts is None else starts
    n_layers = int(engine.model.cfg.n_layers)
    widths = [slot.n_nodes for slot in engine.slots]
    # each pass starts at the latest layer <= its hook's whose incoming residual is a function of
    # slot values, and reads only the slots it needs; the output reads the last layer's
    begin = [_start_layer(starts, slot.layer) for slot in engine.slots] + [_start_layer(starts, n_layers)]
    reads = [set(range(m)) if L is None else starts[L][1] & set(range(m)) for m, L in enumerate(begin)]
    # without ``latents``, a node no computed node reads (through a kept edge, in a pass that reads
    # its slot) is left at its baseline: nothing depends on its value
    wanted = _read_nodes(engine, mask, reads) if latents is None else None
    moved: list[Tensor] = []                    # per slot: nodes whose kept value differs from the baseline
    f_abl: list[Tensor | None] = [None] * S     # latents in the ablated run
    e_abl: list[Tensor] = [None] * S            # type: ignore[list-item]  vector node values
    with torch.no_grad():
        for m, slot in enumerate(engine.slots):
            keep = mask.kept(m)
            if slot.dictionary is None:
                e_abl[m] = prep.clean[m] if bool(keep[slot.vector]) else prep.base[m]
                moved.append(torch.zeros(slot.n_nodes, dtype=torch.bool))
                moved[m][slot.vector] = bool((e_abl[m] != prep.base[m]).any())
                continue
            fb = prep.f_base[m]
            if fb is None:
                raise AttributionError(f"no baseline latents for {slot.hook}")
            f_new = fb.clone()
            e_new = prep.base[m] - slot.dictionary.decode(fb)
            # Only the output reads the last slot when nothing after it mixes positions: its
            # nodes are then needed at each prompt's last position only.
            last_only = m == S - 1 and positionwise_readout(engine.model, slot.hook)
            rows = torch.arange(len(batch), device=fb.device)
            f_sub = f_new[rows, batch.last][:, None] if last_only else f_new      # [n T' d_dict]
            e_sub = e_new[rows, batch.last][:, None] if last_only else e_new
            dsts = keep if wanted is None else keep & wanted[m]
            groups, members = _mask_groups(mask, m, dsts.nonzero().flatten(), widths[:m],
                                           _relevant(moved, reads[m]))
            if members:
                # Each kept latent reads its own group's copy; the error node reads its group's.
                g_of = torch.cat([torch.full((len(d),), g) for g, d in enumerate(members)])
                node = torch.cat(members)
                lat = node < slot.n_latents
                start = 0
                for ys in _masked_incoming(engine, batch, prep, f_abl, e_abl, m, groups, max_copies, starts,
                                           begin[m]):
                    if last_only:
                        ys = ys[:, rows, batch.last][:, :, None]
                    f = slot.dictionary.encode(ys)                          # [copies n T' d_dict]
                    here = (g_of >= start) & (g_of < start + len(ys))
                    sel = here & lat
                    f_sub[..., node[sel]] = f[g_of[sel] - start, ..., node[sel]].permute(1, 2, 0)
                    for g in g_of[here & ~lat].tolist():
                        e_sub = ys[g - start] - slot.dictionary.decode(f[g - start])
                    start += len(ys)
            if last_only:
                f_new[rows, batch.last] = f_sub[:, 0]
                e_new[rows, batch.last] = e_sub[:, 0]
            else:
                f_new, e_new = f_sub, e_sub
            f_abl[m] = torch.where(prep.valid[..., None], f_new, prep.f_clean[m])  # type: ignore[arg-type]
            if latents is not None:
                latents[m] = f_abl[m]  # type: ignore[assignment]
            e_abl[m] = torch.where(prep.valid[..., None], e_new, prep.clean[m] - slot.dictionary.decode(prep.f_clean[m]))
            eb = prep.base[m] - slot.dictionary.decode(fb)
            moved.append(torch.cat([(f_abl[m] != fb).flatten(0, -2).any(0),
                                    (e_abl[m] != eb).any().reshape(1)]))
        out_masks, _ = _mask_groups(mask, S, torch.zeros(1, dtype=torch.long), widths, _relevant(moved, reads[S]))
        L = begin[S]
        values = _masked_values(engine, prep, f_abl, e_abl, out_masks, upto=S, needed=None if L is None else reads[S])
        if L is not None:
            logits, _ = engine.frozen_forward(starts[L][0](values), values, start_at_layer=L)
        else:
            logits, _ = engine.frozen_forward(batch.tokens, values)
    return final_logits(logits, batch.last)


def _start_layer(starts: Mapping[int, Start], layer: int) -> int | None:
    """The latest layer <= ``layer`` a pass may start at (``None``: from the tokens)."""
    return max((L for L in starts if L <= layer), default=None)


def _read_nodes(engine: AttributionEngine, mask: GraphMask, reads: list[set[int]]) -> list[Tensor]:
    """Per slot, the nodes whose ablated value some computed node reads: a kept edge into a kept
    node that is itself read (the output always is), in a pass that reads the upstream slot."""
    S = engine.S
    out: list[Tensor] = [torch.ones(1, dtype=torch.bool)] * (S + 1)
    for s in range(S - 1, -1, -1):
        read = torch.zeros(engine.slots[s].n_nodes, dtype=torch.bool)
        for m in range(s + 1, S + 1):
            if s in reads[m] and (s, m) in mask.edges:
                dst = out[m] & mask.kept(m) if m < S else out[m]
                if bool(dst.any()):
                    read |= mask.edges[s, m][dst].any(0)
        out[s] = read
    return out


def _relevant(moved: list[Tensor], reads: set[int]) -> list[Tensor]:
    """Per upstream slot, the nodes whose in-edge bit can change a pass that reads ``reads``: a
    node of a slot the pass does not read, or whose kept value equals its baseline, cannot."""
    return [m if s in reads else torch.zeros_like(m) for s, m in enumerate(moved)]


def positionwise_readout(model: Any, hook: str) -> bool:
    """Whether the logits depend on ``hook`` position by position (nothing after it mixes
    positions): the last layer's ``resid_post`` or ``mlp_out``."""
    last = int(model.cfg.n_layers) - 1
    return hook in (f"blocks.{last}.hook_resid_post", f"blocks.{last}.hook_mlp_out")


def _mask_groups(mask: GraphMask, m: int, dsts: Tensor, widths: list[int],
                 relevant: list[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """Group downstream nodes ``dsts`` of slot ``m`` by their kept in-edges: the distinct
    in-masks (per upstream slot, bool ``[groups, n_nodes_s]``) and the members of each group.
    With ``relevant`` (per upstream slot, bool ``[n_nodes_s]``), only the bits of those nodes
    count; the others cannot change what flows in and are cleared."""
    if len(dsts) == 0:
        return [], []
    if not widths:  # the first slot reads no slot: one group
        return [], [dsts]
    rows = [mask.edges[s, m][dsts] if (s, m) in mask.edges else torch.zeros((len(dsts), w), dtype=torch.bool)
            for s, w in enumerate(widths)]
    if relevant is not None:
        rows = [r & k for r, k in zip(rows, relevant, strict=True)]
    uniq, inv = torch.unique(torch.cat(rows, dim=1), dim=0, return_inverse=True)
    return list(torch.split(uniq, widths, dim=1)), [dsts[inv == g] for g in range(len(uniq))]


def _masked_values(engine: AttributionEngine, prep: Prepared, f_abl: list[Tensor | None], e_abl: list[Tensor],
                   masks: list[Tensor], upto: int, needed: set[int] | None = None) -> list[Tensor]:
    """Hook values of slots ``< upto`` under ``G`` in-masks at once (``masks[s]``: bool ``[G,
    n_nodes_s]``), as ``[G * batch, pos, d_in]``; slots from ``upto`` on: clean, repeated. Slots
    outside ``needed`` (when given) are not read by the caller and get an empty placeholder.

    ``decode`` is affine, so a masked value is the baseline value plus the kept nodes' changes:
    ``b_s + (M ∘ (f' − f^b)) W_dec + [e kept](e' − e^b)``, summed only over the latents some
    copy keeps."""
    G = masks[0].shape[0] if masks else 1
    values = []
    for s, slot in enumerate(engine.slots):
        if needed is not None and s not in needed:
            values.append(prep.clean[s].new_empty(0))
            continue
        if s >= upto:
            values.append(prep.clean[s].repeat(G, *([1] * (prep.clean[s].ndim - 1))))
            continue
        keep_vec = masks[s][:, slot.vector].view(G, 1, 1, 1)
        if slot.dictionary is None:
            values.append(torch.where(keep_vec, e_abl[s], prep.base[s]).flatten(0, 1))
            continue
        fb = prep.f_base[s]
        eb = prep.base[s] - slot.dictionary.decode(fb)
        value = prep.base[s] + torch.where(keep_vec, e_abl[s] - eb, torch.zeros((), dtype=eb.dtype))
        cols = masks[s][:, :slot.n_latents].any(0).nonzero().flatten()
        if len(cols):
            delta = (f_abl[s] - fb)[..., cols]  # type: ignore[operator]  [n T k]
            kept = masks[s][:, cols].to(delta.dtype)[:, None, None, :]
            value = value + (kept * delta) @ slot.dictionary.W_dec[cols].to(delta.dtype)
        values.append(value.flatten(0, 1))
    return values


def _masked_incoming(engine: AttributionEngine, batch: TaskBatch, prep: Prepared, f_abl: list[Tensor | None],
                     e_abl: list[Tensor], m: int, group: list[Tensor], max_copies: int,
                     starts: Mapping[int, Start], begin: int | None) -> list[Tensor]:
    """What flows into hook ``m`` under each in-mask of ``group`` (``group[s]``: bool ``[G,
    n_nodes_s]``), ``[G, batch, pos, d_in]`` per chunk of copies. A pass starts at layer
    ``begin`` (a key of ``starts``: the residual stream entering it is a function of the slot
    values) and runs the layers from there to ``m``'s; from the tokens when ``begin`` is None."""
    out: list[Tensor] = []
    layer = engine.slots[m].layer
    G = group[0].shape[0] if group else 1  # no upstream slot: one pass
    for a in range(0, G, max_copies):
        chunk = [g[a:a + max_copies] for g in group]
        copies = min(max_copies, G - a)
        if begin is not None:
            fn, needed = starts[begin]
            values = _masked_values(engine, prep, f_abl, e_abl, chunk, upto=m, needed=needed)
            _, incoming = engine.frozen_forward(fn(values), values, start_at_layer=begin,
                                                stop_at_layer=layer + 1)
        else:
            values = _masked_values(engine, prep, f_abl, e_abl, chunk, upto=m)
            _, incoming = engine.frozen_forward(batch.tokens.repeat(copies, 1), values, stop_at_layer=layer + 1)
        y = incoming[m]
        if y is None:
            raise AttributionError(f"the forward pass did not reach {engine.slots[m].hook}")
        out.append(y.view(copies, len(batch), *y.shape[1:]))
    return out


def residual_starts(engine: AttributionEngine, batch: TaskBatch, prep: Prepared) -> dict[int, Start]:
    """For each layer L >= 1 whose incoming residual stream is a function of the slot values (the
    previous layer's ``resid_post``, or the embedding plus every earlier ``attn_out`` and
    ``mlp_out``), that function, checked on the clean run, and the slots a pass started there
    reads (the function's arguments and the slots inside layers >= L). Layers missing from the
    result run from the tokens."""
    index = {slot.hook: s for s, slot in enumerate(engine.slots)}
    n_layers = int(engine.model.cfg.n_layers)
    seen: dict[int, Tensor] = {}

    def keep(x: Tensor, hook: Any) -> None:
        seen[int(hook.name.split(".")[1])] = x

    with torch.no_grad():
        run_hooked(engine.model, batch.tokens, fwd_hooks=[(f"blocks.{L}.hook_resid_pre", keep)
                                                          for L in range(1, n_layers)])
    out: dict[int, Start] = {}
    for L in range(1, n_layers + 1):
        later = {s for s, slot in enumerate(engine.slots) if slot.layer >= L}
        post = index.get(f"blocks.{L - 1}.hook_resid_post")
        if post is not None:
            out[L] = (lambda values, s=post: values[s]), later | {post}
            continue
        parts = [index.get("blocks.0.hook_resid_pre")] + [index.get(f"blocks.{layer}.hook_{kind}")
                                                          for layer in range(L) for kind in ("attn_out", "mlp_out")]
        if None in parts or L not in seen:
            continue
        fn = (lambda values, ps=tuple(parts): sum(values[p] for p in ps))  # type: ignore[misc]
        if torch.allclose(fn(prep.clean), seen[L], atol=1e-4, rtol=1e-4):
            out[L] = fn, later | set(parts)  # type: ignore[arg-type]
    return out


#: The per-example metrics :func:`output_metrics` returns, by name.
METRICS = ("logit_diff", "answer_logit", "answer_prob", "loss", "kl")


def output_metrics(logits: Tensor, clean_logits: Tensor, batch: TaskBatch) -> dict[str, Tensor]:
    """Per-example metrics of last-position logits [batch, d_vocab]: the logit difference
    (answer − counterfactual answer), the answer's logit and probability, the loss (cross
    entropy of the answer) and KL(clean ‖ ablated) of the next-token distributions."""
    rows = torch.arange(len(batch), device=logits.device)
    logp = logits.log_softmax(-1)
    clean_logp = clean_logits.log_softmax(-1)
    return {"logit_diff": logits[rows, batch.answer] - logits[rows, batch.cf_answer],
            "answer_logit": logits[rows, batch.answer],
            "answer_prob": logp[rows, batch.answer].exp(),
            "loss": -logp[rows, batch.answer],
            "kl": (clean_logp.exp() * (clean_logp - logp)).sum(-1)}
