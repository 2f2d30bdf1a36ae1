"""Transcoder sets: the cross-layer transcoder, the replacement model's view of a full set
(``Transcoders``: per-layer transcoders or one CLT), and every kind of set loaded from one string.

Forms: ``path:DIR`` (a CLT directory, a set directory with ``transcoder_set.json`` or
``layer_<i>/`` sub-directories, or one transcoder), ``SPEC,SPEC,...`` (one per-layer transcoder
per layer, any dictionary spec), ``release:RELEASE`` (every transcoder of a sae_lens release;
offline it fails in one sentence).
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ingest.dictionaries.base import DescribeValue, Dictionary
from ingest.dictionaries.load import SCHEME_PROVIDERS, SET_RESOLVERS, load_dictionary, parse_spec
from ingest.dictionaries.transcoder import (
    MECHGRAPH_FILE,
    SET_FILE,
    WEIGHTS_FILE,
    Activation,
    EncoderRows,
    PreActs,
    TranscoderDictionary,
    _layer_dirs,
    _mechgraph_meta,
    apply_activation,
)
from ingest.errors import DictionaryError


# -- cross-layer transcoders -------------------------------------------------------------------


class CrossLayerTranscoder(nn.Module):
    """A cross-layer transcoder: encoder ``l`` reads layer ``l``'s MLP input; its decoders write
    the MLP outputs of layers ``l, l+1, ..., n_layers-1``.

    Shapes: ``W_enc [n_layers d_model d_dict]``, ``b_enc [n_layers d_dict]``,
    ``W_dec[l] [d_dict (n_layers - l) d_model]`` (index 0 writes layer ``l``), ``b_dec
    [n_layers d_model]``, optional ``W_skip [n_layers d_model d_model]`` (``x @ W_skip[l].T``),
    ``threshold [n_layers d_dict]`` for JumpReLU, ``k`` for TopK.
    """

    def __init__(self, n_layers: int, d_model: int, d_dict: int, *, activation: Activation = "relu",
                 k: int | None = None, skip: bool = False, source: str | None = None) -> None:
        super().__init__()
        if activation not in ("relu", "jumprelu", "topk"):
            raise ValueError(f"activation must be relu, jumprelu or topk, got {activation!r}")
        if activation == "topk" and (k is None or not 1 <= k <= d_dict):
            raise ValueError(f"a TopK CLT needs k in [1, {d_dict}], got {k!r}")
        self.n_layers, self.d_model, self.d_dict = n_layers, d_model, d_dict
        self.activation: Activation = activation
        self.k = k if activation == "topk" else None
        self.source = source
        self.W_enc = nn.Parameter(torch.zeros(n_layers, d_model, d_dict))
        self.b_enc = nn.Parameter(torch.zeros(n_layers, d_dict))
        self.W_dec = nn.ParameterList([nn.Parameter(torch.zeros(d_dict, n_layers - i, d_model))
                                       for i in range(n_layers)])
        self.b_dec = nn.Parameter(torch.zeros(n_layers, d_model))
        self.W_skip = nn.Parameter(torch.zeros(n_layers, d_model, d_model)) if skip else None
        self.threshold = nn.Parameter(torch.zeros(n_layers, d_dict)) if activation == "jumprelu" else None

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "clt", "activation": self.activation, "k": self.k, "n_layers": self.n_layers,
                "d_model": self.d_model, "d_dict": self.d_dict, "skip": self.W_skip is not None}
        (directory / MECHGRAPH_FILE).write_text(json.dumps(meta, indent=2))
        tensors = {n.replace(".", "_"): p.detach().cpu().contiguous() for n, p in self.named_parameters()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        return directory

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> CrossLayerTranscoder:
        from safetensors.torch import load_file

        clt = cls(int(meta["n_layers"]), int(meta["d_model"]), int(meta["d_dict"]), activation=meta["activation"],
                  k=meta.get("k"), skip=bool(meta.get("skip")), source=f"path:{directory.resolve()}")
        state = {n.replace("W_dec_", "W_dec.") if n.startswith("W_dec_") else n: t
                 for n, t in load_file(str(directory / WEIGHTS_FILE)).items()}
        clt.load_state_dict(state)
        return clt


# -- the replacement model's view -------------------------------------------------------------


class Transcoders(nn.Module, ABC):
    """What the replacement model needs of a full set of transcoders, one MLP per layer.

    ``out_layers(l)`` are the MLP outputs that features read at layer ``l`` write to (``[l]``
    for per-layer transcoders, ``l..n_layers-1`` for a CLT); ``decoder(l, idx)`` has one
    ``[n_out d_model]`` block per feature, in that order.
    """

    n_layers: int
    kind: str
    source: str | None

    @abstractmethod
    def d_dict(self, layer: int) -> int: ...

    @abstractmethod
    def pre_activation(self, layer: int, x: Float[Tensor, "... d_model"]) -> PreActs: ...

    @abstractmethod
    def activate(self, layer: int, pre: PreActs) -> PreActs: ...

    @abstractmethod
    def encoder_rows(self, layer: int, idx: Tensor) -> EncoderRows: ...

    @abstractmethod
    def decoder(self, layer: int, idx: Tensor) -> Float[Tensor, "n n_out d_model"]: ...

    @abstractmethod
    def out_layers(self, layer: int) -> range: ...

    @abstractmethod
    def b_dec(self, layer: int) -> Float[Tensor, " d_model"]: ...

    @property
    @abstractmethod
    def has_skip(self) -> bool: ...

    @abstractmethod
    def skip(self, layer: int, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]: ...

    def encode(self, layer: int, x: Float[Tensor, "... d_model"]) -> PreActs:
        return self.activate(layer, self.pre_activation(layer, x))

    def describe(self) -> dict[str, DescribeValue]:
        return {"kind": self.kind, "n_layers": self.n_layers, "source": self.source, "skip": self.has_skip}


class PerLayerTranscoders(Transcoders):
    """One :class:`TranscoderDictionary` per layer, layers ``0..n-1`` all covered."""

    def __init__(self, transcoders: Sequence[TranscoderDictionary], *, source: str | None = None) -> None:
        super().__init__()
        by_layer = {t.layer: t for t in transcoders}
        if len(by_layer) != len(transcoders):
            raise DictionaryError("two transcoders of the set read the same layer")
        if set(by_layer) != set(range(len(by_layer))):
            raise DictionaryError(f"a transcoder set needs one transcoder per layer 0..n-1; it has layers "
                                  f"{sorted(by_layer)}")
        self.layers = nn.ModuleList([by_layer[i] for i in range(len(by_layer))])
        self.n_layers = len(by_layer)
        kinds = sorted({t.kind for t in transcoders})
        self.kind = "plt:" + "+".join(kinds)
        skips = {t.W_skip is not None for t in transcoders}
        if len(skips) > 1:
            raise DictionaryError("either every transcoder of the set has a skip connection or none has")
        self._skip = skips.pop()
        self.source = source

    def __getitem__(self, layer: int) -> TranscoderDictionary:
        return self.layers[layer]  # type: ignore[return-value]

    def d_dict(self, layer: int) -> int:
        return self[layer].d_dict

    def pre_activation(self, layer: int, x: Tensor) -> Tensor:
        return self[layer].pre_activation(x)

    def activate(self, layer: int, pre: Tensor) -> Tensor:
        t = self[layer]
        return apply_activation(t.activation, pre, threshold=t.threshold, k=t.k)

    def encoder_rows(self, layer: int, idx: Tensor) -> Tensor:
        return self[layer].W_enc[:, idx].T

    def decoder(self, layer: int, idx: Tensor) -> Tensor:
        return self[layer].W_dec[idx][:, None, :]

    def out_layers(self, layer: int) -> range:
        return range(layer, layer + 1)

    def b_dec(self, layer: int) -> Tensor:
        return self[layer].b_dec

    @property
    def has_skip(self) -> bool:
        return self._skip

    def skip(self, layer: int, x: Tensor) -> Tensor:
        return self[layer].skip(x)


class CrossLayerTranscoders(Transcoders):
    """A :class:`CrossLayerTranscoder` behind the :class:`Transcoders` view."""

    def __init__(self, clt: CrossLayerTranscoder) -> None:
        super().__init__()
        self.clt = clt
        self.n_layers = clt.n_layers
        self.kind = f"clt/{clt.activation}" + ("_skip" if clt.W_skip is not None else "")
        self.source = clt.source

    def d_dict(self, layer: int) -> int:
        return self.clt.d_dict

    def pre_activation(self, layer: int, x: Tensor) -> Tensor:
        return x @ self.clt.W_enc[layer] + self.clt.b_enc[layer]

    def activate(self, layer: int, pre: Tensor) -> Tensor:
        th = None if self.clt.threshold is None else self.clt.threshold[layer]
        return apply_activation(self.clt.activation, pre, threshold=th, k=self.clt.k)

    def encoder_rows(self, layer: int, idx: Tensor) -> Tensor:
        return self.clt.W_enc[layer][:, idx].T

    def decoder(self, layer: int, idx: Tensor) -> Tensor:
        return self.clt.W_dec[layer][idx]

    def out_layers(self, layer: int) -> range:
        return range(layer, self.n_layers)

    def b_dec(self, layer: int) -> Tensor:
        return self.clt.b_dec[layer]

    @property
    def has_skip(self) -> bool:
        return self.clt.W_skip is not None

    def skip(self, layer: int, x: Tensor) -> Tensor:
        if self.clt.W_skip is None:
            return x.new_zeros((*x.shape[:-1], self.clt.d_model))
        return x @ self.clt.W_skip[layer].T


_SET_FORMS = ("a transcoder spec is path:DIR (a CLT, a set directory with transcoder_set.json or layer_<i>/ "
              "sub-directories, or one transcoder), SPEC,SPEC,... (one per-layer transcoder per layer, any "
              "dictionary spec), or release:RELEASE (every transcoder of a sae_lens release)")


def load_transcoders(spec: str, *, device: str = "cpu") -> Transcoders:
    """The full transcoder set a spec names (see ``_SET_FORMS``), on ``device``."""
    spec = (spec or "").strip()
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) > 1:
        dicts = [load_dictionary(p, device=device) for p in parts]
        return PerLayerTranscoders([_as_transcoder(d, p) for d, p in zip(dicts, parts, strict=True)],
                                   source=spec).to(device)
    scheme, body = parse_spec(spec)
    if scheme == "release" and "/" not in body:
        return _load_release_set(body, device)
    if scheme in SCHEME_PROVIDERS:   # its module registers its set resolver (the zoo's: zoo:NAME@CKPT[/clt])
        importlib.import_module(SCHEME_PROVIDERS[scheme])
    if scheme in SET_RESOLVERS and ("/" not in body or body.endswith("/clt")):
        return load_transcoders(SET_RESOLVERS[scheme](body), device=device)
    if scheme != "path":
        d = load_dictionary(spec, device=device)
        return PerLayerTranscoders([_as_transcoder(d, spec)], source=spec).to(device)
    directory = Path(body).expanduser()
    if not directory.is_dir():
        raise DictionaryError(f"transcoder directory {directory} does not exist")
    meta = _mechgraph_meta(directory)
    if meta is not None and meta.get("kind") == "clt":
        return CrossLayerTranscoders(CrossLayerTranscoder.load(directory, meta)).to(device)
    subdirs: list[Path]
    if (directory / SET_FILE).is_file():
        listed = json.loads((directory / SET_FILE).read_text()).get("layers", [])
        subdirs = [directory / s for s in listed]
    else:
        subdirs = _layer_dirs(directory) or [directory]
    missing = [str(s) for s in subdirs if not s.is_dir()]
    if missing:
        raise DictionaryError(f"the transcoder set in {directory} names directories that do not exist: {missing}")
    source = f"path:{directory.resolve()}"
    return PerLayerTranscoders([TranscoderDictionary.from_disk(s, device) for s in subdirs], source=source).to(device)


def _as_transcoder(d: Dictionary, spec: str) -> TranscoderDictionary:
    if not isinstance(d, TranscoderDictionary):
        raise DictionaryError(f"{spec} is a {d.kind} dictionary, not a transcoder")
    return d


def _load_release_set(release: str, device: str) -> Transcoders:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise DictionaryError(f"sae_lens knows no release {release!r} (see its pretrained_saes.yaml)")
    ids = list(directory[release].saes_map)
    loaded = [TranscoderDictionary.from_pretrained(release, i, device) for i in ids]
    return PerLayerTranscoders(loaded, source=f"release:{release}").to(device)
