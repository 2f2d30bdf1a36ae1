"""The zoo on disk: where models, checkpoints and SAEs live, and how they load back.

Layout (one directory per model, written whole or not at all)::

    <zoo root>/                       $MECHGRAPH_ZOO, else <cache>/zoo
      emergence.png                   per-task accuracy and logit difference, every size
      <model>/manifest.json           configs, per-checkpoint task metrics, per-SAE metrics
      <model>/tokenizer/              the word-level tokenizer (Hugging Face format)
      <model>/checkpoints/step-000020/{tl_config.json, model.safetensors}
      <model>/saes/step-000020/<hook>/{cfg.json, sae_weights.safetensors, ...}   (sae_lens)
      <model>/transcoders/            TopK transcoders (zoo build --transcoders; transcoder_build.py)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ingest.errors import ModelUnavailableError, SpecError

MANIFEST = "manifest.json"


def zoo_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The zoo directory: ``override``, ``$MECHGRAPH_ZOO``, or ``<mechgraph cache>/zoo``
    (per user, so every clone of the repository shares one build)."""
    from graphdb.settings import cache_dir
    raw = override or os.environ.get("MECHGRAPH_ZOO")
    return Path(raw).expanduser() if raw else cache_dir() / "zoo"


def step_dir(step: int) -> str:
    return f"step-{step:06d}"


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def list_models(root: Path) -> dict[str, dict[str, Any]]:
    """Manifests of every built model in the zoo, by name."""
    if not root.is_dir():
        return {}
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        m = read_manifest(d)
        if m is not None:
            out[d.name] = m
    return out


def resolve_checkpoint(manifest: dict[str, Any], checkpoint: str | None) -> dict[str, Any]:
    """The manifest entry of ``checkpoint``: ``final`` (default), ``step-N`` or ``N``."""
    ckpts = manifest.get("checkpoints") or []
    if not ckpts:
        raise SpecError(f"zoo model {manifest['name']!r} has no checkpoints")
    if checkpoint in (None, "", "final"):
        return ckpts[-1]
    raw = checkpoint.removeprefix("step-")
    if not raw.isdigit():
        raise SpecError(f"checkpoint must be 'final', 'step-N' or 'N', not {checkpoint!r}")
    for c in ckpts:
        if c["step"] == int(raw):
            return c
    raise SpecError(f"zoo model {manifest['name']!r} has no checkpoint at step {int(raw)}; "
                    f"it has steps {', '.join(str(c['step']) for c in ckpts)}")


def save_checkpoint(model: Any, directory: Path) -> None:
    from safetensors.torch import save_file
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {k: (str(v).removeprefix("torch.") if k == "dtype" else v) for k, v in model.cfg.to_dict().items()}
    write_json(directory / "tl_config.json", {k: v for k, v in cfg.items() if _jsonable(v)})
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(directory / "model.safetensors"))


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def load_checkpoint(directory: Path, tokenizer_dir: Path, device: str = "cpu") -> Any:
    """A ``HookedTransformer`` from a checkpoint directory and its tokenizer directory."""
    from ingest.zoo.tokenizer import load_tokenizer
    return load_tl_checkpoint(directory, load_tokenizer(tokenizer_dir), device)


def load_tl_checkpoint(directory: Path, tokenizer: Any, device: str = "cpu") -> Any:
    """A ``HookedTransformer`` from a checkpoint directory (``tl_config.json``,
    ``model.safetensors``) and a tokenizer object."""
    import contextlib
    import io
    import warnings

    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    if not (directory / "model.safetensors").is_file():
        raise ModelUnavailableError(f"no model weights in {directory}")
    cfg_dict = json.loads((directory / "tl_config.json").read_text())
    cfg_dict = {k: v for k, v in cfg_dict.items() if k in HookedTransformerConfig.__dataclass_fields__
                and HookedTransformerConfig.__dataclass_fields__[k].init}
    cfg_dict["device"] = device
    if "dtype" in cfg_dict:
        import torch
        cfg_dict["dtype"] = getattr(torch, cfg_dict["dtype"])
    cfg = HookedTransformerConfig(**cfg_dict)
    with warnings.catch_warnings():   # TL 3 deprecates HookedTransformer in favour of its bridge
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        with contextlib.redirect_stdout(io.StringIO()):   # TL print()s device moves
            return model.to(device).eval()
