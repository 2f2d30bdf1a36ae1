"""sae_lens SAEs as dictionaries, and their loaders (a local directory, a pretrained release).

:class:`SAEDictionary` wraps an inference SAE of any sae_lens architecture that encodes
each position on its own (standard/ReLU, topk, abstopk, jumprelu, gated, matching_pursuit)
and delegates ``encode``/``decode`` to it, so input handling (dtype cast, ``b_dec``
subtraction, decoder-norm rescaling) stays sae_lens's own. Training SAEs are converted the
way sae_lens' runner saves them (``save_inference_model``): a batchtopk SAE becomes a
jumprelu SAE with its running threshold, since batch-level top-k is not a per-token map.

Refused, with one sentence each: transcoders (they read one hook and write another, so
they have no error node ``x - x_hat``), temporal SAEs (their codes depend on earlier
positions), and SAEs that normalise each input at run time (``layer_norm``,
``constant_norm_rescale``: ``decode(f)`` would depend on the input too) or that expect
input scaling they do not carry (unfolded ``expected_average_only_in`` or
``covariance_whitening``; :meth:`SAEDictionary.from_disk` folds the statistics a
training checkpoint keeps in ``activation_scaler.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ingest.dictionaries.base import Activations, DescribeValue, Dictionary, Directions, Latents
from ingest.errors import DictionaryError

if TYPE_CHECKING:  # typing only: this module imports sae_lens (seconds) when first used
    from sae_lens import SAE, TrainingSAE

_PER_INPUT_NORMS = ("layer_norm", "constant_norm_rescale")
_FOLDABLE_NORMS = ("expected_average_only_in", "covariance_whitening")


class SAEDictionary(Dictionary):
    """A sae_lens SAE behind the :class:`Dictionary` interface.

    ``hook_name`` comes from ``sae.cfg.metadata.hook_name`` (sae_lens 6 keeps the model
    side of the config in ``cfg.metadata``). For a ``hook_z`` SAE sae_lens' own
    ``[... n_heads d_head]`` reshaping is turned off on the wrapped SAE, so it takes the
    flattened ``[... (n_heads d_head)]`` like every dictionary. A :class:`TrainingSAE`
    is converted to a new inference SAE (the given one is left as it is).
    """

    sae: SAE[Any]

    def __init__(self, sae: SAE[Any] | TrainingSAE[Any], *, source: str | None = None) -> None:
        from sae_lens import SAE, TrainingSAE
        from sae_lens.saes import TemporalSAE, Transcoder

        if not isinstance(sae, SAE):
            raise DictionaryError(f"SAEDictionary wraps a sae_lens SAE, got {type(sae).__name__}")
        if isinstance(sae, Transcoder):
            raise DictionaryError(f"{type(sae).__name__} is a transcoder (it reads one hook and writes another), "
                                  "not a dictionary of one activation space")
        if isinstance(sae, TemporalSAE):
            raise DictionaryError("a temporal SAE's codes depend on earlier positions, "
                                  "so it is not a per-token dictionary")
        if isinstance(sae, TrainingSAE):
            sae = _inference_sae(sae)
        arch = sae.cfg.architecture()
        norm = sae.cfg.normalize_activations
        if norm in _PER_INPUT_NORMS:
            raise DictionaryError(
                f"this {arch} SAE normalises each input at run time (normalize_activations={norm!r}), "
                "so its decoder is not a fixed map of the latents and it cannot serve as a dictionary")
        if norm in _FOLDABLE_NORMS:
            raise DictionaryError(
                f"this {arch} SAE expects inputs scaled by statistics it does not carry (normalize_activations="
                f"{norm!r}); fold them into its weights first (fold_activation_norm_scaling_factor or "
                "fold_activation_whitening)")
        if sae.cfg.reshape_activations == "hook_z":
            sae.turn_off_forward_pass_hook_z_reshaping()
        super().__init__(sae.cfg.d_in, sae.cfg.d_sae, hook_name=sae.cfg.metadata.hook_name, source=source)
        self.sae = sae
        self.kind = f"sae/{arch}"

    # -- the interface -------------------------------------------------------------------

    def _encode(self, x: Activations) -> Latents:
        return self.sae.encode(x)

    def _decode(self, f: Latents) -> Activations:
        return self.sae.decode(f)

    @property
    def W_dec(self) -> Directions:
        W = self.sae.W_dec
        # topk/abstopk SAEs trained with rescale_acts_by_decoder_norm decode f / ||W_dec||
        # (sae_lens topk_sae.act_times_W_dec), so a unit of latent writes the unit row.
        if getattr(self.sae.cfg, "rescale_acts_by_decoder_norm", False):
            W = W / W.norm(dim=-1, keepdim=True)
        return W

    def _describe_extra(self) -> dict[str, DescribeValue]:
        meta = self.sae.cfg.metadata
        extra: dict[str, DescribeValue] = {"architecture": self.sae.cfg.architecture(),
                                           "model_name": meta.model_name}
        if meta.hook_head_index is not None:
            extra["hook_head_index"] = meta.hook_head_index
        if self.sae.cfg.reshape_activations == "hook_z":
            extra["input_layout"] = "... (n_heads d_head)"
        k = getattr(self.sae.cfg, "k", None)
        if k is not None:
            extra["k"] = k
        return extra

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> SAEDictionary:
        # Module.to() reaches the wrapped SAE through _apply, not through SAE.to(), so the
        # dtype/device sae_lens casts inputs to (sae.dtype, sae.device, cfg.*) would go stale.
        super()._apply(fn, *args, **kwargs)
        from sae_lens.util import dtype_to_str

        W = self.sae.W_dec
        self.sae.dtype, self.sae.device = W.dtype, W.device
        self.sae.cfg.dtype, self.sae.cfg.device = dtype_to_str(W.dtype), str(W.device)
        return self

    # -- loaders -------------------------------------------------------------------------

    @classmethod
    def from_disk(cls, path: str | Path, device: str = "cpu", dtype: str | None = None) -> SAEDictionary:
        """Load a sae_lens SAE directory (``cfg.json`` + ``sae_weights.safetensors``).

        Reads what ``SAE.save_model`` and ``TrainingSAE.save_inference_model`` write, i.e.
        the runner's final output directory, and also the runner's intermediate
        checkpoints (``save_model`` of the training SAE: a training config, possibly of a
        training-only architecture such as batchtopk, with the activation scaler next to
        it, whose statistics are folded in here as the runner does at the end).
        ``dtype`` defaults to the one in ``cfg.json``.
        """
        from safetensors import SafetensorError
        from sae_lens import SAE, TrainingSAE
        from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME
        from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting
        from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

        directory = Path(path).expanduser()
        if not (directory / SAE_CFG_FILENAME).is_file() or not (directory / SAE_WEIGHTS_FILENAME).is_file():
            raise DictionaryError(f"{directory} is not a sae_lens SAE directory "
                                  f"(it needs {SAE_CFG_FILENAME} and {SAE_WEIGHTS_FILENAME})")
        try:
            cfg = handle_config_defaulting(json.loads((directory / SAE_CFG_FILENAME).read_text()))
            arch = cfg.get("architecture")
            if arch in SAE_CLASS_REGISTRY:
                sae: SAE[Any] = SAE.load_from_disk(directory, device=device, dtype=dtype)
            elif arch in SAE_TRAINING_CLASS_REGISTRY:
                sae = TrainingSAE.load_from_disk(directory, device=device, dtype=dtype)
            else:
                known = sorted(set(SAE_CLASS_REGISTRY) | set(SAE_TRAINING_CLASS_REGISTRY))
                raise DictionaryError(f"{directory / SAE_CFG_FILENAME} names SAE architecture {arch!r}, which "
                                      f"this sae_lens does not know (it knows {', '.join(known)})")
            _fold_saved_scaler(sae, directory)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            raise DictionaryError(f"cannot load the sae_lens SAE in {directory}: {type(e).__name__}: {e}") from e
        return cls(sae, source=f"path:{directory.resolve()}")

    @classmethod
    def from_pretrained(cls, release: str, sae_id: str, device: str = "cpu",
                        dtype: str = "float32") -> SAEDictionary:
        """Load SAE ``sae_id`` of a sae_lens pretrained ``release`` (Hugging Face hub, cached).

        The release and id are checked against sae_lens' local registry first; offline,
        an SAE not in the Hugging Face cache fails within seconds with one sentence
        (:mod:`ingest.dictionaries.hub`). A ``release`` containing ``/`` that the registry
        does not know is passed to sae_lens as a Hugging Face repo id.
        """
        from ingest.dictionaries import hub

        hub.check_release(release, sae_id)

        def load() -> SAE[Any]:
            from sae_lens import SAE

            return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)

        return cls(hub.fetch(release, sae_id, load), source=f"release:{release}/{sae_id}")


def _inference_sae(training: TrainingSAE[Any]) -> SAE[Any]:
    """The inference SAE that ``training.save_inference_model`` + ``SAE.load_from_disk`` give.

    The same steps in memory, on copies of the weights, so the new SAE shares no storage
    with the training one (sae_lens' topk conversion folds decoder norms into the state
    dict it is given).
    """
    from sae_lens import SAE

    state = {name: t.detach().clone() for name, t in training.state_dict().items()}
    training.process_state_dict_for_saving_inference(state)
    inference = SAE.from_dict(training.cfg.get_inference_sae_cfg_dict())
    inference.process_state_dict_for_loading(state)
    inference.load_state_dict(state)
    return inference.to(device=training.W_dec.device, dtype=training.W_dec.dtype)


def _fold_saved_scaler(sae: SAE[Any], directory: Path) -> None:
    """Fold the activation scaler a training checkpoint keeps beside its weights, if any."""
    from sae_lens.constants import ACTIVATION_SCALER_CFG_FILENAME
    from sae_lens.training.activation_scaler import ActivationScaler

    norm = sae.cfg.normalize_activations
    path = directory / ACTIVATION_SCALER_CFG_FILENAME
    if norm not in _FOLDABLE_NORMS or not path.is_file():
        return
    scaler = ActivationScaler()
    scaler.load(path)
    with torch.no_grad():
        if norm == "expected_average_only_in" and scaler.scaling_factor is not None:
            sae.fold_activation_norm_scaling_factor(scaler.scaling_factor)
        elif norm == "covariance_whitening" and scaler.whitening is not None:
            w = scaler.whitening
            sae.fold_activation_whitening(mean=w.mean, whitening_matrix=w.matrix,
                                          unwhitening_matrix=w.inverse_matrix)
