"""The root of the project's exception hierarchy.

Every error a user can cause (bad input, server down, wrong password, a query that does not
exist, a model or task that cannot be loaded) is a subclass of :class:`MechgraphError` with a
sentence the user can act on. The subclasses live with their layer (``graphdb.errors``,
``ingest.errors``); this module imports nothing of ours, so any layer can raise them without
importing another. The CLI turns them into one line on stderr and a non-zero exit; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MechgraphError(Exception):
    """Root of every error mechgraph raises on purpose."""


class ConfigError(MechgraphError, ValueError):
    """A setting, option or parameter value is invalid."""


def require_positive(**counts: int) -> None:
    """Raise ``ValueError`` naming the first of ``counts`` (option name → value) that is below 1.

    Configs call it in ``__post_init__`` for their counts (examples, batch sizes, ...), so every
    such check words its error the same way."""
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")
