"""Target nodes of a prompt graph: the salient next-token logits, or a logit difference.

Salient logits follow circuit-tracer: the top ``max_n_logits`` tokens by probability, cut after
the first whose cumulative probability reaches ``desired_logit_prob``; each target is the
*demeaned* logit ``logit[v] - mean(logits)``, read in the unembedding's input space as the
direction ``W_U[:, v] - mean_u W_U[:, u]``, weighted by its probability. A custom target is a
logit difference ``logit[answer] - logit[counterfactual answer]`` (direction
``W_U[:, a] - W_U[:, c]``), weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class Target:
    """One target node: ``value = final_resid[-1] @ direction + bias``."""

    label: str
    token: int
    counter_token: int | None
    weight: float
    direction: Float[Tensor, " d_model"]
    bias: float


def salient_targets(logits: Float[Tensor, " d_vocab"], W_U: Float[Tensor, "d_model d_vocab"],
                    b_U: Float[Tensor, " d_vocab"] | None, decode: object, *, max_n_logits: int,
                    desired_logit_prob: float) -> list[Target]:
    probs = torch.softmax(logits.double(), dim=-1).to(logits.dtype)
    top_p, top_idx = torch.topk(probs, min(max_n_logits, probs.shape[0]))
    cutoff = int(torch.searchsorted(torch.cumsum(top_p, 0), desired_logit_prob)) + 1
    mean_col = W_U.mean(dim=1)
    mean_b = 0.0 if b_U is None else float(b_U.mean())
    out = []
    for p, v in zip(top_p[:cutoff].tolist(), top_idx[:cutoff].tolist(), strict=True):
        bias = 0.0 if b_U is None else float(b_U[v]) - mean_b
        out.append(Target(label=_decode(decode, v), token=v, counter_token=None, weight=p,
                          direction=W_U[:, v] - mean_col, bias=bias))
    return out


def logit_diff_target(answer: int, counter: int, W_U: Tensor, b_U: Tensor | None, decode: object) -> Target:
    bias = 0.0 if b_U is None else float(b_U[answer] - b_U[counter])
    return Target(label=f"{_decode(decode, answer)} - {_decode(decode, counter)}", token=answer,
                  counter_token=counter, weight=1.0, direction=W_U[:, answer] - W_U[:, counter], bias=bias)


def target_value(t: Target, logits: Float[Tensor, " d_vocab"]) -> float:
    """The target's value on the prompt, from the model's own logits at the last position."""
    if t.counter_token is not None:
        return float(logits[t.token] - logits[t.counter_token])
    return float(logits[t.token] - logits.mean())


def _decode(decode: object, token: int) -> str:
    if callable(decode):
        return str(decode([token]))
    return str(token)
