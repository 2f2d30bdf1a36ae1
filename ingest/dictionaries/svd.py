"""A PCA/SVD basis fitted on activations, used as a dictionary.

The latents are the principal directions of a sample of activations at one hook point,
in order of decreasing variance::

    encode(x) = (x - mean) @ V_k          V_k: [d_in, rank], orthonormal columns
    decode(f) = f @ V_k^T + mean

At full rank (``rank == d_in``) ``V_k`` is orthogonal and the reconstruction is exact; at
lower rank the error node holds the variance of the dropped directions. Fitted bases are
kept as ``svd.json`` + ``svd.safetensors`` in a directory (:meth:`SVDDictionary.save`),
which ``path:DIR`` dictionary specs load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from ingest.dictionaries.base import Activations, DescribeValue, Dictionary, Directions, Latents
from ingest.errors import DictionaryError

SVD_CONFIG_FILENAME = "svd.json"
SVD_WEIGHTS_FILENAME = "svd.safetensors"
#: The mean subtracted before projecting, and one value per latent (aliases: see base.py).
Mean = Float[Tensor, " d_in"]
PerLatent = Float[Tensor, " d_dict"]
#: Written into ``svd.json``; bump it when the layout changes, so old readers refuse new files.
SVD_FORMAT = "mechgraph-svd/1"


class SVDDictionary(Dictionary):
    """Principal directions of activations as latents (see the module docstring).

    Buffers (they follow ``.to(...)`` and ``state_dict``):
        components: ``[d_dict, d_in]``, orthonormal rows, by decreasing variance; the
            decoder directions (``W_dec``).
        mean: ``[d_in]``, the mean subtracted before projecting (zeros when not centered).
        explained_variance_ratio: ``[d_dict]``, each component's share of the total
            variance of the fitting sample (all ``d_in`` directions), so the kept ratios
            sum to at most 1.
    """

    kind = "svd"
    components: Tensor
    mean: Tensor
    explained_variance_ratio: Tensor

    def __init__(self, components: Directions, mean: Mean,
                 explained_variance_ratio: PerLatent, *, centered: bool = True,
                 n_fit: int | None = None, hook_name: str | None = None,
                 source: str | None = None) -> None:
        if components.ndim != 2:
            raise DictionaryError(f"SVD components must be a [d_dict, d_in] matrix, "
                                  f"got shape {tuple(components.shape)}")
        d_dict, d_in = components.shape
        if tuple(mean.shape) != (d_in,) or tuple(explained_variance_ratio.shape) != (d_dict,):
            raise DictionaryError(
                f"SVD mean {tuple(mean.shape)} and explained-variance ratios "
                f"{tuple(explained_variance_ratio.shape)} do not fit components {tuple(components.shape)}")
        super().__init__(d_in, d_dict, hook_name=hook_name, source=source)
        self.centered = bool(centered)
        self.n_fit = n_fit
        self.register_buffer("components", components.detach().clone())
        self.register_buffer("mean", mean.detach().to(components.dtype).clone())
        self.register_buffer("explained_variance_ratio", explained_variance_ratio.detach().clone())

    @classmethod
    def fit(cls, acts: Activations, rank: int | None = None, center: bool = True,
            hook_name: str | None = None) -> SVDDictionary:
        """Fit the basis on a sample of activations (all leading dimensions are samples).

        ``rank`` components are kept (default ``d_in``, the full basis, which reconstructs
        exactly). ``center=False`` fits the uncentered basis (the SVD of the raw
        activations, ``mean`` is zero). The fit is deterministic: eigenvectors of the
        covariance in float64, each signed so that its largest-magnitude entry is positive
        (scikit-learn's ``svd_flip`` convention), so refitting the same sample gives the
        same basis. The buffers take the dtype of ``acts`` (float32 if it is not floating).
        """
        if acts.ndim < 2:
            raise DictionaryError(f"fitting an SVD basis needs activations of shape [..., d_in], "
                                  f"got {tuple(acts.shape)}")
        d_in = acts.shape[-1]
        X = acts.detach().reshape(-1, d_in).to(torch.float64)
        n = X.shape[0]
        if rank is None:
            rank = d_in
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= d_in:
            raise DictionaryError(f"SVD rank must be an integer from 1 to d_in={d_in}, got {rank!r}")
        if n < (2 if center else 1):
            raise DictionaryError(f"fitting a{' centered' if center else 'n'} SVD basis needs at least "
                                  f"{2 if center else 1} activation vectors, got {n}")
        mean = X.mean(dim=0) if center else torch.zeros(d_in, dtype=X.dtype, device=X.device)
        Xc = X - mean
        # Eigen-decomposing the d_in x d_in second-moment matrix instead of SVD-ing the
        # n x d_in sample: the same right singular vectors, a full orthonormal basis even
        # when n < d_in, and memory independent of the sample size.
        cov = Xc.T @ Xc / (n - 1 if center else n)
        eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
        eigvals = eigvals.flip(0).clamp(min=0.0)
        eigvecs = eigvecs.flip(1)
        total = eigvals.sum()
        if total <= 0:
            raise DictionaryError("cannot fit an SVD basis: the activations have no variance")
        pivot = eigvecs.abs().argmax(dim=0)
        signs = torch.sign(eigvecs[pivot, torch.arange(d_in, device=X.device)])
        eigvecs = eigvecs * signs
        dtype = acts.dtype if acts.is_floating_point() else torch.float32
        return cls(eigvecs[:, :rank].T.contiguous().to(dtype), mean.to(dtype),
                   (eigvals[:rank] / total).to(dtype), centered=center, n_fit=n, hook_name=hook_name)

    def _encode(self, x: Activations) -> Latents:
        return (x.to(self.components.dtype) - self.mean) @ self.components.T

    def _decode(self, f: Latents) -> Activations:
        return f.to(self.components.dtype) @ self.components + self.mean

    @property
    def W_dec(self) -> Directions:
        return self.components

    def _describe_extra(self) -> dict[str, DescribeValue]:
        return {"centered": self.centered, "n_fit": self.n_fit,
                "explained_variance": float(self.explained_variance_ratio.sum())}

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``svd.json`` and ``svd.safetensors`` into ``directory`` (created); return it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"components": self.components.contiguous(), "mean": self.mean.contiguous(),
                   "explained_variance_ratio": self.explained_variance_ratio.contiguous()},
                  str(directory / SVD_WEIGHTS_FILENAME))
        config = {"format": SVD_FORMAT, "kind": self.kind, "d_in": self.d_in, "d_dict": self.d_dict,
                  "hook_name": self.hook_name, "centered": self.centered, "n_fit": self.n_fit,
                  "dtype": str(self.components.dtype).removeprefix("torch.")}
        (directory / SVD_CONFIG_FILENAME).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @staticmethod
    def is_saved_at(directory: str | Path) -> bool:
        """Whether ``directory`` holds a basis written by :meth:`save`."""
        return (Path(directory) / SVD_CONFIG_FILENAME).is_file()

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> SVDDictionary:
        """Read a basis written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        try:
            config = json.loads((directory / SVD_CONFIG_FILENAME).read_text())
            tensors = load_file(str(directory / SVD_WEIGHTS_FILENAME), device=str(device))
        except (OSError, ValueError, SafetensorError) as e:
            raise DictionaryError(f"cannot read the SVD basis in {directory}: {e}") from e
        if not isinstance(config, dict) or config.get("format") != SVD_FORMAT:
            raise DictionaryError(f"{directory / SVD_CONFIG_FILENAME} is not a {SVD_FORMAT} file "
                                  f"(format {config.get('format') if isinstance(config, dict) else None!r})")
        missing = {"components", "mean", "explained_variance_ratio"} - tensors.keys()
        if missing:
            raise DictionaryError(f"{directory / SVD_WEIGHTS_FILENAME} lacks {', '.join(sorted(missing))}")
        return cls(tensors["components"], tensors["mean"], tensors["explained_variance_ratio"],
                   centered=bool(config.get("centered", True)), n_fit=config.get("n_fit"),
                   hook_name=config.get("hook_name"), source=f"path:{directory.resolve()}")
