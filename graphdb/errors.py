"""Errors of the database layer: the server, the connection, the query library.

All derive from :class:`mechgraph.errors.MechgraphError`, so the CLI prints them as one line.
"""

from __future__ import annotations

from mechgraph.errors import MechgraphError


class DatabaseUnavailableError(MechgraphError):
    """No Neo4j server answers at the configured address."""


class DatabaseAuthError(MechgraphError):
    """The Neo4j server rejected the credentials."""


class ServerError(MechgraphError):
    """The embedded Neo4j server could not be built, started or stopped."""


class QueryError(MechgraphError):
    """A library query is unknown, malformed, or was given bad parameters, or Neo4j refused it.

    ``code`` is Neo4j's status code (``Neo.ClientError...``) when the server refused it.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
