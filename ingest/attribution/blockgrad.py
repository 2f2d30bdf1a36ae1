r"""Reverse mode through whole TransformerLens blocks, by hand, for many targets at once.

The engine's generic integrand (:mod:`.reverse`) runs autograd's backward under
``torch.func.vmap``. On a small model that costs several times its arithmetic: batching rules,
saved-tensor bookkeeping, and elementwise backward ops that recompute the forward's
nonlinearities (SiLU, GELU, softmax) once per target. Between two ``resid_post`` hooks with no
slot in between, the frozen graph is a plain stack of blocks, and its backward is a handful of
matrix products: here the targets are rows of one matrix, every weight product is one GEMM over
all of them, and the nonlinearities' derivatives are computed once per IG step.

**Same numbers.** The forward pass is TransformerLens' own (its hook points record what the
backward needs: norm scales, rotated queries and keys, values, patterns, MLP pre-activations),
so only the backward is written here; it is the exact derivative of that forward, not an
approximation. Each segment is checked on its first use against the generic integrand (same
IG step, two targets, relative difference at most :data:`CHECK_RTOL`); a segment that fails
the check falls back, with a warning, instead of giving different edges.

**Covered:** pre-norm ``TransformerBlock`` s with LayerNorm or RMSNorm (with or without weights)
or none; multi-head or grouped-query attention with standard or rotary positions, causal or
bidirectional, local windows (the pattern carries every mask); MLPs plain or gated with an
elementwise activation, or none (attention-only). Anything else (ALiBi, QK-norm, soft-capped
scores, parallel attention and MLP, post-norm, split QKV inputs, MoE, LN-activations) takes the
generic path, as does every segment on a device or dtype where the check fails.

**Matrix products.** On CPU in float32, oneDNN's linear kernel (the one ``torch.compile`` uses
on CPU) where this torch build has it: on the bench machine it ran these shapes 1.2x to 1.8x
faster than the default BLAS (MKL) in single-thread timings of the bench model's shapes, at the
same float32 rounding; ``bench/byo.py`` prints the time they take. Elsewhere ``F.linear``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

#: the engine uses this module where it applies (tests turn it off to compare with autograd)
ENABLED = True
#: the first use of a segment must match the generic integrand to this (max |diff| / max |ref|)
CHECK_RTOL = 1e-4
#: floats of scratch one backward piece may hold; the targets are split into pieces to fit
SCRATCH_FLOATS = 1 << 26
_ACTS = {"relu", "gelu", "silu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu"}
_NORMS = {"LayerNorm": "ln", "LayerNormPre": "ln", "RMSNorm": "rms", "RMSNormPre": "rms", "Identity": "none"}


def _onednn_ok() -> bool:
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w = torch.randn(5, 3), torch.randn(4, 3)
        return bool(torch.allclose(op(x, w, None, "none", [], ""), F.linear(x, w), rtol=1e-5, atol=1e-6))
    except (RuntimeError, TypeError, NotImplementedError):
        return False


_ONEDNN: bool | None = None


def linear(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T`` for a 2-D ``x``: oneDNN's kernel for float32 on CPU where available."""
    global _ONEDNN
    if x.device.type == "cpu" and x.dtype == torch.float32 and w.is_contiguous():
        if _ONEDNN is None:
            _ONEDNN = _onednn_ok()
        if _ONEDNN:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w, None, "none", [], "")
    return F.linear(x, w)


def product(a: Tensor, b: Tensor) -> Tensor:
    """``torch.matmul``: the attention's batched products (one name, so a profile can count them)."""
    return torch.matmul(a, b)


