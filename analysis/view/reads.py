"""The explorer's reads: one ``.cypher`` file per query under ``cypher/``, each answering one page.

Every query takes its values as parameters; ``'*'`` means "any" for the filter parameters. The
page size of every read is clamped here (:data:`MAX_NODES`, :data:`MAX_EDGES`), whatever the
client asks for, so one request costs at most a page of the store however large it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from graphdb.connection import Database
from mechgraph.errors import ConfigError

CYPHER_DIR = Path(__file__).parent / "cypher"
#: The most nodes / edges one request returns.
MAX_NODES = 500
MAX_EDGES = 2000
ANY = "*"

_PARAM = re.compile(r"\$([A-Za-z_]\w*)")


@cache
def query_text(name: str) -> str:
    """The text of ``cypher/<name>.cypher``."""
    path = CYPHER_DIR / f"{name}.cypher"
    if not path.is_file():
        raise ConfigError(f"the explorer has no query {name!r}")
    return path.read_text()


def query_params(name: str) -> set[str]:
    """The ``$parameters`` a query uses (outside its ``//`` header)."""
    body = "\n".join(ln for ln in query_text(name).splitlines() if not ln.lstrip().startswith("//"))
    return set(_PARAM.findall(body))


def run(db: Database, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run one explorer query; every parameter it uses must be given, and no other."""
    want = query_params(name)
    if set(params) != want:
        raise ConfigError(f"query {name} takes {sorted(want)}, got {sorted(params)}")
    return db.read(query_text(name), dict(params))


def clamp(limit: int, most: int) -> int:
    """A page size between 1 and ``most``."""
    return max(1, min(int(limit), most))


@dataclass(frozen=True)
class Filters:
    """The explorer's edge filters (``'*'`` = any)."""

    model: str = ANY
    checkpoint: str = ANY
    task: str = ANY
    run: str = ANY
    granularity: str = ANY
    min_abs_weight: float = 0.0

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "checkpoint": self.checkpoint, "task": self.task, "run": self.run,
                "granularity": self.granularity, "min_abs_weight": float(self.min_abs_weight)}


def describe_nodes(db: Database, keys: list[str], group_run: str = ANY) -> list[dict[str, Any]]:
    """Kind, layer, description and community/ROI of each node key (at most a page of them)."""
    if not keys:
        return []
    return run(db, "nodes", {"keys": keys[:MAX_NODES], "group_run": group_run})


def edges_page(rows: list[dict[str, Any]], db: Database, group_run: str) -> dict[str, Any]:
    """Edge rows plus the description of their endpoints, as the client draws them."""
    keys = list(dict.fromkeys(k for r in rows for k in (r["source"], r["target"])))
    return {"nodes": describe_nodes(db, keys, group_run), "edges": rows}


def neighbourhood(db: Database, key: str, filters: Filters, *, limit: int, group_run: str = ANY) -> dict[str, Any]:
    """The strongest in- and out-edges of ``key`` under ``filters``: one page."""
    rows = run(db, "neighbourhood", {"key": key, **filters.params(), "limit": clamp(limit, MAX_NODES - 1)})
    page = edges_page(rows, db, group_run)
    if not any(n["key"] == key for n in page["nodes"]):
        page["nodes"] += describe_nodes(db, [key], group_run)
    return page


def task_edges(db: Database, filters: Filters, *, limit: int, group_run: str = ANY) -> dict[str, Any]:
    """The strongest edges of one task graph (model, checkpoint and task named): one page."""
    for part in ("model", "checkpoint", "task"):
        if getattr(filters, part) == ANY:
            raise ConfigError(f"a task graph needs a {part}")
    rows = run(db, "task_edges", {**filters.params(), "limit": clamp(limit, MAX_NODES // 2)})
    return edges_page(rows, db, group_run)


def prompt_graph(db: Database, prompt: str, *, node_threshold: float, min_abs_weight: float,
                 node_limit: int, edge_limit: int, group_run: str = ANY) -> dict[str, Any]:
    """One page of a stored prompt graph: its most influential nodes and the strongest edges
    among them, plus the :Prompt's own properties."""
    head = run(db, "prompts_one", {"prompt": prompt})
    if not head:
        raise ConfigError(f"no stored prompt graph {prompt!r}")
    nodes = run(db, "prompt_nodes", {"prompt": prompt, "node_threshold": float(node_threshold),
                                     "group_run": group_run, "limit": clamp(node_limit, MAX_NODES)})
    edges = run(db, "prompt_edges", {"prompt": prompt, "keys": [n["key"] for n in nodes],
                                     "min_abs_weight": float(min_abs_weight),
                                     "limit": clamp(edge_limit, MAX_EDGES)})
    return {"prompt": head[0]["props"], "nodes": nodes, "edges": edges}
