"""A local Hugging Face checkpoint directory -> ``HookedTransformer``, offline, by architecture.

TransformerLens maps a *named* model to its config and weights; a user's directory has no
official name. Its own path-based route does the work: ``get_pretrained_model_config`` reads
``config.json`` through ``convert_hf_model_config`` (which picks the branch by
``config.architectures[0]``: ``LlamaForCausalLM``, ``GPT2LMHeadModel``, ``MistralForCausalLM``,
``Qwen2ForCausalLM``, ``GPTNeoXForCausalLM``, ...), and ``get_pretrained_state_dict`` given the
already loaded transformers model runs the architecture's weight conversion. Nothing is folded
or centred (``fold_ln``, ``center_writing_weights``, ``center_unembed`` and ``fold_value_biases``
off), so the converted model's logits equal the transformers model's (the tests check 1e-4 on
random Llama and GPT-2 checkpoints).

``convert_hf_model_config`` also guesses an architecture from words in the *name* ("llama",
"gemma") before it reads the config, and a directory called ``my-llama`` would take that
branch without a config. The directory is therefore passed as a directory with a neutral name
(symlinks to its files), so only ``config.json`` decides; fields TransformerLens reads that
transformers 5 no longer writes are filled there from their current names (GPT-2's ``n_ctx`` from
``n_positions``).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ingest.errors import ModelUnavailableError


def hf_architecture(directory: Path) -> str:
    """``architectures[0]`` of the directory's ``config.json``."""
    import json
    try:
        cfg = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelUnavailableError(f"{directory}/config.json cannot be read: {e}") from e
    archs = cfg.get("architectures") or []
    if not archs:
        raise ModelUnavailableError(f"{directory}/config.json names no architecture (\"architectures\": [...]); "
                                    "save the model with transformers' save_pretrained")
    return str(archs[0])


#: config fields TransformerLens reads -> the field transformers now writes instead
_ALIASES = {"GPT2LMHeadModel": {"n_ctx": "n_positions"}}


def _neutral_copy(directory: Path, link: Path) -> Path:
    """``link``: a directory of symlinks to ``directory``'s files, its config completed by ``_ALIASES``."""
    import json

    link.mkdir()
    for f in directory.resolve().iterdir():
        if f.name != "config.json":
            (link / f.name).symlink_to(f)
    cfg = json.loads((directory / "config.json").read_text())
    for field, source in _ALIASES.get(str((cfg.get("architectures") or [""])[0]), {}).items():
        if field not in cfg and source in cfg:
            cfg[field] = cfg[source]
    (link / "config.json").write_text(json.dumps(cfg))
    return link


def load_hf_checkpoint(directory: Path, tokenizer: Any, device: str = "cpu") -> tuple[Any, Any]:
    """(the ``HookedTransformer``, the transformers model) of a local Hugging Face checkpoint."""
    import torch
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config, get_pretrained_state_dict
    from transformers import AutoModelForCausalLM

    arch = hf_architecture(directory)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)  # TL 3 deprecates HookedTransformer for its bridge
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True,
                                                            dtype=torch.float32).eval()
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(f"transformers cannot load {directory} offline: {e}") from e
        with tempfile.TemporaryDirectory(prefix="mechgraph-") as tmp:
            link = _neutral_copy(directory, Path(tmp) / "checkpoint")
            try:
                cfg = get_pretrained_model_config(str(link), fold_ln=False, device=device, dtype=torch.float32,
                                                  local_files_only=True)
                state = get_pretrained_state_dict(str(link), cfg, hf_model=hf_model, local_files_only=True)
            except NotImplementedError as e:
                raise ModelUnavailableError(f"{directory}: TransformerLens cannot convert architecture {arch} "
                                            f"({e})") from e
        cfg.model_name = directory.name
        cfg.tokenizer_name = None
        n_vocab = len(tokenizer)
        if n_vocab > cfg.d_vocab:
            raise ModelUnavailableError(f"{directory}: the tokenizer has {n_vocab} tokens but the embedding only "
                                        f"{cfg.d_vocab} rows; token ids must index the embedding")
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                          fold_value_biases=False, refactor_factored_attn_matrices=False)
        model = model.to(device).eval()
    return model, hf_model
