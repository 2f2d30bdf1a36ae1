"""The torch device a command runs its model on, checked before anything is loaded.

``--device cuda`` on a machine without a GPU (or ``cuda:3`` on one with two, or a typo) would
otherwise fail deep inside the first ``.to(device)`` with a torch traceback, after the model
has been loaded and the graph store opened. :func:`check_device` says so in one sentence.
"""

from __future__ import annotations

from mechgraph.errors import ConfigError

#: Device types mechgraph runs on; torch knows more (``meta``, ``xla``, ...), none of which
#: can run a model here.
SUPPORTED = ("cpu", "cuda", "mps")


def check_device(device: str) -> str:
    """``device`` if it names a usable torch device (``cpu``, ``cuda``, ``cuda:N``, ``mps``),
    else :class:`ConfigError`. ``cpu`` is accepted without importing torch."""
    if device == "cpu":
        return device
    if not isinstance(device, str) or not device.strip() or len(device) > 32:
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps")
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if parsed.type not in SUPPORTED:
        raise ConfigError(f"device {device!r} cannot run a model here: use cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available on this machine "
                              "(torch.cuda.is_available() is False); use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"--device {device}: this machine has {count} CUDA device(s), "
                              f"numbered 0..{count - 1}")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: the MPS backend is not available on this machine; use --device cpu")
    return device
