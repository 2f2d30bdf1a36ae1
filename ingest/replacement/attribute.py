r"""Edges of a prompt's replacement graph, by batched backward passes through the frozen model.

The local replacement model (Ameisen et al. 2025, "Circuit Tracing: Revealing Computational
Graphs in Language Models", methods §2; circuit-tracer's definitions): on the prompt, every
attention pattern and every normalisation scale is frozen at its clean value and every MLP
output is replaced by ``skip(x_in) + [mlp_out - skip(x_in)]``, the bracket frozen (a
constant). The residual stream is then an affine function of the *sources*:

* feature ``s = (l, p, f)`` writes ``a_s W_dec[l][f, l' - l]`` into the MLP output of every
  layer ``l' in out_layers(l)`` at position ``p``;
* error ``(l, p)`` writes ``mlp_out[l][p] - reconstruction[l][p]``;
* token ``p`` writes its embedding ``W_E[token_p]``;

plus constants (positional embedding, biases, decoder biases, position 0's MLP outputs when
``zero_bos``). A target's value is a linear read-out of the stream: a feature's pre-activation
``W_enc[:, f] . x_in[l][p] + b_enc[f]``, or a logit ``ln_final(resid)[-1] . direction + bias``.
So ``A[t, s] = <source vector of s, d value_t / d (the stream where s writes)>`` is exact, and
``sum_s A[t, s] + fixed_t = value_t``, where ``fixed_t`` is the value with every source at 0
(:func:`fixed_terms`, one forward pass of the frozen affine model).

Batched backward: one forward of ``B`` copies of the prompt builds the frozen graph once; each
backward injects the read-out directions of ``B`` targets as cotangents (one target per copy)
at their read points and reads all source gradients at once, so one pass serves ``B`` targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.dictionaries.transcoder_set import Transcoders
from ingest.errors import AttributionError
from ingest.replacement.config import TraceConfig
from ingest.replacement.graph import PromptGraph
from ingest.replacement.targets import Target, salient_targets, target_value

#: ``progress(stage, done, total)``.
Progress = Callable[[str, int, int], None]


@dataclass
class _Clean:
    """The clean forward pass: per layer the MLP input and output, the frozen values, logits."""

    x_in: list[Float[Tensor, "pos d_model"]]
    y: list[Float[Tensor, "pos d_model"]]
    frozen: dict[str, Tensor]        # hook name -> clean value of each pattern and scale
    logits: Float[Tensor, "pos d_vocab"]


def _frozen_names(model: Any) -> list[str]:
    return [n for n in model.hook_dict if n.endswith("hook_pattern") or n.endswith("hook_scale")]


@contextmanager
def _mlp_hooks(model: Any, pre: Callable[[int, Tensor], None] | None,
               post: Callable[[int, Tensor, Tensor], Tensor] | None,
               replace: Callable[[int, Tensor], Tensor] | None = None) -> Iterator[None]:
    """Forward (pre-)hooks on every ``blocks.l.mlp`` module, removed on exit. ``replace``
    stands in for the MLP's own forward meanwhile (the frozen model never needs the MLP
    recomputed: its output is a constant there), restored on exit."""
    handles = []
    replaced = []
    try:
        for layer, block in enumerate(model.blocks):
            if replace is not None:
                block.mlp.forward = lambda x, layer=layer: replace(layer, x)
                replaced.append(block.mlp)
            if pre is not None:
                handles.append(block.mlp.register_forward_pre_hook(
                    lambda mod, args, layer=layer: pre(layer, args[0])))
            if post is not None:
                handles.append(block.mlp.register_forward_hook(
                    lambda mod, args, out, layer=layer: post(layer, args[0], out)))
        yield
    finally:
        for h in handles:
            h.remove()
        for mlp in replaced:
            del mlp.forward


def _clean_run(model: Any, tokens: Tensor) -> _Clean:
    L = model.cfg.n_layers
    x_in: list[Tensor | None] = [None] * L
    y: list[Tensor | None] = [None] * L
    frozen: dict[str, Tensor] = {}

    def keep(x: Tensor, hook: Any) -> None:
        frozen[hook.name] = x.detach()

    def pre(layer: int, x: Tensor) -> None:
        x_in[layer] = x.detach()[0]

    def post(layer: int, x: Tensor, out: Tensor) -> Tensor:
        y[layer] = out.detach()[0]
        return out

    with torch.no_grad(), _mlp_hooks(model, pre, post):
        logits = model.run_with_hooks(tokens[None], fwd_hooks=[(n, keep) for n in _frozen_names(model)])
    if any(v is None for v in x_in) or any(v is None for v in y):
        raise AttributionError("the forward pass did not reach every MLP")
    return _Clean(x_in=x_in, y=y, frozen=frozen, logits=logits[0].detach())  # type: ignore[arg-type]


@dataclass
class _Sources:
    """Source vectors grouped by where they write, and their columns in the adjacency.

    Features are numbered in (layer, position, feature) order, so the features read at one
    layer and position are one contiguous block of columns: ``blocks[out_layer]`` lists
    ``(position, first column, vectors [n d_model])``, the vectors already times the activation.
    """

    active: Int[Tensor, "n 3"]
    values: Float[Tensor, " n"]
    pre: Float[Tensor, " n"]
    blocks: list[list[tuple[int, int, Tensor]]]
    padded: list[tuple[Tensor, Tensor, Tensor] | None]   # per out layer: [pos k d], flat mask, columns
    errors: Float[Tensor, "n_layers pos d_model"]
    tokens: Float[Tensor, "pos d_model"]
    residual_fixed: list[Tensor]     # per layer: the frozen bracket minus the sources in it


def _sources(model: Any, tc: Transcoders, tokens: Tensor, clean: _Clean, zero_bos: bool) -> _Sources:
    L, T = model.cfg.n_layers, tokens.shape[0]
    actives, values, pres = [], [], []
    blocks: list[list[tuple[int, int, Tensor]]] = [[] for _ in range(L)]
    decoded = [clean.y[0].new_zeros(T, model.cfg.d_model) for _ in range(L)]
    n_before = 0
    with torch.no_grad():
        for l in range(L):
            pre = tc.pre_activation(l, clean.x_in[l])
            act = tc.activate(l, pre)
            if zero_bos:
                act[0] = 0
            if not torch.isfinite(act).all():
                raise AttributionError(f"non-finite transcoder activations at layer {l}")
            pos, feat = act.nonzero(as_tuple=True)
            a = act[pos, feat]
            actives.append(torch.stack([torch.full_like(pos, l), pos, feat], 1))
            values.append(a)
            pres.append(pre[pos, feat])
            dec = tc.decoder(l, feat) * a[:, None, None]                 # [n n_out d_model]
            counts = torch.bincount(pos, minlength=T).tolist()
            first = n_before
            for p, c in enumerate(counts):
                if c:
                    for j, lo in enumerate(tc.out_layers(l)):
                        block = dec[first - n_before:first - n_before + c, j]
                        blocks[lo].append((p, first, block))
                        decoded[lo][p] += block.sum(0)
                    first += c
            n_before += len(feat)
        recon = [decoded[l] + tc.b_dec(l) + tc.skip(l, clean.x_in[l]) for l in range(L)]
        errors = torch.stack([clean.y[l] - recon[l] for l in range(L)])
        if zero_bos:
            errors[:, 0] = 0
        # What the frozen bracket holds besides the sources: mlp_out - skip(x_in) - decoded - error.
        residual_fixed = [clean.y[l] - tc.skip(l, clean.x_in[l]) - decoded[l] - errors[l] for l in range(L)]
    return _Sources(active=torch.cat(actives), values=torch.cat(values), pre=torch.cat(pres), blocks=blocks,
                    padded=[_pad(b, T) for b in blocks], errors=errors, tokens=model.W_E[tokens].detach(), residual_fixed=residual_fixed)


def _pad(blocks: list[tuple[int, int, Tensor]], T: int) -> tuple[Tensor, Tensor, Tensor] | None:
    """The vectors written into one layer, per position, padded to ``[pos k d_model]`` so that
    one batched matmul contracts them all; with the flat mask of real entries and their columns."""
    if not blocks:
        return None
    per_pos: list[list[tuple[int, Tensor]]] = [[] for _ in range(T)]
    for p, first, block in blocks:
        per_pos[p].append((first, block))
    k = max(sum(len(b) for _, b in lst) for lst in per_pos)
    d = blocks[0][2].shape[1]
    V = blocks[0][2].new_zeros(T, k, d)
    cols = torch.full((T, k), -1, dtype=torch.long)
    for p, lst in enumerate(per_pos):
        i = 0
        for first, b in lst:
            V[p, i:i + len(b)] = b
            cols[p, i:i + len(b)] = torch.arange(first, first + len(b))
            i += len(b)
    flat = cols.flatten()
    mask = flat >= 0
    return V, mask, flat[mask]


class _FrozenGraph:
    """The frozen model's autograd graph over ``B`` copies of the prompt (built once)."""

    def __init__(self, model: Any, tc: Transcoders, tokens: Tensor, B: int, clean_y: list[Tensor]) -> None:
        L = model.cfg.n_layers
        self.read: list[Tensor | None] = [None] * (L + 1)   # read points: mlp inputs, final stream
        self.write: list[Tensor | None] = [None] * L        # where features and errors write
        self.embed: Tensor | None = None

        def detach(x: Tensor, hook: Any) -> Tensor:
            return x.detach()

        def leaf(x: Tensor, hook: Any) -> Tensor:
            self.embed = x.detach().requires_grad_(True)
            return self.embed

        def pre(layer: int, x: Tensor) -> None:
            self.read[layer] = x

        def post(layer: int, x: Tensor, out: Tensor) -> Tensor:
            if tc.has_skip:
                s = tc.skip(layer, x)
                w = s + (out - s).detach()
            else:
                w = out.detach().requires_grad_(True)
            self.write[layer] = w
            return w

        def clean_output(layer: int, x: Tensor) -> Tensor:
            return clean_y[layer].expand(x.shape[0], -1, -1)

        hooks = [(n, detach) for n in _frozen_names(model)] + [("hook_embed", leaf)]
        with torch.enable_grad(), _mlp_hooks(model, pre, post, clean_output), model.hooks(fwd_hooks=hooks):
            resid = model(tokens[None].expand(B, -1), stop_at_layer=L)
            self.read[L] = model.ln_final(resid)

    def backward(self, layer: Tensor, pos: Tensor, vec: Tensor) -> tuple[list[Tensor | None], Tensor | None]:
        """Inject ``vec[i]`` at read point ``layer[i]``, position ``pos[i]`` of copy ``i``;
        returns d/d(each write point) and d/d(token embeddings), ``[B pos d_model]`` each."""
        outputs, cotangents = [], []
        rows = torch.arange(len(layer), device=layer.device)
        for lo in layer.unique().tolist():
            m = layer == lo
            read = self.read[lo]
            if read is None:
                raise AttributionError(f"the frozen forward pass did not reach read point {lo}")
            g = torch.zeros_like(read)
            g[rows[m], pos[m]] = vec[m].to(g.dtype)
            outputs.append(read)
            cotangents.append(g)
        inputs = [w for w in self.write if w is not None] + [self.embed]
        grads = torch.autograd.grad(outputs, inputs, cotangents, retain_graph=True, allow_unused=True)
        return list(grads[:-1]), grads[-1]


