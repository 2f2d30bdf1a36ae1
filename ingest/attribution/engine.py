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

**Positions and examples.** ``w(u@p → d@q)`` is zero for ``p > q`` under causal attention;
nothing assumes it: a bidirectional model gets those edges, its batch run per prompt length
without padding (which it would read; :meth:`TaskBatch.unpadded`).
α contracts an example's pairs ``(p, q)`` to ``w(u → d)`` (sum, mean = sum / number of
graph positions, or max = the entry of largest magnitude; optionally of ``|w|``), per-example
weights below ``example_threshold`` are dropped, and β aggregates examples (see
:mod:`.aggregate`).

**Node attributions** (stored on the nodes): the total effect of each node on the metric,
by integrated gradients over one slot at a time (its latents and error node move together
from the baseline; every other hook is recomputed normally), summed over positions.

Vectorisation: per IG step and chunk of downstream nodes, one forward pass
(``torch.func.vjp``) and batched backwards for the whole chunk (``torch.func.vmap`` over the
cotangents, a few at a time: :mod:`.reverse`), instead of one backward per downstream node;
weights are frozen meanwhile, so autograd computes input gradients only. With signed sum/mean α, the cotangents of one latent
at all its positions share a copy of the batch (the sum is linear), so a chunk covers latents
rather than (latent, position) pairs; downstream nodes of different examples share a copy
(examples are independent rows of the batch).

Not covered: a latent active only part-way along the path (off at both ends) has no
in-edges, and a latent that switches on or off along the path (TopK, ReLU) makes the
integrand kink, so completeness then converges as 1/K rather than 1/K².
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from ingest.attribution.baseline import reference_mean
from ingest.attribution.batch import BatchGraph, LatentStore, MeanBaseline, Prepared, _flat, logit_diff, merge_graphs
from ingest.attribution.config import AttributionConfig, Baseline, PositionAgg
from ingest.attribution.forward import FORWARD_COST, forward_in_edges, n_upstream_nodes
from ingest.attribution.hooks import run_hooked
from ingest.attribution.nodes import head_mass, node_attribution, steps_per_pass
from ingest.attribution.rows import (EdgeRows, project_on_nodes, prune_early, _coalesce, _group,
                                     _latent_jacobian_rows, _reduce_positions, _Targets)
