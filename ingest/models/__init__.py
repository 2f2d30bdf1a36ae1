"""Bringing your own model: what a ``path:DIR`` may hold and how it becomes a ``HookedTransformer``.

:mod:`ingest.models.directory` decides what a directory is (a mechgraph checkpoint or a
Hugging Face checkpoint) and finds its tokenizer; :mod:`ingest.models.hf` converts a Hugging
Face checkpoint offline by architecture; :mod:`ingest.models.vocab` builds tokenizers from a
SentencePiece model or a plain vocabulary list.
"""