def _rows(fg: _FrozenGraph, src: _Sources, n_cols: int, layer: Tensor, pos: Tensor, vec: Tensor,
          n_layers: int, n_pos: int, out: Tensor | None = None) -> Float[Tensor, "n n_cols"]:
    """Adjacency rows (sources only: features, errors, tokens) of one batch of targets, written
    into ``out`` (a zeroed ``[n n_cols]`` view, e.g. of the adjacency itself) when given."""
    n = len(layer)
    grads, g_embed = fg.backward(layer, pos, vec)
    buf = torch.zeros(n, n_cols, dtype=vec.dtype) if out is None else out
    n_feat = len(src.values)
    for lo, g in enumerate(grads):
        if g is None:
            continue
        g = g[:n]
        # One batched matmul over positions (features padded per position): no [B n d] gather.
        padded = src.padded[lo]
        if padded is not None:
            V, mask, cols = padded
            R = torch.bmm(g.transpose(0, 1), V.transpose(1, 2))          # [pos B k]
            buf.index_add_(1, cols, R.transpose(0, 1).reshape(n, -1)[:, mask].to(buf.device))
        start = n_feat + lo * n_pos
        buf[:, start:start + n_pos] = torch.einsum("btd,td->bt", g, src.errors[lo]).to(buf.device)
    if g_embed is not None:
        start = n_feat + n_layers * n_pos
        buf[:, start:start + n_pos] = torch.einsum("btd,td->bt", g_embed[:n], src.tokens).to(buf.device)
    return buf


