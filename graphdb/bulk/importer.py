"""Run Neo4j's offline importer (``neo4j-admin database import full``) into an embedded store.

The importer's jars (``org.neo4j:neo4j-import-tool`` and the admin CLI it plugs into,
``org.neo4j.cli.AdminTool`` from ``org.neo4j:neo4j-command-line``) are dependencies of the
launcher's ``graphdb/server/pom.xml``, so the build ``mechgraph db install`` makes (and every
first start makes) has them in ``lib/``, at the server's own Neo4j version: a store the importer
writes is one the server opens. It runs inside the launcher's own JVM (``--import-args``), with
the data directory's Neo4j home as ``NEO4J_HOME``, so it writes where the server reads
(``<home>/data/databases/neo4j`` and ``<home>/data/transactions/neo4j``), and the server then
starts on that store in the same JVM: one JVM start, and the store classes loaded once.

Community Edition: one user database (``neo4j``) per server, and only the ``full`` import
(into a new or empty database; no incremental import). A bulk load therefore makes a new store,
or replaces the store of a data directory with ``force`` (its server stopped first).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from graphdb.bulk.shards import FORMAT, MANIFEST
from graphdb.embedded import EmbeddedServer, _private_dir
from graphdb.launcher import IMPORTED_MARK, build_launcher, prepare_admin_home, write_private
from graphdb.errors import ServerError
from mechgraph.errors import ConfigError

ADMIN_CLASS = "org.neo4j.cli.AdminTool"
DATABASE = "neo4j"   # Community's one user database
_DONE = re.compile(r"IMPORT DONE in (.+?)\.\s+Imported:\s+(\d+) nodes\s+(\d+) relationships\s+(\d+) properties")
_SECONDS = re.compile(re.escape(IMPORTED_MARK) + r"([0-9.]+) s")


@dataclass(frozen=True)
class ImportResult:
    """What the importer reported: counts, and its wall time in the launcher's JVM."""

    nodes: int
    relationships: int
    properties: int
    seconds: float
    log: Path


def read_manifest(shards: Path) -> dict:
    """``SHARDS/manifest.json``, checked: its format, and every shard it names present."""
    path = shards / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{shards} has no {MANIFEST}: it is not a shard directory (write one with "
                          "graphdb.bulk.shards.ShardWriter)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{path} is in format {manifest.get('format')!r}; this mechgraph reads {FORMAT!r}")
    for entry in (*manifest["nodes"], *manifest["relationships"]):
        if not (shards / entry["file"]).is_file():
            raise ConfigError(f"{path} names {entry['file']}, which is not in {shards}")
    return manifest


def importer_args(shards: Path, manifest: dict, *, overwrite: bool, threads: int | None,
                  memory: str, report: Path) -> list[str]:
    """The arguments of ``database import full`` for the shards of ``manifest``."""
    # The database name first: after --nodes/--relationships (which take several files) it
    # would be read as one more file.
    args = ["database", "import", "full", DATABASE,
            "--id-type=actual", f"--array-delimiter={manifest['array_delimiter']}",
            f"--multiline-fields={'true' if manifest['multiline_fields'] else 'false'}",
            # A relationship to a node that is not in the shards, or a key twice, fails the import.
            "--skip-bad-relationships=false", "--skip-duplicate-nodes=false", "--bad-tolerance=0",
            f"--max-off-heap-memory={memory}", f"--report-file={report}", "--high-parallel-io=on",
            f"--overwrite-destination={'true' if overwrite else 'false'}"]
    if threads:
        args.append(f"--threads={threads}")
    args += [f"--nodes={shards / e['file']}" for e in manifest["nodes"]]
    args += [f"--relationships={e['type']}={shards / e['file']}" for e in manifest["relationships"]]
    return args


def store_exists(server: EmbeddedServer) -> bool:
    """True if the data directory already holds a user database store."""
    db = server.home / "data" / "databases" / DATABASE
    return db.is_dir() and any(db.iterdir())


def prepare_import(shards: Path, server: EmbeddedServer, *, force: bool = False, memory: str | None = None,
                   threads: int | None = None) -> Path:
    """Check that ``shards`` can be imported into the store of ``server``'s data directory (the
    server down; no store unless ``force``, which replaces it) and write the importer's arguments
    for the launcher (``--import-args``; :meth:`EmbeddedServer.start` with ``import_args``).
    Returns that file. ``memory`` (default ``$MECHGRAPH_IMPORT_MEMORY`` or 1g) caps the
    importer's off-heap caches; ``threads`` defaults to the importer's own choice (the cores)."""
    shards = Path(shards).absolute()
    manifest = read_manifest(shards)
    if server.state() is not None:
        raise ServerError(f"the embedded Neo4j of {server.data_dir} is running: a bulk load writes the store "
                          "offline; stop it first (`mechgraph db stop`)")
    if store_exists(server) and not force:
        raise ConfigError(f"{server.data_dir} already holds a store: Neo4j Community imports only into a new "
                          "database. Load into a new data directory, or replace this store with --force")
    memory = memory or os.environ.get("MECHGRAPH_IMPORT_MEMORY", "1g")
    build = build_launcher()
    if not any((build / "lib").glob("neo4j-import-tool-*.jar")):
        raise ServerError(f"the Neo4j build in {build} has no importer (neo4j-import-tool): "
                          "rebuild it with `mechgraph db install --force`")
    _private_dir(server.data_dir)
    home = server.home
    prepare_admin_home(home)
    args = importer_args(shards, manifest, overwrite=force, threads=threads, memory=memory,
                         report=home / "logs" / "import.report")
    path = server.data_dir / "import.args"
    write_private(path, "\n".join(args) + "\n")
    return path


def import_result(log_file: Path) -> ImportResult:
    """What the importer reported in the launcher's log, or a :class:`ServerError` with its last lines."""
    text = log_file.read_text(errors="replace") if log_file.is_file() else ""
    done, seconds = _DONE.search(text), _SECONDS.search(text)
    if done is None or seconds is None:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        tail = "\n".join(lines[-12:]) or "no output"
        raise ServerError(f"Neo4j's importer failed (log {log_file}):\n{tail}")
    return ImportResult(int(done.group(2)), int(done.group(3)), int(done.group(4)), float(seconds.group(1)), log_file)
