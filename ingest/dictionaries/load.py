"""Dictionary specs: one string names any dictionary, and a registry of schemes resolves it.

A spec is ``SCHEME:BODY``. Built in:

``path:DIR``
    A local directory: a transcoder (a sae_lens transcoder or a mechgraph TopK transcoder,
    :mod:`.transcoder`), a sae_lens SAE (``cfg.json`` + ``sae_weights.safetensors``, as
    written by sae_lens' ``save_model``/``save_inference_model`` and its training runner),
    or an SVD basis written by :meth:`SVDDictionary.save` (``svd.json``). ``~`` expands.
``release:RELEASE/SAE_ID``
    SAE ``SAE_ID`` of a sae_lens pretrained release, from the Hugging Face hub (cached).
    Split at the first ``/``: release names have none, SAE ids may
    (``release:gpt2-small-res-jb/blocks.0.hook_resid_pre``).
``identity:D_IN`` or ``identity:D_IN/HOOK_NAME``
    The raw basis of width ``D_IN`` (``identity:3072/blocks.0.mlp.hook_post``: neurons).

Other modules add schemes with :func:`register_dictionary_scheme` (the zoo registers
``zoo:``, e.g. ``zoo:mt-small@final/blocks.0.hook_resid_post``); a scheme listed in
:data:`SCHEME_PROVIDERS` is imported on first use, so its module registers itself without
the caller importing it. This module is light: nothing heavy is imported until a spec is
resolved.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.errors import DictionaryError, SpecError

if TYPE_CHECKING:  # typing only: importing the classes would import torch at start-up
    from ingest.dictionaries.base import Dictionary

#: A resolver turns the body of a spec (the part after ``SCHEME:``) into a dictionary, on
#: the CPU; :func:`load_dictionary` moves it to the requested device. It raises
#: :class:`SpecError` for a body it cannot parse and :class:`DictionaryError` for one that
#: names nothing loadable.
Resolver = Callable[[str], "Dictionary"]

#: Schemes whose resolver is registered by importing a module (imported on first use).
SCHEME_PROVIDERS: dict[str, str] = {"zoo": "ingest.zoo"}

_SCHEME_RE = re.compile(r"[a-z][a-z0-9_-]*")
_BUILTIN = ("path", "release", "identity")
_FORMS = ("a dictionary spec is path:DIR, release:RELEASE/SAE_ID, identity:D_IN[/HOOK_NAME]"
          " or SCHEME:... for a registered scheme")
_resolvers: dict[str, Resolver] = {}
#: Schemes that also name a whole transcoder set (``load_transcoders``): ``resolver(body) ->
#: spec`` of another form, for bodies without ``/`` or ending in ``/clt`` (the zoo's ``zoo:``).
SET_RESOLVERS: dict[str, Callable[[str], str]] = {}


def register_transcoder_set_scheme(scheme: str, resolver: Callable[[str], str]) -> None:
    """Make ``load_transcoders("SCHEME:BODY")`` load ``resolver(BODY)``; see :data:`SET_RESOLVERS`."""
    SET_RESOLVERS[scheme] = resolver


def register_dictionary_scheme(scheme: str, resolver: Resolver) -> None:
    """Make ``load_dictionary("SCHEME:...")`` call ``resolver(body)``.

    Registering the same resolver again is a no-op; a different resolver for a scheme that
    is taken, or a built-in scheme, is refused with ``ValueError`` (a programming error).
    """
    if not _SCHEME_RE.fullmatch(scheme or ""):
        raise ValueError(f"a dictionary scheme is lowercase letters, digits, '-' and '_', got {scheme!r}")
    if scheme in _BUILTIN:
        raise ValueError(f"dictionary scheme {scheme!r} is built in and cannot be replaced")
    if not callable(resolver):
        raise ValueError(f"the resolver for dictionary scheme {scheme!r} must be callable")
    current = _resolvers.get(scheme)
    if current is not None and current is not resolver:
        raise ValueError(f"dictionary scheme {scheme!r} is already registered to {current!r}")
    _resolvers[scheme] = resolver


def dictionary_schemes() -> list[str]:
    """The schemes :func:`load_dictionary` accepts now (built in, registered, providable)."""
    return sorted(set(_BUILTIN) | set(_resolvers) | set(SCHEME_PROVIDERS))


def load_dictionary(spec: str, *, device: str = "cpu",
                    resolvers: Mapping[str, Resolver] | None = None) -> Dictionary:
    """The dictionary a spec names (see the module docstring), on ``device``.

    ``resolvers`` adds or overrides schemes for this call only. The result's ``source``
    is the spec, unless the resolver set a more precise one.
    """
    scheme, body = parse_spec(spec)
    resolver = _resolver_for(scheme, resolvers or {}, spec)
    dictionary = resolver(body)
    from ingest.dictionaries.base import Dictionary  # torch is loaded by now: a resolver made one

    if not isinstance(dictionary, Dictionary):
        raise DictionaryError(f"the resolver of dictionary scheme {scheme!r} returned a "
                              f"{type(dictionary).__name__}, not a Dictionary")
    if dictionary.source is None:
        dictionary.source = spec.strip()
    return dictionary.to(device)


def check_dictionary_spec(spec: str) -> None:
    """Check a spec without loading anything heavy (no torch, no sae_lens): it parses, its
    scheme is known, a ``path:`` directory exists, an ``identity:`` body parses, and a
    ``release:`` SAE is known and obtainable here (:func:`ingest.dictionaries.hub.preflight`).
    Run before a model is loaded, so that a bad spec costs well under a second."""
    scheme, body = parse_spec(spec)
    if scheme == "path":
        if not _is_dir(Path(body).expanduser()):
            raise DictionaryError(f"dictionary directory {Path(body).expanduser()} does not exist")
    elif scheme == "release":
        release, sae_id = _release_parts(body)
        from ingest.dictionaries import hub

        hub.preflight(release, sae_id)
    elif scheme == "identity":
        _identity_parts(body)
    else:
        _resolver_for(scheme, {}, spec)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``SCHEME:BODY``; :class:`SpecError` unless both parts are there."""
    if not isinstance(spec, str):
        raise SpecError(f"a dictionary spec is a string, got {type(spec).__name__}; {_FORMS}")
    scheme, sep, body = spec.strip().partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme) or not body.strip():
        is_dir = bool(spec.strip()) and _is_dir(Path(spec.strip()).expanduser())
        hint = f" (for a local directory write path:{spec.strip()})" if is_dir else ""
        raise SpecError(f"cannot parse dictionary spec {spec!r}{hint}; {_FORMS}")
    return scheme, body.strip()


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the file system, a permission error: not a usable directory
        return False


