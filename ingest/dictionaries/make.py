"""Making dictionaries for any model: SAEs trained with sae_lens, or SVD/PCA bases, on a
user's text, saved one directory per hook (``OUT/<hook>``) that ``path:OUT/<hook>`` (or
``--dicts-all 'path:OUT/{hook}@SITES'``) loads.

Text (:func:`text_rows`) is one of

* ``FILE`` — a plain text file, one prompt per non-empty line;
* ``jsonl:FILE`` — a JSONL file, each row a string or an object with ``text`` (or ``prompt``),
  or a task row (``clean`` and ``counterfactual``: both prompts are used);
* ``--sample N`` — N sequences sampled from the model itself, starting at BOS (seeded).

Every prompt is tokenized without the tokenizer's special tokens, BOS first when the tokenizer
has one, cut to ``context_size`` tokens and right-padded with the pad token; BOS and padding
positions are never trained on, fitted on or scored. The rows are shuffled with the seed and a
tenth (at least one row) is held out: the metrics (explained variance, L0, dead fraction; with
a task, task accuracy with the dictionary spliced in) are the zoo's
(:func:`ingest.zoo.saes.evaluate_dictionary`) on those held-out rows. ``OUT/manifest.json``
records the model, the text source, the config and the metrics.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.dictionaries.everywhere import SITES
from ingest.errors import SpecError
from mechgraph.errors import ConfigError

MANIFEST = "manifest.json"
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TextRows:
    """Token rows [n, context_size] (BOS first, right-padded), the ids never trained on, and a
    sentence saying where the text came from (recorded in every dictionary's config)."""

    rows: list[list[int]]
    special: list[int]
    source: str


def expand_hooks(names: list[str], n_layers: int) -> list[str]:
    """``--hook`` values: full hook names, or site names (``resid_post``, ``hook_mlp_out``)
    meaning that site of every layer; layer-major, in forward order, without repeats."""
    if not names:
        raise ConfigError("name at least one hook: --hook blocks.0.hook_resid_post, or a site "
                          f"({', '.join(SITES)}) for every layer")
    out: list[str] = []
    for name in names:
        site = name.strip().removeprefix("hook_")
        if site in SITES:
            out += [f"blocks.{L}.hook_{site}" for L in range(n_layers)]
        elif name.startswith("blocks.") and name.split(".")[1].isdigit():
            if int(name.split(".")[1]) >= n_layers:
                raise ConfigError(f"hook {name!r}: the model has layers 0..{n_layers - 1}")
            out.append(name.strip())
        else:
            raise ConfigError(f"hook {name!r} is neither a hook name (blocks.L.hook_...) nor a site "
                              f"({', '.join(SITES)})")
    order = {f"blocks.{L}.hook_{s}": (L, i) for L in range(n_layers) for i, s in enumerate(SITES)}
    return sorted(dict.fromkeys(out), key=lambda h: order.get(h, (int(h.split(".")[1]), len(SITES))))


def read_prompts(text: str) -> tuple[list[str], str]:
    """The prompts of ``FILE`` or ``jsonl:FILE`` and a description of the source."""
    kind, _, rest = text.partition(":")
    is_jsonl = kind == "jsonl" and rest
    path = Path(rest if is_jsonl else text).expanduser()
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise SpecError(f"cannot read the text file {path}: {e.strerror or e}") from None
    if not is_jsonl:
        prompts = [line.strip() for line in lines if line.strip()]
        return prompts, f"text file {path.resolve()}"
    prompts = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise SpecError(f"{path}:{i} is not JSON ({e})") from None
        if isinstance(row, str):
            prompts.append(row)
        elif isinstance(row, dict) and any(isinstance(row.get(k), str) for k in ("text", "prompt")):
            prompts.append(row["text"] if isinstance(row.get("text"), str) else row["prompt"])
        elif isinstance(row, dict) and isinstance(row.get("clean"), str):
            prompts += [row["clean"]] + ([row["counterfactual"]] if isinstance(row.get("counterfactual"), str) else [])
        else:
            raise SpecError(f"{path}:{i}: a row is a string or an object with text, prompt or clean")
    return prompts, f"JSONL prompts {path.resolve()}"


def _special_ids(tokenizer: Any) -> tuple[int | None, int, list[int]]:
    bos = getattr(tokenizer, "bos_token_id", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return bos, pad, sorted({pad} | ({bos} if bos is not None else set()))


def text_rows(model: Any, *, text: str | None, sample: int | None, context_size: int, seed: int) -> TextRows:
    """The token rows of ``--text`` or ``--sample`` (module docstring)."""
    import torch

    if (text is None) == (sample is None):
        raise ConfigError("give exactly one of --text FILE, --text jsonl:FILE or --sample N")
    if context_size < 2:
        raise ConfigError(f"--context-size must be at least 2, got {context_size}")
    tok = model.tokenizer
    bos, pad, special = _special_ids(tok)
    prefix = [bos] if bos is not None else []
    if sample is not None:
        if sample < 2:
            raise ConfigError(f"--sample must be at least 2 (one row is held out), got {sample}")
        start = torch.full((sample, 1), bos if bos is not None else pad, dtype=torch.long, device=model.cfg.device)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            out = model.generate(start, max_new_tokens=context_size - 1, stop_at_eos=False, verbose=False,
                                 use_past_kv_cache=False, return_type="tokens")
        # generated pad/BOS tokens would be excluded anyway; keep the rows as sampled
        return TextRows(out.tolist(), special, f"{sample} sequences of {context_size} tokens sampled from the "
                                               f"model (seed {seed})")
    prompts, source = read_prompts(text)  # type: ignore[arg-type]
    ids = tok(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    rows = [(prefix + list(r))[:context_size] for r in ids if r]
    rows = [r + [pad] * (context_size - len(r)) for r in rows]
    if len(rows) < 2:
        raise ConfigError(f"{source} gives {len(rows)} non-empty prompt(s); at least 2 are needed "
                          "(one is held out for the metrics)")
    return TextRows(rows, special, source)


def split_rows(rows: list[list[int]], seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """(train, held out): a seeded shuffle, a tenth (at least one row) held out."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    n_eval = max(1, len(rows) // 10)
    return rows[n_eval:], rows[:n_eval]


def _metrics(model: Any, dictionary: Any, held_out: Any, mask: Any, task_batch: Any, clean: float | None) -> dict[str, Any]:
    from ingest.zoo.saes import evaluate_dictionary

    m = evaluate_dictionary(model, dictionary, held_out, mask, task_batch=task_batch, clean_accuracy=clean)
    out = {k: v for k, v in m.to_dict().items() if v is not None}
    if m.spliced_accuracy is not None and m.clean_accuracy:
        out["spliced_ratio"] = m.spliced_accuracy / m.clean_accuracy
    return out


def make_dictionaries(model: Any, model_spec: str, hooks: list[str], data: TextRows, out_dir: Path, *,
                      kind: str, sae: Any = None, rank: int | None = None, center: bool = True,
                      task_batch: Any = None, seed: int = 0, device: str = "cpu",
                      progress: ProgressFn | None = None) -> dict[str, Any]:
    """Train (``kind="sae"``, config ``sae``: an :class:`~ingest.zoo.saes.SAETrainConfig`) or
    fit (``kind="svd"``, ``rank`` components, centered or not) one dictionary per hook into
    ``out_dir/<hook>``; return the manifest written to ``out_dir/manifest.json``."""
    import torch

    from ingest.dictionaries.load import load_dictionary
    from ingest.zoo.saes import hook_activations, token_mask

    say = progress or (lambda *_: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, held_out = split_rows(data.rows, seed)
    eval_tokens = torch.tensor(held_out, device=device)
    eval_mask = token_mask(eval_tokens, data.special)
    train_tokens = torch.tensor(train, device=device)
    train_mask = token_mask(train_tokens, data.special)
    if not bool(train_mask.any()) or not bool(eval_mask.any()):
        raise ConfigError(f"{data.source}: no token besides BOS and padding to train on or score")
    if kind == "sae":
        import datasets

        from ingest.zoo.saes import train_saes
        if sae.context_size != len(train[0]):
            raise ConfigError(f"the SAE context size {sae.context_size} differs from the rows' {len(train[0])}")
        say("training SAEs (sae_lens)", 0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sae.seed)
            train_saes(model, hooks, datasets.Dataset.from_dict({"input_ids": train}), sae, out_dir,
                       device=device, dataset_path=data.source)
        say("training SAEs (sae_lens)", 1, 1)
        config = {"kind": "sae", **sae.to_dict()}
    elif kind == "svd":
        from ingest.dictionaries.svd import SVDDictionary
        acts = hook_activations(model, train_tokens, train_mask, hooks)
        for i, hook in enumerate(hooks):
            say("fitting SVD bases", i, len(hooks))
            tmp = out_dir / (hook + ".tmp")
            SVDDictionary.fit(acts[hook].float(), rank=rank, center=center, hook_name=hook).save(tmp)
            if (out_dir / hook).exists():
                import shutil
                shutil.rmtree(out_dir / hook)
            tmp.replace(out_dir / hook)
        say("fitting SVD bases", len(hooks), len(hooks))
        config = {"kind": "svd", "rank": rank, "center": center, "seed": seed}
    else:
        raise ConfigError(f"dictionary kind must be sae or svd, not {kind!r}")
    clean = None
    if task_batch is not None:
        from ingest.tasks.encode import evaluate
        per_task = evaluate(model, task_batch)
        clean = sum(v["accuracy"] for v in per_task.values()) / len(per_task)
    metrics: dict[str, dict[str, Any]] = {}
    for i, hook in enumerate(hooks):
        say("scoring on held-out rows", i, len(hooks))
        dictionary = load_dictionary(f"path:{out_dir / hook}", device=device)
        metrics[hook] = {"spec": f"path:{(out_dir / hook).resolve()}",
                         **_metrics(model, dictionary, eval_tokens, eval_mask, task_batch, clean)}
    say("scoring on held-out rows", len(hooks), len(hooks))
    manifest = {"model": model_spec, "text": data.source, "train_rows": len(train), "held_out_rows": len(held_out),
                "train_tokens": int(train_mask.sum()), "held_out_tokens": int(eval_mask.sum()),
                "excluded_token_ids": data.special, "config": config, "dictionaries": metrics}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
