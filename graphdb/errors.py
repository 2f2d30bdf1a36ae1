"""The project's exception hierarchy.

Every error a user can cause (bad input, server down, wrong password, a query that does not
exist) is raised as a subclass of :class:`MechgraphError` with a sentence the user can act on.
It lives in ``graphdb`` because that is the bottom layer: ``ingest``, ``queries`` and
``analysis`` all import it from here. The CLI turns these into one line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MechgraphError(Exception):
    """Root of every error mechgraph raises on purpose."""


class ConfigError(MechgraphError, ValueError):
    """A setting, option or parameter value is invalid."""


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
