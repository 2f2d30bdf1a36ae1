"""Provenance: the ``:Run`` node every result links to.

A run's id is derived from its kind and the hash of its full configuration, so running the
same configuration again lands on the same ``:Run`` (and, through the writer's MERGE, on the
same edges) instead of duplicating it; a changed setting or seed gives a new run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from graphdb.keys import node_key
from graphdb.schema import Label
from mechgraph.errors import ConfigError


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``config`` (key order does not matter)."""
    try:
        blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"a run configuration must be JSON-serialisable: {e}") from None
    return hashlib.sha256(blob.encode()).hexdigest()


def code_version() -> str:
    """The package version, plus the git commit (and ``-dirty``) when run from a checkout."""
    try:
        version = metadata.version("mechgraph")
    except metadata.PackageNotFoundError:
        version = "unknown"
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


@dataclass(frozen=True)
class RunRecord:
    """One run of some mechgraph job (ingest, sample, roi, communities, evaluate, ...)."""

    kind: str
    config: dict[str, Any]
    seed: int
    code: str = field(default_factory=code_version)
    created_at: float = field(default_factory=time.time)

    @property
    def config_hash(self) -> str:
        return config_hash({"kind": self.kind, "seed": self.seed, **self.config})

    @property
    def run_id(self) -> str:
        return f"{self.kind}-{self.config_hash[:12]}"

    @property
    def key(self) -> str:
        return node_key(Label.RUN, run=self.run_id)

    def row(self) -> dict[str, Any]:
        """The ``:Run`` node's properties (``config`` stored as canonical JSON)."""
        return {
            "key": self.key,
            "run": self.run_id,
            "kind": self.kind,
            "config": json.dumps(self.config, sort_keys=True, default=str),
            "config_hash": self.config_hash,
            "seed": self.seed,
            "code_version": self.code,
            "created_at": self.created_at,
        }


def tasks_done(db: Any, run: RunRecord) -> list[str]:
    """The tasks ``run`` has finished writing (``tasks_done`` on its :Run node)."""
    from graphdb.writer import cypher_template

    rows = db.read(cypher_template("run_tasks_done"), {"key": run.key})
    return list(rows[0]["done"]) if rows else []


def task_edge_counts(db: Any, run: str, task: str) -> dict[str, int]:
    """Edges ``run`` wrote for ``task``, per granularity."""
    from graphdb.writer import cypher_template

    return {r["granularity"]: r["edges"] for r in db.read(cypher_template("run_task_counts"),
                                                             {"run": run, "task": task})}
