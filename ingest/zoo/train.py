"""Training the toy multi-task transformers, with log-spaced checkpoints.

A ``HookedTransformer`` built from a config (no pretrained weights) learns the built-in task
mixture with cross-entropy on each prompt's answer token (the only position the tasks
define). Every task contributes the same number of prompts to each batch. Checkpoints are
saved at log-spaced steps so emergence is resolved early in training, when it happens, and
each checkpoint's per-task held-out accuracy and mean logit difference go to the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToyModelConfig:
    """Architecture and training of one toy model. ``checkpoints``: how many log-spaced
    steps between ``first_checkpoint`` and ``steps`` (the last is the final model)."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    steps: int
    batch_size: int = 96
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    checkpoints: int = 8
    first_checkpoint: int = 20
    n_ctx: int = 24
    act_fn: str = "gelu"
    seed: int = 0
    tasks: tuple[str, ...] = ("ioi", "induction", "greater_than", "sva", "bracket_depth", "bias_in_bios")
    # Batch share of each task, relative: induction heads form late (a phase change, Olsson
    # et al. 2022) and counting brackets is the slowest of the rest, so they get more of
    # each batch.
    task_weights: tuple[tuple[str, float], ...] = (("induction", 3.0), ("bracket_depth", 2.0))
    train_pool: int = 8_000
    lm_loss_weight: float = 0.5
    n_eval: int = 256
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.checkpoints < 2:
            raise ValueError("a toy model needs at least 2 checkpoints")
        if not 0 < self.first_checkpoint < self.steps:
            raise ValueError(f"first_checkpoint must be in (0, steps={self.steps})")
        for v, what in ((self.n_layers, "n_layers"), (self.steps, "steps"), (self.batch_size, "batch_size")):
            if v <= 0:
                raise ValueError(f"{what} must be positive, got {v}")

    def checkpoint_steps(self) -> list[int]:
        """Log-spaced steps from ``first_checkpoint`` to ``steps``, distinct and increasing."""
        lo, hi = math.log(self.first_checkpoint), math.log(self.steps)
        raw = [round(math.exp(lo + (hi - lo) * i / (self.checkpoints - 1))) for i in range(self.checkpoints)]
        return sorted(set(raw))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        return d


def hooked_config(cfg: ToyModelConfig, d_vocab: int) -> Any:
    from transformer_lens import HookedTransformerConfig
    return HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads, d_mlp=cfg.d_mlp, n_ctx=cfg.n_ctx, d_vocab=d_vocab,
        act_fn=cfg.act_fn, normalization_type="LN", positional_embedding_type="standard",
        seed=cfg.seed, default_prepend_bos=True, model_name=cfg.name,
        tokenizer_prepends_bos=False)


def build_model(cfg: ToyModelConfig, tokenizer: Any, device: str = "cpu") -> Any:
    """An untrained ``HookedTransformer`` for ``cfg`` with the zoo tokenizer attached."""
    import torch
    from transformer_lens import HookedTransformer

    torch.manual_seed(cfg.seed)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # TL 3 deprecates HookedTransformer for its bridge, and print()s device moves
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(hooked_config(cfg, len(tokenizer)), tokenizer=tokenizer,
                                  move_to_device=False)
        return model.to(device)


def eval_batches(cfg: ToyModelConfig, tokenizer: Any) -> Any:
    """The held-out examples every checkpoint is scored on (seeded, ``n_eval`` per task)."""
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    examples = [ex for t in cfg.tasks for ex in get_task(t).examples(cfg.n_eval, seed=cfg.seed, split="test")]
    return encode_examples(tokenizer, examples)


def train_toy_model(cfg: ToyModelConfig, tokenizer: Any, *,
                    save: Callable[[int, Any, dict[str, dict[str, float]]], None],
                    device: str = "cpu", progress: Callable[[int], None] | None = None) -> Any:
    """Train ``cfg``; at each checkpoint step call ``save(step, model, per_task_metrics)``.

    Returns the final model. Deterministic for a given seed on a given device.
    """
    import torch

    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples, evaluate

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer, device)
    pools = [encode_examples(tokenizer, get_task(t).examples(cfg.train_pool, seed=cfg.seed, split="train"))
             for t in cfg.tasks]
    evals = eval_batches(cfg, tokenizer).to(device)
    weights = dict(cfg.task_weights)
    shares = [weights.get(t, 1.0) for t in cfg.tasks]
    per_task = [max(1, round(cfg.batch_size * w / sum(shares))) for w in shares]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(cfg.warmup, cfg.steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt_steps = set(cfg.checkpoint_steps())
    for step in range(1, cfg.steps + 1):
        model.train()
        tokens, last, answer = _mixture_batch(pools, per_task, gen)
        tokens, last, answer = tokens.to(device), last.to(device), answer.to(device)
        tokens = tokens[:, : int(last.max()) + 1]
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[range(len(last)), last], answer)
        if cfg.lm_loss_weight:
            loss = loss + cfg.lm_loss_weight * _prompt_lm_loss(logits, tokens, last)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step in ckpt_steps:
            model.eval()
            metrics = evaluate(model, evals)
            log.info("%s step %d loss %.3f acc %s", cfg.name, step, loss.item(),
                     {t: round(m["accuracy"], 3) for t, m in metrics.items()})
            save(step, model, metrics)
        if progress is not None:
            progress(1)
    return model


def _prompt_lm_loss(logits: Any, tokens: Any, last: Any) -> Any:
    """Next-token loss inside the prompts (an auxiliary LM objective: it is what makes the
    induction sequences' repeated half, and the templates, predictable and so speeds up
    the formation of induction heads)."""
    import torch
    pos = torch.arange(tokens.shape[1] - 1, device=tokens.device)
    mask = pos[None, :] < last[:, None]          # predict token p+1 from p, inside the prompt
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return (ce * mask).sum() / mask.sum()


def _mixture_batch(pools: Sequence[Any], per_task: Sequence[int], gen: Any) -> tuple[Any, Any, Any]:
    import torch
    width = max(p.tokens.shape[1] for p in pools)
    toks, last, ans = [], [], []
    for p, n in zip(pools, per_task, strict=True):
        idx = torch.randint(len(p), (n,), generator=gen)
        t = p.tokens[idx]
        toks.append(torch.nn.functional.pad(t, (0, width - t.shape[1]), value=p.pad_id))
        last.append(p.last[idx])
        ans.append(p.answer[idx])
    return torch.cat(toks), torch.cat(last), torch.cat(ans)


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f
