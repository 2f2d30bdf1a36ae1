"""Training the zoo's SAEs with sae_lens, warm-started along the training checkpoints.

Each SAE is trained by sae_lens' ``LanguageModelSAETrainingRunner`` with
``override_model`` (the zoo's ``HookedTransformer`` at one checkpoint) and
``override_dataset`` (an in-memory dataset of task prompts, each padded to the context size;
``exclude_special_tokens`` drops the BOS and padding positions from the activations, so the
SAE sees exactly the positions the tasks use). The SAE of checkpoint t+1 starts from the SAE
of checkpoint t (``from_pretrained_path``), so latent i keeps nearly the same meaning across
checkpoints; this is what cross-checkpoint matching relies on.

Metrics are mechgraph's own, computed on held-out task prompts: explained variance
(1 - E|x - x_hat|^2 / E|x - mean x|^2 over non-special positions), L0, dead fraction (latents
that never fire on the evaluation tokens) and task accuracy with the SAE spliced in.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

HOOK_KINDS = ("hook_resid_post", "hook_attn_out", "hook_mlp_out")
#: The ``dataset_path`` recorded for SAEs trained on :func:`prompt_dataset` (the zoo's).
TASK_PROMPTS = "mechgraph task prompts (training split of the built-in tasks, ingest.zoo.saes.prompt_dataset)"


def hook_names(n_layers: int, kinds: tuple[str, ...] = HOOK_KINDS) -> list[str]:
    """Every SAE hook of a model, layer-major: blocks.0.hook_resid_post, blocks.0.hook_attn_out, ..."""
    return [f"blocks.{layer}.{kind}" for layer in range(n_layers) for kind in kinds]


@dataclass(frozen=True)
class SAETrainConfig:
    """How every zoo SAE is trained. ``training_tokens`` for the first checkpoint's SAE,
    ``warm_tokens`` for the warm-started ones."""

    architecture: Literal["topk", "standard", "jumprelu"] = "topk"
    expansion: int = 4
    k: int = 16
    l1_coefficient: float = 5.0
    training_tokens: int = 120_000
    warm_tokens: int = 60_000
    batch_tokens: int = 1024
    lr: float = 2e-3
    context_size: int = 24
    n_prompts: int = 6_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ("topk", "standard", "jumprelu"):
            raise ValueError(f"SAE architecture must be topk, standard or jumprelu, not {self.architecture!r}")
        for name in ("expansion", "k", "training_tokens", "warm_tokens", "batch_tokens", "n_prompts"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SAE {name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_dataset(tokenizer: Any, tasks: tuple[str, ...], n_prompts: int, context_size: int,
                   seed: int) -> Any:
    """Training-split clean and counterfactual prompts of every task, BOS first, padded to
    ``context_size``, as a ``datasets.Dataset`` with one ``input_ids`` column."""
    import datasets

    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples

    per_task = max(1, n_prompts // (2 * len(tasks)))
    rows: list[list[int]] = []
    for task in tasks:
        batch = encode_examples(tokenizer, get_task(task).examples(per_task, seed=seed + 1, split="train"))
        for t in (batch.tokens, batch.cf_tokens):
            if t.shape[1] > context_size:
                raise ValueError(f"task {task} prompts are longer than the SAE context size {context_size}")
            rows += [r + [batch.pad_id] * (context_size - len(r)) for r in t.tolist()]
    random.Random(seed).shuffle(rows)
    return datasets.Dataset.from_dict({"input_ids": rows})


def train_saes(model: Any, hooks: list[str], dataset: Any, cfg: SAETrainConfig, out_dir: Path, *,
               init_from: Path | None = None, device: str = "cpu",
               dataset_path: str = TASK_PROMPTS) -> dict[str, Path]:
    """Train one SAE per hook of ``model`` with sae_lens' multi-SAE runner (one shared forward
    pass feeds every hook). Each lands in ``out_dir/<hook>`` in sae_lens' format.
    ``init_from``: the previous checkpoint's SAE directory (same layout) to warm-start from.
    ``dataset_path``: what ``dataset`` is, recorded as ``dataset_path`` in every SAE's config
    (the dataset itself is passed in memory, so sae_lens never reads this)."""
    from sae_lens import LoggingConfig, TrainingSAE
    from sae_lens.multi_sae_training_runner import MultiSAETrainingRunner, MultiSAETrainingRunnerConfig

    sae_cfgs = {h: sae_config(cfg, model.cfg.d_model, device) for h in hooks}
    warm = None
    if init_from is not None:
        warm = {h: TrainingSAE.load_from_disk(str(init_from / h), device) for h in hooks}
    tokens = cfg.warm_tokens if warm is not None else cfg.training_tokens
    steps = tokens // cfg.batch_tokens
    runner_cfg = MultiSAETrainingRunnerConfig(
        saes=sae_cfgs, hook_names={h: h for h in hooks}, model_name=model.cfg.model_name,
        dataset_path=dataset_path, streaming=False,
        context_size=cfg.context_size, prepend_bos=False, exclude_special_tokens=True,
        disable_concat_sequences=True, sequence_separator_token=None,
        training_tokens=tokens, train_batch_size_tokens=cfg.batch_tokens,
        store_batch_size_prompts=64,
        n_batches_in_buffer=-(-4 * cfg.batch_tokens // cfg.context_size),  # buffer: 4 batches (in tokens)
        lr=cfg.lr, device=device, seed=cfg.seed, dtype="float32",
        n_eval_batches=1, logger=LoggingConfig(log_to_wandb=False), n_checkpoints=0,
        checkpoint_path=None, output_path=str(out_dir), n_batches_for_norm_estimate=4,
        model_from_pretrained_kwargs={},  # the model is used as given: no weight processing
        dead_feature_window=max(25, steps // 2), feature_sampling_window=max(50, steps))
    quiet = logging.getLogger("sae_lens")
    level, quiet.level = quiet.level, logging.ERROR  # its warnings say we override model and dataset: we do
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        MultiSAETrainingRunner(runner_cfg, override_model=model, override_dataset=dataset,
                               override_saes=warm).run()  # progress bars and warnings silenced
    quiet.setLevel(level)
    return {h: out_dir / h for h in hooks}


def sae_config(cfg: SAETrainConfig, d_in: int, device: str) -> Any:
    """The sae_lens training config of one SAE on a ``d_in``-wide hook."""
    d_sae = cfg.expansion * d_in
    if cfg.architecture == "topk":
        from sae_lens import TopKTrainingSAEConfig
        return TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=cfg.k, device=device)
    if cfg.architecture == "jumprelu":
        from sae_lens import JumpReLUTrainingSAEConfig
        return JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l0_coefficient=cfg.l1_coefficient, device=device)
    from sae_lens import StandardTrainingSAEConfig
    return StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=cfg.l1_coefficient, device=device)


@dataclass(frozen=True)
class SAEMetrics:
    """An SAE on held-out tokens: ``explained_variance`` = 1 - E|x - x_hat|^2 / E|x - mean x|^2,
    ``l0`` = mean active latents per token, ``dead_fraction`` = latents never active on them,
    ``spliced_accuracy``/``clean_accuracy`` = mean task accuracy with/without the SAE's
    reconstruction replacing the hook's activations (``None`` when no tasks are given)."""

    explained_variance: float
    l0: float
    dead_fraction: float
    spliced_accuracy: float | None = None
    clean_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_mask(tokens: Any, special_ids: list[int]) -> Any:
    """[batch, pos] bool: positions that are not BOS/padding (what the SAEs are trained on)."""
    import torch
    return ~torch.isin(tokens, torch.tensor(special_ids, device=tokens.device))


