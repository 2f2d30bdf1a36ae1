"""Opening the Neo4j driver and running Cypher, with driver errors turned into ours.

``connect()`` resolves the server (``NEO4J_URI`` if set, else the embedded one of the data
directory), opens the official driver and verifies connectivity, so that a server that is
down or a wrong password surfaces as one clear :class:`MechgraphError` at the start of a
command rather than as a driver traceback half-way through it.

Transactions are retried here, not by the driver, because the two reasons to retry want
different patience (:class:`RetryPolicy`): a deadlock between concurrent writers is worth
half a minute of retries, but a server that does not answer at all is gone. The driver's one
budget (30 s of retries, 60 s to get a connection) made a dead or hung embedded server surface
after about a minute, behind a screenful of the driver's own retry warnings. Those log lines
are silenced too: every failure they describe reaches the caller as one ``MechgraphError``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from graphdb.embedded import EmbeddedServer
from graphdb.errors import DatabaseAuthError, DatabaseUnavailableError, QueryError
from graphdb.settings import Neo4jSettings, data_dir, external_settings

if TYPE_CHECKING:  # typing only: importing the driver at start-up would slow `--help`
    import neo4j

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Neo4j's answer while a user is locked out after repeated failed logins.
RATE_LIMITED = "Neo.ClientError.Security.AuthenticationRateLimit"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for a server, and to retry a transaction, before giving up.

    ``connect_timeout_s`` bounds one attempt to open a connection (TCP and the Bolt handshake):
    a hung server accepts the TCP connection and then never answers. ``unavailable_s`` is how
    long transactions keep retrying a server that does not answer (a pooled connection gone
    stale across a restart needs one quick retry; a cluster changing leader needs more).
    ``transient_s`` is how long deadlocks and other transient errors are retried.
    """

    connect_timeout_s: float
    unavailable_s: float
    transient_s: float = 30.0

    def __post_init__(self) -> None:
        if min(self.connect_timeout_s, self.unavailable_s, self.transient_s) <= 0:
            raise ValueError("RetryPolicy times must be positive")


#: The embedded server is on loopback: it answers within milliseconds or not at all.
EMBEDDED_RETRY = RetryPolicy(connect_timeout_s=3.0, unavailable_s=2.0)
#: A server elsewhere (Aura, a cluster) may be slow to reach or briefly without a leader.
EXTERNAL_RETRY = RetryPolicy(connect_timeout_s=15.0, unavailable_s=30.0)


def retry_policy(settings: Neo4jSettings) -> RetryPolicy:
    return EMBEDDED_RETRY if settings.embedded else EXTERNAL_RETRY


def quiet_driver_logs() -> None:
    """Keep the driver's own log lines (retry warnings, ``neo4j.io`` errors about defunct
    connections) off stderr: mechgraph reports each failure itself, once. Left alone when the
    application set a level on the ``neo4j`` logger, or logs at DEBUG (``mechgraph --debug``)."""
    driver_log = logging.getLogger("neo4j")
    if driver_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        driver_log.setLevel(logging.CRITICAL)


@contextmanager
def driver_errors(settings: Neo4jSettings) -> Iterator[None]:
    """Translate the driver's connection, auth and Cypher errors into mechgraph errors."""
    from neo4j import exceptions as nx

    try:
        yield
    except nx.AuthError as e:
        raise DatabaseAuthError(
            f"Neo4j at {settings.uri} rejected the credentials of user {settings.user!r}"
            + (" (check NEO4J_USER / NEO4J_PASSWORD)" if not settings.embedded else
               " (the embedded server's password file does not match its store)")
        ) from e
    except (nx.ServiceUnavailable, nx.SessionExpired) as e:
        hint = "is the server running? (`mechgraph db start`)" if settings.embedded else "check NEO4J_URI and that the server is up"
        raise DatabaseUnavailableError(f"cannot reach Neo4j at {settings.uri}: {hint}") from e
    except nx.CypherSyntaxError as e:
        raise QueryError(f"Cypher syntax error: {e.message}", code=e.code) from e
    except nx.ClientError as e:
        if e.code == RATE_LIMITED:
            raise DatabaseAuthError(
                f"Neo4j at {settings.uri} has locked user {settings.user!r} out after repeated failed logins "
                "(AuthenticationRateLimit): some client is using a wrong password; the lock lasts "
                "dbms.security.auth_lock_time (default 5s) after its last failed attempt"
            ) from e
        raise QueryError(f"Neo4j refused the query: {e.message} ({e.code})", code=e.code) from e


