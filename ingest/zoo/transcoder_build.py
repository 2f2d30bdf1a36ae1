"""``mechgraph zoo build --transcoders``: TopK transcoders for the zoo's toy models, a cached step.

For every checkpoint of mt-small and the final checkpoint of every other toy model: one TopK
per-layer transcoder per MLP (:func:`ingest.zoo.transcoders.train_transcoder_set`); for the
final mt-small also one cross-layer transcoder. Each set is scored on held-out task prompts:

- per layer, the fraction of MLP-output variance unexplained (FVU), L0 and the dead fraction
  (latents never active on the held-out tokens);
- the accuracy of the *replacement model* (every MLP replaced by its transcoders' output,
  error terms dropped) on each task, and its ratio to the clean model's on the same prompts.
  As for the zoo's SAEs, the replacement acts at the positions the transcoders are trained on
  (not BOS, not padding).

Layout (``<zoo>/<model>/transcoders/``, written into a hidden sibling and renamed into place,
so an interrupted build leaves nothing half-written)::

    manifest.json                      config hash, metrics of every set
    step-000020/layer_0 ... layer_<L-1>  per-layer TopK transcoders (path:DIR loads the set)
    clt-step-003000/                    the cross-layer transcoder (final mt-small)

A model whose transcoder manifest carries the same config hash (and the same model build) is
skipped. ``--transcoders zoo:NAME[@CKPT]`` (or ``zoo:NAME@CKPT/clt``) names a set.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest.zoo.store import list_models, read_manifest, step_dir, write_json
from ingest.zoo.transcoders import TranscoderTrainConfig

DIRNAME = "transcoders"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ZooTranscoderConfig:
    """How the zoo's transcoders are trained and scored."""

    per_layer: TranscoderTrainConfig = field(default_factory=lambda: TranscoderTrainConfig(
        expansion=4, k=16, steps=1500, batch_tokens=1024, lr=3e-3))
    clt: TranscoderTrainConfig = field(default_factory=lambda: TranscoderTrainConfig(
        expansion=4, k=16, steps=2000, batch_tokens=1024, lr=3e-3))
    n_train_prompts: int = 3000   # training-split prompts (clean and counterfactual) over all tasks
    n_eval_prompts: int = 768     # held-out prompts for the reconstruction metrics
    seed: int = 0
    all_checkpoints: tuple[str, ...] = ("mt-small",)   # models with transcoders at every checkpoint
    clt_models: tuple[str, ...] = ("mt-small",)        # models with a CLT at their final checkpoint

    def config_hash(self, model_manifest: dict[str, Any]) -> str:
        blob = json.dumps({"format": 1, "per_layer": asdict(self.per_layer), "clt": asdict(self.clt),
                           "train": self.n_train_prompts, "eval": self.n_eval_prompts, "seed": self.seed,
                           "all": self.all_checkpoints, "clt_models": self.clt_models,
                           "model": model_manifest.get("config_hash")}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_transcoder_manifest(model_dir: Path) -> dict[str, Any] | None:
    return read_manifest(model_dir / DIRNAME)


def build_zoo_transcoders(root: Path, config: ZooTranscoderConfig | None = None, *, device: str = "cpu",
                          say: Callable[[str], None] = lambda s: None) -> tuple[list[str], list[str]]:
    """Train (or reuse) the transcoders of every toy model under ``root``; ``(built, cached)``."""
    config = config or ZooTranscoderConfig()
    built, cached = [], []
    for name, manifest in list_models(root).items():
        if manifest.get("kind") != "toy":
            continue
        model_dir = root / name
        current = read_transcoder_manifest(model_dir)
        if current is not None and current.get("config_hash") == config.config_hash(manifest):
            cached.append(name)
            continue
        build_model_transcoders(model_dir, manifest, config, device=device, say=say)
        built.append(name)
    return built, cached


def build_model_transcoders(model_dir: Path, manifest: dict[str, Any], config: ZooTranscoderConfig, *,
                            device: str, say: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from ingest.zoo.store import load_checkpoint
    from ingest.zoo.transcoders import mlp_activations, train_topk_clt, train_transcoder_set

    t0 = time.monotonic()
    name = manifest["name"]
    final, partial = model_dir / DIRNAME, model_dir / f".{DIRNAME}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    ckpts = manifest["checkpoints"] if name in config.all_checkpoints else manifest["checkpoints"][-1:]
    tokenizer_dir = model_dir / manifest.get("tokenizer", "tokenizer")
    sets: list[dict[str, Any]] = []
    for ckpt in ckpts:
        model = load_checkpoint(model_dir / ckpt["path"], tokenizer_dir, device)
        train_x, train_mask, eval_x, eval_mask, batch = _data(model, manifest, config, device)
        torch.manual_seed(config.seed)
        out = partial / step_dir(ckpt["step"])
        train_transcoder_set(model, train_x, train_mask, out, config.per_layer)
        entry = {"kind": "per-layer", "step": ckpt["step"], "path": f"{DIRNAME}/{step_dir(ckpt['step'])}",
                 **score_transcoders(model, f"path:{out}", eval_x, eval_mask, batch, device)}
        sets.append(entry)
        say(f"{name} step {ckpt['step']}: transcoders max FVU {max(entry['fvu']):.3f}, "
            f"replacement/clean min {entry['min_ratio']:.2f}")
        if name in config.clt_models and ckpt is ckpts[-1]:
            clt, _ = train_topk_clt(mlp_activations(model, train_x, train_mask), config.clt)
            clt_dir = partial / f"clt-{step_dir(ckpt['step'])}"
            clt.save(clt_dir)
            entry = {"kind": "clt", "step": ckpt["step"], "path": f"{DIRNAME}/{clt_dir.name}",
                     **score_transcoders(model, f"path:{clt_dir}", eval_x, eval_mask, batch, device)}
            sets.append(entry)
            say(f"{name} step {ckpt['step']}: cross-layer transcoder max FVU {max(entry['fvu']):.3f}, "
                f"replacement/clean min {entry['min_ratio']:.2f}")
    out_manifest = {"model": name, "config_hash": config.config_hash(manifest),
                    "config": {"per_layer": asdict(config.per_layer), "clt": asdict(config.clt),
                               "n_train_prompts": config.n_train_prompts, "n_eval_prompts": config.n_eval_prompts},
                    "device": device, "build_seconds": round(time.monotonic() - t0, 1), "sets": sets}
    write_json(partial / MANIFEST, out_manifest)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return out_manifest


def _data(model: Any, manifest: dict[str, Any], config: ZooTranscoderConfig, device: str) -> tuple[Any, ...]:
    """Training prompts (clean and counterfactual, training split), held-out prompts and the
    checkpoint's own scoring batch, with the masks of their non-special positions."""
    import torch

    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    from ingest.zoo.saes import token_mask
    from ingest.zoo.train import ToyModelConfig, eval_batches

    cfg = ToyModelConfig(**{**manifest["config"], "tasks": tuple(manifest["config"]["tasks"]),
                            "task_weights": tuple(tuple(w) for w in manifest["config"].get("task_weights", ()))})
    tok = model.tokenizer
    special = [tok.pad_token_id, tok.bos_token_id]

    def encoded(n: int, split: str, seed: int) -> tuple[Any, Any]:
        per_task = max(1, n // len(cfg.tasks))
        parts = []
        for t in cfg.tasks:
            b = encode_examples(tok, get_task(t).examples(per_task, seed=seed, split=split))
            parts += [b.tokens, b.cf_tokens] if split == "train" else [b.tokens]
        width = max(p.shape[1] for p in parts)
        tokens = torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=tok.pad_token_id)
                            for p in parts]).to(device)
        return tokens, token_mask(tokens, special)

    train_x, train_mask = encoded(config.n_train_prompts // 2, "train", config.seed + 1)
    eval_x, eval_mask = encoded(config.n_eval_prompts, "test", config.seed + 7)
    return train_x, train_mask, eval_x, eval_mask, eval_batches(cfg, tok).to(device)


def score_transcoders(model: Any, spec: str, tokens: Any, mask: Any, batch: Any, device: str) -> dict[str, Any]:
    """Per-layer FVU, L0 and dead fraction on ``tokens``' masked positions, and the replacement
    model's accuracy per task on ``batch`` against the clean model's."""
    import torch

    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.tasks.encode import evaluate
    from ingest.zoo.saes import token_mask
    from ingest.zoo.transcoders import mlp_activations

    tcs = load_transcoders(spec, device=device)
    fvu, l0, dead = [], [], []
    with torch.no_grad():
        acts = mlp_activations(model, tokens, mask)
        feats: list[Any] = []
        for layer, (x, y) in enumerate(acts):
            f = tcs.activate(layer, tcs.pre_activation(layer, x))
            feats.append(f)
            y_hat = _decoded(tcs, layer, feats, x)
            fvu.append(float(((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()))
            active = f != 0
            l0.append(float(active.sum(-1).float().mean()))
            dead.append(float((~active.any(0)).float().mean()))
        keep = token_mask(batch.tokens, [batch.pad_id, model.tokenizer.bos_token_id])
        clean = evaluate(model, batch, batch_size=len(batch))
        replaced = evaluate(lambda toks: replacement_forward(model, tcs, toks, keep), batch, batch_size=len(batch))
    accuracy = {t: replaced[t]["accuracy"] for t in replaced}
    ratio = {t: (replaced[t]["accuracy"] / clean[t]["accuracy"]) if clean[t]["accuracy"] else None for t in clean}
    return {"fvu": [round(v, 4) for v in fvu], "l0": [round(v, 2) for v in l0], "dead": [round(v, 4) for v in dead],
            "replacement_accuracy": accuracy, "clean_accuracy": {t: clean[t]["accuracy"] for t in clean},
            "replacement_ratio": ratio, "min_ratio": min((r for r in ratio.values() if r is not None), default=0.0)}


def _decoded(tcs: Any, layer: int, feats: list[Any], x: Any) -> Any:
    """Layer ``layer``'s MLP output as the transcoders write it: every earlier (or this)
    layer's features through their decoders into ``layer``, plus bias and skip."""
    import torch

    y = tcs.b_dec(layer).expand(*feats[layer].shape[:-1], -1)
    for src in range(layer + 1):
        outs = tcs.out_layers(src)
        if layer not in outs:
            continue
        W = tcs.decoder(src, torch.arange(tcs.d_dict(src), device=feats[src].device))[:, outs.index(layer)]
        y = y + feats[src] @ W
    return y + tcs.skip(layer, x) if tcs.has_skip else y


def replacement_forward(model: Any, tcs: Any, tokens: Any, keep: Any) -> Any:
    """Logits of the replacement model: every MLP's output replaced (at ``keep``'s positions)
    by the transcoders' reconstruction from the replacement model's own MLP inputs."""
    import torch

    feats: list[Any] = []
    handles = []

    def replace(layer: int, x: Any, out: Any) -> Any:
        feats.append(tcs.activate(layer, tcs.pre_activation(layer, x)))
        return torch.where(keep[..., None], _decoded(tcs, layer, feats, x), out)

    for layer, block in enumerate(model.blocks):
        handles.append(block.mlp.register_forward_hook(
            lambda mod, args, out, layer=layer: replace(layer, args[0], out)))
    try:
        return model(tokens)
    finally:
        for h in handles:
            h.remove()


def transcoder_rows(manifests: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """One row per transcoder set in the zoo, for ``zoo list``."""
    rows = []
    for name in manifests:
        m = read_transcoder_manifest(root / name)
        for s in (m or {}).get("sets", []):
            rows.append({"model": name, "step": s["step"], "kind": s["kind"],
                         "max_fvu": max(s["fvu"]), "mean_l0": round(sum(s["l0"]) / len(s["l0"]), 1),
                         "max_dead": max(s["dead"]),
                         **{t: None if r is None else round(r, 2)
                            for t, r in s["replacement_ratio"].items()}})
    return rows


def resolve_zoo_transcoders(body: str, zoo: Path | None = None) -> str:
    """``NAME[@CKPT][/clt]`` → the ``path:DIR`` of that zoo transcoder set."""
    from ingest.errors import SpecError
    from ingest.zoo.specs import zoo_manifest, zoo_model_dir
    from ingest.zoo.store import resolve_checkpoint

    model_part, _, what = body.partition("/")
    if what not in ("", "clt", "transcoders"):
        raise SpecError(f"zoo transcoder spec zoo:{body}: write zoo:NAME[@CKPT] or zoo:NAME@CKPT/clt")
    name, _, ckpt = model_part.partition("@")
    model_dir = zoo_model_dir(name, zoo)
    step = resolve_checkpoint(zoo_manifest(model_dir, name), ckpt or None)["step"]
    m = read_transcoder_manifest(model_dir)
    if m is None:
        raise SpecError(f"zoo model {name!r} has no transcoders yet; run `mechgraph zoo build --transcoders`")
    kind = "clt" if what == "clt" else "per-layer"
    for s in m["sets"]:
        if s["step"] == step and s["kind"] == kind:
            return f"path:{model_dir / s['path']}"
    have = ", ".join(f"{s['kind']}@{s['step']}" for s in m["sets"])
    raise SpecError(f"zoo model {name!r} has no {kind} transcoders at step {step}; it has {have}")
