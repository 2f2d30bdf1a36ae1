"""Dictionaries: the bases mechgraph reads activations in (SAEs, neurons, PCA), one interface.

Every dictionary is a :class:`Dictionary` (``encode``, ``decode``, ``error``, ``W_dec``,
``describe``; see :mod:`.base`) and is named by a spec string that
:func:`load_dictionary` resolves (:mod:`.load`)::

    from ingest.dictionaries import load_dictionary
    sae = load_dictionary("path:runs/sae-l0")                       # a local sae_lens dir
    sae = load_dictionary("release:gpt2-small-res-jb/blocks.0.hook_resid_pre")
    neurons = load_dictionary("identity:3072/blocks.0.mlp.hook_post")

Importing this package is light: the classes (and with them torch and sae_lens) load on
first access, so ``mechgraph --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ingest.dictionaries.load import (
    SCHEME_PROVIDERS,
    Resolver,
    check_dictionary_spec,
    dictionary_schemes,
    load_dictionary,
    parse_spec,
    register_dictionary_scheme,
)

if TYPE_CHECKING:  # typing only; at run time these load lazily through __getattr__
    from ingest.dictionaries.base import Dictionary
    from ingest.dictionaries.identity import IdentityDictionary
    from ingest.dictionaries.sae import SAEDictionary
    from ingest.dictionaries.svd import SVDDictionary
    from ingest.dictionaries.transcoder import TranscoderDictionary

_LAZY = {
    "Dictionary": "ingest.dictionaries.base",
    "IdentityDictionary": "ingest.dictionaries.identity",
    "SAEDictionary": "ingest.dictionaries.sae",
    "SVDDictionary": "ingest.dictionaries.svd",
    "TranscoderDictionary": "ingest.dictionaries.transcoder",
}

__all__ = [
    "Dictionary", "IdentityDictionary", "SAEDictionary", "SVDDictionary", "TranscoderDictionary",
    "SCHEME_PROVIDERS", "Resolver", "check_dictionary_spec", "dictionary_schemes", "load_dictionary", "parse_spec",
    "register_dictionary_scheme",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
