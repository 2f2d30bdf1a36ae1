"""The store a bench script writes to: a fresh private embedded server under ``out/neo4j``
(wiped first), or the server ``NEO4J_URI`` names (``--external``)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any


def bench_store(out: Path, external: bool) -> tuple[Any, Any]:
    """``(settings, server)``; ``server`` is ``None`` for an external store, else the caller stops it."""
    from graphdb.connection import resolve_settings
    from graphdb.embedded import EmbeddedServer, free_port

    if external:
        return resolve_settings(), None
    data = out / "neo4j"
    shutil.rmtree(data, ignore_errors=True)
    server = EmbeddedServer(data)
    t = time.perf_counter()
    server.start(port=free_port(), timeout=600)   # a loaded machine can take minutes for a first boot
    print(f"embedded Neo4j started in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return server.settings(), server