def fixed_terms(model: Any, tc: Transcoders, tokens: Tensor, clean: _Clean, src: _Sources
                ) -> tuple[list[Tensor], Tensor]:
    """The frozen affine model with every source at 0: per layer the MLP input, and the final
    normalised stream ``[pos d_model]``. Patterns and scales are held at their clean values."""
    L = model.cfg.n_layers
    x0: list[Tensor | None] = [None] * L

    def frozen(x: Tensor, hook: Any) -> Tensor:
        return clean.frozen[hook.name]

    def zero(x: Tensor, hook: Any) -> Tensor:
        return torch.zeros_like(x)

    def pre(layer: int, x: Tensor) -> None:
        x0[layer] = x[0]

    def post(layer: int, x: Tensor, out: Tensor) -> Tensor:
        return tc.skip(layer, x) + src.residual_fixed[layer][None]

    def no_mlp(layer: int, x: Tensor) -> Tensor:
        return torch.zeros_like(x[..., :1]).expand(*x.shape[:-1], model.cfg.d_model)

    hooks = [(n, frozen) for n in _frozen_names(model)] + [("hook_embed", zero)]
    with torch.no_grad(), _mlp_hooks(model, pre, post, no_mlp), model.hooks(fwd_hooks=hooks):
        resid = model(tokens[None], stop_at_layer=L)
        final = model.ln_final(resid)[0]
    return x0, final  # type: ignore[return-value]


