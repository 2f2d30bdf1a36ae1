"""``mechgraph zoo build``: train every toy model, its checkpoints and their SAEs; cached.

One model at a time, into a hidden sibling directory renamed into place when complete, so an
interrupted build leaves nothing half-written. A model whose manifest carries the same
config hash is skipped: a second run does nothing and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.zoo.saes import SAETrainConfig
from ingest.zoo.store import list_models, read_manifest, save_checkpoint, step_dir, write_json
from ingest.zoo.train import ToyModelConfig

log = logging.getLogger(__name__)
FORMAT_VERSION = 1

SIZES: dict[str, ToyModelConfig] = {
    "mt-small": ToyModelConfig(name="mt-small", n_layers=2, d_model=128, n_heads=4, d_mlp=512, steps=3000),
    "mt-large": ToyModelConfig(name="mt-large", n_layers=4, d_model=160, n_heads=4, d_mlp=640, steps=2000),
}


@dataclass(frozen=True)
class ZooConfig:
    """What ``zoo build`` makes: the model sizes and how their SAEs are trained."""

    models: tuple[ToyModelConfig, ...] = tuple(SIZES.values())
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    n_eval_tokens_prompts: int = 1024  # held-out prompts for SAE reconstruction metrics

    def model_hash(self, model: ToyModelConfig) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, "model": model.to_dict(), "sae": self.sae.to_dict(),
                           "eval": self.n_eval_tokens_prompts}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(description, total) -> advance(n)``: how the build reports long stages."""


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


@dataclass(frozen=True)
class BuildResult:
    built: tuple[str, ...]
    cached: tuple[str, ...]
    seconds: float
    root: Path


def build_zoo(root: Path, config: ZooConfig | None = None, *, only: tuple[str, ...] = (),
              device: str = "cpu", progress: Progress = _no_progress) -> BuildResult:
    """Build (or reuse) every model of ``config`` under ``root``; ``only`` restricts to names."""
    config = config or ZooConfig()
    names = [m.name for m in config.models]
    unknown = sorted(set(only) - set(names))
    if unknown:
        from ingest.errors import SpecError
        raise SpecError(f"unknown zoo size {', '.join(unknown)}; sizes: {', '.join(names)}")
    t0 = time.monotonic()
    built, cached = [], []
    root.mkdir(parents=True, exist_ok=True)
    for model_cfg in config.models:
        if only and model_cfg.name not in only:
            continue
        manifest = read_manifest(root / model_cfg.name)
        if manifest is not None and manifest.get("config_hash") == config.model_hash(model_cfg):
            cached.append(model_cfg.name)
            continue
        build_model_dir(root, model_cfg, config, device=device, progress=progress)
        built.append(model_cfg.name)
    if built:
        from ingest.zoo.report import plot_emergence
        plot_emergence(list_models(root), root / "emergence.png")
    return BuildResult(tuple(built), tuple(cached), time.monotonic() - t0, root)


