"""TopK per-layer transcoders for all 30 MLPs of SmolLM2-135M, a cached ``zoo build`` step.

``mechgraph zoo build --smollm2 --transcoders`` runs :func:`build_smollm2_transcoders`: the
model (:func:`ingest.zoo.smollm2.load_smollm2`) reads the same no-download corpus as its SAEs
(:func:`ingest.zoo.corpus.tokenized_corpus`, rows of ``context_size`` tokens, BOS first); the
first ``eval_rows`` rows of the seeded shuffle are held out, the next ``train_rows`` train.
BOS/EOS positions are left out of training and scoring (the first position of a row is an
attention sink whose MLP output is tens of times the median).

Activations (the MLP input ``blocks.L.ln2.hook_normalized``, i.e. what ``blocks.L.mlp``
receives, and the MLP output ``blocks.L.hook_mlp_out``) are collected in float16, as many
layers per forward pass as ``max_activation_gb`` holds (each pass stops after its deepest
layer), and each chunk's layers are trained before the next chunk is collected.

Training is :func:`ingest.zoo.topk_trainer.train_topk_standardised` (the MLP output standardised,
data-initialised); the scales are folded back into the saved weights, so the saved
transcoders read and write the model's own units. Run it with one OpenMP thread on a shared
machine (``OMP_NUM_THREADS=1``: two threads were 2-10x slower per step under contention).

Scores on the held-out rows, per layer: FVU (fraction of MLP-output variance unexplained),
L0, dead fraction (latents never active on the held-out tokens: few tokens, so an upper
bound); and for the *replacement model* (all 30 MLPs replaced, error terms dropped) the
next-token loss and the top-1 agreement with the clean model.

Layout (``<zoo>/smollm2-135m/transcoders/``, written into a hidden sibling and renamed, so an
interrupted build leaves nothing half-written; the SmolLM2 SAE build keeps it in place)::

    manifest.json          config, per-layer metrics, replacement scores, build time
    layer_0 ... layer_29   TopKTranscoder directories (``path:DIR`` loads the set)

``zoo:smollm2-135m`` names the set, and ``mechgraph trace --model smollm2-135m`` uses it by
default.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ingest.zoo.smollm2 import SMOLLM2_NAME
from ingest.zoo.smollm2_saes import CORPUS_DESCRIPTION, N_LAYERS, TRANSCODERS
from mechgraph.errors import ConfigError

DIRNAME = TRANSCODERS
MANIFEST = "manifest.json"
D_MODEL = 576
#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SmolTranscoderConfig:
    """How SmolLM2's transcoders are trained and scored.

    The defaults are sized to finish within ~40 minutes on 2 CPU cores shared with other
    work (measured: ~0.2 of a core, about 20 tokens/s through the full model): the forward
    passes that collect activations and the ``30 x steps`` training steps cost about the same.
    A dedicated machine affords a wider, longer-trained set (the FVU falls with both).
    """

    width: int = 1024                 # latents per layer (~1.8 x d_model)
    k: int = 24
    context_size: int = 64
    train_rows: int = 80              # ~5k training tokens (BOS/EOS excluded)
    eval_rows: int = 12               # ~750 held-out tokens
    steps: int = 100                  # per layer
    batch_tokens: int = 256
    lr: float = 4e-3
    seed: int = 0
    layers: tuple[int, ...] = tuple(range(N_LAYERS))   # a replacement model needs every layer
    max_activation_gb: float = 2.0    # float16 activations held at once (layers per forward pass)

    def __post_init__(self) -> None:
        for name in ("width", "k", "context_size", "train_rows", "eval_rows", "steps", "batch_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.k > self.width:
            raise ConfigError(f"k={self.k} is more than the width {self.width}")
        if not self.lr > 0 or not self.max_activation_gb > 0:
            raise ConfigError("lr and max_activation_gb must be positive")
        bad = [layer for layer in self.layers if not 0 <= layer < N_LAYERS]
        if not self.layers or bad:
            raise ConfigError(f"layers must be a non-empty subset of 0..{N_LAYERS - 1}; got {list(self.layers)}")

    def config_hash(self) -> str:
        blob = json.dumps({"format": 1, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def transcoder_dir(root: Path) -> Path:
    return Path(root) / SMOLLM2_NAME / DIRNAME


def read_smollm2_transcoder_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((transcoder_dir(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def build_smollm2_transcoders(root: Path, cfg: SmolTranscoderConfig | None = None, *, device: str = "cpu",
                              cache_dir: Path | None = None, say: Callable[[str], None] = lambda s: None,
                              progress: Progress | None = None) -> dict[str, Any]:
    """Train (or reuse) SmolLM2's transcoders under ``root/smollm2-135m/transcoders``; the manifest.

    A manifest with the same config hash and every layer's directory present is returned
    without work. ``cache_dir`` is the model cache (:func:`ingest.zoo.smollm2.load_smollm2`).
    """
    cfg = cfg or SmolTranscoderConfig()
    final = transcoder_dir(root)
    current = read_smollm2_transcoder_manifest(root)
    if current is not None and current.get("config_hash") == cfg.config_hash() and all(
            (final / f"layer_{layer}").is_dir() for layer in cfg.layers):
        say(f"SmolLM2 transcoders are up to date in {final}")
        return current
    partial = final.with_name(f".{DIRNAME}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        manifest = _build(partial, cfg, device, cache_dir, say, progress)
        old = final.with_name(f".{DIRNAME}.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    say(f"wrote {final / MANIFEST} in {manifest['build_seconds'] / 60:.1f} min")
    return manifest


def _build(out: Path, cfg: SmolTranscoderConfig, device: str, cache_dir: Path | None,
           say: Callable[[str], None], progress: Progress | None) -> dict[str, Any]:
    import torch
    from sae_lens.util import get_special_token_ids

    from ingest.zoo.corpus import tokenized_corpus
    from ingest.zoo.saes import token_mask
    from ingest.zoo.smollm2 import load_smollm2
    from ingest.zoo.topk_trainer import train_topk_standardised

    t0 = time.monotonic()
    model = load_smollm2(device=device, dtype="float32", cache_dir=cache_dir, progress=say)
    rows = tokenized_corpus(model.tokenizer, cfg.context_size, prepend_bos=True, seed=cfg.seed)
    if cfg.eval_rows + cfg.train_rows > len(rows):
        raise ConfigError(f"the corpus has {len(rows)} rows of {cfg.context_size} tokens; "
                          f"{cfg.train_rows} training + {cfg.eval_rows} held-out rows do not fit")
    special = get_special_token_ids(model.tokenizer)
    ids = torch.tensor(rows["input_ids"][:cfg.eval_rows + cfg.train_rows], device=device)
    eval_x, train_x = ids[:cfg.eval_rows], ids[cfg.eval_rows:]
    eval_mask, train_mask = token_mask(eval_x, special), token_mask(train_x, special)
    n_train, n_eval = int(train_mask.sum()), int(eval_mask.sum())
    per_layer_gb = (n_train + n_eval) * 2 * D_MODEL * 2 / 1e9
    chunk = max(1, int(cfg.max_activation_gb // per_layer_gb))
    layers = sorted(cfg.layers)
    chunks = [layers[i:i + chunk] for i in range(0, len(layers), chunk)]
    say(f"SmolLM2 transcoders: {len(layers)} layers, width {cfg.width}, k {cfg.k}, {n_train} training and "
        f"{n_eval} held-out tokens, {cfg.steps} steps of {cfg.batch_tokens}; activations "
        f"{per_layer_gb * len(layers):.2f} GB in {len(chunks)} forward pass(es)")
    metrics: dict[int, dict[str, float]] = {}
    collect_s = train_s = 0.0
    for layer_chunk in chunks:
        t = time.monotonic()
        train_acts = mlp_io(model, train_x, train_mask, layer_chunk, progress=progress)
        eval_acts = mlp_io(model, eval_x, eval_mask, layer_chunk)
        collect_s += time.monotonic() - t
        t = time.monotonic()
        for layer in layer_chunk:
            x, y = train_acts.pop(layer)
            tc = train_topk_standardised(x, y, layer, width=cfg.width, k=cfg.k, steps=cfg.steps,
                                   batch_tokens=cfg.batch_tokens, lr=cfg.lr, seed=cfg.seed,
                                   progress=None if progress is None else
                                   lambda done, total, layer=layer: progress(f"layer {layer}", done, total))
            del x, y
            tc.save(out / f"layer_{layer}")
            metrics[layer] = layer_metrics(tc, *eval_acts[layer])
            say(f"layer {layer}: FVU {metrics[layer]['fvu']:.3f}, L0 {metrics[layer]['l0']:.1f}, "
                f"dead {metrics[layer]['dead']:.3f} (held out)")
        train_s += time.monotonic() - t
        del train_acts, eval_acts
    replacement = None
    if len(layers) == N_LAYERS:
        say("scoring the replacement model (every MLP replaced, errors dropped) on the held-out rows")
        replacement = replacement_scores(model, f"path:{out}", eval_x, eval_mask)
        say(f"replacement model: next-token loss {replacement['replacement_loss']:.3f} vs clean "
            f"{replacement['clean_loss']:.3f}, top-1 agreement {replacement['top1_agreement']:.3f}")
    manifest = {
        "name": SMOLLM2_NAME, "kind": "per-layer", "config_hash": cfg.config_hash(),
        "config": {**asdict(cfg), "layers": list(cfg.layers)},
        "corpus": CORPUS_DESCRIPTION, "hooks": {"in": "blocks.L.ln2.hook_normalized (the MLP input)",
                                                "out": "blocks.L.hook_mlp_out"},
        "tokens": {"train": n_train, "held_out": n_eval, "excluded_token_ids": sorted(special)},
        "fvu": [metrics[layer]["fvu"] for layer in layers], "l0": [metrics[layer]["l0"] for layer in layers],
        "dead": [metrics[layer]["dead"] for layer in layers], "layers": layers, "replacement": replacement,
        "collect_seconds": round(collect_s, 1), "train_seconds": round(train_s, 1), "device": device,
        "build_seconds": round(time.monotonic() - t0, 1)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def mlp_io(model: Any, tokens: Any, mask: Any, layers: list[int], *, batch_rows: int = 32,
           progress: Progress | None = None) -> dict[int, tuple[Any, Any]]:
    """Per layer, (MLP input, MLP output) at the ``mask``ed positions in float16,
    ``[n_tokens d_model]`` each; the forward passes stop after the deepest layer."""
    import torch

    wanted = set(layers)
    ins: dict[int, list[Any]] = {layer: [] for layer in layers}
    outs: dict[int, list[Any]] = {layer: [] for layer in layers}
    current: dict[str, Any] = {}
    handles = []

    def keep(layer: int, x: Any, out: Any) -> None:   # returns None: the output is unchanged
        ins[layer].append(x[current["mask"]].to(torch.float16))
        outs[layer].append(out[current["mask"]].to(torch.float16))

    for layer, block in enumerate(model.blocks):
        if layer in wanted:
            handles.append(block.mlp.register_forward_hook(
                lambda mod, args, out, layer=layer: keep(layer, args[0], out)))
    try:
        with torch.no_grad():
            for start in range(0, len(tokens), batch_rows):
                current["mask"] = mask[start:start + batch_rows]
                model(tokens[start:start + batch_rows], stop_at_layer=max(layers) + 1)
                if progress:
                    progress(f"activations of layers {min(layers)}-{max(layers)}",
                             min(start + batch_rows, len(tokens)), len(tokens))
    finally:
        for h in handles:
            h.remove()
    return {layer: (torch.cat(ins[layer]), torch.cat(outs[layer])) for layer in layers}


def layer_metrics(tc: Any, x: Any, y: Any) -> dict[str, float]:
    """FVU of the MLP output, mean L0 and the fraction of latents never active, on (x, y)."""
    import torch

    from ingest.dictionaries.transcoder import apply_activation

    with torch.no_grad():
        x, y = x.float(), y.float()
        f = apply_activation("topk", x @ tc.W_enc + tc.b_enc, k=tc.k)
        y_hat = f @ tc.W_dec + tc.b_dec
        fvu = float(((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())
        active = f > 0
    return {"fvu": round(fvu, 4), "l0": round(float(active.sum(-1).float().mean()), 2),
            "dead": round(float((~active.any(0)).float().mean()), 4)}


def replacement_scores(model: Any, spec: str, tokens: Any, mask: Any) -> dict[str, float]:
    """Next-token loss of the clean and the replacement model (every MLP's output replaced by
    its transcoder's at the ``mask``ed positions), and how often their top-1 tokens agree,
    over positions whose input and next token are both unmasked."""
    import torch

    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.zoo.transcoder_build import replacement_forward

    tcs = load_transcoders(spec)
    with torch.no_grad():
        clean = model(tokens)[:, :-1]
        replaced = replacement_forward(model, tcs, tokens, mask)[:, :-1]
    pos = mask[:, :-1] & mask[:, 1:]
    target = tokens[:, 1:][pos]

    def loss(logits: Any) -> float:
        return float(torch.nn.functional.cross_entropy(logits[pos], target))

    return {"clean_loss": round(loss(clean), 4), "replacement_loss": round(loss(replaced), 4),
            "top1_agreement": round(float((clean[pos].argmax(-1) == replaced[pos].argmax(-1)).float().mean()), 4),
            "positions": int(pos.sum())}


def resolve_smollm2_transcoders(root: Path) -> str:
    """``zoo:smollm2-135m`` → the ``path:DIR`` of the built set, or one sentence saying how to build it."""
    from ingest.errors import SpecError

    m = read_smollm2_transcoder_manifest(root)
    if m is None:
        raise SpecError(f"SmolLM2-135M has no transcoders in {transcoder_dir(root)} yet; run "
                        "`mechgraph zoo build --smollm2 --transcoders` (~40 min on 2 CPU cores)")
    if len(m["layers"]) != N_LAYERS:
        raise SpecError(f"the SmolLM2 transcoders in {transcoder_dir(root)} cover layers {m['layers']}, "
                        f"not all {N_LAYERS}: rebuild with `mechgraph zoo build --smollm2 --transcoders`")
    return f"path:{transcoder_dir(root)}"


def smollm2_transcoder_rows(root: Path) -> list[dict[str, Any]]:
    """One row per SmolLM2 layer, plus a summary row, for ``zoo list``."""
    m = read_smollm2_transcoder_manifest(root)
    if m is None:
        return []
    rep = m.get("replacement") or {}
    summary = {"layer": "all", "fvu": round(sum(m["fvu"]) / len(m["fvu"]), 4),
               "l0": round(sum(m["l0"]) / len(m["l0"]), 1), "dead": round(sum(m["dead"]) / len(m["dead"]), 4),
               "clean_loss": rep.get("clean_loss"), "replacement_loss": rep.get("replacement_loss"),
               "top1_agreement": rep.get("top1_agreement")}
    rows = [{"layer": layer, "fvu": fvu, "l0": l0, "dead": dead}
            for layer, fvu, l0, dead in zip(m["layers"], m["fvu"], m["l0"], m["dead"], strict=True)]
    return [*rows, summary]
