"""Transcoder sets by spec: every kind of full set (per-layer transcoders or a CLT) from one string.

Forms: ``path:DIR`` (a CLT directory, a set directory with ``transcoder_set.json`` or
``layer_<i>/`` sub-directories, or one transcoder), ``SPEC,SPEC,...`` (one per-layer transcoder
per layer, any dictionary spec), ``release:RELEASE`` (every transcoder of a sae_lens release;
offline it fails in one sentence).
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest.dictionaries.base import Dictionary
from ingest.dictionaries.load import load_dictionary, parse_spec
from ingest.dictionaries.transcoder import (
    SET_FILE,
    CrossLayerTranscoder,
    CrossLayerTranscoders,
    PerLayerTranscoders,
    TranscoderDictionary,
    Transcoders,
    _layer_dirs,
    _mechgraph_meta,
)
from ingest.errors import DictionaryError

_SET_FORMS = ("a transcoder spec is path:DIR (a CLT, a set directory with transcoder_set.json or layer_<i>/ "
              "sub-directories, or one transcoder), SPEC,SPEC,... (one per-layer transcoder per layer, any "
              "dictionary spec), or release:RELEASE (every transcoder of a sae_lens release)")


def load_transcoders(spec: str, *, device: str = "cpu") -> Transcoders:
    """The full transcoder set a spec names (see ``_SET_FORMS``), on ``device``."""
    spec = (spec or "").strip()
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) > 1:
        dicts = [load_dictionary(p, device=device) for p in parts]
        return PerLayerTranscoders([_as_transcoder(d, p) for d, p in zip(dicts, parts, strict=True)],
                                   source=spec).to(device)
    scheme, body = parse_spec(spec)
    if scheme == "release" and "/" not in body:
        return _load_release_set(body, device)
    if scheme != "path":
        d = load_dictionary(spec, device=device)
        return PerLayerTranscoders([_as_transcoder(d, spec)], source=spec).to(device)
    directory = Path(body).expanduser()
    if not directory.is_dir():
        raise DictionaryError(f"transcoder directory {directory} does not exist")
    meta = _mechgraph_meta(directory)
    if meta is not None and meta.get("kind") == "clt":
        return CrossLayerTranscoders(CrossLayerTranscoder.load(directory, meta)).to(device)
    subdirs: list[Path]
    if (directory / SET_FILE).is_file():
        listed = json.loads((directory / SET_FILE).read_text()).get("layers", [])
        subdirs = [directory / s for s in listed]
    else:
        subdirs = _layer_dirs(directory) or [directory]
    missing = [str(s) for s in subdirs if not s.is_dir()]
    if missing:
        raise DictionaryError(f"the transcoder set in {directory} names directories that do not exist: {missing}")
    source = f"path:{directory.resolve()}"
    return PerLayerTranscoders([TranscoderDictionary.from_disk(s, device) for s in subdirs], source=source).to(device)


def _as_transcoder(d: Dictionary, spec: str) -> TranscoderDictionary:
    if not isinstance(d, TranscoderDictionary):
        raise DictionaryError(f"{spec} is a {d.kind} dictionary, not a transcoder")
    return d


def _load_release_set(release: str, device: str) -> Transcoders:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise DictionaryError(f"sae_lens knows no release {release!r} (see its pretrained_saes.yaml)")
    ids = list(directory[release].saes_map)
    loaded = [TranscoderDictionary.from_pretrained(release, i, device) for i in ids]
    return PerLayerTranscoders(loaded, source=f"release:{release}").to(device)