#: ``remote(tokens, zero_bos, B, n_sources, batches)`` yields ``(i, rows of batches[i])`` as they finish,
#: each batch ``(read layer, position, read-out vector)`` per target (``trace --ray``: ingest/distributed).
RemoteRows = Callable[[Tensor, bool, int, int, list[tuple[Tensor, Tensor, Tensor]]], Iterator[tuple[int, Tensor]]]


class RowComputer:
    """Adjacency rows (source columns) of one prompt's targets, ``B`` per backward pass; the
    clean run, sources and frozen graph are built once (a Ray worker builds its own from the tokens)."""

    def __init__(self, model: Any, tc: Transcoders, tokens: Int[Tensor, " pos"], B: int,
                 clean: Any = None, src: Any = None, zero_bos: bool = True) -> None:
        tokens = tokens.to(model.cfg.device).long()
        self.clean = clean if clean is not None else _clean_run(model, tokens)
        self.src = src if src is not None else _sources(model, tc, tokens, self.clean, zero_bos)
        self.n_layers, self.n_pos = model.cfg.n_layers, int(tokens.shape[0])
        self.n_sources = len(self.src.values) + (self.n_layers + 1) * self.n_pos
        self.fg = _FrozenGraph(model, tc, tokens, B, self.clean.y)

    def __call__(self, layer: Tensor, pos: Tensor, vec: Tensor, out: Tensor | None = None) -> Tensor:
        dev = self.src.tokens.device
        return _rows(self.fg, self.src, self.n_sources, layer.to(dev), pos.to(dev), vec.to(dev),
                     self.n_layers, self.n_pos, out=out)