# -- built-in schemes -----------------------------------------------------------------------


def _resolve_path(body: str) -> Dictionary:
    directory = Path(body).expanduser()
    if not _is_dir(directory):
        raise DictionaryError(f"dictionary directory {directory} does not exist")
    from ingest.dictionaries.svd import SVDDictionary

    if SVDDictionary.is_saved_at(directory):
        return SVDDictionary.load(directory)
    from ingest.dictionaries.transcoder import TranscoderDictionary, is_transcoder_dir

    if is_transcoder_dir(directory):
        return TranscoderDictionary.from_disk(directory)
    from ingest.dictionaries.sae import SAEDictionary

    return SAEDictionary.from_disk(directory)


def _release_parts(body: str) -> tuple[str, str]:
    release, sep, sae_id = body.partition("/")
    if not sep or not release or not sae_id:
        raise SpecError(f"cannot parse release:{body}: it is release:RELEASE/SAE_ID, "
                        "e.g. release:gpt2-small-res-jb/blocks.0.hook_resid_pre")
    return release, sae_id


def _resolve_release(body: str) -> Dictionary:
    release, sae_id = _release_parts(body)
    from sae_lens.saes import Transcoder

    from ingest.dictionaries.sae import SAEDictionary
    from ingest.dictionaries.transcoder import TranscoderDictionary, load_release_sae

    sae = load_release_sae(release, sae_id)
    if isinstance(sae, Transcoder):
        return TranscoderDictionary(sae, source=f"release:{release}/{sae_id}")
    return SAEDictionary(sae, source=f"release:{release}/{sae_id}")


#: The widest identity dictionary a spec may name (a basis of 2^20 directions is far past any
#: model's width; larger numbers are typos that would allocate a D_IN x D_IN decoder).
MAX_IDENTITY_WIDTH = 1 << 20


def _identity_parts(body: str) -> tuple[int, str | None]:
    width, sep, hook_name = body.partition("/")
    if not width.isascii() or not width.isdigit() or int(width) < 1 or (sep and not hook_name):
        raise SpecError(f"cannot parse identity:{body}: it is identity:D_IN or identity:D_IN/HOOK_NAME "
                        "with D_IN a positive integer, e.g. identity:768/blocks.0.hook_resid_post")
    if int(width) > MAX_IDENTITY_WIDTH:
        raise SpecError(f"identity:{body}: a width of {int(width):,} is larger than any model's "
                        f"(at most {MAX_IDENTITY_WIDTH:,})")
    return int(width), hook_name or None


def _resolve_identity(body: str) -> Dictionary:
    width, hook_name = _identity_parts(body)
    from ingest.dictionaries.identity import IdentityDictionary

    return IdentityDictionary(width, hook_name=hook_name)


_BUILTIN_RESOLVERS: dict[str, Resolver] = {
    "path": _resolve_path, "release": _resolve_release, "identity": _resolve_identity}


def _resolver_for(scheme: str, extra: Mapping[str, Resolver], spec: str) -> Resolver:
    if scheme in extra:
        return extra[scheme]
    if scheme in _BUILTIN_RESOLVERS:
        return _BUILTIN_RESOLVERS[scheme]
    if scheme not in _resolvers and scheme in SCHEME_PROVIDERS:
        try:
            importlib.import_module(SCHEME_PROVIDERS[scheme])
        except ModuleNotFoundError as e:
            if e.name != SCHEME_PROVIDERS[scheme]:
                raise
    if scheme in _resolvers:
        return _resolvers[scheme]
    known = sorted(set(_BUILTIN) | set(_resolvers) | set(extra))
    raise SpecError(f"unknown dictionary scheme {scheme!r} in {spec!r}; {_FORMS} "
                    f"(registered now: {', '.join(known)})")
