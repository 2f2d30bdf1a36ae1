"""``path:DIR``: what a model directory may contain, and loading it.

A directory is one of two kinds of checkpoint, recognised by its config file:

* a **mechgraph checkpoint**: ``tl_config.json`` (a ``HookedTransformerConfig`` as JSON) and
  ``model.safetensors`` (its state dict), as the zoo and ``save_checkpoint`` write them;
* a **Hugging Face checkpoint**: ``config.json`` naming an architecture TransformerLens can
  convert (Llama, GPT-2, Mistral, Qwen2/3, GPT-NeoX, Gemma, Phi, OLMo, ...) and its weights
  (``model.safetensors``, sharded safetensors with an index, or ``pytorch_model.bin``), as
  ``save_pretrained`` writes them; loaded offline by transformers and converted
  (:mod:`ingest.models.hf`).

and needs a tokenizer whose ids are the rows of the embedding, the first of:

1. Hugging Face tokenizer files in the directory (``tokenizer.json``, or ``tokenizer_config.json``
   with the files it names), as ``tokenizer.save_pretrained`` writes them;
2. a ``tokenizer/`` directory holding those files, in the directory or two levels above it
   (the zoo's layout);
3. ``tokenizer.model``: a SentencePiece model (BPE or unigram);
4. ``vocab.txt``: a plain vocabulary list, one token per line, line i is token id i; words
   are split on whitespace; ``<pad>``, ``<bos>``/``<s>``, ``<eos>``/``</s>`` and ``<unk>`` are
   recognised as special tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.errors import ModelUnavailableError

#: One paragraph for errors and ``--help``.
ACCEPTED = ("a path:DIR holds either a mechgraph checkpoint (tl_config.json + model.safetensors) or a "
            "Hugging Face checkpoint (config.json + model.safetensors or pytorch_model.bin, as save_pretrained "
            "writes it; loaded offline and converted by architecture), plus a tokenizer whose ids are the "
            "embedding's rows: Hugging Face tokenizer files (tokenizer.json / tokenizer_config.json) in DIR or "
            "in a tokenizer/ directory (in DIR or two levels up), a SentencePiece tokenizer.model, or a "
            "vocab.txt with one token per line (line i = id i)")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the file system: no such directory
        return False


def checkpoint_kind(directory: Path) -> str:
    """``"mechgraph"`` or ``"hf"``; a ``ModelUnavailableError`` saying what is accepted otherwise."""
    if not _is_dir(directory):
        raise ModelUnavailableError(f"{str(directory)[:200]} is not a directory; {ACCEPTED}")
    if (directory / "tl_config.json").is_file():
        return "mechgraph"
    if (directory / "config.json").is_file():
        return "hf"
    raise ModelUnavailableError(f"{directory} has neither tl_config.json nor config.json; {ACCEPTED}")


def find_tokenizer(directory: Path) -> tuple[Any, str]:
    """The directory's tokenizer (see the module docstring for the order) and where it came from."""
    from ingest.models.vocab import sentencepiece_tokenizer, vocabulary_list_tokenizer

    if (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file():
        return _auto(directory), f"Hugging Face tokenizer files in {directory}"
    for tok in (directory / "tokenizer", directory.parent.parent / "tokenizer"):
        if tok.is_dir():
            return _auto(tok), f"Hugging Face tokenizer files in {tok}"
    if (directory / "tokenizer.model").is_file():
        return sentencepiece_tokenizer(directory / "tokenizer.model"), f"SentencePiece model {directory}/tokenizer.model"
    if (directory / "vocab.txt").is_file():
        return vocabulary_list_tokenizer(directory / "vocab.txt"), f"vocabulary list {directory}/vocab.txt"
    raise ModelUnavailableError(f"{directory} has no tokenizer; {ACCEPTED}")


def _auto(directory: Path) -> Any:
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise ModelUnavailableError(f"transformers cannot load the tokenizer in {directory}: {e}") from e


def load_directory(directory: Path, device: str = "cpu") -> Any:
    """The ``HookedTransformer`` (with its tokenizer) of a ``path:DIR``, in eval mode."""
    from ingest.zoo.store import load_tl_checkpoint

    directory = directory.expanduser()
    kind = checkpoint_kind(directory)
    tokenizer, _ = find_tokenizer(directory)
    if kind == "mechgraph":
        model = load_tl_checkpoint(directory, tokenizer, device)
    else:
        from ingest.models.hf import load_hf_checkpoint
        model, _ = load_hf_checkpoint(directory, tokenizer, device)
    _check_vocabulary(directory, model, tokenizer)
    return model


def _check_vocabulary(directory: Path, model: Any, tokenizer: Any) -> None:
    if len(tokenizer) > int(model.cfg.d_vocab):
        raise ModelUnavailableError(f"{directory}: the tokenizer has {len(tokenizer)} tokens but the model's "
                                    f"embedding only {model.cfg.d_vocab} rows; token ids must index the embedding")