def trace_prompt(model: Any, transcoders: Transcoders, tokens: Int[Tensor, " pos"], config: TraceConfig, *,
                 prompt: str = "", targets: list[Target] | None = None,
                 progress: Progress | None = None, remote: RemoteRows | None = None) -> PromptGraph:
    """The full replacement graph of ``tokens`` (BOS included) with its targets.

    ``targets``: custom targets (e.g. :func:`.targets.logit_diff_target`); default the
    salient logits of ``config``. ``remote``: the adjacency rows are computed by it (``trace
    --ray``: batches of target rows on Ray workers) instead of here; the rest is computed here.
    """
    if transcoders.n_layers != model.cfg.n_layers:
        raise AttributionError(f"the transcoders cover {transcoders.n_layers} layers, the model has "
                               f"{model.cfg.n_layers}: a replacement model needs one per MLP")
    t0 = time.perf_counter()
    tokens = tokens.to(model.cfg.device).long()
    L, T = model.cfg.n_layers, int(tokens.shape[0])
    params = [p for p in (*model.parameters(), *transcoders.parameters()) if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        clean = _clean_run(model, tokens)
        src = _sources(model, transcoders, tokens, clean, config.zero_bos)
        W_U, b_U = model.W_U.detach(), getattr(model, "b_U", None)
        b_U = None if b_U is None else b_U.detach()
        decode = getattr(model, "tokenizer", None)
        decode = decode.decode if decode is not None else None
        if targets is None:
            targets = salient_targets(clean.logits[-1], W_U, b_U, decode, max_n_logits=config.max_n_logits,
                                      desired_logit_prob=config.desired_logit_prob)
        n_active = len(src.values)
        n_sel = n_active if config.max_feature_nodes is None else min(config.max_feature_nodes, n_active)
        n_src = n_active + L * T + T
        B = max(1, min(config.batch_size, n_sel + len(targets)))
        local = RowComputer(model, transcoders, tokens, B, clean, src) if remote is None else None
        dtype = src.tokens.dtype
        K = len(targets)
        n_nodes = n_sel + L * T + T + K
        t_vec = torch.stack([t.direction for t in targets]).to(device=src.tokens.device, dtype=dtype)
        f_layer, f_pos, f_feat = src.active.unbind(1)
        weights = torch.tensor([t.weight for t in targets], dtype=dtype)
        n_done = 0

        def encoders(idx: Tensor) -> Tensor:
            enc = torch.empty(len(idx), model.cfg.d_model, dtype=dtype, device=src.tokens.device)
            for lo in f_layer[idx].unique().tolist():
                m = f_layer[idx] == lo
                enc[m] = transcoders.encoder_rows(lo, f_feat[idx][m]).to(dtype)
            return enc

        def fill(batches: list[Callable[[], tuple[Tensor, Tensor, Tensor]]], outs: list[Tensor], features: bool) -> None:
            """Rows of each batch of targets (``batches[i]()``: read layers, positions, read-out vectors)
            into its ``outs`` view: here, one batch at a time, or on the workers of ``remote``."""
            nonlocal n_done
            if remote is None:
                done: Iterator[tuple[int, Tensor | None]] = ((i, None) for i in range(len(batches)))
            else:
                done = remote(tokens, config.zero_bos, B, n_src, [make() for make in batches])
            for i, rows in done:
                if rows is None:
                    local(*batches[i](), out=outs[i])  # type: ignore[misc]
                else:
                    outs[i].copy_(rows)
                if features:
                    n_done += len(outs[i])
                    if progress:
                        progress("features", n_done, n_sel)

        def logit_batches() -> list[Callable[[], tuple[Tensor, Tensor, Tensor]]]:
            return [lambda a=a: (torch.full((min(a + B, K) - a,), L), torch.full((min(a + B, K) - a,), T - 1),
                                 t_vec[a:a + B]) for a in range(0, K, B)]

        def feature_batches(idx: Tensor) -> list[Callable[[], tuple[Tensor, Tensor, Tensor]]]:
            # Lazy: one process makes one batch's encoder rows at a time, not every feature's at once.
            return [lambda i=i: (f_layer[i], f_pos[i], encoders(i)) for i in idx.split(B)]

        if n_sel == n_active:
            # Every feature: rows go straight into the adjacency (columns already in node order).
            A = torch.zeros(n_nodes, n_nodes, dtype=dtype)
            fill(logit_batches(), [A[n_sel + L * T + T + a:n_sel + L * T + T + min(a + B, K), :n_src]
                                   for a in range(0, K, B)], False)
            fill(feature_batches(torch.arange(n_active)),
                 [A[a:min(a + B, n_active), :n_src] for a in range(0, n_active, B)], True)
            selected = torch.arange(n_active)
        else:
            # The most influential features so far first (circuit-tracer's queue), then select columns.
            # Each round's batches are chosen before any of them is computed, so they may run in parallel.
            target_rows = torch.zeros(K, n_src, dtype=dtype)
            fill(logit_batches(), list(target_rows.split(B)), False)
            feat_rows = torch.zeros(n_sel, n_src, dtype=dtype)
            order = torch.zeros(n_sel, dtype=torch.long)
            visited = torch.zeros(n_active, dtype=torch.bool)
            done = 0
            while done < n_sel:
                infl = _partial_influence(torch.cat([target_rows, feat_rows[:done]]), weights,
                                          torch.cat([torch.arange(K) + n_src, order[:done]]), n_src)
                rank = torch.argsort(infl[:n_active], descending=True)
                pending = rank[~visited[rank]][:min(4 * B, n_sel - done)]
                fill(feature_batches(pending), list(feat_rows[done:done + len(pending)].split(B)), True)
                order[done:done + len(pending)] = pending
                visited[pending] = True
                done += len(pending)
            selected = torch.where(visited)[0]
            cols = torch.cat([selected, torch.arange(n_active, n_src)])
            A = torch.zeros(n_nodes, n_nodes, dtype=dtype)
            A[:n_sel, :n_nodes - K] = feat_rows[torch.argsort(order)][:, cols]
            A[n_nodes - K:, :n_nodes - K] = target_rows[:, cols]
            del feat_rows, target_rows
        local = None  # the frozen graph: freed before the fixed-term pass
        # Fixed terms and values (for the exactness identity and for the store).
        x0, final0 = fixed_terms(model, transcoders, tokens, clean, src)
        fixed = torch.zeros(n_nodes, dtype=dtype)
        value = torch.zeros(n_nodes, dtype=dtype)
        with torch.no_grad():
            # The adjacency, fixed terms and values live in host memory (on CUDA too); indices follow.
            s_layer, s_pos, s_feat = src.active[selected.to(src.active.device)].cpu().unbind(1)
            for lo in s_layer.unique().tolist():
                m = s_layer == lo
                fixed[:n_sel][m] = transcoders.pre_activation(lo, x0[lo])[s_pos[m], s_feat[m]].to(dtype).cpu()
            value[:n_sel] = src.pre[selected.to(src.pre.device)].cpu()
            for j, t in enumerate(targets):
                fixed[n_nodes - len(targets) + j] = final0[-1] @ t.direction.to(dtype) + t.bias
                value[n_nodes - len(targets) + j] = target_value(t, clean.logits[-1])
    finally:
        for p in params:
            p.requires_grad_(True)
    tok = getattr(model, "tokenizer", None)
    strs = [tok.decode([int(t)]) if tok is not None else str(int(t)) for t in tokens.tolist()]
    return PromptGraph(prompt=prompt, tokens=tokens.cpu(), token_strs=strs, n_layers=L,
                       active_features=src.active.cpu(), activation_values=src.values.cpu(),
                       selected_features=selected.cpu(), targets=targets, adjacency=A.detach().cpu(),
                       fixed=fixed.detach().cpu(), value=value.detach().cpu(),
                       meta={"seconds": time.perf_counter() - t0, "transcoders": transcoders.kind,
                             "batch_size": B})


def _partial_influence(rows: Tensor, weights: Tensor, row_node: Tensor, n_cols: int, max_iter: int = 128) -> Tensor:
    """Influence on the targets of every column, from the rows computed so far (power series
    of the row-normalised |adjacency|); ``row_node[i]`` is the node of row ``i`` (targets are
    numbered after the sources, ``n_cols + j``)."""
    M = rows.abs()
    M = M / M.sum(1, keepdim=True).clamp(min=1e-8)
    size = n_cols + len(weights)
    prod = torch.zeros(size, dtype=rows.dtype)
    prod[n_cols:] = weights
    infl = torch.zeros(n_cols, dtype=rows.dtype)
    for _ in range(max_iter):
        nxt = prod[row_node] @ M
        if not nxt.any():
            break
        infl += nxt
        prod = torch.zeros(size, dtype=rows.dtype)
        prod[:n_cols] = nxt
    return infl