@dataclass
class _Block:
    """One block's constants: weights as the backward multiplies by them (norm weights folded in)."""

    layer: int
    norm1: str
    norm2: str | None          # None: no MLP (attention-only)
    W_O: Tensor                # [h*dh, d]
    W_qkv: Tensor              # [d, h*dh + 2*kvh*dh], ln1's weight folded into its rows
    W_out: Tensor | None       # [d_mlp, d]
    W_mlp: Tensor | None       # [d, d_mlp] (W_in, or W_gate when gated), ln2's weight folded in
    W_lin: Tensor | None       # [d, d_mlp] a gated MLP's W_in, ln2's weight folded in
    n_heads: int
    n_kv: int
    d_head: int
    attn_scale: float
    rotary: Any                # the attention module when rotary (its rotate_every_two and tables), else None
    rotary_dim: int
    act: Any                   # the MLP's activation (elementwise)
    gated: bool

    def hooks(self) -> list[str]:
        p = f"blocks.{self.layer}."
        names = [] if self.norm1 == "none" else [p + "ln1.hook_scale", p + "ln1.hook_normalized"]
        rot = "rot_" if self.rotary is not None else ""
        names += [p + f"attn.hook_{rot}q", p + f"attn.hook_{rot}k", p + "attn.hook_v", p + "attn.hook_pattern"]
        if self.norm2 is not None:
            if self.norm2 != "none":
                names += [p + "ln2.hook_scale", p + "ln2.hook_normalized"]
            names += [p + "mlp.hook_pre"] + ([p + "mlp.hook_pre_linear"] if self.gated else [])
        return names


