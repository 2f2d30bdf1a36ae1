r"""Integrated-gradients edges between dictionary nodes: the computational graph of a model.

Definitions (also in the README's "Attribution" section)
--------------------------------------------------------
Slots ``s`` (see :mod:`.slots`) are hook points in forward order. At hook ``s`` and graph
position ``p`` the activation is written exactly as ``x_s[p] = decode_s(f_s[p]) + e_s[p]``,
so its nodes are the latents ``f_s[p, u]`` and the error node ``e_s[p]`` (for the embedding
slot, the embedding vector itself). Graph positions are every prompt position except BOS
and padding, which are held at their clean values throughout.

**Frozen graph.** For edges, the value at every slot's hook is replaced by a leaf
``x̂_s(t) = b_s + t (x_s - b_s)``, where ``b_s`` is the baseline value at the hook
(``decode(baseline latents) + baseline error``). What flows *into* hook ``m``, call it
``y_m(t)``, then depends on each upstream node only through paths that cross no other
dictionary hook: every node between ``u`` and ``λ`` keeps its own value instead of being
recomputed from ``u``, so an edge is ``u``'s *direct* effect (through the residual stream
and the components without a dictionary: attention, MLPs, norms).

**Edge weight.** For a downstream scalar ``λ`` (latent ``d`` of slot ``m`` at position
``q``: ``λ = encode_m(y_m(t))[q, d]``; or the metric ``λ = logit[answer] - logit[cf_answer]``
at the last position), all of ``λ``'s upstream nodes move together along the straight path
``t ∈ [0, 1]`` (the integrated-gradients path ``t·f`` from the baseline) and

    w(u@p → λ) = (f_u[p] - f_u^base[p]) · (1/K) Σ_k  ∂λ/∂f_u[p] |_{t = (k - ½)/K}

(midpoint rule, ``K = steps``; for a vector node the product is a dot product over its
width). ``∂λ/∂f_u = W_dec[u] · ∂λ/∂x̂_s``, because ``decode`` is affine. Completeness
follows: ``Σ_{u,p} w(u@p → λ) → λ(t=1) - λ(t=0)`` as ``K`` grows, where ``λ(t=1)`` is the
clean value and ``λ(t=0)`` the value with every upstream node at its baseline. ``K = 1``
is attribution patching (the gradient at the path's midpoint).

**Error nodes downstream.** An error node is a vector, so its in-edges use the scalar
``λ = ⟨g, e_m(y_m)⟩`` with ``g = ∂metric/∂x_m`` at the clean input (a constant): the error
node's first-order contribution to the metric, as Sparse Feature Circuits does.

**Positions and examples.** ``w(u@p → d@q)`` is zero for ``p > q`` (causal attention).
α contracts an example's pairs ``(p, q)`` to ``w(u → d)`` (sum, mean = sum / number of
graph positions, or max = the entry of largest magnitude; optionally of ``|w|``), per-example
weights below ``example_threshold`` are dropped, and β aggregates examples (see
:mod:`.aggregate`).

**Node attributions** (stored on the nodes): the total effect of each node on the metric,
by integrated gradients over one slot at a time (its latents and error node move together
from the baseline; every other hook is recomputed normally), summed over positions.

Vectorisation: one forward pass per IG step serves a chunk of downstream nodes, and their
gradients come from one batched backward (``torch.autograd.grad(..., is_grads_batched=True)``,
vmap over cotangents) instead of one backward each. With signed sum/mean α, the cotangents of
one latent at all its positions share a slot of the batch (the sum is linear), so a chunk
covers latents rather than (latent, position) pairs. Downstream nodes of different examples
share the same slot (examples are independent rows of the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ingest.attribution.config import AttributionConfig, Baseline, PositionAgg
from ingest.attribution.slots import Slot
from ingest.errors import AttributionError
from ingest.tasks.encode import TaskBatch

#: Per-slot hook values, flattened to ``[batch pos d_in]`` (``hook_z`` is ``[batch pos (n_heads d_head)]``).
HookValues = Float[Tensor, "batch pos d_in"]


@dataclass
class EdgeRows:
    """Per-example edges of one (upstream slot, downstream slot) pair, α-aggregated.

    ``example`` indexes the batch; ``dst`` and ``src`` are node indices inside their slots
    (the vector node of a slot is its ``n_latents``; the output's only node is 0).
    """

    example: Int[Tensor, " n"]
    dst: Int[Tensor, " n"]
    src: Int[Tensor, " n"]
    weight: Float[Tensor, " n"]

    def __len__(self) -> int:
        return int(self.weight.numel())


@dataclass
class BatchGraph:
    """What one batch of examples contributes to the graph. ``S = len(slots)`` is the output."""

    n_examples: int
    edges: dict[tuple[int, int], EdgeRows] = field(default_factory=dict)
    #: dst slot -> [batch, n_nodes]: Σ_q (λ(clean) - λ(baseline)) of each downstream node
    #: (what its in-edges sum to under completeness, with α = sum).
    delta: dict[int, Tensor] = field(default_factory=dict)
    #: slot -> [batch, n_nodes]: total-effect IG attribution of each node to the metric, Σ over positions.
    node_attr: dict[int, Tensor] = field(default_factory=dict)
    #: slot -> [n_nodes] number of (example, position)s where the node is active (clean or baseline).
    active: dict[int, Tensor] = field(default_factory=dict)
    #: attention slot -> [n_latents, n_heads]: Σ |per-head contribution| to each latent's activation.
    head_mass: dict[int, Tensor] = field(default_factory=dict)
    #: [batch] metric on the clean prompt and at the edge graph's baseline.
    metric_clean: Tensor | None = None
    metric_base: Tensor | None = None


@dataclass
class Prepared:
    """Clean and baseline values of every slot for one batch (graph positions only differ)."""

    valid: Bool[Tensor, "batch pos"]
    clean: list[HookValues]
    base: list[HookValues]
    f_clean: list[Tensor | None]
    f_base: list[Tensor | None]
    grad_metric: list[HookValues]  # ∂metric/∂x_s at the clean input (total effect)

    @property
    def n_valid(self) -> Tensor:
        return self.valid.sum(-1)


def logit_diff(logits: Float[Tensor, "batch pos d_vocab"], batch: TaskBatch) -> Float[Tensor, " batch"]:
    """The output metric: logit[answer] - logit[cf_answer] at each prompt's last token."""
    rows = torch.arange(len(batch), device=logits.device)
    last = logits[rows, batch.last]
    return last[rows, batch.answer] - last[rows, batch.cf_answer]


def _flat(x: Tensor) -> Tensor:
    return x.flatten(-2) if x.ndim == 4 else x


@dataclass
class _Targets:
    """Downstream nodes of one slot for one batch, grouped into batched-backward slots.

    Target ``i`` is node ``node[i]`` at (``ex[i]``, ``q[i]``); it goes into backward slot
    ``rank[i]`` (shared across examples). Group ``g`` (a slot's content for one example) is
    (``g_ex[g]``, ``g_node[g]``); ``table[ex, rank]`` is the group id or -1.
    """

    ex: Tensor
    q: Tensor
    node: Tensor
    rank: Tensor
    g_ex: Tensor
    g_node: Tensor
    table: Tensor

    @property
    def width(self) -> int:
        return int(self.table.shape[1])


class AttributionEngine:
    """Computes :class:`BatchGraph` s for a model, its slots and an :class:`AttributionConfig`.

    For the ``mean`` baseline give ``mean`` (from :meth:`mean_baseline` on a reference batch).
    """

    def __init__(self, model: Any, slots: Sequence[Slot], config: AttributionConfig, *,
                 skip_bos: bool = True, metric: Callable[[Tensor, TaskBatch], Tensor] = logit_diff,
                 mean: MeanBaseline | None = None) -> None:
        self.model = model
        self.slots = list(slots)
        self.config = config
        self.skip_bos = skip_bos
        self.metric = metric
        self.mean = mean
        if config.baseline is Baseline.MEAN and mean is None:
            raise AttributionError("the mean baseline needs reference means (AttributionEngine.mean_baseline)")
        self.S = len(self.slots)
        self._index = {s.hook: i for i, s in enumerate(self.slots)}

    # -- forward passes --------------------------------------------------------------------

    def run_cached(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """A normal forward pass; returns logits and every slot's (flattened) hook value."""
        cache: dict[str, Tensor] = {}

        def keep(x: Tensor, hook: Any) -> None:
            cache[hook.name] = _flat(x).detach()

        with torch.no_grad():
            logits = self.model.run_with_hooks(tokens, fwd_hooks=[(s.hook, keep) for s in self.slots])
        return logits, [cache[s.hook] for s in self.slots]

    def frozen_forward(self, tokens: Tensor, values: Sequence[Tensor], *,
                       stop_at_layer: int | None = None) -> tuple[Tensor, list[Tensor | None]]:
        """Forward pass of the frozen graph: every slot's hook outputs ``values[s]`` (what
        flows in is recorded as ``y_s`` and otherwise discarded). Returns the logits (or the
        residual stream, with ``stop_at_layer``) and ``y_s`` per slot (``None`` for slots not
        reached). Gradients reach ``values`` only through paths between consecutive slots."""
        incoming: list[Tensor | None] = [None] * self.S

        def swap(x: Tensor, hook: Any) -> Tensor:
            i = self._index[hook.name]
            incoming[i] = _flat(x)
            return values[i].view(x.shape)

        out = self.model.run_with_hooks(tokens, fwd_hooks=[(s.hook, swap) for s in self.slots],
                                        stop_at_layer=stop_at_layer)
        return out, incoming

    def graph_positions(self, batch: TaskBatch) -> Bool[Tensor, "batch pos"]:
        """Positions that carry nodes: up to each prompt's last token, without BOS."""
        T = batch.tokens.shape[1]
        pos = torch.arange(T, device=batch.tokens.device)
        valid = pos[None, :] <= batch.last[:, None]
        if self.skip_bos:
            valid &= pos[None, :] >= 1
        return valid

    def mean_baseline(self, batch: TaskBatch, *, batch_size: int = 32) -> MeanBaseline:
        """Per-slot mean hook value and mean latents over the graph positions of ``batch``."""
        sums_x: list[Tensor] = []
        sums_f: list[Tensor | None] = []
        count = 0
        for start in range(0, len(batch), batch_size):
            part = batch[start:start + batch_size]
            valid = self.graph_positions(part)
            _, values = self.run_cached(part.tokens)
            xs = [v[valid].sum(0) for v in values]
            with torch.no_grad():
                fs = [None if s.dictionary is None else s.dictionary.encode(v[valid]).sum(0)
                      for s, v in zip(self.slots, values, strict=True)]
            sums_x = xs if not sums_x else [a + b for a, b in zip(sums_x, xs, strict=True)]
            sums_f = fs if not sums_f else [None if a is None else a + b for a, b in zip(sums_f, fs, strict=True)]
            count += int(valid.sum())
        if count == 0:
            raise AttributionError("the mean baseline's reference set has no graph positions")
        return MeanBaseline(x=[x / count for x in sums_x], f=[None if f is None else f / count for f in sums_f])

    # -- preparation -----------------------------------------------------------------------

    def prepare(self, batch: TaskBatch) -> Prepared:
        """Clean values, baseline values and the metric gradient of every slot for ``batch``."""
        valid = self.graph_positions(batch)
        _, clean = self.run_cached(batch.tokens)
        for s, v in zip(self.slots, clean, strict=True):
            if not torch.isfinite(v).all():
                raise AttributionError(f"non-finite activations at {s.hook} on the clean prompts")
        kind = self.config.baseline
        if kind is Baseline.COUNTERFACTUAL:
            _, raw = self.run_cached(batch.cf_tokens)
        elif kind is Baseline.MEAN:
            assert self.mean is not None
            raw = [m.to(v.dtype).expand_as(v) for m, v in zip(self.mean.x, clean, strict=True)]
        else:
            raw = [self._zero_value(s, v) for s, v in zip(self.slots, clean, strict=True)]
        keep = valid[..., None]
        base = [torch.where(keep, r, c) for r, c in zip(raw, clean, strict=True)]
        f_clean: list[Tensor | None] = []
        f_base: list[Tensor | None] = []
        for i, (s, c, b) in enumerate(zip(self.slots, clean, base, strict=True)):
            if s.dictionary is None:
                f_clean.append(None)
                f_base.append(None)
                continue
            with torch.no_grad():
                fc = s.dictionary.encode(c)
                if kind is Baseline.ZERO:
                    fb = torch.zeros_like(fc)
                elif kind is Baseline.MEAN:
                    # Mean latents, not encode(mean x); decode is affine, so decode(mean f) +
                    # mean e = mean x whichever way the hook value is split.
                    assert self.mean is not None and self.mean.f[i] is not None
                    fb = self.mean.f[i].to(fc.dtype).expand_as(fc)  # type: ignore[union-attr]
                else:
                    fb = s.dictionary.encode(b)
                fb = torch.where(keep, fb, fc)
            if not torch.isfinite(fc).all() or not torch.isfinite(fb).all():
                raise AttributionError(f"non-finite latents of the dictionary on {s.hook}")
            f_clean.append(fc)
            f_base.append(fb)
        return Prepared(valid=valid, clean=clean, base=base, f_clean=f_clean, f_base=f_base,
                        grad_metric=self._grad_metric(batch))

    def _zero_value(self, slot: Slot, like: Tensor) -> Tensor:
        if slot.dictionary is None:
            return torch.zeros_like(like)
        with torch.no_grad():
            zero = slot.dictionary.decode(torch.zeros(slot.n_latents, dtype=like.dtype, device=like.device))
        return zero.expand_as(like)

    def _grad_metric(self, batch: TaskBatch) -> list[Tensor]:
        """∂metric/∂x_s at the clean input in the normal model (a zero added at each hook)."""
        taps: dict[str, Tensor] = {}

        def tap(x: Tensor, hook: Any) -> Tensor:
            z = torch.zeros_like(x, requires_grad=True)
            taps[hook.name] = z
            return x + z

        with torch.enable_grad():
            logits = self.model.run_with_hooks(batch.tokens, fwd_hooks=[(s.hook, tap) for s in self.slots])
            grads = torch.autograd.grad(self.metric(logits, batch).sum(), [taps[s.hook] for s in self.slots],
                                        allow_unused=True)
        return [_flat(torch.zeros_like(taps[s.hook]) if g is None else g).detach()
                for s, g in zip(self.slots, grads, strict=True)]

    # -- the graph of one batch ------------------------------------------------------------

    def attribute(self, batch: TaskBatch, *, node_attributions: bool = True,
                  heads: bool = True) -> BatchGraph:
        """Edges (α-aggregated per example, pruned at ``example_threshold``), completeness
        deltas, node attributions and head contributions for one batch of examples."""
        prep = self.prepare(batch)
        out = BatchGraph(n_examples=len(batch))
        with torch.no_grad():
            logits0, y0 = self.frozen_forward(batch.tokens, self._path(prep, 0.0))
            logits1, y1 = self.frozen_forward(batch.tokens, self._path(prep, 1.0))
        out.metric_clean = self.metric(logits1, batch).detach()
        out.metric_base = self.metric(logits0, batch).detach()
        active = [self._active(prep, s) for s in range(self.S)]
        for m, slot in enumerate(self.slots):
            if slot.dictionary is None or m == 0:
                continue
            assert y0[m] is not None and y1[m] is not None
            targets = self._targets(prep, m, y0[m])
            out.delta[m] = self._delta(prep, m, y0[m], y1[m])
            active[m] += torch.bincount(targets.node, minlength=slot.n_nodes)
            for start in range(0, targets.width, self.config.chunk):
                stop = min(start + self.config.chunk, targets.width)
                grads = self._integrate(batch, prep, m, targets, start, stop)
                for s, g in grads.items():
                    self._emit(out, prep, s, m, g, targets, start)
        # The output metric: one downstream scalar per example.
        out.delta[self.S] = (out.metric_clean - out.metric_base)[:, None]
        grads = self._integrate(batch, prep, self.S, None, 0, 1)
        for s, g in grads.items():
            self._emit(out, prep, s, self.S, g, None, 0)
        out.active = {s: a for s, a in enumerate(active)}
        if node_attributions:
            out.node_attr = {s: self._node_attribution(batch, prep, s) for s in range(self.S)}
        if heads:
            out.head_mass = {s: self._head_mass(batch, prep, s)
                             for s, slot in enumerate(self.slots) if slot.is_attention}
        return out

    def _path(self, prep: Prepared, t: float, *, grad: bool = False) -> list[Tensor]:
        vals = [b + t * (c - b) for c, b in zip(prep.clean, prep.base, strict=True)]
        return [v.detach().requires_grad_(True) for v in vals] if grad else vals

    def _active(self, prep: Prepared, s: int) -> Tensor:
        slot = self.slots[s]
        counts = torch.zeros(slot.n_nodes, dtype=torch.long, device=prep.valid.device)
        fc, fb = prep.f_clean[s], prep.f_base[s]
        if fc is not None and fb is not None:
            counts[:slot.n_latents] = (((fc != 0) | (fb != 0)) & prep.valid[..., None]).sum((0, 1))
        counts[slot.vector] = prep.valid.sum()
        return counts

    def _targets(self, prep: Prepared, m: int, y0: Tensor) -> _Targets:
        slot = self.slots[m]
        assert slot.dictionary is not None
        fc = prep.f_clean[m]
        with torch.no_grad():
            f0 = slot.dictionary.encode(y0)
        act = ((fc != 0) | (f0 != 0)) & prep.valid[..., None]
        ex, q, node = act.nonzero(as_tuple=True)
        if self.config.error_edges:
            e_ex, e_q = prep.valid.nonzero(as_tuple=True)
            ex, q = torch.cat([ex, e_ex]), torch.cat([q, e_q])
            node = torch.cat([node, torch.full_like(e_ex, slot.vector)])
        return _group(ex, q, node, n=prep.valid.shape[0], T=prep.valid.shape[1], n_nodes=slot.n_nodes,
                      merge_positions=self.config.merges_positions)

    def _downstream_scalars(self, prep: Prepared, m: int, y: Tensor) -> tuple[Tensor, Tensor]:
        """(latent values [n T d], error scalars ⟨g, e(y)⟩ [n T]) of slot ``m`` at incoming ``y``."""
        d = self.slots[m].dictionary
        assert d is not None
        f = d.encode(y)
        err = ((y - d.decode(f)) * prep.grad_metric[m]).sum(-1) * prep.valid
        return f * prep.valid[..., None], err

    def _delta(self, prep: Prepared, m: int, y0: Tensor, y1: Tensor) -> Tensor:
        with torch.no_grad():
            f0, e0 = self._downstream_scalars(prep, m, y0)
            f1, e1 = self._downstream_scalars(prep, m, y1)
        return torch.cat([(f1 - f0).sum(1), (e1 - e0).sum(1)[:, None]], dim=-1)

    def _cotangent(self, prep: Prepared, m: int, y: Tensor, targets: _Targets, start: int, stop: int) -> Tensor:
        """∂λ/∂y_m for the targets in backward slots [start, stop): [stop-start, n, T, d_in]."""
        slot = self.slots[m]
        d = slot.dictionary
        assert d is not None
        y = y.detach()
        sel = (targets.rank >= start) & (targets.rank < stop)
        ex, q, node, rank = targets.ex[sel], targets.q[sel], targets.node[sel], targets.rank[sel] - start
        C = torch.zeros((stop - start, *y.shape), dtype=y.dtype, device=y.device)
        lat = node < slot.n_latents
        if lat.any():
            rows = _latent_jacobian_rows(d, y[ex[lat], q[lat]], node[lat])
            C.index_put_((rank[lat], ex[lat], q[lat]), rows, accumulate=True)
        err = ~lat
        if err.any():
            with torch.enable_grad():
                yy = y.requires_grad_(True)
                e = yy - d.decode(d.encode(yy))
                g_err, = torch.autograd.grad((e * prep.grad_metric[m]).sum(), yy)
            C.index_put_((rank[err], ex[err], q[err]), g_err[ex[err], q[err]], accumulate=True)
        return C

    def _integrate(self, batch: TaskBatch, prep: Prepared, m: int, targets: _Targets | None,
                   start: int, stop: int) -> dict[int, Tensor]:
        """Σ_k ∂λ/∂x̂_s / K for every upstream slot s: {s: [stop-start, n, T, d_in]}."""
        K = self.config.steps
        ups = list(range(min(m, self.S)))
        acc: dict[int, Tensor] = {}
        layer = self.slots[m].layer + 1 if m < self.S else None
        for k in range(K):
            values = self._path(prep, (k + 0.5) / K, grad=True)
            with torch.enable_grad():
                logits, incoming = self.frozen_forward(batch.tokens, values, stop_at_layer=layer)
                leaves = [values[s] for s in ups]
                if targets is None:
                    grads = torch.autograd.grad(self.metric(logits, batch).sum(), leaves, allow_unused=True)
                    grads = tuple(None if g is None else g[None] for g in grads)
                else:
                    y = incoming[m]
                    assert y is not None
                    C = self._cotangent(prep, m, y, targets, start, stop)
                    grads = torch.autograd.grad(y, leaves, grad_outputs=C, is_grads_batched=True,
                                                allow_unused=True)
            for s, g in zip(ups, grads, strict=True):
                if g is not None:
                    acc[s] = acc[s] + g / K if s in acc else g / K
        return acc

    def _emit(self, out: BatchGraph, prep: Prepared, s: int, m: int, gbar: Tensor,
              targets: _Targets | None, start: int) -> None:
        """Project mean gradients on upstream nodes, contract positions, prune, and append edges."""
        A, ids = self._project(prep, s, gbar)                       # [B n T U], [U]
        R = _reduce_positions(A, self.config.alpha, self.config.alpha_abs)  # [B n U]
        n = R.shape[1]
        if targets is None:  # the output: one slot, node 0, every example
            table = torch.arange(n, device=R.device)[None, :]
            g_ex, g_node = torch.arange(n, device=R.device), torch.zeros(n, dtype=torch.long, device=R.device)
        else:
            table = targets.table[:, start:start + R.shape[0]].T    # [B n]
            g_ex, g_node = targets.g_ex, targets.g_node
        b, e, j = ((R != 0) & (table[..., None] >= 0)).nonzero(as_tuple=True)
        group = table[b, e]
        rows = EdgeRows(example=g_ex[group], dst=g_node[group], src=ids[j], weight=R[b, e, j])
        if not self.config.merges_positions:
            rows = _coalesce(rows, self.config.alpha, self.slots[s].n_nodes)
        if self.config.alpha is PositionAgg.MEAN:
            rows.weight = rows.weight / prep.n_valid[rows.example].clamp(min=1).to(rows.weight.dtype)
        keep = rows.weight.abs() >= max(self.config.epsilon, 1e-30)
        rows = EdgeRows(rows.example[keep], rows.dst[keep], rows.src[keep], rows.weight[keep].detach())
        key = (s, m)
        if key in out.edges:
            prev = out.edges[key]
            rows = EdgeRows(*(torch.cat([a, b_]) for a, b_ in zip(
                (prev.example, prev.dst, prev.src, prev.weight), (rows.example, rows.dst, rows.src, rows.weight))))
        out.edges[key] = rows

    def _project(self, prep: Prepared, s: int, gbar: Tensor) -> tuple[Tensor, Tensor]:
        """Attributions of slot ``s``'s nodes: [B n T U] over candidate node ids [U]."""
        slot = self.slots[s]
        dx = prep.clean[s] - prep.base[s]
        vector_ids = torch.tensor([slot.vector], device=dx.device)
        if slot.dictionary is None:
            return (gbar * dx).sum(-1, keepdim=True), vector_ids
        fc, fb = prep.f_clean[s], prep.f_base[s]
        assert fc is not None and fb is not None
        df = fc - fb
        cand = (df != 0).any(0).any(0).nonzero(as_tuple=True)[0]
        W = slot.dictionary.W_dec[cand]                                  # [U d_in]
        dfc = df[..., cand]                                              # [n T U]
        de = dx - dfc @ W                                                # error delta
        A_lat = (gbar @ W.T) * dfc
        A_err = (gbar * de).sum(-1, keepdim=True)
        return torch.cat([A_lat, A_err], dim=-1), torch.cat([cand, vector_ids])

    # -- node attributions and heads -------------------------------------------------------

    def _node_attribution(self, batch: TaskBatch, prep: Prepared, s: int) -> Tensor:
        """Total-effect IG of slot ``s``'s nodes on the metric, Σ over positions: [n, n_nodes]."""
        K = self.config.steps
        slot = self.slots[s]
        gbar = torch.zeros_like(prep.clean[s])
        for k in range(K):
            t = (k + 0.5) / K
            leaf = (prep.base[s] + t * (prep.clean[s] - prep.base[s])).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model.run_with_hooks(
                    batch.tokens, fwd_hooks=[(slot.hook, lambda x, hook: leaf.view(x.shape))])
                g, = torch.autograd.grad(self.metric(logits, batch).sum(), leaf)
            gbar += g / K
        A, ids = self._project(prep, s, gbar[None])
        out = torch.zeros((A.shape[1], slot.n_nodes), dtype=A.dtype, device=A.device)
        out[:, ids] = A[0].sum(1)
        return out.detach()

    def _head_mass(self, batch: TaskBatch, prep: Prepared, s: int) -> Tensor:
        """Σ over active (example, position) of |each head's contribution| to each latent."""
        slot = self.slots[s]
        d = slot.dictionary
        assert d is not None and prep.f_clean[s] is not None
        layer = slot.layer
        z_hook = f"blocks.{layer}.attn.hook_z"
        cache: dict[str, Tensor] = {}
        with torch.no_grad():
            self.model.run_with_hooks(batch.tokens, fwd_hooks=[(z_hook, lambda x, hook: cache.__setitem__("z", x))],
                                      stop_at_layer=layer + 1)
        z = cache["z"]                                                   # [n T H dh]
        H = z.shape[2]
        mass = torch.zeros((slot.n_latents, H), dtype=z.dtype, device=z.device)
        ex, q, node = ((prep.f_clean[s] != 0) & prep.valid[..., None]).nonzero(as_tuple=True)
        if len(node) == 0:
            return mass
        rows = _latent_jacobian_rows(d, prep.clean[s][ex, q], node)     # [N d_in]
        if slot.hook.endswith("hook_z"):
            contrib = (rows.view(-1, H, z.shape[3]) * z[ex, q]).sum(-1)
        else:
            W_O = self.model.blocks[layer].attn.W_O                       # [H dh d_model]
            contrib = torch.einsum("nhd,hdm,nm->nh", z[ex, q], W_O, rows)
        mass.index_add_(0, node, contrib.abs().detach())
        return mass


@dataclass
class MeanBaseline:
    """Reference means per slot: hook value ``x`` [d_in] and latents ``f`` [d_dict] (None: embedding)."""

    x: list[Tensor]
    f: list[Tensor | None]


def _group(ex: Tensor, q: Tensor, node: Tensor, *, n: int, T: int, n_nodes: int,
           merge_positions: bool) -> _Targets:
    """Assign targets to backward slots: one per (example, node) when positions merge, else
    one per (example, position, node); each example numbers its groups 0, 1, ..."""
    key = ex * n_nodes + node if merge_positions else (ex * T + q) * n_nodes + node
    uniq, inv = torch.unique(key, return_inverse=True)
    per_ex = n_nodes if merge_positions else T * n_nodes
    g_ex = uniq // per_ex
    g_node = uniq % n_nodes
    counts = torch.bincount(g_ex, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    g_rank = torch.arange(len(uniq), device=ex.device) - starts[g_ex]
    width = int(counts.max()) if len(uniq) else 0
    table = torch.full((n, width), -1, dtype=torch.long, device=ex.device)
    table[g_ex, g_rank] = torch.arange(len(uniq), device=ex.device)
    return _Targets(ex=ex, q=q, node=node, rank=g_rank[inv], g_ex=g_ex, g_node=g_node, table=table)


def _latent_jacobian_rows(d: Any, rows: Tensor, node: Tensor, *, budget: int = 1 << 24) -> Tensor:
    """∂encode(x)[node_i]/∂x at ``rows[i]``: one backward over a copy of each row (exact for
    any per-token encoder, TopK's active set included)."""
    out = []
    step = max(1, budget // max(1, d.d_dict))
    for a in range(0, len(node), step):
        r = rows[a:a + step].detach().requires_grad_(True)
        with torch.enable_grad():
            f = d.encode(r)
            g, = torch.autograd.grad(f.gather(1, node[a:a + step, None]).sum(), r)
        out.append(g)
    return torch.cat(out) if out else rows.new_zeros((0, rows.shape[-1]))


def _reduce_positions(A: Tensor, alpha: PositionAgg, absolute: bool) -> Tensor:
    """α over the upstream position axis (dim 2) of [B n T U]."""
    if absolute:
        A = A.abs()
    if alpha is PositionAgg.MAX:
        idx = A.abs().argmax(2, keepdim=True)
        return A.gather(2, idx).squeeze(2)
    return A.sum(2)


def _coalesce(rows: EdgeRows, alpha: PositionAgg, n_src: int) -> EdgeRows:
    """Combine rows with the same (example, dst, src) (one per downstream position) by α."""
    if len(rows) == 0:
        return rows
    big = int(rows.dst.max()) + 1
    key = (rows.example * big + rows.dst) * n_src + rows.src
    uniq, inv = torch.unique(key, return_inverse=True)
    if alpha is PositionAgg.MAX:
        hi = torch.full((len(uniq),), -torch.inf, dtype=rows.weight.dtype, device=key.device)
        lo = torch.full((len(uniq),), torch.inf, dtype=rows.weight.dtype, device=key.device)
        hi = hi.scatter_reduce(0, inv, rows.weight, "amax")
        lo = lo.scatter_reduce(0, inv, rows.weight, "amin")
        w = torch.where(hi.abs() >= lo.abs(), hi, lo)
    else:
        w = torch.zeros(len(uniq), dtype=rows.weight.dtype, device=key.device).index_add_(0, inv, rows.weight)
    src = uniq % n_src
    rest = uniq // n_src
    return EdgeRows(example=rest // big, dst=rest % big, src=src, weight=w)
