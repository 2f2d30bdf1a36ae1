"""A small TopK transcoder trainer: one per-layer transcoder per MLP, saved as a ``path:DIR`` set.

Activations are the MLP input (``blocks.l.mlp.hook_in``, read with a forward pre-hook) and the
MLP output at the non-special positions of the task prompts, as the zoo's SAEs are trained
(:mod:`ingest.zoo.saes`). Each transcoder minimises ``|mlp_out - y_hat|²`` with Adam; the
decoder rows are kept at unit norm (the usual TopK constraint, so a feature's activation is
its contribution's size); the encoder starts as the decoder's transpose and the decoder bias
at the mean MLP output. The result loads with ``load_transcoders("path:DIR")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ingest.dictionaries.transcoder import TopKTranscoder


@dataclass(frozen=True)
class TranscoderTrainConfig:
    expansion: int = 4
    k: int = 8
    skip: bool = False
    steps: int = 500
    batch_tokens: int = 512
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.expansion < 1 or self.k < 1 or self.steps < 1 or self.batch_tokens < 1:
            raise ValueError("expansion, k, steps and batch_tokens must all be positive")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def mlp_activations(model: Any, tokens: Tensor, mask: Tensor, *, batch_size: int = 256
                    ) -> list[tuple[Tensor, Tensor]]:
    """Per layer, (MLP input, MLP output) at the ``mask``ed positions: ``[n_tokens d_model]`` each."""
    L = model.cfg.n_layers
    ins: list[list[Tensor]] = [[] for _ in range(L)]
    outs: list[list[Tensor]] = [[] for _ in range(L)]
    handles = []
    current: dict[str, Tensor] = {}

    def keep(layer: int, x: Tensor, out: Tensor) -> None:   # returns None: the output is unchanged
        ins[layer].append(x[current["mask"]].detach())
        outs[layer].append(out[current["mask"]].detach())

    for layer, block in enumerate(model.blocks):
        handles.append(block.mlp.register_forward_hook(
            lambda mod, args, out, layer=layer: keep(layer, args[0], out)))
    try:
        with torch.no_grad():
            for start in range(0, len(tokens), batch_size):
                current["mask"] = mask[start:start + batch_size]
                model(tokens[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return [(torch.cat(i), torch.cat(o)) for i, o in zip(ins, outs, strict=True)]


def train_topk_transcoder(x: Tensor, y: Tensor, layer: int, cfg: TranscoderTrainConfig) -> tuple[TopKTranscoder, float]:
    """One TopK transcoder on (MLP input, MLP output) pairs; returns it and its explained
    variance of the MLP output on those pairs."""
    g = torch.Generator().manual_seed(cfg.seed + layer)
    d_in, d_out = x.shape[1], y.shape[1]
    d_dict = cfg.expansion * d_in
    t = TopKTranscoder(d_in, d_dict, d_out, cfg.k, layer=layer, skip=cfg.skip)
    with torch.no_grad():
        W = torch.randn(d_dict, d_out, generator=g)
        t.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        t.W_enc.copy_(torch.randn(d_in, d_dict, generator=g) / d_in ** 0.5)
        t.b_dec.copy_(y.mean(0))
    opt = torch.optim.Adam(t.parameters(), lr=cfg.lr)
    from ingest.dictionaries.transcoder import apply_activation

    def predict(xb: Tensor) -> Tensor:
        f = apply_activation("topk", xb @ t.W_enc + t.b_enc, k=cfg.k)
        out = f @ t.W_dec + t.b_dec
        return out + xb @ t.W_skip.T if t.W_skip is not None else out

    for _ in range(cfg.steps):
        idx = torch.randint(0, len(x), (min(cfg.batch_tokens, len(x)),), generator=g)
        loss = ((predict(x[idx]) - y[idx]) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            t.W_dec.div_(t.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8))
    with torch.no_grad():
        ev = 1 - ((predict(x) - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    return t, float(ev)


def train_transcoder_set(model: Any, tokens: Tensor, mask: Tensor, out_dir: Path,
                         cfg: TranscoderTrainConfig = TranscoderTrainConfig()) -> dict[int, float]:
    """Train one TopK transcoder per layer and save the set into ``out_dir/layer_<i>``;
    returns each layer's explained variance."""
    acts = mlp_activations(model, tokens, mask)
    evs = {}
    for layer, (x, y) in enumerate(acts):
        t, evs[layer] = train_topk_transcoder(x, y, layer, cfg)
        t.save(Path(out_dir) / f"layer_{layer}")
    return evs


def train_topk_clt(acts: list[tuple[Tensor, Tensor]], cfg: TranscoderTrainConfig) -> tuple[Any, list[float]]:
    """One TopK cross-layer transcoder on every layer's (MLP input, MLP output) pairs, the rows
    aligned across layers (the same tokens): encoder ``l`` reads layer ``l``'s MLP input, and
    layer ``l'``'s output is predicted from the features of every layer ``l <= l'``, all trained
    jointly on the summed squared error. Returns the CLT and each layer's explained variance."""
    from ingest.dictionaries.transcoder import apply_activation
    from ingest.dictionaries.transcoder_set import CrossLayerTranscoder

    L = len(acts)
    d_model = acts[0][0].shape[1]
    d_dict = cfg.expansion * d_model
    g = torch.Generator().manual_seed(cfg.seed + 1000)
    clt = CrossLayerTranscoder(L, d_model, d_dict, activation="topk", k=cfg.k, skip=cfg.skip)
    xs = [x for x, _ in acts]
    ys = [y for _, y in acts]
    with torch.no_grad():
        for layer in range(L):
            clt.W_enc[layer].copy_(torch.randn(d_model, d_dict, generator=g) / d_model ** 0.5)
            W = torch.randn(d_dict, L - layer, d_model, generator=g)
            # the decoders of one feature share a unit norm over all the layers it writes
            clt.W_dec[layer].copy_(W / W.norm(dim=(1, 2), keepdim=True) / (L - layer) ** 0.5)
            clt.b_dec[layer].copy_(ys[layer].mean(0))
    opt = torch.optim.Adam(clt.parameters(), lr=cfg.lr)

    def predict(idx: Tensor | None) -> list[Tensor]:
        outs = []
        feats = []
        for layer in range(L):
            x = xs[layer] if idx is None else xs[layer][idx]
            feats.append(apply_activation("topk", x @ clt.W_enc[layer] + clt.b_enc[layer], k=cfg.k))
            y = clt.b_dec[layer] + sum(feats[src] @ clt.W_dec[src][:, layer - src] for src in range(layer + 1))
            if clt.W_skip is not None:
                y = y + x @ clt.W_skip[layer].T
            outs.append(y)
        return outs

    n = len(xs[0])
    for _ in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch_tokens, n),), generator=g)
        loss = sum(((p - y[idx]) ** 2).sum(-1).mean() for p, y in zip(predict(idx), ys, strict=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        evs = [float(1 - ((p - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())
               for p, y in zip(predict(None), ys, strict=True)]
    return clt, evs
