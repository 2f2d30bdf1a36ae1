"""The embedded server: loopback only, secret file permissions, idempotent start, clean stop."""

import ipaddress
import os
import stat
from pathlib import Path

import pytest

from graphdb.connection import connect
from graphdb.embedded import EmbeddedServer, free_port
from graphdb.errors import ServerError


def _listening_addresses(pid: int) -> list[str]:
    """Local addresses of the TCP sockets ``pid`` listens on, from /proc (no `ss` needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hexaddr, _ = local.split(":")
            raw = bytes.fromhex(hexaddr)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.append(str(ipaddress.ip_address(raw)))
    return out


def test_server_listens_on_loopback_only(embedded_server):
    addresses = _listening_addresses(embedded_server.state().pid)
    assert addresses, "the server listens on nothing?"
    for addr in addresses:
        ip = ipaddress.ip_address(addr)
        ip = ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip
        assert ip.is_loopback, f"listening on {addr}"


def test_password_file_is_private_and_not_a_default(embedded_server):
    mode = stat.S_IMODE(embedded_server.password_file.stat().st_mode)
    assert mode == 0o600
    assert len(embedded_server.password()) >= 24
    assert embedded_server.password() not in {"neo4j", "password"}


def test_start_is_idempotent(embedded_server):
    before = embedded_server.state()
    state, started = embedded_server.start()
    assert not started and state == before


def test_stop_then_restart_keeps_the_data(tmp_path):
    server = EmbeddedServer(tmp_path / "data", heap="512m", page_cache="64m")
    port = free_port()
    server.start(port=port)
    try:
        with connect(server.settings()) as db:
            db.write("CREATE (:Probe {x: 42})")
        assert server.stop()
        assert server.state() is None
        assert "MECHGRAPH-NEO4J STOPPED" in server.launcher_log.read_text()
        assert not server.stop()  # stopping a stopped server is a no-op
        server.start(port=port)
        with connect(server.settings()) as db:
            assert db.read("MATCH (p:Probe) RETURN p.x AS x") == [{"x": 42}]
    finally:
        server.stop()


def test_a_password_that_starts_with_a_dash_starts_a_new_store(tmp_path):
    """Generated passwords start with '-' one time in 64: on a new store it went to Neo4j's admin
    command as an unknown option ("Missing required parameter: '<password>'") and the start failed."""
    server = EmbeddedServer(tmp_path / "data", heap="512m", page_cache="64m")
    server.password_file.parent.mkdir(parents=True)
    fd = os.open(server.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("-starts-with-a-dash-0123456789abcdef\n")
    server.start(port=free_port())
    try:
        with connect(server.settings()) as db:
            assert db.read("RETURN 1 AS one") == [{"one": 1}]
    finally:
        server.stop()


def test_world_readable_password_file_is_refused(tmp_path):
    server = EmbeddedServer(tmp_path)
    server.password_file.write_text("secret-secret-secret\n")
    server.password_file.chmod(0o644)
    with pytest.raises(ServerError, match="readable by others"):
        server.start(port=free_port())


def test_load_csv_cannot_read_local_files(db, embedded_server):
    """Whoever can send Cypher must not read this user's files through the server (the
    embedded one; an external server is configured by its owner, see the README)."""
    from graphdb.errors import QueryError

    for url in ("file:///etc/passwd", "file:///passwd", "file:///../../../../etc/passwd"):
        with pytest.raises(QueryError) as refused:
            db.read(f"LOAD CSV FROM '{url}' AS row RETURN row LIMIT 1")
        assert refused.value.code == "Neo.ClientError.Statement.ExternalResourceFailed"
        assert "allow_csv_import_from_file_urls" in str(refused.value)


def test_the_project_loader_still_writes(db):
    """Refusing file URLs costs the project nothing: its writer sends rows over Bolt."""
    from graphdb.sample import SampleSpec, write_sample
    from graphdb.writer import GraphWriter

    counts = write_sample(GraphWriter(db), SampleSpec())
    assert sum(counts.values()) > 0
    assert db.read("MATCH (n:Node) RETURN count(n) AS n")[0]["n"] > 0


def test_wrong_passwords_do_not_lock_mechgraph_out(neo4j_settings, embedded_server):
    """A local process sending wrong passwords (Neo4j's default lock-out: 3 failures lock the
    user for 5 s) must not make mechgraph's own logins fail with AuthenticationRateLimit."""
    import threading
    import time

    from neo4j import GraphDatabase

    from graphdb.connection import connect

    stop = threading.Event()
    attempts = []

    def hammer():
        with GraphDatabase.driver(neo4j_settings.uri, auth=("neo4j", "not-the-password")) as bad:
            while not stop.is_set():
                try:
                    bad.verify_connectivity()
                except Exception as e:  # noqa: BLE001 - every attempt is meant to fail
                    attempts.append(type(e).__name__)
                time.sleep(0.05)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        start = time.monotonic()
        logins = 0
        while time.monotonic() - start < 3.0 or (len(attempts) < 6 and time.monotonic() - start < 15.0):
            with connect(neo4j_settings) as db:
                assert db.read("RETURN 1 AS x") == [{"x": 1}]
            logins += 1
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert len(attempts) >= 6 and set(attempts) == {"AuthError"}
    assert logins >= 5