def retrying(policy: RetryPolicy, attempt: Callable[[], T]) -> T:
    """Run ``attempt()`` until it succeeds, retrying what the driver classes as retryable:
    an unreachable server for ``policy.unavailable_s``, anything else transient (deadlocks)
    for ``policy.transient_s``. ``attempt`` must be safe to repeat (one whole transaction)."""
    from neo4j import exceptions as nx

    start = time.monotonic()
    delay = 0.2
    while True:
        try:
            return attempt()
        except (nx.ServiceUnavailable, nx.SessionExpired) as e:
            budget, error = policy.unavailable_s, e
        except (nx.Neo4jError, nx.DriverError) as e:
            if not e.is_retryable():
                raise
            budget, error = policy.transient_s, e
        # Full jitter around the exponential step, as the driver does: concurrent writers that
        # deadlocked each other should not retry in lockstep.
        pause = delay * random.uniform(0.8, 1.2)
        if time.monotonic() - start + pause > budget:
            raise error
        log.info("transaction failed, retrying in %.1fs: %s", pause, error)
        time.sleep(pause)
        delay = min(delay * 2, 4.0)


def resolve_settings(data: str | Path | None = None) -> Neo4jSettings:
    """``NEO4J_*`` from the environment if ``NEO4J_URI`` is set, else the embedded server's."""
    return external_settings() or EmbeddedServer(data_dir(data)).settings()


class Database:
    """A driver bound to one database. The caller owns the driver (``close()`` closes it)."""

    def __init__(self, driver: neo4j.Driver, settings: Neo4jSettings, retry: RetryPolicy | None = None) -> None:
        self.driver = driver
        self.settings = settings
        self.retry = retry or retry_policy(settings)

    @property
    def database(self) -> str | None:
        return self.settings.database

    def read(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query; return its records as dicts."""
        return self._run(query, params, write=False)

    def read_columns(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """``read``, the values as the driver decoded them: ``read`` converts every value (each
        element of a list too) to plain Python in Python, seconds per million list elements; a
        query returning long lists of numbers (``analysis.subgraph``'s pulls) reads them as they are."""
        values = dict(params or {})
        return self._transaction(lambda tx: [dict(r) for r in tx.run(query, values)], write=False)

    def write(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a write query in one transaction (retried as a whole); return its records as dicts."""
        return self._run(query, params, write=True)

    def _run(self, query: str, params: Mapping[str, Any] | None, *, write: bool) -> list[dict[str, Any]]:
        values = dict(params or {})
        return self._transaction(lambda tx: [r.data() for r in tx.run(query, values)], write=write)

    def execute_write(self, work: Any, *args: Any) -> Any:
        """Run ``work(tx, *args)`` as one write transaction, retried as a whole (see ``retrying``)."""
        return self._transaction(lambda tx: work(tx, *args), write=True)

    def _transaction(self, work: Callable[[Any], T], *, write: bool) -> T:
        from neo4j import READ_ACCESS, WRITE_ACCESS

        def attempt() -> T:
            # The bookmark manager execute_query uses: a read after a write sees it, on a cluster too.
            with self.driver.session(database=self.database, default_access_mode=WRITE_ACCESS if write else READ_ACCESS,
                                     bookmark_manager=self.driver.execute_query_bookmark_manager) as session:
                with session.begin_transaction() as tx:
                    result = work(tx)
                    tx.commit()
                    return result

        with driver_errors(self.settings):
            return retrying(self.retry, attempt)

    def server_info(self) -> dict[str, str]:
        """Neo4j name, version and edition of the connected server."""
        rows = self.read("CALL dbms.components() YIELD name, versions, edition RETURN name, versions[0] AS version, edition")
        return rows[0] if rows else {}

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(settings: Neo4jSettings | None = None, *, data: str | Path | None = None,
            retry: RetryPolicy | None = None) -> Database:
    """Open and verify a connection. Raises ``DatabaseUnavailableError`` or ``DatabaseAuthError``."""
    from neo4j import GraphDatabase

    settings = settings or resolve_settings(data)
    retry = retry or retry_policy(settings)
    quiet_driver_logs()
    # Bolt over loopback to the embedded server needs no TLS; external URIs choose their own.
    # Server notifications (e.g. "property does not exist yet" on a fresh store) go no further
    # than WARNING: the library's queries are ours and tested, and on an empty or partly filled
    # database the informational ones are noise.
    driver = GraphDatabase.driver(settings.uri, auth=(settings.user, settings.password),
                                  notifications_min_severity="WARNING",
                                  notifications_disabled_classifications=["UNRECOGNIZED"],
                                  connection_timeout=retry.connect_timeout_s,
                                  connection_acquisition_timeout=retry.connect_timeout_s + 1.0,
                                  max_transaction_retry_time=retry.transient_s)
    try:
        with driver_errors(settings):
            driver.verify_connectivity()
    except BaseException:
        driver.close()
        raise
    return Database(driver, settings, retry)
