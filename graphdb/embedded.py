"""The embedded default: a local Neo4j Community server built from Maven Central artifacts.

``graphdb/server/`` holds a ``pom.xml`` and a small Java launcher around Neo4j's documented
embedded API (``DatabaseManagementServiceBuilder`` with the Bolt connector enabled).
:mod:`graphdb.launcher` builds it with Maven into the per-user cache; this module starts, stops
and inspects one server per project data directory:

    <data dir>/neo4j/          Neo4j home: store files (data/) and Neo4j's logs (logs/)
    <data dir>/password        generated on first start, mode 0600, never printed
    <data dir>/server.json     pid, port and version of the running server
    <data dir>/launcher.log    the launcher's own stdout/stderr
    <data dir>/start.lock      held (``flock``) by the one process starting or stopping it

Bolt listens on 127.0.0.1 only; HTTP is off; auth is on; LOAD CSV cannot read local files.

Several mechgraph processes may want the server at once (every graph command starts it if it
is down). Whoever takes ``start.lock`` first starts it, first-boot password setup included,
and records it in ``server.json`` once Bolt answers; the others wait on the lock, then find
it running and use it. The lock is the kernel's, so a starter that dies releases it.

The data directory is private (0700) and the server runs under umask 077, so the store, the
transaction logs and Neo4j's logs are readable by this user only; a start tightens what an
older version left group- or world-readable.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from graphdb.errors import DatabaseUnavailableError, ServerError
from graphdb.launcher import (IMPORTED_MARK, LAUNCHER_CLASS, LISTEN_ADDRESS, READY_MARK, build_launcher, classpath,
                              flock, free_port, java, jvm_flags, write_private)
from graphdb.settings import DEFAULT_BOLT_PORT, Neo4jSettings, bolt_port_setting, external_settings

log = logging.getLogger(__name__)

ERROR_MARK = "MECHGRAPH-NEO4J ERROR"
#: In the launcher's error line when the Bolt port was taken between our check and Neo4j's bind.
BIND_FAILURE = "Address already in use"
#: Mode bits nothing under the data directory may have: the store is this user's alone.
NOT_PRIVATE = 0o077


def _private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or tighten it to 0700; a clear error if it cannot be one."""
    if path.exists() and not path.is_dir():
        raise ServerError(f"the data directory {path} exists and is not a directory: "
                          "choose another with --data-dir or MECHGRAPH_HOME")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) != 0o700:
            path.chmod(0o700)
    except OSError as e:
        raise ServerError(f"cannot use {path} as the data directory: {e.strerror or e}") from None


def _tighten_tree(root: Path) -> int:
    """Remove group/other permission bits from ``root`` and everything under it (symlinks are
    left alone, not followed). Returns how many entries changed: stores written by an older
    mechgraph, or copied in, under a umask of 022."""
    changed = 0
    entries = [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in (*dirs, *files)]
    for p in (str(root), *entries):
        try:
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & NOT_PRIVATE:
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~NOT_PRIVATE)
                changed += 1
        except OSError as e:
            raise ServerError(f"cannot make {p} private: {e.strerror or e}") from None
    return changed


