"""Tiny models and random transcoders of every kind, seeds fixed.

Weights are random but not trivial: encoder biases are spread so that some features fire on
a prompt and some do not, and decoders write back into the stream at the model's scale.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ingest.dictionaries.transcoder import (
    TopKTranscoder,
    TranscoderDictionary,
    in_hook,
)
from ingest.dictionaries.transcoder_set import CrossLayerTranscoder, CrossLayerTranscoders, PerLayerTranscoders

D_MODEL, D_MLP, D_DICT, N_LAYERS = 16, 32, 24, 2
PROMPT = "When Mary and John went to the store , John gave a ring to"
KINDS = ["relu", "skip", "jumprelu", "jumprelu_skip", "topk", "topk_skip"]


def _fill(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "threshold" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.3)
            elif "b_enc" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "W_skip" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def make_plt(kind: str, layer: int, seed: int = 0) -> TranscoderDictionary:
    """A per-layer transcoder of ``kind`` (see KINDS) reading ``layer``'s MLP input."""
    from sae_lens.saes import (
        JumpReLUSkipTranscoder,
        JumpReLUSkipTranscoderConfig,
        JumpReLUTranscoder,
        JumpReLUTranscoderConfig,
        SkipTranscoder,
        SkipTranscoderConfig,
        Transcoder,
        TranscoderConfig,
    )

    if kind.startswith("topk"):
        module: Any = TopKTranscoder(D_MODEL, D_DICT, D_MODEL, k=5, layer=layer, skip=kind.endswith("skip"))
    else:
        cls, cfg_cls = {"relu": (Transcoder, TranscoderConfig), "skip": (SkipTranscoder, SkipTranscoderConfig),
                        "jumprelu": (JumpReLUTranscoder, JumpReLUTranscoderConfig),
                        "jumprelu_skip": (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig)}[kind]
        cfg = cfg_cls(d_in=D_MODEL, d_sae=D_DICT, d_out=D_MODEL, apply_b_dec_to_input=False)
        cfg.metadata.hook_name = in_hook(layer)
        module = cls(cfg)
    _fill(module, seed + 100 * layer)
    return TranscoderDictionary(module)


def make_set(kind: str, seed: int = 0) -> PerLayerTranscoders:
    return PerLayerTranscoders([make_plt(kind, layer, seed) for layer in range(N_LAYERS)])


def make_clt(activation: str = "relu", skip: bool = False, seed: int = 0) -> CrossLayerTranscoders:
    clt = CrossLayerTranscoder(N_LAYERS, D_MODEL, D_DICT, activation=activation,  # type: ignore[arg-type]
                               k=5 if activation == "topk" else None, skip=skip)
    _fill(clt, seed)
    return CrossLayerTranscoders(clt)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 2-layer random-weight toy model with the zoo's word-level tokenizer."""
    from ingest.zoo.tokenizer import build_tokenizer
    from ingest.zoo.train import ToyModelConfig, build_model

    tok = build_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")
    cfg = ToyModelConfig(name="tiny", n_layers=N_LAYERS, d_model=D_MODEL, n_heads=2, d_mlp=D_MLP, steps=100, seed=3)
    return build_model(cfg, tok).eval()


@pytest.fixture(scope="session")
def saved(tiny_model, tmp_path_factory) -> tuple[str, str]:
    """The tiny model as a ``path:DIR`` checkpoint and its skip transcoders as a ``path:DIR`` set."""
    from ingest.zoo.store import save_checkpoint

    root = tmp_path_factory.mktemp("saved")
    save_checkpoint(tiny_model, root / "model")
    tiny_model.tokenizer.save_pretrained(str(root / "model" / "tokenizer"))
    for layer, t in enumerate(make_set("skip", seed=1).layers):
        t.module.save_model(root / "tc" / f"layer_{layer}")
    return f"path:{root / 'model'}", f"path:{root / 'tc'}"