def hook_activations(model: Any, tokens: Any, mask: Any, hooks: list[str], *,
                     batch_size: int = 256) -> dict[str, Any]:
    """Activations of every hook at the ``mask``ed positions, [n_tokens, d], one forward pass
    (stopped after the deepest hook)."""
    import torch

    stop = max(int(h.split(".")[1]) for h in hooks) + 1
    out: dict[str, list[Any]] = {h: [] for h in hooks}
    with torch.no_grad():
        for start in range(0, len(tokens), batch_size):
            _, cache = model.run_with_cache(tokens[start:start + batch_size], names_filter=hooks,
                                            stop_at_layer=stop)
            for h in hooks:
                out[h].append(cache[h][mask[start:start + batch_size]])
    return {h: torch.cat(v) for h, v in out.items()}


def evaluate_dictionary(model: Any, dictionary: Any, tokens: Any, mask: Any, *,
                        task_batch: Any | None = None, batch_size: int = 256,
                        activations: Any | None = None, clean_accuracy: float | None = None) -> SAEMetrics:
    """Reconstruction metrics on the ``mask``ed positions of ``tokens`` [batch, pos] (or on
    precomputed ``activations`` of them), and, with ``task_batch``, mean task accuracy when the
    reconstruction is spliced in at non-special positions (``clean_accuracy``: the model's
    own on that batch, if already known)."""
    import torch

    from ingest.tasks.encode import evaluate

    hook = dictionary.hook_name
    with torch.no_grad():
        x = activations if activations is not None else \
            hook_activations(model, tokens, mask, [hook], batch_size=batch_size)[hook]
        f = dictionary.encode(x)
        x_hat = dictionary.decode(f)
        ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        active = f != 0
        metrics = SAEMetrics(explained_variance=float(ev), l0=float(active.sum(-1).float().mean()),
                             dead_fraction=float((~active.any(0)).float().mean()))
        if task_batch is None:
            return metrics
        keep = token_mask(task_batch.tokens, [task_batch.pad_id, model.tokenizer.bos_token_id])

        def splice(act: Any, hook: Any) -> Any:
            return torch.where(keep[..., None], dictionary(act), act)

        # one pass over the whole batch, so the splice mask lines up with its rows
        spliced = evaluate(lambda toks: model.run_with_hooks(toks, fwd_hooks=[(hook, splice)]),
                           task_batch, batch_size=len(task_batch))
        if clean_accuracy is None:
            clean_accuracy = _mean_accuracy(evaluate(model, task_batch, batch_size=batch_size))
    return SAEMetrics(metrics.explained_variance, metrics.l0, metrics.dead_fraction,
                      spliced_accuracy=_mean_accuracy(spliced), clean_accuracy=clean_accuracy)


def _mean_accuracy(per_task: dict[str, dict[str, float]]) -> float:
    return sum(v["accuracy"] for v in per_task.values()) / len(per_task)