def _block(model: Any, L: int) -> _Block | None:
    """The constants of block ``L``, or ``None`` when its backward is not covered here."""
    from transformer_lens.components import Attention, GroupedQueryAttention, TransformerBlock
    from transformer_lens.components.mlps.gated_mlp import GatedMLP
    from transformer_lens.components.mlps.mlp import MLP

    cfg = model.cfg
    blk = model.blocks[L]
    if type(blk) is not TransformerBlock or cfg.parallel_attn_mlp or cfg.use_split_qkv_input or cfg.use_attn_in:
        return None
    if getattr(cfg, "use_normalization_before_and_after", False) or getattr(cfg, "use_qk_norm", False):
        return None
    try:
        from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES
    except ImportError:  # an older TransformerLens has no post-norm blocks
        POST_NORM_ARCHITECTURES = ()
    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        return None
    for flag in ("use_logn_attn", "use_attention_sinks", "use_dynamic_ntk_rope", "load_in_4bit"):
        if getattr(cfg, flag, False):
            return None
    if getattr(cfg, "clip_qkv", None) is not None or (getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0:
        return None
    if cfg.positional_embedding_type not in ("standard", "rotary") or cfg.dtype not in (torch.float32, torch.float64):
        return None
    attn = blk.attn
    if type(attn) not in (Attention, GroupedQueryAttention) or getattr(attn, "q_norm", None) is not None:
        return None
    norm1 = _NORMS.get(type(blk.ln1).__name__)
    if norm1 is None:
        return None
    grouped = type(attn) is GroupedQueryAttention and not cfg.ungroup_grouped_query_attention
    W_K, W_V = (attn._W_K, attn._W_V) if grouped else (attn.W_K, attn.W_V)
    h, d, dh = attn.W_Q.shape
    kv = W_K.shape[0]
    if h % kv:
        return None
    W_qkv = torch.cat([W.detach().permute(1, 0, 2).reshape(d, -1) for W in (attn.W_Q, W_K, W_V)], dim=1)
    W_qkv = W_qkv * getattr(blk.ln1, "w", torch.ones(d, dtype=W_qkv.dtype, device=W_qkv.device)).detach()[:, None]
    W_out = W_mlp = W_lin = act = None
    norm2: str | None = None
    gated = False
    if not cfg.attn_only:
        mlp = blk.mlp
        norm2 = _NORMS.get(type(blk.ln2).__name__)
        if type(mlp) not in (MLP, GatedMLP) or norm2 is None or cfg.act_fn not in _ACTS:
            return None
        gated = type(mlp) is GatedMLP
        w2 = getattr(blk.ln2, "w", torch.ones(d, dtype=mlp.W_in.dtype, device=mlp.W_in.device)).detach()[:, None]
        W_mlp = ((mlp.W_gate if gated else mlp.W_in).detach() * w2).contiguous()
        W_lin = (mlp.W_in.detach() * w2).contiguous() if gated else None
        W_out, act = mlp.W_out.detach(), mlp.act_fn
    return _Block(layer=L, norm1=norm1, norm2=norm2, W_O=attn.W_O.detach().reshape(h * dh, d).contiguous(),
                  W_qkv=W_qkv.contiguous(), W_out=None if W_out is None else W_out.contiguous(),
                  W_mlp=W_mlp, W_lin=W_lin, n_heads=h, n_kv=kv, d_head=dh,
                  attn_scale=float(attn.attn_scale), rotary=attn if cfg.positional_embedding_type == "rotary" else None,
                  rotary_dim=int(cfg.rotary_dim or 0), act=act, gated=gated)


@dataclass
class _Saved:
    """What one block's backward reads of one forward pass (shared by every target)."""

    inv1: Tensor | None        # [nT, 1] 1 / ln1 scale
    xhat1: Tensor | None       # [nT, d]
    k_s: Tensor                # [n, h, T, dh] keys per query head, / attn_scale
    q_s: Tensor                # [n, h, T, dh] queries, / attn_scale
    v: Tensor                  # [n, h, T, dh] values per query head
    vT: Tensor                 # [n, h, dh, T]
    P: Tensor                  # [n, h, T, T]
    PT: Tensor                 # [n, h, T, T] transposed
    inv2: Tensor | None
    xhat2: Tensor | None
    A: Tensor | None           # [nT, d_mlp] ∂post/∂pre (times the linear branch when gated)
    Bm: Tensor | None          # [nT, d_mlp] act(pre) (gated only: ∂post/∂pre_linear)


def _saved(b: _Block, rec: dict[str, Tensor]) -> _Saved:
    p = f"blocks.{b.layer}."
    rot = "rot_" if b.rotary is not None else ""
    q, k, v, P = (rec[p + f"attn.hook_{rot}q"], rec[p + f"attn.hook_{rot}k"], rec[p + "attn.hook_v"],
                  rec[p + "attn.hook_pattern"])
    n, T = q.shape[:2]
    rep = b.n_heads // b.n_kv
    k_h = k.repeat_interleave(rep, dim=2) if rep > 1 else k
    v_h = v.repeat_interleave(rep, dim=2) if rep > 1 else v

    def norm(name: str, kind: str | None) -> tuple[Tensor | None, Tensor | None]:
        if kind in (None, "none"):
            return None, None
        return 1.0 / rec[p + name + ".hook_scale"].reshape(n * T, 1), rec[p + name + ".hook_normalized"].reshape(n * T, -1)

    inv1, xhat1 = norm("ln1", b.norm1)
    inv2, xhat2 = norm("ln2", b.norm2)
    A = Bm = None
    if b.norm2 is not None:
        pre = rec[p + "mlp.hook_pre"].reshape(n * T, -1)
        with torch.enable_grad():
            x = pre.detach().requires_grad_(True)
            a = b.act(x)
            da, = torch.autograd.grad(a.sum(), x)  # elementwise: the derivative at every entry
        if b.gated:
            A, Bm = da * rec[p + "mlp.hook_pre_linear"].reshape(n * T, -1), a.detach()
        else:
            A = da
    scale = b.attn_scale
    return _Saved(inv1=inv1, xhat1=xhat1, k_s=(k_h.permute(0, 2, 1, 3) / scale).contiguous(),
                  q_s=(q.permute(0, 2, 1, 3) / scale).contiguous(), v=v_h.permute(0, 2, 1, 3).contiguous(),
                  vT=v_h.permute(0, 2, 3, 1).contiguous(),
                  P=P.contiguous(), PT=P.transpose(-1, -2).contiguous(), inv2=inv2, xhat2=xhat2, A=A, Bm=Bm)


def _norm_back(kind: str | None, g: Tensor, inv: Tensor | None, xhat: Tensor | None, Bt: int) -> Tensor:
    """∂/∂x of a norm's (weight-folded) output cotangent ``g`` [Bt*nT, d]."""
    if kind in (None, "none") or inv is None or xhat is None:
        return g
    d = g.shape[-1]
    g3 = g.view(Bt, -1, d)
    if kind == "ln":
        g3 = g3 - g3.mean(-1, keepdim=True)
    dot = (g3 * xhat).sum(-1, keepdim=True) / d
    return ((g3 - xhat * dot) * inv).view(-1, d)


def _put(dst: Tensor, src: Tensor, b: _Block, rotate: bool) -> None:
    """``dst`` [Bt, n, T, heads, dh] = ``src`` (same shape, any strides), through the backward of
    the rotary embedding when ``rotate``: the rotation is ``x cos + R(x) sin`` with ``R`` the
    signed swap of pairs (halves, or adjacent entries), so ``R^T = -R`` and, pair by pair,
    ``back_a = a cos_a + b sin_b`` and ``back_b = b cos_b - a sin_a``."""
    if not rotate:
        dst.copy_(src)
        return
    attn, rd, T = b.rotary, b.rotary_dim, src.shape[2]
    cos = attn.rotary_cos[:T, None, :].to(src.dtype)   # [T, 1, rd]
    sin = attn.rotary_sin[:T, None, :].to(src.dtype)
    ia, ib = (slice(0, rd, 2), slice(1, rd, 2)) if attn.cfg.rotary_adjacent_pairs else \
        (slice(0, rd // 2), slice(rd // 2, rd))
    a, bb = src[..., ia], src[..., ib]
    dst[..., ia].copy_(torch.addcmul(a * cos[..., ia], bb, sin[..., ib]))
    dst[..., ib].copy_(torch.addcmul(bb * cos[..., ib], a, sin[..., ia], value=-1.0))
    if rd < src.shape[-1]:
        dst[..., rd:].copy_(src[..., rd:])


def _buffer(ws: dict[str, Tensor], key: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A scratch tensor kept between calls (a fresh large tensor costs its page faults each time)."""
    t = ws.get(key)
    if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
        t = ws[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return t


def _block_back(b: _Block, s: _Saved, G: Tensor, ws: dict[str, Tensor]) -> Tensor:
    """Cotangents at the block's output [Bt, n, T, d] to cotangents at its input (``ws``:
    scratch tensors reused between calls)."""
    Bt, n, T, d = G.shape
    h, kv, dh = b.n_heads, b.n_kv, b.d_head
    R = Bt * n * T
    G2 = G.reshape(R, d)
    if b.W_out is not None and b.W_mlp is not None and s.A is not None:
        dpost = linear(G2, b.W_out)                                    # [R, dm]
        dm = dpost.shape[1]
        d3 = dpost.view(Bt, n * T, dm)
        if b.W_lin is not None and s.Bm is not None:  # post = act(gate) * lin: a product per input weight
            dxn = linear(torch.mul(d3, s.A, out=_buffer(ws, "mlp", d3.shape, d3)).view(R, dm), b.W_mlp)
            dxn += linear(d3.mul_(s.Bm).view(R, dm), b.W_lin)
        else:
            dxn = linear(d3.mul_(s.A).view(R, dm), b.W_mlp)
        G2 = G2 + _norm_back(b.norm2, dxn, s.inv2, s.xhat2, Bt)
    # attention: out = z W_O, z = P v, P = softmax(q k^T / scale) (masks are constants). The
    # targets ride in the rows of every product: dP and its transpose are both products (no
    # transposing copy), and so are dq, dk and dv.
    dz = linear(G2, b.W_O).view(Bt, n, T, h, dh).permute(1, 3, 0, 2, 4).reshape(n, h, Bt * T, dh)
    dP = product(dz, s.vT).view(n, h, Bt, T, T)                   # [.., b, q, k]
    dPT = product(s.v, dz.transpose(-1, -2)).view(n, h, T, Bt, T)  # [.., k, b, q]
    rs = (dP * s.P[:, :, None]).sum(-1)                                 # [n, h, b, q]
    dS = dP.sub_(rs[..., None]).mul_(s.P[:, :, None])                   # softmax backward
    dST = dPT.sub_(rs[:, :, None]).mul_(s.PT[:, :, :, None])
    dq = product(dS.view(n, h, Bt * T, T), s.k_s).view(n, h, Bt, T, dh)
    dk = product(dST.view(n, h, T * Bt, T), s.q_s).view(n, h, T, Bt, dh)
    dv = product(s.PT, dz.view(n, h, Bt, T, dh).permute(0, 1, 3, 2, 4).reshape(n, h, T, Bt * dh))
    dv = dv.view(n, h, T, Bt, dh)
    if kv != h:  # grouped-query: a key/value head's cotangent sums over the query heads it serves
        dk = dk.view(n, kv, h // kv, T, Bt, dh).sum(2)
        dv = dv.view(n, kv, h // kv, T, Bt, dh).sum(2)
    dcat = _buffer(ws, "qkv", (Bt, n, T, (h + 2 * kv) * dh), G)
    rot = b.rotary is not None
    _put(dcat[..., :h * dh].view(Bt, n, T, h, dh), dq.permute(2, 0, 3, 1, 4), b, rot)
    _put(dcat[..., h * dh:(h + kv) * dh].view(Bt, n, T, kv, dh), dk.permute(3, 0, 2, 1, 4), b, rot)
    _put(dcat[..., (h + kv) * dh:].view(Bt, n, T, kv, dh), dv.permute(3, 0, 2, 1, 4), b, False)
    dxn = linear(dcat.view(R, -1), b.W_qkv)
    return (G2 + _norm_back(b.norm1, dxn, s.inv1, s.xhat1, Bt)).view(Bt, n, T, d)


class Segment:
    """Blocks ``start .. stop-1`` of a model: a forward pass that records what the backward
    needs, and the backward of a batch of cotangents at the output of block ``stop-1``."""

    def __init__(self, blocks: list[_Block]) -> None:
        self.blocks = blocks
        self.checked = False
        self.scratch: dict[str, Tensor] = {}
        self.hook_names = [name for b in blocks for name in b.hooks()]

    @classmethod
    def build(cls, model: Any, start: int, stop: int) -> Segment | None:
        """The segment, or ``None`` when a block in it is not covered (or a hook is missing)."""
        if not hasattr(model, "blocks") or not 0 <= start < stop <= len(model.blocks):
            return None
        blocks = [_block(model, L) for L in range(start, stop)]
        if any(b is None for b in blocks):
            return None
        seg = cls([b for b in blocks if b is not None])
        names = getattr(model, "hook_dict", {})
        return seg if all(n in names for n in seg.hook_names) else None

    def recorder(self) -> tuple[dict[str, Tensor], list[tuple[str, Any]]]:
        """A dict the forward's hooks fill, and those hooks (for ``run_hooked``)."""
        rec: dict[str, Tensor] = {}

        def keep(x: Tensor, hook: Any) -> None:
            rec[hook.name] = x.detach()

        return rec, [(name, keep) for name in self.hook_names]

    def backward(self, rec: dict[str, Tensor], C: Tensor) -> Tensor:
        """Cotangents ``C`` [B, n, T, d] at the segment's output to its input, in pieces of
        targets that fit :data:`SCRATCH_FLOATS`."""
        saved = [_saved(b, rec) for b in self.blocks]
        B, n, T, d = C.shape
        widest = max(max(b.W_out.shape[0] * (2 if b.gated else 1) if b.W_out is not None else 0,
                         (b.n_heads + 2 * b.n_kv) * b.d_head) for b in self.blocks)
        per_target = n * T * (2 * widest + 3 * self.blocks[0].n_heads * T + 6 * d)
        step = max(1, SCRATCH_FLOATS // max(per_target, 1))
        out = []
        for a in range(0, B, step):
            G = C[a:a + step]
            for b, s in zip(reversed(self.blocks), reversed(saved), strict=True):
                G = _block_back(b, s, G, self.scratch)
            out.append(G)
        return out[0] if len(out) == 1 else torch.cat(out)


def max_rel_diff(a: Tensor, ref: Tensor) -> float:
    """max |a - ref| / max |ref| (0 when both vanish)."""
    scale = float(ref.abs().max())
    diff = float((a - ref).abs().max())
    return diff / scale if scale > 0 else diff
