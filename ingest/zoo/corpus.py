"""English text for SAE training and activation statistics, with no dataset download.

Two sources that ship with every CPython, so the corpus exists wherever mechgraph runs:

* ``pydoc_data.topics.topics``: the Python Language Reference topics that ``help()`` shows
  (~465 KB of prose on 3.11), one document per topic, in sorted topic order.
* Docstrings of :data:`STDLIB_MODULES` (a fixed list of pure-Python, always-present modules):
  the module's own, then those of its public functions and classes and of the classes'
  public methods, members in sorted name order (~640 KB on 3.11). Only members defined in the
  module itself are taken, and a docstring already seen is skipped.

The text is deterministic for a given CPython version (docstrings change between releases).
It is technical English with code samples, not web text: good enough to train and evaluate
dictionaries on a small model offline, not a substitute for a pretraining mix.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

from mechgraph.errors import ConfigError

# Sorted, importable on any CPython build: no tkinter, readline, curses, sqlite3, ssl, lzma, bz2.
STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email.message", "enum", "filecmp", "fnmatch", "fractions", "ftplib", "functools",
    "getopt", "gettext", "glob", "graphlib", "heapq", "hmac", "html.parser", "http.client",
    "http.server", "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "keyword",
    "linecache", "locale", "logging", "mailbox", "math", "mimetypes", "numbers", "operator",
    "optparse", "os", "pathlib", "pickle", "pkgutil", "platform", "plistlib", "poplib", "pprint",
    "queue", "quopri", "random", "re", "reprlib", "sched", "secrets", "selectors", "shlex",
    "shutil", "smtplib", "socket", "socketserver", "statistics", "string", "struct", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize", "traceback",
    "types", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref",
    "xml.dom.minidom", "zipfile",
)


def offline_text_corpus() -> list[str]:
    """The documents described in the module docstring, in a fixed order, without duplicates."""
    from pydoc_data.topics import topics

    documents: list[str] = []
    seen: set[str] = set()
    for raw in [topics[name] for name in sorted(topics)] + [d for m in STDLIB_MODULES for d in _docstrings(m)]:
        text = inspect.cleandoc(raw).strip() if raw else ""
        if text and text not in seen:
            seen.add(text)
            documents.append(text)
    return documents


def tokenized_corpus(tokenizer: Any, context_size: int, n_sequences: int | None = None,
                     prepend_bos: bool = True, seed: int = 0) -> Any:
    """The corpus as a ``datasets.Dataset`` with one column ``input_ids`` of sequences of
    exactly ``context_size`` token ids.

    Documents are tokenized without special tokens, joined into one stream with the EOS token
    (when the tokenizer has one) after each document, and cut into consecutive chunks; the
    last partial chunk is dropped. With ``prepend_bos`` and a tokenizer that has a BOS token,
    each row is BOS followed by ``context_size - 1`` stream tokens. Rows are shuffled with
    ``seed`` and the first ``n_sequences`` kept (all when ``None``).
    """
    import datasets
    import numpy as np

    bos = tokenizer.bos_token_id if prepend_bos else None
    body = context_size - (1 if bos is not None else 0)
    if body < 1:
        raise ConfigError(f"context_size={context_size} leaves no room for text: use at least 2")
    if n_sequences is not None and n_sequences < 1:
        raise ConfigError(f"n_sequences={n_sequences} must be at least 1 (or None for all)")

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(offline_text_corpus(), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    n_rows = len(stream) // body
    if n_rows == 0 or (n_sequences is not None and n_sequences > n_rows):
        raise ConfigError(f"the offline corpus has {len(stream)} tokens, {n_rows} sequences of "
                          f"{context_size}; asked for {n_sequences}: ask for fewer or shorter sequences")
    chunks = np.asarray(stream[: n_rows * body], dtype=np.int64).reshape(n_rows, body)
    if bos is not None:
        chunks = np.concatenate([np.full((n_rows, 1), bos, dtype=np.int64), chunks], axis=1)
    order = np.random.default_rng(seed).permutation(n_rows)[: n_sequences or n_rows]
    return datasets.Dataset.from_dict({"input_ids": chunks[order].tolist()})


def _docstrings(module_name: str) -> list[str]:
    """The module's docstring, then its own public functions', classes' and methods'."""
    module = importlib.import_module(module_name)
    docs = [module.__doc__ or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not _defined_in(obj, module):
            continue
        docs.append(obj.__doc__ or "")
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and inspect.isfunction(member):
                    docs.append(member.__doc__ or "")
    return docs


def _defined_in(obj: object, module: ModuleType) -> bool:
    """Functions and classes whose home is ``module`` (re-exports are left to their owner)."""
    is_callable = inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)
    return is_callable and getattr(obj, "__module__", None) == module.__name__