from ingest.attribution.slots import Slot
from ingest.attribution.reverse import integrate
from ingest.dictionaries.base import Dictionary
from ingest.errors import AttributionError
from ingest.tasks.encode import TaskBatch

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
        if not isinstance(config.steps, int):
            raise AttributionError(f"the engine needs a number of steps, not {config.steps!r} "
                                   "(steps='auto' is resolved by the ingest pipeline, per task)")
        self.mean = mean  # required by the mean baseline; checked when first needed (_means)
        self.S = len(self.slots)
        self._index = {s.hook: i for i, s in enumerate(self.slots)}
        self._ups: dict[int, list[int]] = {}
        self.segments: dict[tuple[int, int], Any] = {}  # (upstream, downstream) slot: blockgrad.Segment or None

    # -- forward passes --------------------------------------------------------------------

    def run_cached(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """A normal forward pass; returns logits and every slot's (flattened) hook value."""
        cache: dict[str, Tensor] = {}

        def keep(x: Tensor, hook: Any) -> None:
            cache[hook.name] = _flat(x).detach()

        with torch.no_grad():
            logits = run_hooked(self.model, tokens, fwd_hooks=[(s.hook, keep) for s in self.slots])
        return logits, [cache[s.hook] for s in self.slots]

    def frozen_forward(self, tokens: Tensor, values: Sequence[Tensor], *, stop_at_layer: int | None = None,
                       start_at_layer: int | None = None,
                       hooks: Sequence[tuple[str, Callable[..., Any]]] = ()) -> tuple[Tensor, list[Tensor | None]]:
        """Forward pass of the frozen graph: every slot's hook outputs ``values[s]`` (what
        flows in is recorded as ``y_s`` and otherwise discarded). Returns the logits (or the
        residual stream, with ``stop_at_layer``) and ``y_s`` per slot (``None`` for slots not
        reached). Gradients reach ``values`` only through paths between consecutive slots. With
        ``start_at_layer``, ``tokens`` is the residual stream entering that layer instead.
        ``hooks``: more (hook name, fn) pairs for the pass, such as recorders."""
        incoming: list[Tensor | None] = [None] * self.S

        def swap(x: Tensor, hook: Any) -> Tensor:
            i = self._index[hook.name]
            incoming[i] = _flat(x)
            return values[i].view(x.shape)

        out = run_hooked(self.model, tokens, fwd_hooks=[*((s.hook, swap) for s in self.slots), *hooks],
                         stop_at_layer=stop_at_layer, start_at_layer=start_at_layer)
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
        return reference_mean(self, batch, batch_size=batch_size)

    # -- preparation -----------------------------------------------------------------------

    def prepare(self, batch: TaskBatch) -> Prepared:
        """Clean values, baseline values and the metric gradient of every slot for ``batch``."""
        valid = self.graph_positions(batch)
        logits, clean = self.run_cached(batch.tokens)
        for s, v in zip(self.slots, clean, strict=True):
            if not torch.isfinite(v).all():
                raise AttributionError(f"non-finite activations at {s.hook} on the clean prompts")
        kind = self.config.baseline
        if kind is Baseline.COUNTERFACTUAL:
            _, raw = self.run_cached(batch.cf_tokens)
        elif kind is Baseline.MEAN:
            raw = [m.to(v.dtype).expand_as(v) for m, v in zip(self._means().x, clean, strict=True)]
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
                    mean_f = self._means().f[i]
                    fb = fc if mean_f is None else mean_f.to(fc.dtype).expand_as(fc)
                else:
                    fb = s.dictionary.encode(b)
                fb = torch.where(keep, fb, fc)
            if not torch.isfinite(fc).all() or not torch.isfinite(fb).all():
                raise AttributionError(f"non-finite latents of the dictionary on {s.hook}")
            f_clean.append(LatentStore.pack(fc))  # sparse as soon as made: memory follows active latents
            f_base.append(LatentStore.pack(fb))
        return Prepared(valid=valid, clean=clean, base=base, f_clean=f_clean, f_base=f_base,
                        grad_metric=self._grad_metric(batch), metric_clean=self.metric(logits, batch))

    def _means(self) -> MeanBaseline:
        if self.mean is None:
            raise AttributionError("the mean baseline needs reference means (AttributionEngine.mean_baseline)")
        return self.mean

    def _dictionary(self, m: int) -> Dictionary:
        d = self.slots[m].dictionary
        if d is None:
            raise AttributionError(f"{self.slots[m].hook} is the embedding: it has no latents downstream")
        return d

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
            logits = run_hooked(self.model, batch.tokens, fwd_hooks=[(s.hook, tap) for s in self.slots])
            grads = torch.autograd.grad(self.metric(logits, batch).sum(), [taps[s.hook] for s in self.slots],
                                        allow_unused=True)
        return [_flat(torch.zeros_like(taps[s.hook]) if g is None else g).detach()
                for s, g in zip(self.slots, grads, strict=True)]

    # -- the graph of one batch ------------------------------------------------------------

    @contextmanager
    def _parameters_frozen(self) -> Iterator[None]:
        """Weights need no gradients here; without them autograd saves and computes less."""
        modules = [self.model, *(s.dictionary for s in self.slots if s.dictionary is not None)]
        live = [p for mod in modules for p in mod.parameters() if p.requires_grad]
        for p in live:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in live:
                p.requires_grad_(True)

    def attribute(self, batch: TaskBatch, *, node_attributions: bool = True,
                  heads: bool = True) -> BatchGraph:
        """Edges (α-aggregated per example, pruned at ``example_threshold``), completeness
        deltas, node attributions and head contributions for one batch of examples."""
        with self._parameters_frozen():
            if self.causal or len(parts := batch.unpadded()) == 1 and parts[0][1].tokens.shape == batch.tokens.shape:
                return self._attribute(batch, node_attributions=node_attributions, heads=heads)
            # Bidirectional attention reads right-padding (TransformerLens masks padding only in
            # causal attention): run each length's rows without padding, then put them back.
            return merge_graphs(len(batch), [(i, self._attribute(p, node_attributions=node_attributions, heads=heads))
                                             for i, p in parts])

    @property
    def causal(self) -> bool:
        return getattr(self.model.cfg, "attention_dir", "causal") == "causal"

    def _attribute(self, batch: TaskBatch, *, node_attributions: bool, heads: bool) -> BatchGraph:
        prep = self.prepare(batch)
        out = BatchGraph(n_examples=len(batch))
        with torch.no_grad():
            logits0, y0 = self.frozen_forward(batch.tokens, self._path(prep, 0.0))
        # At t = 1 every leaf holds its clean value, so the frozen graph is the clean run:
        # what flows into each hook is prep.clean, and the metric is the clean metric.
        y1 = prep.clean
        out.metric_clean = prep.metric_clean.detach()
        out.metric_base = self.metric(logits0, batch).detach()
        active = [self._active(prep, s) for s in range(self.S)]
        for m, slot in enumerate(self.slots):
            if slot.dictionary is None or m == 0:
                continue
            y0m, y1m = y0[m], y1[m]
            if y0m is None or y1m is None:
                raise AttributionError(f"the forward pass did not reach {slot.hook}")
            out.delta[m] = self._delta(prep, m, y0m, y1m)
            edges, targets = self.edges_into(batch, prep, m, y0m, sums=out.edge_sums)
            if targets is not None:
                active[m] += torch.bincount(targets.node, minlength=slot.n_nodes)
            out.edges.update({(s, m): rows for s, rows in edges.items()})
        # The output metric: one downstream scalar per example.
        out.delta[self.S] = (out.metric_clean - out.metric_base)[:, None]
        out.edges.update({(s, self.S): rows for s, rows in
                          self.edges_into(batch, prep, self.S, sums=out.edge_sums)[0].items()})
        out.active = {s: a for s, a in enumerate(active)}
        if node_attributions:
            out.node_attr = {s: node_attribution(self.model, self.metric, self._project, self.config.steps,
                                                  self.slots[s], batch, prep, s) for s in range(self.S)}
        if heads:
            out.head_mass = {s: head_mass(self.model, self.slots[s], batch, prep, s)
                             for s, slot in enumerate(self.slots) if slot.is_attention}
        return out

    def edges_into(self, batch: TaskBatch, prep: Prepared, m: int, y0: Tensor | None = None, *,
                   sums: dict[int, Tensor] | None = None) -> tuple[dict[int, EdgeRows], _Targets | None]:
        """Per-example in-edges of slot ``m``'s nodes (``m == len(slots)``: the output), by
        upstream slot, and the downstream targets. ``y0``: what flows into hook ``m`` with every
        upstream node at its baseline (needed for ``m < len(slots)``). With ``sums``, also
        ``sums[m]`` [batch, n_nodes]: each target's in-edges summed over every upstream node
        and position before α and pruning, the left side of IG completeness (``BatchGraph.edge_sums``)."""
        with self._parameters_frozen():
            total = None
            if sums is not None:
                n_nodes = 1 if m == self.S else self.slots[m].n_nodes
                total = sums[m] = torch.zeros((len(batch), n_nodes), dtype=torch.float64, device=prep.valid.device)
            return self._edges_into(batch, prep, m, y0, total)

    def _edges_into(self, batch: TaskBatch, prep: Prepared, m: int, y0: Tensor | None,
                    total: Tensor | None = None) -> tuple[dict[int, EdgeRows], _Targets | None]:
        if m == self.S:
            grads = self._integrate_metric(batch, prep)
            return {s: self._finish(prep, s, [self._rows(prep, s, g, None, 0, total)])
                    for s, g in grads.items()}, None
        if y0 is None:
            raise AttributionError("edges into a dictionary need y0, the incoming value at the baseline")
        targets = self._targets(prep, m, y0)
        ups = self._upstream(batch, prep, m)  # forward mode where upstream nodes are few (the embedding)
        if self.config.merges_positions and ups and n_upstream_nodes(self.slots, prep, ups) * FORWARD_COST < targets.width:
            rows = forward_in_edges(self, batch, prep, m, targets, ups, total)
            return {s: self._finish(prep, s, [r]) for s, r in rows.items()}, targets
        parts: dict[int, list[EdgeRows]] = {}
        for start in range(0, targets.width, self.config.chunk):
            stop = min(start + self.config.chunk, targets.width)
            for s, g in self._integrate(batch, prep, m, targets, start, stop).items():
                parts.setdefault(s, []).append(self._rows(prep, s, g, targets, start, total))
        return {s: self._finish(prep, s, p) for s, p in parts.items()}, targets

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
        fc = prep.f_clean[m]
        with torch.no_grad():
            f0 = self._dictionary(m).encode(y0)
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
        d = self._dictionary(m)
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
        d = self._dictionary(m)
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

    def _integrate(self, batch: TaskBatch, prep: Prepared, m: int, targets: _Targets,
                   start: int, stop: int) -> dict[int, Tensor]:
        """Σ_k ∂λ/∂x̂_s / K for every upstream slot s: {s: [stop-start, n, T, d_in]}, by one
        batched backward per IG step (:mod:`.reverse`)."""
        return integrate(self, batch, prep, m, targets, start, stop)

    def _integrate_metric(self, batch: TaskBatch, prep: Prepared) -> dict[int, Tensor]:
        """The output's in-edges: one scalar per example, one ordinary backward per chunk of IG steps
        (their copies of the batch stacked, :func:`steps_per_pass`)."""
        K, n = self.config.steps, len(batch)
        acc: dict[int, Tensor] = {}
        per_pass = steps_per_pass(K, n)
        for k0 in range(0, K, per_pass):
            ks = range(k0, min(K, k0 + per_pass))  # these steps' copies of the batch run as one batch
            paths = [self._path(prep, (k + 0.5) / K) for k in ks]
            values = [torch.cat(v).detach().requires_grad_(True) for v in zip(*paths, strict=True)]
            with torch.enable_grad():
                logits, _ = self.frozen_forward(batch.tokens.repeat(len(ks), 1), values)
                total = sum(self.metric(logits[i * n:(i + 1) * n], batch).sum() for i in range(len(ks)))
                grads = torch.autograd.grad(total, values, allow_unused=True)
            for s, g in enumerate(grads):
                for i in range(len(ks) if g is not None else 0):
                    step = g[i * n:(i + 1) * n][None] / K
                    acc[s] = acc[s] + step if s in acc else step
        return acc

    def _upstream(self, batch: TaskBatch, prep: Prepared, m: int) -> list[int]:
        """Slots with a path into hook ``m`` that crosses no other slot (measured once per m)."""
        if m not in self._ups:
            values = self._path(prep, 1.0, grad=True)
            with torch.enable_grad():
                _, incoming = self.frozen_forward(batch.tokens[:1], [v[:1] for v in values],
                                                  stop_at_layer=self.slots[m].layer + 1)
                y = incoming[m]
                if y is None:
                    raise AttributionError(f"the forward pass did not reach {self.slots[m].hook}")
                grads = torch.autograd.grad(y.sum(), values[:m], allow_unused=True)
            self._ups[m] = [s for s, g in enumerate(grads) if g is not None]
        return self._ups[m]

    def _rows(self, prep: Prepared, s: int, gbar: Tensor, targets: _Targets | None, start: int,
              total: Tensor | None = None) -> EdgeRows:
        """Project mean gradients on slot ``s``'s nodes and contract upstream positions: one row
        per (backward slot's group, upstream node), not yet combined over downstream positions.
        ``total`` [n, n_nodes of the target slot] gets every group's signed sum added (completeness)."""
        A, ids = self._project(prep, s, gbar)                       # [B n T U], [U]
        R = _reduce_positions(A, self.config.alpha, self.config.alpha_abs)  # [B n U]
        n = R.shape[1]
        if targets is None:  # the output: one slot, node 0, every example
            table = torch.arange(n, device=R.device)[None, :]
            g_ex, g_node = torch.arange(n, device=R.device), torch.zeros(n, dtype=torch.long, device=R.device)
        else:
            table = targets.table[:, start:start + R.shape[0]].T    # [B n]
            g_ex, g_node = targets.g_ex, targets.g_node
        if total is not None:
            gb, ge = (table >= 0).nonzero(as_tuple=True)
            g = table[gb, ge]
            total.index_put_((g_ex[g], g_node[g]), A.sum((2, 3))[gb, ge].detach().double(), accumulate=True)
        b, e, j = ((R != 0) & (table[..., None] >= 0)).nonzero(as_tuple=True)
        group = table[b, e]
        rows = EdgeRows(example=g_ex[group], dst=g_node[group], src=ids[j], weight=R[b, e, j].detach())
        return prune_early(rows, self.config, prep.n_valid)

    def _finish(self, prep: Prepared, s: int, parts: list[EdgeRows]) -> EdgeRows:
        """All chunks of one (upstream, downstream) slot pair: combine a downstream node's
        positions by α (they may sit in different chunks), normalise, prune."""
        rows = EdgeRows(*(torch.cat(cols) for cols in zip(
            *((r.example, r.dst, r.src, r.weight) for r in parts), strict=True)))
        if not self.config.merges_positions:
            rows = _coalesce(rows, self.config.alpha, self.slots[s].n_nodes)
        if self.config.alpha is PositionAgg.MEAN:
            rows.weight = rows.weight / prep.n_valid[rows.example].clamp(min=1).to(rows.weight.dtype)
        keep = rows.weight.abs() >= max(self.config.epsilon, 1e-30)
        return EdgeRows(rows.example[keep], rows.dst[keep], rows.src[keep], rows.weight[keep])

    def _project(self, prep: Prepared, s: int, gbar: Tensor) -> tuple[Tensor, Tensor]:
        """Attributions of slot ``s``'s nodes: [B n T U] over candidate node ids [U]."""
        fc, fb = prep.f_clean, prep.f_base  # sparse latents as held, not dense copies
        latents = (fc.stored(s), fb.stored(s)) if isinstance(fc, LatentStore) and isinstance(fb, LatentStore) else (fc[s], fb[s])
        return project_on_nodes(self.slots[s], prep.clean[s] - prep.base[s], *latents, gbar)
