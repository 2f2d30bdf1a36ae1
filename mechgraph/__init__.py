"""mechgraph's base: what every layer may import because it imports nothing of ours.

Only :mod:`mechgraph.errors` (the exception hierarchy's root) and the version live here; the
layers above are ``graphdb`` (Neo4j), ``ingest`` and ``queries`` (the model and the query
library), and ``analysis`` (communities, evaluation, ..., and the CLI root).
"""

from __future__ import annotations


def version() -> str:
    """The installed mechgraph version (``0+unknown`` when run from a source tree only)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("mechgraph")
    except PackageNotFoundError:
        return "0+unknown"
