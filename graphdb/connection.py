"""Opening the Neo4j driver and running Cypher, with driver errors turned into ours.

``connect()`` resolves the server (``NEO4J_URI`` if set, else the embedded one of the data
directory), opens the official driver and verifies connectivity, so that a server that is
down or a wrong password surfaces as one clear :class:`MechgraphError` at the start of a
command rather than as a driver traceback half-way through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphdb.embedded import EmbeddedServer
from graphdb.errors import DatabaseAuthError, DatabaseUnavailableError, QueryError
from graphdb.settings import Neo4jSettings, data_dir, external_settings

if TYPE_CHECKING:  # typing only: importing the driver at start-up would slow `--help`
    import neo4j


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
        raise QueryError(f"Cypher syntax error: {e.message}") from e
    except nx.ClientError as e:
        raise QueryError(f"Neo4j refused the query: {e.message} ({e.code})") from e


def resolve_settings(data: str | Path | None = None) -> Neo4jSettings:
    """``NEO4J_*`` from the environment if ``NEO4J_URI`` is set, else the embedded server's."""
    return external_settings() or EmbeddedServer(data_dir(data)).settings()


class Database:
    """A driver bound to one database. The caller owns the driver (``close()`` closes it)."""

    def __init__(self, driver: neo4j.Driver, settings: Neo4jSettings) -> None:
        self.driver = driver
        self.settings = settings

    @property
    def database(self) -> str | None:
        return self.settings.database

    def read(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a read query; return its records as dicts."""
        return self._run(query, params, write=False)

    def write(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a write query in one managed transaction; return its records as dicts."""
        return self._run(query, params, write=True)

    def _run(self, query: str, params: Mapping[str, Any] | None, *, write: bool) -> list[dict[str, Any]]:
        from neo4j import RoutingControl

        with driver_errors(self.settings):
            records, _, _ = self.driver.execute_query(
                query, dict(params or {}), database_=self.database,
                routing_=RoutingControl.WRITE if write else RoutingControl.READ,
            )
        return [r.data() for r in records]

    def execute_write(self, work: Any, *args: Any) -> Any:
        """Run ``work(tx, *args)`` as a managed (retried) write transaction."""
        with driver_errors(self.settings), self.driver.session(database=self.database) as session:
            return session.execute_write(work, *args)

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


def connect(settings: Neo4jSettings | None = None, *, data: str | Path | None = None) -> Database:
    """Open and verify a connection. Raises ``DatabaseUnavailableError`` or ``DatabaseAuthError``."""
    from neo4j import GraphDatabase

    settings = settings or resolve_settings(data)
    # Bolt over loopback to the embedded server needs no TLS; external URIs choose their own.
    # Server notifications (e.g. "property does not exist yet" on a fresh store) go no further
    # than WARNING: the library's queries are ours and tested, and on an empty or partly filled
    # database the informational ones are noise.
    driver = GraphDatabase.driver(settings.uri, auth=(settings.user, settings.password),
                                  notifications_min_severity="WARNING",
                                  notifications_disabled_classifications=["UNRECOGNIZED"])
    try:
        with driver_errors(settings):
            driver.verify_connectivity()
    except BaseException:
        driver.close()
        raise
    return Database(driver, settings)
