"""Latent activations of dictionaries on a shared set of prompts, token by token.

Matching latents by activation (across checkpoints, or across models of different sizes)
needs the *same* tokens through both models: :func:`shared_prompts` builds one batch of task
prompts, :func:`collect_latents` runs a model over it and returns, per dictionary hook, the
latent activations at the valid positions (each prompt up to its last token, without BOS:
the positions that carry graph nodes, as in the attribution engine). Row ``t`` of every
returned matrix is the same token of the same prompt, for every model run on the batch, so
columns of two models can be correlated directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ingest.errors import TaskError

#: progress(done, total) over batches
Progress = Callable[[int, int], None]


def shared_prompts(tokenizer: Any, tasks: Sequence[str], examples: int, *, seed: int = 0,
                   split: str = "test", n_ctx: int | None = None) -> Any:
    """One :class:`TaskBatch` with ``examples`` prompts of every task (clean prompts only matter);
    ``n_ctx``: the model's context, which no prompt may exceed."""
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples

    if not tasks:
        raise TaskError("name at least one task whose prompts are run")
    rows = []
    for name in tasks:
        got = get_task(name).examples(examples, seed=seed, split=split)  # type: ignore[arg-type]
        if not got:
            raise TaskError(f"task {name!r} produced no examples")
        rows += got
    return encode_examples(tokenizer, rows, n_ctx=n_ctx)


def valid_positions(batch: Any, skip_bos: bool = True) -> Any:
    """Bool [batch pos]: positions up to each prompt's last token, without BOS."""
    import torch

    pos = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)
    valid = pos[None, :] <= batch.last[:, None]
    if skip_bos:
        valid &= pos[None, :] >= 1
    return valid


def collect_latents(model: Any, dictionaries: Sequence[Any], batch: Any, *, batch_size: int = 16,
                    progress: Progress | None = None) -> dict[str, Any]:
    """``{hook: float64 array [n_tokens d_dict]}`` of each dictionary's latents over the valid
    positions of ``batch`` (module docstring). A ``hook_z`` activation is flattened to
    ``n_heads * d_head`` as the dictionaries expect."""
    import numpy as np
    import torch

    hooks = [d.hook_name for d in dictionaries]
    if any(h is None for h in hooks):
        raise TaskError("every dictionary must know its hook point to collect latents")
    device = next(model.parameters()).device
    skip_bos = getattr(model.tokenizer, "bos_token_id", None) is not None
    out: dict[str, list[Any]] = {h: [] for h in hooks}
    starts = list(range(0, len(batch), batch_size))
    with torch.no_grad():
        for n, start in enumerate(starts):
            part = batch[start:start + batch_size].to(device)
            valid = valid_positions(part, skip_bos)
            _, cache = model.run_with_cache(part.tokens, names_filter=lambda name: name in out)
            for d in dictionaries:
                x = cache[d.hook_name]
                x = x.flatten(-2) if x.ndim == 4 else x
                out[d.hook_name].append(d.encode(x[valid]).double().cpu().numpy())
            if progress:
                progress(n + 1, len(starts))
    return {h: np.concatenate(v) for h, v in out.items()}
