"""Transcoders: dictionaries that read an MLP's input and write (an approximation of) its output.

A per-layer transcoder (PLT) at layer ``l`` reads ``x = blocks.l.mlp.hook_in`` (the MLP's
input, i.e. the output of ``ln2``) and writes ``blocks.l.hook_mlp_out``::

    pre   = x @ W_enc + b_enc                       [... d_dict]   (the feature pre-activations)
    f     = act(pre)                                 ReLU, JumpReLU (pre > threshold) or TopK
    y_hat = f @ W_dec + b_dec + x @ W_skip.T         [... d_out]    (W_skip: the affine skip, optional)
    error = mlp_out - y_hat                          (the error node)

A cross-layer transcoder (CLT) has one encoder per layer and, for the features read at layer
``l``, one decoder into the MLP output of ``l`` and of every later layer (Ameisen et al. 2025,
"Circuit Tracing"); its reconstruction of layer ``l'`` sums the decoders of layers ``<= l'``.

Classes:

* :class:`TranscoderDictionary` — one per-layer transcoder behind the :class:`Dictionary`
  interface. It wraps sae_lens' ``Transcoder``/``SkipTranscoder``/``JumpReLUTranscoder``/
  ``JumpReLUSkipTranscoder`` (ReLU and JumpReLU) or this module's :class:`TopKTranscoder`
  (sae_lens has no TopK transcoder).
* The CLT and the sets live in :mod:`ingest.dictionaries.transcoder_set`:
  ``CrossLayerTranscoder`` (mechgraph's own, for what sae_lens lacks) and ``Transcoders``, the
  view the replacement model needs of either a set of per-layer transcoders
  (``PerLayerTranscoders``) or one CLT: per layer, pre-activations, the activation function,
  encoder and decoder directions, decoder bias and skip.

On disk (``path:DIR``): a sae_lens directory (``cfg.json`` + ``sae_weights.safetensors``) for
the sae_lens kinds; ``mechgraph_transcoder.json`` + ``weights.safetensors`` for a TopK PLT or a
CLT (what :meth:`TopKTranscoder.save` / :meth:`CrossLayerTranscoder.save` write, so a trainer
produces a loadable directory by calling them); a *set* directory with
``transcoder_set.json`` (``{"layers": ["layer_0", ...]}``) or ``layer_<i>/`` sub-directories.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ingest.dictionaries.base import Activations, DescribeValue, Dictionary, Directions, Latents
from ingest.errors import DictionaryError

#: The file that marks a mechgraph transcoder directory (TopK PLT or CLT).
MECHGRAPH_FILE = "mechgraph_transcoder.json"
WEIGHTS_FILE = "weights.safetensors"
#: The file that lists the per-layer transcoders of a set directory.
SET_FILE = "transcoder_set.json"
SAE_LENS_TRANSCODERS = ("transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder")

Activation = Literal["relu", "jumprelu", "topk"]
#: Pre-activations of one layer's features, leading dims as the input.
PreActs = Float[Tensor, "... d_dict"]
#: Encoder directions, one row per feature (the gradient of its pre-activation).
EncoderRows = Float[Tensor, "d_dict d_in"]


def in_hook(layer: int) -> str:
    """The MLP input of ``layer`` (the ``ln2`` output). TransformerLens has no hook point there;
    mechgraph reads it with a forward pre-hook on ``blocks.<layer>.mlp`` (circuit-tracer's
    ``ReplacementMLP`` adds a hook point of this name)."""
    return f"blocks.{layer}.mlp.hook_in"


def out_hook(layer: int) -> str:
    """The MLP output of ``layer``."""
    return f"blocks.{layer}.hook_mlp_out"


def hook_layer(hook: str | None) -> int:
    """The block index of ``blocks.<i>...``; :class:`DictionaryError` for anything else."""
    parts = (hook or "").split(".")
    if len(parts) < 2 or parts[0] != "blocks" or not parts[1].isdigit():
        raise DictionaryError(f"a transcoder reads blocks.<layer>.mlp.hook_in, got hook {hook!r}")
    return int(parts[1])


def apply_activation(kind: Activation, pre: PreActs, *, threshold: Tensor | None = None,
                     k: int | None = None) -> PreActs:
    """The activation function on pre-activations: ReLU, JumpReLU (``pre`` where ``pre >
    threshold``, as sae_lens and circuit-tracer define it) or TopK (the ``k`` largest, then ReLU)."""
    if kind == "relu":
        return torch.relu(pre)
    if kind == "jumprelu":
        if threshold is None:
            raise DictionaryError("a JumpReLU transcoder needs its thresholds")
        return pre * (pre > threshold).to(pre.dtype)
    if k is None:
        raise DictionaryError("a TopK transcoder needs k")
    top = pre.topk(min(k, pre.shape[-1]), dim=-1)
    out = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    return torch.relu(out)


# -- per-layer transcoders ---------------------------------------------------------------------


class TopKTranscoder(nn.Module):
    """A per-layer TopK transcoder (sae_lens has none), optionally with an affine skip.

    Shapes follow sae_lens: ``W_enc [d_in d_dict]``, ``W_dec [d_dict d_out]``,
    ``W_skip [d_out d_in]``. :meth:`save` writes a ``path:DIR`` directory.
    """

    def __init__(self, d_in: int, d_dict: int, d_out: int, k: int, *, layer: int,
                 skip: bool = False) -> None:
        super().__init__()
        if k < 1 or k > d_dict:
            raise ValueError(f"k must be in [1, d_dict={d_dict}], got {k}")
        self.d_in, self.d_dict, self.d_out, self.k, self.layer = d_in, d_dict, d_out, k, layer
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_dict))
        self.b_enc = nn.Parameter(torch.zeros(d_dict))
        self.W_dec = nn.Parameter(torch.zeros(d_dict, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if skip else None

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "plt", "activation": "topk", "k": self.k, "layer": self.layer, "d_in": self.d_in,
                "d_dict": self.d_dict, "d_out": self.d_out, "skip": self.W_skip is not None}
        (directory / MECHGRAPH_FILE).write_text(json.dumps(meta, indent=2))
        save_file({n: p.detach().cpu().contiguous() for n, p in self.named_parameters()},
                  str(directory / WEIGHTS_FILE))
        return directory

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> TopKTranscoder:
        from safetensors.torch import load_file

        tc = cls(int(meta["d_in"]), int(meta["d_dict"]), int(meta["d_out"]), int(meta["k"]),
                 layer=int(meta["layer"]), skip=bool(meta.get("skip")))
        tc.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return tc


class TranscoderDictionary(Dictionary):
    """One per-layer transcoder as a :class:`Dictionary` of its input hook.

    ``encode``/``decode`` are the dictionary maps (``decode`` is affine with linear part
    :attr:`W_dec`, into the *output* space); :meth:`reconstruct` adds the skip;
    :meth:`error` takes the MLP output too, because a transcoder's error node is the MLP
    output minus its reconstruction, not its input minus a reconstruction of it.
    """

    def __init__(self, module: nn.Module, *, layer: int | None = None, source: str | None = None) -> None:
        from sae_lens.saes import JumpReLUTranscoder, Transcoder

        if isinstance(module, Transcoder):
            cfg = module.cfg
            if cfg.normalize_activations != "none":
                raise DictionaryError(f"this transcoder normalises its inputs at run time (normalize_activations="
                                      f"{cfg.normalize_activations!r}), so its features are not a fixed map")
            hook = cfg.metadata.hook_name
            self.activation: Activation = "jumprelu" if isinstance(module, JumpReLUTranscoder) else "relu"
            self.arch = cfg.architecture()
            d_in, d_dict, d_out = cfg.d_in, cfg.d_sae, cfg.d_out
            if self.activation == "relu" and getattr(cfg, "activation_fn", "relu") not in ("relu", None):
                raise DictionaryError(f"transcoder activation {cfg.activation_fn!r} is not supported")
        elif isinstance(module, TopKTranscoder):
            hook = in_hook(module.layer)
            self.activation, self.arch = "topk", "topk_transcoder" + ("_skip" if module.W_skip is not None else "")
            d_in, d_dict, d_out = module.d_in, module.d_dict, module.d_out
        else:
            raise DictionaryError(f"TranscoderDictionary wraps a sae_lens Transcoder or a TopKTranscoder, "
                                  f"got {type(module).__name__}")
        layer = hook_layer(hook) if layer is None else layer
        super().__init__(d_in, d_dict, hook_name=in_hook(layer), source=source)
        self.module = module
        self.layer = layer
        self.d_out = int(d_out)
        self.out_hook = out_hook(layer)
        self.kind = f"transcoder/{self.arch}"

    # -- the maps ----------------------------------------------------------------------------

    @property
    def W_enc(self) -> Float[Tensor, "d_in d_dict"]:
        return self.module.W_enc

    @property
    def b_enc(self) -> Float[Tensor, " d_dict"]:
        return self.module.b_enc

    @property
    def W_dec(self) -> Directions:
        return self.module.W_dec

    @property
    def b_dec(self) -> Float[Tensor, " d_out"]:
        return self.module.b_dec

    @property
    def W_skip(self) -> Float[Tensor, "d_out d_in"] | None:
        return getattr(self.module, "W_skip", None)

    @property
    def threshold(self) -> Tensor | None:
        return getattr(self.module, "threshold", None) if self.activation == "jumprelu" else None

    @property
    def k(self) -> int | None:
        return getattr(self.module, "k", None) if self.activation == "topk" else None

    def pre_activation(self, x: Activations) -> PreActs:
        self._check_width(x, self.d_in, "encode", "d_in")
        return x.to(self.W_enc.dtype) @ self.W_enc + self.b_enc

    def _encode(self, x: Activations) -> Latents:
        return apply_activation(self.activation, x @ self.W_enc + self.b_enc, threshold=self.threshold, k=self.k)

    def _decode(self, f: Latents) -> Float[Tensor, "... d_out"]:
        return f @ self.W_dec + self.b_dec

    def skip(self, x: Activations) -> Float[Tensor, "... d_out"]:
        """The affine skip ``x @ W_skip.T`` (zeros without one)."""
        W = self.W_skip
        if W is None:
            return x.new_zeros((*x.shape[:-1], self.d_out))
        return x @ W.T

    def reconstruct(self, x: Activations) -> Float[Tensor, "... d_out"]:
        """The transcoder's approximation of the MLP output: ``decode(encode(x)) + skip(x)``."""
        return self.decode(self.encode(x)) + self.skip(x)

    def forward(self, x: Activations) -> Float[Tensor, "... d_out"]:
        return self.reconstruct(x)

    def error(self, x: Activations, y: Float[Tensor, "... d_out"] | None = None) -> Float[Tensor, "... d_out"]:
        """The error node ``y - reconstruct(x)`` (``y``: the MLP output on the same input)."""
        if y is None:
            raise DictionaryError("a transcoder's error node is the MLP output minus its reconstruction: "
                                  "pass the MLP output as well (error(x_in, y_out))")
        self._check_width(y, self.d_out, "error", "d_out")
        return y - self.reconstruct(x)

    def _describe_extra(self) -> dict[str, DescribeValue]:
        return {"architecture": self.arch, "activation": self.activation, "layer": self.layer,
                "out_hook": self.out_hook, "d_out": self.d_out, "skip": self.W_skip is not None,
                "k": self.k}

    # -- loaders -----------------------------------------------------------------------------

    @classmethod
    def from_disk(cls, directory: str | Path, device: str = "cpu") -> TranscoderDictionary:
        """A sae_lens transcoder directory or a mechgraph TopK transcoder directory."""
        from safetensors import SafetensorError

        directory = Path(directory).expanduser()
        try:
            meta = _mechgraph_meta(directory)
            if meta is not None:
                if meta.get("kind") != "plt":
                    raise DictionaryError(f"{directory} holds a cross-layer transcoder: load it as a transcoder set "
                                          "(--transcoders path:DIR, ingest.dictionaries.transcoder_set), it has no single hook")
                return cls(TopKTranscoder.load(directory, meta).to(device), source=f"path:{directory.resolve()}")
            from sae_lens import SAE

            sae = SAE.load_from_disk(directory, device=device)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            raise DictionaryError(f"cannot load the transcoder in {directory}: {type(e).__name__}: {e}") from e
        return cls(sae, source=f"path:{directory.resolve()}")

    @classmethod
    def from_pretrained(cls, release: str, sae_id: str, device: str = "cpu") -> TranscoderDictionary:
        """Transcoder ``sae_id`` of a sae_lens pretrained release (hub, cached; offline fails
        in one sentence, see :mod:`ingest.dictionaries.hub`)."""
        sae = load_release_sae(release, sae_id, device)
        return cls(sae, source=f"release:{release}/{sae_id}")


def load_release_sae(release: str, sae_id: str, device: str = "cpu") -> Any:
    """Any sae_lens pretrained SAE or transcoder, with the registry check and offline policy."""
    from ingest.dictionaries import hub

    hub.check_release(release, sae_id)

    def load() -> Any:
        from sae_lens import SAE

        return SAE.from_pretrained(release, sae_id, device=device, dtype="float32")

    return hub.fetch(release, sae_id, load)


def is_transcoder_dir(directory: Path) -> bool:
    """Whether ``directory`` holds one per-layer transcoder, a CLT, or a transcoder set."""
    if (directory / MECHGRAPH_FILE).is_file() or (directory / SET_FILE).is_file() or _layer_dirs(directory):
        return True
    cfg = directory / "cfg.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("architecture") in SAE_LENS_TRANSCODERS
        except (OSError, ValueError):
            return False
    return False


def _mechgraph_meta(directory: Path) -> dict[str, Any] | None:
    path = directory / MECHGRAPH_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _layer_dirs(directory: Path) -> list[Path]:
    subs = [p for p in directory.glob("layer_*") if p.is_dir() and p.name[6:].isdigit()]
    return sorted(subs, key=lambda p: int(p.name[6:]))
