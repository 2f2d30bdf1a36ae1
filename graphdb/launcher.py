"""The embedded server's Java launcher: its Maven build, the JVM command line, and the
class-data-sharing archive that makes its starts faster.

``graphdb/server/`` holds a ``pom.xml`` and a small Java launcher around Neo4j's documented
embedded API. :func:`build_launcher` builds it with Maven into the per-user cache (once per
source version: the build directory is named by a hash of the sources) and fetches the Neo4j
jars, the importer's included. :mod:`graphdb.embedded` starts and stops servers with it.

**Class-data sharing.** A server start on two cores spends most of its time loading and
verifying about ten thousand classes. Each build records them once (:func:`archive_classes`:
a bulk load of a two-node store and a server start on it, under ``-XX:ArchiveClassesAtExit``);
every later start maps the archive instead. An archive the JVM cannot use (another Java, another
class path) is ignored, and the start only takes longer.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graphdb.errors import ServerError
from graphdb.settings import cache_dir

log = logging.getLogger(__name__)

LAUNCHER_CLASS = "dev.mechgraph.server.Launcher"
LISTEN_ADDRESS = "127.0.0.1"
SOURCE_DIR = Path(__file__).parent / "server"
READY_MARK = "MECHGRAPH-NEO4J READY"
#: A bulk load's importer finished in the launcher's JVM (``IMPORTED in SECONDS s``); the server starts next.
IMPORTED_MARK = "MECHGRAPH-NEO4J IMPORTED in "
#: Class-data-sharing archive of the launcher's classes, made once per build (:func:`archive_classes`).
CDS_ARCHIVE = "launcher.jsa"


@contextmanager
def flock(path: Path, *, timeout: float | None, waiting: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600). ``timeout=None`` waits forever.

    The kernel drops the lock when the holder's process dies, so a crashed start never leaves a
    stale lock behind; the fd is close-on-exec, so the server the holder spawns does not keep it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s (%s)", waiting, path)
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise ServerError(f"gave up after {timeout:.0f}s waiting for {waiting} (lock {path})") from None
                    time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader sees the old file or the new one), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LISTEN_ADDRESS, 0))
        return int(s.getsockname()[1])


def _source_fingerprint() -> str:
    """Hash of the launcher's sources: a changed pom or launcher means a fresh build dir."""
    h = hashlib.sha256()
    for path in sorted([SOURCE_DIR / "pom.xml", *SOURCE_DIR.glob("src/**/*.java")]):
        h.update(path.relative_to(SOURCE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def build_dir() -> Path:
    return cache_dir() / f"neo4j-launcher-{_source_fingerprint()}"


def java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServerError("no `java` on PATH: install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    return java


def jvm_flags(heap: str, build: Path | None = None) -> list[str]:
    """JVM flags for the server: a fixed heap (Neo4j warns about an unconfigured one), no
    hsperfdata file in /tmp, and the module opens Neo4j's native I/O needs on Java 17 (without
    them debug.log fills with "Incorrect file descriptor" and DirectByteBuffer warnings). With
    ``build``, its class-data-sharing archive if it has one: the JVM maps the launcher's and
    Neo4j's classes already parsed and verified instead of loading them from the jars (a server
    start spends most of its time there; an archive that does not match is silently ignored)."""
    opens = ("java.base/java.nio", "java.base/sun.nio.ch", "java.base/java.io")
    flags = [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:-UsePerfData",
             *(f"--add-opens={m}=ALL-UNNAMED" for m in opens)]
    if build is not None and (build / CDS_ARCHIVE).is_file():
        flags += [f"-XX:SharedArchiveFile={build / CDS_ARCHIVE}", "-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    return flags


def classpath(build: Path) -> str:
    """The launcher's jar (class-data sharing archives jars only, not a directory of classes), then Neo4j's."""
    jars = sorted(build.glob("mechgraph-neo4j-launcher-*.jar"))
    return f"{jars[0] if jars else build / 'classes'}{os.pathsep}{build / 'lib' / '*'}"


def build_launcher(*, force: bool = False) -> Path:
    """Build the launcher and fetch the Neo4j jars with Maven (once per source version).

    Returns the build directory. Idempotent: a completed build is reused.
    """
    build = build_dir()
    marker = build / "BUILD-OK"
    if marker.exists() and not force:
        return build
    build.parent.mkdir(parents=True, exist_ok=True)
    # Two first commands at once must not run Maven into the same directory (one would delete
    # the other's half-built tree): the second waits, then finds the build done.
    with flock(build.parent / f"{build.name}.lock", timeout=None, waiting="another process building the launcher"):
        if marker.exists() and not force:
            return build
        return _build(build, marker)


def _build(build: Path, marker: Path) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError("no `mvn` on PATH: install Maven 3 (Debian: apt-get install maven) to fetch the Neo4j jars")
    java()
    if build.exists():
        shutil.rmtree(build)
    cmd = [mvn, "-B", "-q", "-f", str(SOURCE_DIR / "pom.xml"), f"-Dmechgraph.buildDir={build}", "package"]
    log.info("building the Neo4j launcher with Maven into %s (first time only)", build)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ServerError(f"Maven could not build the Neo4j launcher (exit {proc.returncode}):\n{tail}")
    version = neo4j_version(build)
    archive_classes(build)
    marker.write_text(version + "\n")
    return build


def archive_classes(build: Path, *, timeout: float = 600.0) -> bool:
    """Make the build's class-data-sharing archive (:data:`CDS_ARCHIVE`): one bulk load of a
    two-node store and a server start on it, in a scratch directory, with the JVM recording every
    class it loads; they are written to the archive when it exits. Later starts map them instead of
    loading them. Returns False (and every start runs without one) if the JVM could not make it."""
    scratch = build / "cds-training"
    shutil.rmtree(scratch, ignore_errors=True)
    tmp = build / f"{CDS_ARCHIVE}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        home, args = training_load(scratch)
        password = scratch / "password"
        write_private(password, secrets.token_urlsafe(24) + "\n")
        cmd = [java(), *jvm_flags("512m"), f"-XX:ArchiveClassesAtExit={tmp}", "-cp", classpath(build), LAUNCHER_CLASS,
               "--home", str(home), "--bolt-port", str(free_port()), "--listen-address", LISTEN_ADDRESS,
               "--password-file", str(password), "--page-cache", "16m", "--import-args", str(args)]
        out = scratch / "launcher.log"
        with open(out, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, umask=0o077)
        deadline = time.monotonic() + timeout
        while READY_MARK not in out.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                log.warning("no class-data-sharing archive: the training start failed (%s)", out)
                return False
            time.sleep(0.2)
        proc.terminate()
        proc.wait(120)
        if proc.returncode != 0 or not tmp.is_file():
            log.warning("no class-data-sharing archive: the JVM did not write one (exit %s; %s)", proc.returncode, out)
            return False
        os.replace(tmp, build / CDS_ARCHIVE)
        shutil.rmtree(scratch, ignore_errors=True)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("no class-data-sharing archive: %s", e)
        return False


def neo4j_version(build: Path | None = None) -> str:
    """The Neo4j version the launcher is built against (asks the jar, not a constant)."""
    build = build or build_launcher()
    proc = subprocess.run(
        [java(), "-cp", classpath(build), LAUNCHER_CLASS, "--version"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    if proc.returncode != 0:
        raise ServerError(f"the Neo4j launcher did not report its version: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def prepare_admin_home(home: Path) -> None:
    """A Neo4j home for a neo4j-admin command run by the launcher (the importer): its private
    conf/, logs/ and tmp/, and a neo4j.conf (read from conf/) naming the directories the server uses."""
    for sub in ("conf", "logs", "tmp"):
        (home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "conf" / "neo4j.conf").write_text(
        f"server.directories.data={home / 'data'}\nserver.directories.logs={home / 'logs'}\n")


def training_load(scratch: Path) -> tuple[Path, Path]:
    """A two-node, one-relationship bulk load in ``scratch``: (the Neo4j home, the importer's
    argument file), in the shards' header format, for :func:`archive_classes`."""
    home = scratch / "neo4j"
    prepare_admin_home(home)
    nodes, rels = scratch / "nodes.csv", scratch / "rels.csv"
    nodes.write_text(':ID,key:string,:LABEL,layer:long\n0,"feature|a",Node;Feature,0\n1,"feature|b",Node;Feature,1\n')
    rels.write_text(":START_ID,:END_ID,weight:double,run:string\n0,1,0.5,r\n")
    args = scratch / "import.args"
    args.write_text("\n".join(["database", "import", "full", "neo4j", "--id-type=actual", "--bad-tolerance=0",
                               f"--report-file={home / 'logs' / 'import.report'}", "--max-off-heap-memory=64m",
                               f"--nodes={nodes}", f"--relationships=ATTRIBUTES_TO={rels}"]) + "\n")
    return home, args
