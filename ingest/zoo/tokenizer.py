"""The toy models' tokenizer: one word per token over the built-in tasks' shared vocabulary.

A Hugging Face ``PreTrainedTokenizerFast`` (so TransformerLens and sae_lens treat it like any
other) with a ``WordLevel`` model and whitespace pre-tokenisation: ``" Mary"`` encodes to the
single token ``Mary``, exactly as a BPE tokenizer gives one token for a leading-space word.
Ids are fixed by the sorted vocabulary, so every build of the zoo tokenizes identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PAD, BOS, UNK = "<pad>", "<bos>", "<unk>"
SPECIALS = (PAD, BOS, UNK)


def build_tokenizer(directory: Path, words: list[str] | None = None) -> Any:
    """A word-level tokenizer over ``words`` (default: every built-in task's vocabulary),
    saved to ``directory`` and loaded back from it (TransformerLens needs a tokenizer that
    knows the directory it came from)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from ingest.tasks.builtin import vocabulary

    words = sorted(set(words if words is not None else vocabulary()) - set(SPECIALS))
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *words])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    # encode(text) prepends <bos> (TransformerLens' convention for add_bos_token tokenizers);
    # mechgraph's own encoding passes add_special_tokens=False and adds BOS itself.
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=BOS,
                                  pad_token=PAD, unk_token=UNK, padding_side="right",
                                  add_bos_token=True)
    save_tokenizer(tok, directory)
    return load_tokenizer(directory)


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path) -> Any:
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast.from_pretrained(str(directory))
