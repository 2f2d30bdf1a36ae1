"""The identity dictionary: the raw basis of a hook point (MLP neurons, residual dimensions).

Each latent is one coordinate of the activation, so ``encode`` and ``decode`` return their
input and the error node is exactly zero. It is the baseline every learned dictionary is
compared against, and the way to build a neuron-level graph.
"""

from __future__ import annotations

import torch

from ingest.dictionaries.base import Activations, Dictionary, Directions, Latents
from ingest.errors import DictionaryError


class IdentityDictionary(Dictionary):
    """``encode(x) = x`` and ``decode(f) = f``; ``W_dec`` is the ``d_in x d_in`` identity.

    Both return their input tensor itself (no copy), which keeps the autograd graph of
    ``x`` intact for attribution.
    """

    kind = "identity"

    def __init__(self, d_in: int, hook_name: str | None = None, source: str | None = None) -> None:
        if isinstance(d_in, bool) or not isinstance(d_in, int) or d_in < 1:
            raise DictionaryError(f"an identity dictionary needs a positive integer width, got {d_in!r}")
        super().__init__(d_in, d_in, hook_name=hook_name, source=source)
        # No parameters; this empty buffer follows .to() so that W_dec is made where it is used.
        self.register_buffer("_like", torch.empty(0), persistent=False)

    def _encode(self, x: Activations) -> Latents:
        return x

    def _decode(self, f: Latents) -> Activations:
        return f

    @property
    def W_dec(self) -> Directions:
        return torch.eye(self.d_in, device=self._like.device, dtype=self._like.dtype)