def build_model_dir(root: Path, model_cfg: ToyModelConfig, config: ZooConfig, *, device: str,
                    progress: Progress) -> Path:
    import torch

    from ingest.zoo.saes import hook_activations, hook_names, prompt_dataset, train_saes
    from ingest.zoo.store import load_checkpoint
    from ingest.zoo.tokenizer import build_tokenizer
    from ingest.zoo.train import train_toy_model

    t0 = time.monotonic()
    final, partial = root / model_cfg.name, root / f".{model_cfg.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer = build_tokenizer(partial / "tokenizer")
    checkpoints: list[dict[str, Any]] = []

    def save(step: int, model: Any, metrics: dict[str, dict[str, float]]) -> None:
        save_checkpoint(model, partial / "checkpoints" / step_dir(step))
        checkpoints.append({"step": step, "path": f"checkpoints/{step_dir(step)}", "tasks": metrics})

    advance = progress(f"{model_cfg.name}: training", model_cfg.steps)
    train_toy_model(model_cfg, tokenizer, save=save, device=device, progress=advance)
    train_seconds = time.monotonic() - t0

    hooks = hook_names(model_cfg.n_layers)
    dataset = prompt_dataset(tokenizer, model_cfg.tasks, config.sae.n_prompts, config.sae.context_size,
                             config.sae.seed)
    eval_tokens, eval_mask, task_batch = _sae_eval_data(model_cfg, tokenizer, config, device)
    advance = progress(f"{model_cfg.name}: SAEs", len(checkpoints) * len(hooks))
    previous: dict[str, Any] = {}
    init: Path | None = None  # each checkpoint's SAEs start from the previous checkpoint's
    for ckpt in checkpoints:
        model = load_checkpoint(partial / ckpt["path"], partial / "tokenizer", device)
        sae_root = partial / "saes" / step_dir(ckpt["step"])
        torch.manual_seed(config.sae.seed)
        paths = train_saes(model, hooks, dataset, config.sae, sae_root, init_from=init, device=device)
        acts = hook_activations(model, eval_tokens, eval_mask, hooks)   # one forward for all hooks
        clean = sum(t["accuracy"] for t in ckpt["tasks"].values()) / len(ckpt["tasks"])  # same batch
        ckpt["saes"] = {}
        for hook, path in paths.items():
            ckpt["saes"][hook], previous[hook] = _evaluate_sae(model, path, previous.get(hook), acts[hook],
                                                               clean, task_batch, partial)
            advance(1)
        init = sae_root
    manifest = {
        "name": model_cfg.name, "kind": "toy", "format": FORMAT_VERSION,
        "config_hash": config.model_hash(model_cfg), "config": model_cfg.to_dict(),
        "sae_config": config.sae.to_dict(), "hooks": hooks, "tokenizer": "tokenizer",
        "device": device, "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.monotonic() - t0, 1), "checkpoints": checkpoints,
    }
    write_json(partial / "manifest.json", manifest)
    from ingest.zoo.report import plot_emergence
    plot_emergence({model_cfg.name: manifest}, partial / "emergence.png")
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final


def _sae_eval_data(model_cfg: ToyModelConfig, tokenizer: Any, config: ZooConfig, device: str) -> tuple[Any, Any, Any]:
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    from ingest.zoo.saes import token_mask
    from ingest.zoo.train import eval_batches

    per_task = max(1, config.n_eval_tokens_prompts // len(model_cfg.tasks))
    held_out = encode_examples(tokenizer, [ex for t in model_cfg.tasks
                                           for ex in get_task(t).examples(per_task, seed=model_cfg.seed + 7, split="test")])
    mask = token_mask(held_out.tokens, [held_out.pad_id, tokenizer.bos_token_id])
    return held_out.tokens.to(device), mask.to(device), eval_batches(model_cfg, tokenizer).to(device)


def _evaluate_sae(model: Any, path: Path, previous: Any, activations: Any, clean_accuracy: float,
                  task_batch: Any, model_dir: Path) -> tuple[dict[str, Any], Any]:
    import torch

    from ingest.dictionaries import SAEDictionary
    from ingest.zoo.saes import evaluate_dictionary

    sae = SAEDictionary.from_disk(path, device=str(activations.device))
    metrics = evaluate_dictionary(model, sae, None, None, task_batch=task_batch, activations=activations,
                                  clean_accuracy=clean_accuracy).to_dict()
    metrics["spliced_ratio"] = (metrics["spliced_accuracy"] / metrics["clean_accuracy"]
                                if metrics["clean_accuracy"] else None)
    w = sae.W_dec.detach()
    if previous is not None:
        cos = torch.nn.functional.cosine_similarity(w, previous, dim=-1)
        metrics["decoder_cosine_prev_median"] = float(cos.median())
    else:
        metrics["decoder_cosine_prev_median"] = None
    metrics["path"] = str(path.relative_to(model_dir))
    metrics["d_sae"] = sae.d_dict
    return metrics, w


def median_decoder_cosine(manifest: dict[str, Any]) -> float | None:
    """Median over SAEs of the per-SAE median cosine between latent i at consecutive checkpoints."""
    vals = [s["decoder_cosine_prev_median"] for c in manifest.get("checkpoints", []) for s in c.get("saes", {}).values()
            if s.get("decoder_cosine_prev_median") is not None]
    return statistics.median(vals) if vals else None