def _port_free(port: int, host: str = LISTEN_ADDRESS) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pid_is_launcher(pid: int, home: Path | None = None) -> bool:
    """True if ``pid`` is alive and is our launcher (of ``home``, if given): guards against pid
    reuse, by any process or by the launcher of another data directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    args = cmdline.split(b"\0")
    return LAUNCHER_CLASS.encode() in args and (home is None or str(home).encode() in args)


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
        self.lock_file = data_dir / "start.lock"
        self.heap = heap or os.environ.get("MECHGRAPH_NEO4J_HEAP", "2g")
        self.page_cache = page_cache or os.environ.get("MECHGRAPH_NEO4J_PAGECACHE", "512m")

    # -- state -------------------------------------------------------------------------
    def _recorded(self) -> tuple[ServerState, bool] | None:
        """``server.json`` as written: the state and whether the server had answered."""
        try:
            raw = json.loads(self.state_file.read_text())
            st = ServerState(int(raw["pid"]), int(raw["port"]), str(raw["version"]), float(raw["started_at"]))
            return st, bool(raw.get("ready", True))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _record(self, st: ServerState, *, ready: bool) -> None:
        write_private(self.state_file, json.dumps({**st.__dict__, "ready": ready}) + "\n")

    def state(self) -> ServerState | None:
        """The running server's state, or ``None`` (never started, stopped, gone, or still
        starting). Reads only: a stale ``server.json`` is cleared under the start lock."""
        found = self._recorded()
        if found is None or not found[1] or not _pid_is_launcher(found[0].pid, self.home):
            return None
        return found[0]

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
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
            if mode & NOT_PRIVATE:
                raise ServerError(f"{self.password_file} is readable by others (mode {mode:o}): chmod 600 it")
            return
        # O_EXCL + 0600 at creation: the secret never exists with wider permissions.
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, *, port: int | None = None, timeout: float = 180.0, import_args: Path | None = None,
              heap: str | None = None) -> tuple[ServerState, bool]:
        """Start the server unless it is running; wait until Bolt answers.

        ``import_args``: a bulk load first (:mod:`graphdb.bulk.load`): the launcher runs Neo4j's
        importer with these arguments in its own JVM, then starts on the new store; ``timeout``
        counts from the end of the import. ``heap``: this start's JVM heap instead of the server's.

        Safe to call from several processes at once: one starts the server, the others wait
        for it and return its state. Returns ``(state, started)`` where ``started`` is False
        if it was already running (or another process started it meanwhile).
        """
        _private_dir(self.data_dir)
        st = self.state()
        if st is not None:
            return st, False
        build = build_launcher()
        # The whole start, first-boot password setup included, happens under one lock. A
        # second starter used to launch a second JVM on the same store: Neo4j's store lock
        # failed it, and it then read that failure from the shared launcher.log and killed
        # the healthy first server (or interrupted its first boot).
        with flock(self.lock_file, timeout=timeout + 60,
                    waiting=f"another mechgraph process starting the embedded Neo4j of {self.data_dir}"):
            st = self.state()
            if st is not None:
                return st, False
            found = self._recorded()
            if found is not None and _pid_is_launcher(found[0].pid, self.home):
                # A starter was killed after spawning the server, before it answered: adopt it.
                st = found[0]
                self._wait_ready(st.pid, None, timeout)
                self._record(st, ready=True)
                return st, True
            self.state_file.unlink(missing_ok=True)
            automatic = port is None and bolt_port_setting() is None
            for attempt in range(3):
                try:
                    return self._launch(build, port, timeout, import_args, heap), True
                except ServerError as e:
                    # The default port was free when chosen, but a server of another data
                    # directory, started at the same moment, bound it first: take a free one.
                    if not automatic or BIND_FAILURE not in str(e) or attempt == 2:
                        raise
                    log.info("port taken while the server started; retrying on another port")
                    port = free_port()
            raise AssertionError("unreachable")

    def _launch(self, build: Path, port: int | None, timeout: float, import_args: Path | None = None,
                heap: str | None = None) -> ServerState:
        """Spawn the launcher and wait for READY. Caller holds the start lock."""
        version = (build / "BUILD-OK").read_text().strip()
        self._ensure_password()
        port = self._choose_port(port)
        self.home.mkdir(mode=0o700, exist_ok=True)
        # Only Neo4j's home is walked, not the whole data directory: that may be any directory
        # a user chose, and its 0700 already keeps others out of everything in it.
        changed = _tighten_tree(self.home)
        if changed:
            log.info("removed group/other permissions from %d entries under %s", changed, self.home)
        cmd = [
            java(), *jvm_flags(heap or self.heap, build), "-cp", classpath(build), LAUNCHER_CLASS,
            "--home", str(self.home), "--bolt-port", str(port), "--listen-address", LISTEN_ADDRESS,
            "--password-file", str(self.password_file), "--page-cache", self.page_cache,
            *(["--import-args", str(import_args)] if import_args is not None else []),
        ]
        fd = os.open(self.launcher_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older mechgraph created it 0644
        with os.fdopen(fd, "w") as logfh:
            # A new session: the server outlives this process and ignores the terminal's ^C.
            # umask 077: every store file, transaction log and Neo4j log is this user's alone.
            proc = subprocess.Popen(cmd, stdout=logfh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, umask=0o077)
        st = ServerState(proc.pid, port, version, time.time())
        # Recorded before it answers, so a starter killed while waiting leaves a server the next
        # one adopts (above) rather than a second JVM that fails on Neo4j's store lock.
        self._record(st, ready=False)
        try:
            self._wait_ready(st.pid, proc, timeout, importing=import_args is not None)
        except BaseException:
            if proc.poll() is None:  # e.g. ^C while waiting: do not leave a half-started server
                proc.terminate()
                proc.wait(60)
            self.state_file.unlink(missing_ok=True)
            raise
        self._record(st, ready=True)
        return st

    def _choose_port(self, port: int | None) -> int:
        port = port or bolt_port_setting()
        if port is not None:
            if not _port_free(port):
                raise ServerError(f"port {port} on {LISTEN_ADDRESS} is in use: choose another with MECHGRAPH_BOLT_PORT")
            return port
        return DEFAULT_BOLT_PORT if _port_free(DEFAULT_BOLT_PORT) else free_port()

    def _wait_ready(self, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float, *,
                    importing: bool = False) -> None:
        """Wait for the READY line of launcher ``pid`` (``proc`` if we spawned it). ``importing``:
        the clock starts when the importer has finished (it takes as long as the data needs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.launcher_log.read_text(errors="replace")
            if READY_MARK in text:
                return
            if importing and IMPORTED_MARK not in text:
                deadline = time.monotonic() + timeout
            if proc is not None:
                code = proc.poll()
            else:
                code = None if _pid_is_launcher(pid, self.home) else -1
            if code is not None or ERROR_MARK in text:
                if code is None:
                    self._terminate(pid, proc)
                lines = [ln for ln in text.splitlines() if ln.strip()]
                why = next((ln for ln in lines if ERROR_MARK in ln), lines[-1] if lines else "no output")
                raise ServerError(f"the embedded Neo4j did not start: {why.replace(ERROR_MARK, '').strip()} "
                                  f"(log: {self.launcher_log})")
            time.sleep(0.25)
        self._terminate(pid, proc)
        raise ServerError(f"the embedded Neo4j did not answer within {timeout:.0f}s (log: {self.launcher_log})")

    def _terminate(self, pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        elif _pid_is_launcher(pid, self.home):
            os.kill(pid, signal.SIGTERM)

    def stop(self, *, timeout: float = 120.0) -> bool:
        """Shut the DBMS down cleanly (SIGTERM runs Neo4j's shutdown). False if not running.

        Waits for a start in progress (the start lock) rather than racing it."""
        if not self.data_dir.is_dir():
            return False
        with flock(self.lock_file, timeout=timeout + 240,
                    waiting=f"another mechgraph process starting the embedded Neo4j of {self.data_dir}"):
            found = self._recorded()  # ready or not: a server whose starter was killed, too
            if found is None or not _pid_is_launcher(found[0].pid, self.home):
                self.state_file.unlink(missing_ok=True)
                return False
            st = found[0]
            os.kill(st.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not _pid_is_launcher(st.pid, self.home):
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
