"""The embedded server under faults: concurrent starts, a private store, a hung or killed server.

Every test here runs real processes against a real server of its own (not the session's):
two ``mechgraph db start`` at once on a fresh data directory, two automatic starts at once on
an existing one, the permissions of what the server writes, and how a command fails when the
server stops answering (SIGSTOP) or dies under an open connection (SIGKILL).

The tests share one data directory (module scope) because each server boot costs seconds of
CPU; each test that needs the server running starts it itself (a no-op when it is up), so any
one of them can run alone.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphdb.connection import connect
from graphdb.embedded import LAUNCHER_CLASS, EmbeddedServer, free_port
from graphdb.errors import DatabaseUnavailableError

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HEAP, PAGE_CACHE = "512m", "64m"
CLI = [sys.executable, "-c", "import sys; from analysis.cli import main; sys.argv[0] = 'mechgraph'; main()"]

#: One automatic start, as every graph command does it (ingest, evaluate, ...), then a query.
AUTO_START_AND_QUERY = """
import sys
from pathlib import Path
from graphdb.connection import connect
from graphdb.embedded import ensure_running
state = ensure_running(Path(sys.argv[1]))
with connect(data=sys.argv[1]) as db:
    n = db.read("MATCH (p:Probe) RETURN count(p) AS n")[0]["n"]
print(state.pid, n)
"""


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def env(port: int) -> dict[str, str]:
    """The environment of the mechgraph processes: this checkout's code, a small server, one
    fixed port (so that concurrent starters really compete for the same one)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
    out.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               MECHGRAPH_NEO4J_HEAP=HEAP, MECHGRAPH_NEO4J_PAGECACHE=PAGE_CACHE, MECHGRAPH_BOLT_PORT=str(port))
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh data directory as a umask of 022 leaves things: 0755, and a Neo4j home holding
    a world-readable directory and file (as an older mechgraph wrote its store)."""
    path = tmp_path_factory.mktemp("faults") / "data"
    (path / "neo4j" / "old").mkdir(parents=True)
    (path / "neo4j" / "old" / "store-file").write_text("written under umask 022\n")
    for p, mode in ((path, 0o755), (path / "neo4j", 0o755), (path / "neo4j" / "old", 0o755),
                    (path / "neo4j" / "old" / "store-file", 0o644)):
        p.chmod(mode)
    yield path
    server = EmbeddedServer(path)
    for pid in _launchers(server):  # SIGCONT a stopped one, so that stop() can stop it
        os.kill(pid, signal.SIGCONT)
    server.stop()


def _server(data_dir: Path) -> EmbeddedServer:
    return EmbeddedServer(data_dir, heap=HEAP, page_cache=PAGE_CACHE)


def _running(data_dir: Path, port: int) -> EmbeddedServer:
    server = _server(data_dir)
    server.start(port=port)
    return server


def _launchers(server: EmbeddedServer) -> list[int]:
    """Pids of every launcher JVM of this data directory, whether mechgraph recorded it or not."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if LAUNCHER_CLASS.encode() in args and str(server.home).encode() in args:
            pids.append(int(proc.name))
    return pids


def _concurrently(commands: list[list[str]], env: dict[str, str], timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_db_starts_on_a_fresh_data_dir_start_one_server(data_dir, env):
    """Before: both exited 1 with Neo4j's store-lock error and no server was left running."""
    server = _server(data_dir)
    assert server.state() is None and not (data_dir / "neo4j" / "data").exists()
    start_then_status = [sys.executable, "-c", "import subprocess, sys; cli = sys.argv[1:]; "
                         "subprocess.run(cli + ['db', 'start'], check=True); "
                         "subprocess.run(cli + ['db', 'status'], check=True)", *CLI, "--data-dir", str(data_dir)]
    results = _concurrently([start_then_status, start_then_status], env)
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "edition:     community" in r.stdout  # `db status` queried the server
    assert sorted(r.stdout.split()[2] for r in results) == ["already", "started"]
    state = server.state()
    assert state is not None and _launchers(server) == [state.pid]
    with connect(server.settings()) as db:
        db.write("CREATE (:Probe)")


def test_data_dir_and_everything_the_server_writes_are_private(data_dir, port):
    """Before: the data dir was 0755 and ~90 store, log and transaction-log files were 0644."""
    server = _running(data_dir, port)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / "neo4j" / "data" / "transactions").is_dir()  # the store really is there
    loose = [f"{stat.S_IMODE(p.lstat().st_mode):o} {p}" for p in (data_dir, *data_dir.rglob("*"))
             if not p.is_symlink() and p.lstat().st_mode & 0o077]
    assert loose == []
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600


