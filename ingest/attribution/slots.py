"""Where the graph's nodes live: one slot per dictionary hook point, in forward order.

A slot is a hook point with a dictionary on it (its nodes: the dictionary's latents plus one
error node per position) or the embedding input (``blocks.0.hook_resid_pre``, one vector
node per position, no latents). Node index convention inside a slot, used by every tensor
with a flattened node axis: latents ``0 .. n_latents-1``, then the slot's vector node (error
or embedding) at index ``n_latents``. The output metric is one more node, in a pseudo-slot
numbered ``len(slots)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest.dictionaries.base import Dictionary
from ingest.errors import DictionaryError

EMBED_HOOK = "blocks.0.hook_resid_pre"
_LAYER = re.compile(r"^blocks\.(\d+)\.")


@dataclass(frozen=True, eq=False)
class Slot:
    """One hook point carrying graph nodes. ``dictionary`` is ``None`` for the embedding."""

    hook: str
    dictionary: Dictionary | None
    layer: int

    @property
    def is_embed(self) -> bool:
        return self.dictionary is None

    @property
    def n_latents(self) -> int:
        return 0 if self.dictionary is None else self.dictionary.d_dict

    @property
    def vector(self) -> int:
        """Index of the slot's vector node (error node, or the embedding)."""
        return self.n_latents

    @property
    def n_nodes(self) -> int:
        return self.n_latents + 1

    @property
    def is_attention(self) -> bool:
        return self.hook.endswith(".hook_attn_out") or self.hook.endswith(".attn.hook_z")


def hook_layer(hook: str) -> int:
    """``blocks.L.*`` -> L; the embedding hooks -> -1."""
    m = _LAYER.match(hook)
    return int(m.group(1)) if m else -1


def forward_order(model: Any) -> list[str]:
    """Every hook point of ``model`` in the order a forward pass calls it (measured, not guessed)."""
    import torch

    order: list[str] = []

    def record(_x: Any, hook: Any) -> None:
        if hook.name not in order:
            order.append(hook.name)

    tokens = torch.zeros((1, 2), dtype=torch.long, device=model.cfg.device)
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(lambda name: True, record)])
    return order


def build_slots(model: Any, dictionaries: Sequence[Dictionary], *, include_embed: bool = True) -> list[Slot]:
    """Slots for ``dictionaries`` (each at its own ``hook_name``) in forward order.

    Raises ``DictionaryError`` for a dictionary without a hook, an unknown hook, two
    dictionaries on one hook, or a width that does not match the hook's activation.
    """
    order = forward_order(model)
    rank = {name: i for i, name in enumerate(order)}
    slots: list[Slot] = []
    seen: set[str] = set()
    for d in dictionaries:
        hook = d.hook_name
        if not hook:
            raise DictionaryError(f"{d.kind} dictionary {d.source or ''} does not say which hook it reads")
        if hook not in rank:
            raise DictionaryError(f"hook {hook!r} is not a hook point of this model "
                                  f"(e.g. {', '.join(n for n in order if 'resid_post' in n)[:200]})")
        if hook in seen:
            raise DictionaryError(f"two dictionaries read {hook!r}; a hook carries one dictionary per graph")
        if include_embed and hook == EMBED_HOOK:
            raise DictionaryError(f"{EMBED_HOOK} holds the embedding input node; leave include_embed off "
                                  "to put a dictionary there")
        seen.add(hook)
        slots.append(Slot(hook=hook, dictionary=d, layer=hook_layer(hook)))
    if not slots:
        raise DictionaryError("a graph needs at least one dictionary")
    if include_embed:
        slots.append(Slot(hook=EMBED_HOOK, dictionary=None, layer=-1))
    slots.sort(key=lambda s: rank[s.hook])
    _check_widths(model, slots)
    return slots


def _check_widths(model: Any, slots: Sequence[Slot]) -> None:
    import torch

    widths: dict[str, int] = {}

    def record(x: Any, hook: Any) -> None:
        widths[hook.name] = int(x.shape[-1] * (x.shape[-2] if x.ndim == 4 else 1))

    tokens = torch.zeros((1, 2), dtype=torch.long, device=model.cfg.device)
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=[(s.hook, record) for s in slots])
    for s in slots:
        if s.dictionary is not None and s.dictionary.d_in != widths[s.hook]:
            raise DictionaryError(f"the {s.dictionary.kind} dictionary on {s.hook} reads width "
                                  f"{s.dictionary.d_in}, but the hook's activation has width {widths[s.hook]}")
