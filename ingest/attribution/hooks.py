"""Forward passes with temporary hooks, without TransformerLens' per-call reset of every hook point.

``HookedRootModule.run_with_hooks`` ends by resetting *all* the model's hook points (a Python loop
over a few hundred modules, ~10 ms of CPU per call, more than the forward pass of a tiny model);
the engine and the ablations run thousands of short hooked passes. :func:`run_hooked` adds the
hooks at a fresh context level, as ``run_with_hooks`` does, and removes exactly those afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_hooked(model: Any, *args: Any, fwd_hooks: Sequence[tuple[str, Callable[..., Any]]], **kwargs: Any) -> Any:
    """``model(*args, **kwargs)`` with ``fwd_hooks`` ((hook name, fn) pairs) in place; the same as
    ``model.run_with_hooks(*args, fwd_hooks=fwd_hooks, **kwargs)`` for named hook points."""
    points = getattr(model, "mod_dict", None)
    if points is None or not hasattr(model, "context_level"):
        return model.run_with_hooks(*args, fwd_hooks=list(fwd_hooks), **kwargs)
    model.context_level += 1
    level = model.context_level
    touched = []
    try:
        for name, fn in fwd_hooks:
            point = points[name]
            point.add_hook(fn, dir="fwd", level=level)
            touched.append(point)
        return model(*args, **kwargs)
    finally:
        for point in touched:
            point.remove_hooks("fwd", level=level)
        model.context_level -= 1
