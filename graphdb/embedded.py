"""The embedded default: a local Neo4j Community server built from Maven Central artifacts.

``graphdb/server/`` holds a ``pom.xml`` and a small Java launcher around Neo4j's documented
embedded API (``DatabaseManagementServiceBuilder`` with the Bolt connector enabled). This
module builds it with Maven into the per-user cache, then starts, stops and inspects one
server per project data directory:

    <data dir>/neo4j/          Neo4j home: store files (data/) and Neo4j's logs (logs/)
    <data dir>/password        generated on first start, mode 0600, never printed
    <data dir>/server.json     pid, port and version of the running server
    <data dir>/launcher.log    the launcher's own stdout/stderr

Bolt listens on 127.0.0.1 only; HTTP is off; auth is on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from graphdb.errors import DatabaseUnavailableError, ServerError
from graphdb.settings import DEFAULT_BOLT_PORT, Neo4jSettings, bolt_port_setting, cache_dir, external_settings

log = logging.getLogger(__name__)

LAUNCHER_CLASS = "dev.mechgraph.server.Launcher"
LISTEN_ADDRESS = "127.0.0.1"
SOURCE_DIR = Path(__file__).parent / "server"
READY_MARK = "MECHGRAPH-NEO4J READY"
ERROR_MARK = "MECHGRAPH-NEO4J ERROR"


def _source_fingerprint() -> str:
    """Hash of the launcher's sources: a changed pom or launcher means a fresh build dir."""
    h = hashlib.sha256()
    for path in sorted([SOURCE_DIR / "pom.xml", *SOURCE_DIR.glob("src/**/*.java")]):
        h.update(path.relative_to(SOURCE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def build_dir() -> Path:
    return cache_dir() / f"neo4j-launcher-{_source_fingerprint()}"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServerError("no `java` on PATH: install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    return java


def _jvm_flags(heap: str) -> list[str]:
    """JVM flags for the server: a fixed heap (Neo4j warns about an unconfigured one), no
    hsperfdata file in /tmp, and the module opens Neo4j's native I/O needs on Java 17 (without
    them debug.log fills with "Incorrect file descriptor" and DirectByteBuffer warnings)."""
    opens = ("java.base/java.nio", "java.base/sun.nio.ch", "java.base/java.io")
    return [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:-UsePerfData",
            *(f"--add-opens={m}=ALL-UNNAMED" for m in opens)]


def _classpath(build: Path) -> str:
    return f"{build / 'classes'}{os.pathsep}{build / 'lib' / '*'}"


def build_launcher(*, force: bool = False) -> Path:
    """Build the launcher and fetch the Neo4j jars with Maven (once per source version).

    Returns the build directory. Idempotent: a completed build is reused.
    """
    build = build_dir()
    marker = build / "BUILD-OK"
    if marker.exists() and not force:
        return build
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError("no `mvn` on PATH: install Maven 3 (Debian: apt-get install maven) to fetch the Neo4j jars")
    _java()
    if build.exists():
        shutil.rmtree(build)
    build.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-q", "-f", str(SOURCE_DIR / "pom.xml"), f"-Dmechgraph.buildDir={build}", "package"]
    log.info("building the Neo4j launcher with Maven into %s (first time only)", build)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ServerError(f"Maven could not build the Neo4j launcher (exit {proc.returncode}):\n{tail}")
    version = neo4j_version(build)
    marker.write_text(version + "\n")
    return build


def neo4j_version(build: Path | None = None) -> str:
    """The Neo4j version the launcher is built against (asks the jar, not a constant)."""
    build = build or build_launcher()
    proc = subprocess.run(
        [_java(), "-cp", _classpath(build), LAUNCHER_CLASS, "--version"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    if proc.returncode != 0:
        raise ServerError(f"the Neo4j launcher did not report its version: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def _port_free(port: int, host: str = LISTEN_ADDRESS) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LISTEN_ADDRESS, 0))
        return int(s.getsockname()[1])


def _pid_is_launcher(pid: int) -> bool:
    """True if ``pid`` is alive and is our launcher (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return LAUNCHER_CLASS.encode() in cmdline


def _dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class ServerState:
    """What ``server.json`` records about a running embedded server."""

    pid: int
    port: int
    version: str
    started_at: float

    @property
    def uri(self) -> str:
        return f"bolt://{LISTEN_ADDRESS}:{self.port}"


class EmbeddedServer:
    """The embedded Neo4j of one project data directory. No I/O until a method is called."""

    def __init__(self, data_dir: Path, *, heap: str | None = None, page_cache: str | None = None) -> None:
        self.data_dir = data_dir
        self.home = data_dir / "neo4j"
        self.password_file = data_dir / "password"
        self.state_file = data_dir / "server.json"
        self.launcher_log = data_dir / "launcher.log"
        self.heap = heap or os.environ.get("MECHGRAPH_NEO4J_HEAP", "2g")
        self.page_cache = page_cache or os.environ.get("MECHGRAPH_NEO4J_PAGECACHE", "512m")

    # -- state -------------------------------------------------------------------------
    def state(self) -> ServerState | None:
        """The running server's state, or ``None`` (a stale state file is removed)."""
        try:
            raw = json.loads(self.state_file.read_text())
            st = ServerState(int(raw["pid"]), int(raw["port"]), str(raw["version"]), float(raw["started_at"]))
        except (OSError, ValueError, KeyError):
            return None
        if not _pid_is_launcher(st.pid):
            self.state_file.unlink(missing_ok=True)
            return None
        return st

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise DatabaseUnavailableError(
                f"the embedded Neo4j in {self.data_dir} has never been started: run `mechgraph db start`"
            ) from None

    def settings(self) -> Neo4jSettings:
        st = self.state()
        if st is None:
            raise DatabaseUnavailableError(
                f"the embedded Neo4j server ({self.data_dir}) is not running: start it with `mechgraph db start`, "
                "or point NEO4J_URI/NEO4J_PASSWORD at a server"
            )
        return Neo4jSettings(uri=st.uri, user="neo4j", password=self.password(), embedded=True)

    def _ensure_password(self) -> None:
        if self.password_file.exists():
            mode = stat.S_IMODE(self.password_file.stat().st_mode)
            if mode & 0o077:
                raise ServerError(f"{self.password_file} is readable by others (mode {mode:o}): chmod 600 it")
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL + 0600 at creation: the secret never exists with wider permissions.
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, *, port: int | None = None, timeout: float = 180.0) -> tuple[ServerState, bool]:
        """Start the server unless it is running; wait until Bolt answers.

        Returns ``(state, started)`` where ``started`` is False if it was already running.
        """
        st = self.state()
        if st is not None:
            return st, False
        build = build_launcher()
        version = (build / "BUILD-OK").read_text().strip()
        self._ensure_password()
        port = self._choose_port(port)
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            _java(), *_jvm_flags(self.heap), "-cp", _classpath(build), LAUNCHER_CLASS,
            "--home", str(self.home), "--bolt-port", str(port), "--listen-address", LISTEN_ADDRESS,
            "--password-file", str(self.password_file), "--page-cache", self.page_cache,
        ]
        with open(self.launcher_log, "w") as logfh:
            # A new session: the server outlives this process and ignores the terminal's ^C.
            proc = subprocess.Popen(cmd, stdout=logfh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        st = ServerState(proc.pid, port, version, time.time())
        self._wait_ready(proc, timeout)
        self.state_file.write_text(json.dumps(st.__dict__) + "\n")
        return st, True

    def _choose_port(self, port: int | None) -> int:
        port = port or bolt_port_setting()
        if port is not None:
            if not _port_free(port):
                raise ServerError(f"port {port} on {LISTEN_ADDRESS} is in use: choose another with MECHGRAPH_BOLT_PORT")
            return port
        return DEFAULT_BOLT_PORT if _port_free(DEFAULT_BOLT_PORT) else free_port()

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.launcher_log.read_text(errors="replace")
            if READY_MARK in text:
                return
            code = proc.poll()
            if code is not None or ERROR_MARK in text:
                if code is None:
                    proc.terminate()
                    proc.wait(30)
                lines = [ln for ln in text.splitlines() if ln.strip()]
                why = next((ln for ln in lines if ERROR_MARK in ln), lines[-1] if lines else "no output")
                raise ServerError(f"the embedded Neo4j did not start: {why.replace(ERROR_MARK, '').strip()} "
                                  f"(log: {self.launcher_log})")
            time.sleep(0.25)
        proc.terminate()
        raise ServerError(f"the embedded Neo4j did not answer within {timeout:.0f}s (log: {self.launcher_log})")

    def stop(self, *, timeout: float = 120.0) -> bool:
        """Shut the DBMS down cleanly (SIGTERM runs Neo4j's shutdown). False if not running."""
        st = self.state()
        if st is None:
            return False
        os.kill(st.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_is_launcher(st.pid):
                self.state_file.unlink(missing_ok=True)
                return True
            time.sleep(0.2)
        raise ServerError(f"the embedded Neo4j (pid {st.pid}) did not stop within {timeout:.0f}s; "
                          f"see {self.home / 'logs'}")

    def store_size(self) -> int:
        """Bytes of the store files (``<home>/data``)."""
        return _dir_size(self.home / "data")


def ensure_running(data_dir: Path) -> ServerState | None:
    """Start the embedded server of ``data_dir`` (if it is not up) unless ``NEO4J_URI`` names
    another server; its state, or ``None`` for an external server. Every command that writes
    or reads the graph calls this before connecting."""
    if external_settings() is not None:
        return None
    state, _ = EmbeddedServer(data_dir).start()
    return state