def test_a_hung_server_fails_a_command_fast_with_one_line(data_dir, env, port):
    """SIGSTOP: the server still accepts TCP connections but never answers. Before: the
    command failed after 64 s (the driver's 60 s connection-acquisition timeout)."""
    server = _running(data_dir, port)
    pid = server.state().pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = subprocess.run([*CLI, "--data-dir", str(data_dir), "query", "run", "hubs",
                            "-p", "model=m", "-p", "checkpoint=c", "-p", "task=t"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode != 0
    # ~10 s: about 4 s of waiting for the handshake, the rest is starting Python on a busy CI box.
    assert elapsed < 12, f"took {elapsed:.1f}s"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mechgraph: error: cannot reach Neo4j"), r.stderr
    assert "WARNING" not in r.stderr and "Traceback" not in r.stderr


def test_a_killed_server_fails_the_next_query_fast_and_quietly(data_dir, port, caplog):
    """SIGKILL under an open connection, as when the server dies during a long command.
    Before: 33 s of driver retries, logged as five `WARNING neo4j.session` lines."""
    server = _running(data_dir, port)
    with connect(server.settings()) as db:
        assert db.read("RETURN 1 AS x") == [{"x": 1}]
        os.kill(server.state().pid, signal.SIGKILL)
        caplog.set_level(logging.INFO)
        t0 = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="cannot reach Neo4j"):
            db.read("RETURN 1 AS x")
        elapsed = time.monotonic() - t0
    assert elapsed < 5, f"took {elapsed:.1f}s"
    assert [r for r in caplog.records if r.name.startswith("neo4j")] == []


def test_two_automatic_starts_on_an_existing_data_dir_start_one_server(data_dir, env):
    """Two graph commands at once while the server is down (here: after a SIGKILL, so the
    store also needs recovery). Before: both failed and no server was left running."""
    server = _server(data_dir)
    server.stop()
    if not (data_dir / "neo4j" / "data").exists():
        pytest.skip("needs the store an earlier test of this module created")  # run alone with -k
    assert server.state() is None and _launchers(server) == []
    auto = [sys.executable, "-c", AUTO_START_AND_QUERY, str(data_dir)]
    results = _concurrently([auto, auto], env)
    for r in results:
        assert r.returncode == 0, r.stderr
    pids = {r.stdout.split()[0] for r in results}
    state = server.state()
    assert state is not None and pids == {str(state.pid)} and _launchers(server) == [state.pid]
    assert {r.stdout.split()[1] for r in results} == {"1"}  # the Probe of the first test survived


def test_a_data_dir_that_is_a_file_is_one_error_line(tmp_path, env):
    """Before: a FileExistsError traceback."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    r = subprocess.run([*CLI, "--data-dir", str(not_a_dir), "db", "start"],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"mechgraph: error: the data directory {not_a_dir} ")
    assert "not a directory" in lines[0] and "--data-dir or MECHGRAPH_HOME" in lines[0]


def test_a_default_port_taken_between_the_check_and_the_bind_moves_to_a_free_one(tmp_path, monkeypatch):
    """Two servers of different data directories started at once both found the default port
    free; the second one's bind failed and left no server. Now it retries on a free port."""
    import socket

    import graphdb.embedded as embedded

    monkeypatch.delenv("MECHGRAPH_BOLT_PORT", raising=False)
    with socket.socket() as taken:   # the other server, bound in between
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(embedded, "DEFAULT_BOLT_PORT", busy)
        checked = []
        real = embedded._port_free
        # the check ran before the other server bound: the default port looked free
        monkeypatch.setattr(embedded, "_port_free",
                            lambda p, host=embedded.LISTEN_ADDRESS: checked.append(p) or p == busy or real(p, host))
        server = _server(tmp_path / "data")
        try:
            st, started = server.start()
            assert started and st.port != busy and checked[0] == busy
            with connect(data=tmp_path / "data") as db:
                assert db.read("RETURN 1 AS one")[0]["one"] == 1
        finally:
            server.stop()
