"""The dictionary interface: one encoder/decoder abstraction for every basis mechgraph reads.

A dictionary maps an activation read at one TransformerLens hook point to latent
activations and back::

    f     = encode(x)        x: [... d_in]  ->  f: [... d_dict]
    x_hat = decode(f)        f: [... d_dict] -> x_hat: [... d_in]
    error(x) = x - decode(encode(x))        (the error node: what the dictionary misses)

Both maps are differentiable in their input, because attribution (integrated gradients)
backpropagates through them. ``decode`` is affine in ``f`` for every implementation, with
linear part :attr:`Dictionary.W_dec` (one row per latent, its direction in activation
space), which is what cross-checkpoint matching and attribution use.

Implementations: :mod:`.sae` (any sae_lens SAE), :mod:`.identity` (neurons / the raw
basis), :mod:`.svd` (a PCA basis fitted on activations).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from jaxtyping import Float
from torch import Tensor

from ingest.errors import DictionaryError

# Shape-annotated tensor types (jaxtyping, TransformerLens dimension names). Spelled as
# aliases because pyflakes reads the shape strings inside annotations as forward references.
#: Activations at the dictionary's hook point, with any leading dims (``batch pos`` ...).
Activations = Float[Tensor, "... d_in"]
#: Latent activations, leading dims as in :data:`Activations`.
Latents = Float[Tensor, "... d_dict"]
#: One row per latent: its decoder direction in activation space.
Directions = Float[Tensor, "d_dict d_in"]

#: Values :meth:`Dictionary.describe` may return: flat and primitive, so that they can be
#: stored as Neo4j node properties as they are.
DescribeValue = str | int | float | bool | None


class Dictionary(torch.nn.Module, ABC):
    """An encoder/decoder pair over the activations of one hook point.

    Attributes:
        d_in: width of the activation it reads (``d_model`` for the residual stream,
            ``d_mlp`` for MLP neurons, ``n_heads * d_head`` for a flattened ``hook_z``).
        d_dict: number of latents.
        hook_name: the TransformerLens hook point it reads, e.g.
            ``"blocks.0.hook_resid_post"``; ``None`` when unknown.
        kind: ``"sae/<architecture>"``, ``"identity"`` or ``"svd"``.
        source: where it was loaded from (a dictionary spec such as ``"path:/x"``), or
            ``None`` for one built in memory.

    Subclasses implement :meth:`_encode`, :meth:`_decode` and :attr:`W_dec`; the public
    :meth:`encode`/:meth:`decode` check the trailing dimension first, so that a
    dictionary given the wrong hook's activations fails with one sentence rather than a
    matmul shape error.
    """

    kind: str
    d_in: int
    d_dict: int
    hook_name: str | None
    source: str | None

    def __init__(self, d_in: int, d_dict: int, hook_name: str | None = None,
                 source: str | None = None) -> None:
        super().__init__()
        self.d_in = int(d_in)
        self.d_dict = int(d_dict)
        self.hook_name = hook_name
        self.source = source

    # -- the interface -------------------------------------------------------------------

    def encode(self, x: Activations) -> Latents:
        """Latent activations of ``x``; differentiable in ``x``."""
        self._check_width(x, self.d_in, "encode", "d_in")
        return self._encode(x)

    def decode(self, f: Latents) -> Activations:
        """The activation that latents ``f`` stand for; differentiable in ``f``."""
        self._check_width(f, self.d_dict, "decode", "d_dict")
        return self._decode(f)

    def forward(self, x: Activations) -> Activations:
        """The reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def error(self, x: Activations) -> Activations:
        """The error node ``x - decode(encode(x))``: the part of ``x`` the latents miss."""
        return x - self.forward(x)

    @property
    @abstractmethod
    def W_dec(self) -> Directions:
        """Decoder direction of each latent: ``decode(f) - decode(0) == f @ W_dec``."""

    def describe(self) -> dict[str, DescribeValue]:
        """Kind, sizes, hook point and source, plus implementation details; flat and primitive."""
        return {"kind": self.kind, "d_in": self.d_in, "d_dict": self.d_dict,
                "hook_name": self.hook_name, "source": self.source, **self._describe_extra()}

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, d_in={self.d_in}, d_dict={self.d_dict}, hook_name={self.hook_name!r}"

    # -- for subclasses ------------------------------------------------------------------

    @abstractmethod
    def _encode(self, x: Activations) -> Latents: ...

    @abstractmethod
    def _decode(self, f: Latents) -> Activations: ...

    def _describe_extra(self) -> dict[str, DescribeValue]:
        return {}

    def _check_width(self, t: Tensor, width: int, method: str, dim: str) -> None:
        if t.ndim == 0 or t.shape[-1] != width:
            where = f" (hook {self.hook_name})" if self.hook_name else ""
            raise DictionaryError(
                f"{self.kind} dictionary{where} {method}s tensors whose last dimension is "
                f"{dim}={width}, got shape {tuple(t.shape)}")
