"""Tokenizers a user can bring besides Hugging Face's own files.

* a **SentencePiece model** (``tokenizer.model``, BPE or unigram): converted with transformers'
  ``SpmConverter.build_tokenizer_from_spm_proto``, which follows the model's own normalizer and
  merges, so ids equal ``SentencePieceProcessor.encode``'s (the tests check it);
* a **plain vocabulary list** (``vocab.txt``, one token per line, the line number is the id and
  the row of the embedding): a word-level tokenizer splitting on whitespace, as the zoo's.

Either way the result is a ``PreTrainedTokenizerFast`` saved into a directory named by a hash of
its source under ``<cache>/tokenizers`` and loaded back from there (TransformerLens re-opens a
tokenizer by its ``name_or_path``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ingest.errors import ModelUnavailableError

#: special tokens a vocabulary list may contain, by role (first match wins)
SPECIAL_NAMES = {"pad": ("<pad>", "[PAD]"), "bos": ("<bos>", "<s>", "[CLS]"),
                 "eos": ("<eos>", "</s>", "[SEP]"), "unk": ("<unk>", "[UNK]")}


def _cached(source: Path, kind: str) -> Path:
    from graphdb.settings import cache_dir
    digest = hashlib.sha256(kind.encode() + source.read_bytes()).hexdigest()[:16]
    return cache_dir() / "tokenizers" / f"{kind}-{digest}"


def _save_and_load(tok: Any, directory: Path) -> Any:
    from transformers import PreTrainedTokenizerFast
    if not (directory / "tokenizer.json").is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.with_name(directory.name + ".tmp")
        tok.save_pretrained(str(tmp))
        if not directory.exists():  # another process may have written the same tokenizer
            tmp.replace(directory)
    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def vocabulary_list_tokenizer(path: Path) -> Any:
    """A word-level tokenizer whose ids are the lines of ``path`` (one token per line)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    if not tokens or any(not t.strip() or len(t.split()) != 1 for t in tokens):
        raise ModelUnavailableError(f"{path}: a vocabulary list has one token per line, no blank lines "
                                    "and no spaces inside a token")
    if len(set(tokens)) != len(tokens):
        dup = next(t for t in tokens if tokens.count(t) > 1)
        raise ModelUnavailableError(f"{path}: token {dup!r} is listed twice (ids must be unique)")
    present = set(tokens)
    special = {role: next((n for n in names if n in present), None) for role, names in SPECIAL_NAMES.items()}
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token=special["unk"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=special["pad"], bos_token=special["bos"],
                                  eos_token=special["eos"] or special["bos"], unk_token=special["unk"],
                                  padding_side="right", add_bos_token=special["bos"] is not None)
    return _save_and_load(tok, _cached(path, "vocab"))


def sentencepiece_tokenizer(path: Path) -> Any:
    """A fast tokenizer equal to the SentencePiece model at ``path`` (BPE or unigram)."""
    from transformers import PreTrainedTokenizerFast
    try:
        from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter
        proto = SentencePieceExtractor(str(path)).proto
    except ImportError as e:  # sentencepiece / protobuf are optional in transformers
        raise ModelUnavailableError(f"reading {path} needs the sentencepiece and protobuf packages: {e}") from e
    except Exception as e:  # a protobuf DecodeError: not a SentencePiece model
        raise ModelUnavailableError(f"{path} is not a SentencePiece model ({type(e).__name__}: {e})") from e
    pieces = proto.pieces
    if proto.trainer_spec.model_type == 1:  # unigram: (piece, score) in id order
        vocab: Any = [(p.piece, p.score) for p in pieces]
    else:                                  # BPE: piece -> id, merges ranked by score
        vocab = {p.piece: i for i, p in enumerate(pieces)}
    core = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab)
    spec = proto.trainer_spec

    def piece(i: int) -> str | None:
        return pieces[i].piece if 0 <= i < len(pieces) else None

    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token=piece(spec.unk_id), bos_token=piece(spec.bos_id),
                                  eos_token=piece(spec.eos_id), pad_token=piece(spec.pad_id), padding_side="right",
                                  add_bos_token=piece(spec.bos_id) is not None)
    return _save_and_load(tok, _cached(path, "spm"))
