"""Where mechgraph keeps its data and which Neo4j server it talks to.

Two modes, chosen once per process from the environment:

* **External server**: ``NEO4J_URI`` is set (Neo4j Desktop, a container, Aura, a cluster).
  ``NEO4J_USER`` (default ``neo4j``), ``NEO4J_PASSWORD`` (required) and optionally
  ``NEO4J_DATABASE`` complete it. Secrets only ever come from the environment.
* **Embedded default**: a local Neo4j Community server that ``mechgraph db start`` runs
  from Maven Central artifacts, with its home, logs and generated password under the
  project data directory (``MECHGRAPH_HOME``, default ``./.mechgraph``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mechgraph.errors import ConfigError

DEFAULT_DATA_DIR = ".mechgraph"
DEFAULT_BOLT_PORT = 7687


@dataclass(frozen=True)
class Neo4jSettings:
    """How to reach one Neo4j database."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str | None = None
    embedded: bool = False

    def __post_init__(self) -> None:
        if not self.uri.startswith(("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")):
            raise ConfigError(f"NEO4J_URI={self.uri!r} is not a bolt:// or neo4j:// URI")
        if not self.password:
            raise ConfigError("the Neo4j password is empty")


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The project data directory: ``override``, else ``$MECHGRAPH_HOME``, else ``./.mechgraph``.

    :class:`ConfigError` when it cannot be a directory: the path, or the nearest of its parents
    that exists, is something else (a file such as ``/etc/passwd``)."""
    raw = override or os.environ.get("MECHGRAPH_HOME") or DEFAULT_DATA_DIR
    return output_dir(raw, what="the data directory",
                      hint="--data-dir or MECHGRAPH_HOME names a directory, created if missing")


def output_dir(raw: str | os.PathLike[str], *, what: str = "the output directory", hint: str = "") -> Path:
    """``raw`` as an absolute path that is, or can be created as, a directory; else
    :class:`ConfigError` (it, or the nearest of its parents that exists, is a file; or the
    name cannot be a path at all). Checked before any work whose results go there."""
    shown = str(raw) if len(str(raw)) <= 120 else str(raw)[:117] + "..."
    if "\0" in str(raw):
        raise ConfigError(f"{what} {shown!r} contains a NUL character")
    path = Path(raw).expanduser().absolute()
    try:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
    except OSError as e:  # e.g. a name longer than the file system allows
        raise ConfigError(f"{what} {shown} cannot be used: {e.strerror or e}") from None
    if existing is not None and not existing.is_dir():
        where = "is" if existing == path else f"is inside {existing}, which is"
        raise ConfigError(f"{what} {shown} {where} not a directory" + (f" ({hint})" if hint else ""))
    return path


def output_file(raw: str | os.PathLike[str], *, what: str = "the output file") -> Path:
    """``raw`` as an absolute path a file can be written to (its directory created if
    missing); :class:`ConfigError` if it is a directory or its directory cannot be one."""
    path = Path(raw).expanduser().absolute()
    output_dir(path.parent, what=f"the directory of {what}")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; name a file")
    return path


def cache_dir() -> Path:
    """Per-user cache for built artifacts (the Neo4j launcher's jars): ``$MECHGRAPH_CACHE``
    or ``$XDG_CACHE_HOME/mechgraph``."""
    raw = os.environ.get("MECHGRAPH_CACHE")
    if raw:
        return Path(raw).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "mechgraph"


def external_settings() -> Neo4jSettings | None:
    """Settings from ``NEO4J_*`` variables, or ``None`` when ``NEO4J_URI`` is unset."""
    uri = os.environ.get("NEO4J_URI")
    if not uri:
        return None
    password = os.environ.get("NEO4J_PASSWORD")
    if not password:
        raise ConfigError("NEO4J_URI is set but NEO4J_PASSWORD is not: set it to the password of NEO4J_USER")
    return Neo4jSettings(
        uri=uri,
        user=os.environ.get("NEO4J_USER", "neo4j"),
        password=password,
        database=os.environ.get("NEO4J_DATABASE") or None,
        embedded=False,
    )


def bolt_port_setting() -> int | None:
    """``$MECHGRAPH_BOLT_PORT`` if set (then it must be free), else ``None`` (7687 or any free)."""
    raw = os.environ.get("MECHGRAPH_BOLT_PORT")
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"MECHGRAPH_BOLT_PORT={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"MECHGRAPH_BOLT_PORT={port} is outside 1..65535")
    return port
