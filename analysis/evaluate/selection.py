"""Masks from the graph store: which stored edges the evaluator runs.

A selection names edges in Neo4j; it never guesses a graph. The edges come from

* one run's edges of one task at one granularity (``run_edges``: ``feature``, ``head`` or
  ``roi``), strongest first, at or above ``min_abs_weight``; or
* a query (``query`` with ``params``) returning ``source`` and ``target`` keys (and optionally
  ``weight``: then the rows are sorted by |weight|, strongest first): a library query by name,
  or the user's own ``.cypher`` file by path, with the library's header (``// name:`` equal to
  the file's stem, ``// param``, ``// returns:``) so its parameters are declared, typed and
  checked the same way; it runs in a read transaction; or
* an edge list (``edges``): a CSV with a header, or a JSON list of objects (or ``{"edges":
  [...]}``), each edge's node keys under ``src`` and ``dst`` (``source``/``target`` also
  accepted) and optionally ``weight`` (then strongest first, else in file order);

then, optionally, restricted to one community or ROI (``group``, a :Community or :ROI key):
``within`` keeps the edges whose endpoints are both members (an edge into the output counts as
internal, so the group's links to the metric stay), ``touching`` the edges with at least one
member endpoint; and capped to the ``top_n`` strongest.

Coarse graphs (heads, ROIs) are run at feature level: a coarse node is the set of its features
(``coarse_members``), so a kept coarse edge A → B keeps every feature edge a → b with a in A
and b in B, and a coarse node outside the graph puts all its features at baseline. Nodes that
are not coarse (error nodes, the embedding, the output, features outside every head or ROI)
stand for themselves.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphdb.keys import parse_key
from graphdb.schema import Label
from mechgraph.errors import ConfigError
from queries.loader import get_query, parse_query, run_query

GRANULARITIES = ("feature", "head", "roi", "component")
#: (src slot, src index, dst slot, dst index)
Located = tuple[int, int, int, int]


@dataclass(frozen=True)
class EdgeSelection:
    """Which stored edges to run (module docstring)."""

    granularity: str = "feature"
    min_abs_weight: float = 0.0
    query: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    edges: str | None = None
    group: str | None = None
    touching: bool = False
    top_n: int | None = None

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if not self.min_abs_weight >= 0:  # NaN too
            raise ValueError(f"min_abs_weight must be >= 0, got {self.min_abs_weight}")
        if self.params and self.query is None:
            raise ValueError("--param values are for a --query; name the query")
        if self.top_n is not None and self.top_n < 1:
            raise ValueError(f"top_n must be at least 1, got {self.top_n}")
        if self.query is not None and self.edges is not None:
            raise ValueError("select edges with a query or an edge list, not both")
        if self.params and self.query is None:
            raise ValueError("--param goes with --query")
        if self.touching and self.group is None:
            raise ValueError("touching restricts to a community or ROI: name one")


@dataclass
class SelectedEdges:
    """The selected edges, strongest first: their stored keys and weights, and per edge the
    feature-level edges it stands for (one for a feature graph)."""

    sources: list[str]
    targets: list[str]
    weights: list[float]
    located: list[list[Located]]
    slot_of: dict[str, int]

    def __len__(self) -> int:
        return len(self.sources)

    def shape(self, budget: int) -> tuple[int, int]:
        """Nodes of the first ``budget`` edges (at the selection's granularity) and the number
        of edges the complete forward-ordered graph on them has (pairs in earlier → later slots)."""
        from collections import Counter

        keys = set(self.sources[:budget]) | set(self.targets[:budget])
        per_slot = sorted(Counter(self.slot_of[k] for k in keys).items())
        before, possible = 0, 0
        for _, n in per_slot:
            possible += before * n
            before += n
        return len(keys), possible


def select_edges(db: Any, selection: EdgeSelection, *, run: str, task: str, names: Any) -> SelectedEdges:
    """The edges ``selection`` names, located on the slots of ``names`` (a
    :class:`ingest.graph_rows.GraphNames` of the evaluated model checkpoint)."""
    if selection.query is not None:
        rows = _query_rows(db, selection.query, dict(selection.params))
        if rows and not {"source", "target"} <= set(rows[0]):
            raise ConfigError(f"query {selection.query} must return source and target keys, "
                              f"it returns {', '.join(rows[0])}")
        if rows and "weight" in rows[0]:
            rows.sort(key=lambda r: -abs(float(r["weight"] or 0.0)))
    elif selection.edges is not None:
        rows = read_edge_list(Path(selection.edges))
    else:
        rows = run_query(db, "run_edges", {"run": run, "task": task, "granularity": selection.granularity,
                                           "min_abs_weight": selection.min_abs_weight})
    described = (f"rows of query {selection.query}" if selection.query is not None
                 else f"edges in {selection.edges}" if selection.edges is not None
                 else f"{selection.granularity} edges of run {run}, {task}")
    if selection.group is not None:
        members = {r["member"] for r in run_query(db, "group_members", {"key": selection.group})}
        if not members:
            raise ConfigError(f"{selection.group} has no members: not a community or ROI key of this database")
        if selection.touching:
            rows = [r for r in rows if r["source"] in members or r["target"] in members]
        else:
            rows = [r for r in rows if r["source"] in members
                    and (r["target"] in members or parse_key(r["target"])[0] is Label.OUTPUT)]
        described += f" {'touching' if selection.touching else 'within'} {selection.group}"
    if selection.top_n is not None:
        rows = rows[:selection.top_n]
    if not rows:
        raise ConfigError(f"no {described} (|weight| >= {selection.min_abs_weight})")
    # component graphs are run as components (analysis/evaluate/components.py), not as feature sets
    coarse = {} if selection.granularity == "component" else _coarse_members(db, run, selection.granularity, rows)
    located, slot_of = [], {}
    for r in rows:
        try:
            srcs = [names.locate(k) for k in coarse.get(r["source"], [r["source"]])]
            dsts = [names.locate(k) for k in coarse.get(r["target"], [r["target"]])]
        except (ConfigError, KeyError, ValueError) as e:
            raise ConfigError(f"edge {r['source']} -> {r['target']} of the {described}: {e}") from None
        slot_of[r["source"]], slot_of[r["target"]] = srcs[0][0], dsts[0][0]
        located.append([(s, u, m, d) for s, u in srcs for m, d in dsts if s < m])
    return SelectedEdges(sources=[r["source"] for r in rows], targets=[r["target"] for r in rows],
                         weights=[float(r.get("weight") or 0.0) for r in rows], located=located,
                         slot_of=slot_of)


def _coarse_members(db: Any, run: str, granularity: str, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Feature keys of every coarse (head or ROI) endpoint of ``rows``."""
    coarse = {k for r in rows for k in (r["source"], r["target"]) if parse_key(k)[0] in (Label.HEAD, Label.ROI)}
    if not coarse:
        return {}
    kinds = {parse_key(k)[0] for k in coarse}
    out: dict[str, list[str]] = {}
    for kind in kinds:
        wanted = "head" if kind is Label.HEAD else "roi"
        for r in run_query(db, "coarse_members", {"run": run, "granularity": wanted}):
            out.setdefault(r["coarse"], []).append(r["member"])
    missing = sorted(coarse - set(out))
    if missing:
        raise ConfigError(f"{len(missing)} coarse nodes have no member features in run {run}, e.g. {missing[0]}")
    return out


def selection_query(query: str) -> Any:
    """The :class:`queries.loader.Query` a ``--query`` names: a library query by name, or a
    ``.cypher`` file by path with the library's header (QueryError on a malformed header)."""
    if not query.endswith(".cypher"):
        return get_query(query)
    path = Path(query).expanduser()
    if not path.is_file():
        raise ConfigError(f"query file {path} does not exist")
    return parse_query(path)


def _query_rows(db: Any, query: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of a library query (by name) or of a ``.cypher`` file with the library's header."""
    if not query.endswith(".cypher"):
        return run_query(db, query, params)
    q = selection_query(query)
    path = Path(query).expanduser()
    rows = db.read(q.text, q.bind(params))
    if rows and set(q.returns) != set(rows[0]):
        raise ConfigError(f"{path.name}: header says it returns {', '.join(q.returns)}, the query returns "
                          f"{', '.join(rows[0])}")
    return rows


def read_edge_list(path: Path) -> list[dict[str, Any]]:
    """``[{source, target, weight?}]`` from a CSV or JSON edge list (module docstring)."""
    if not path.is_file():
        raise ConfigError(f"edge list {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not JSON ({e})") from None
        raw = raw.get("edges") if isinstance(raw, dict) else raw
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise ConfigError(f"{path}: expected a list of edge objects (or {{\"edges\": [...]}})")
    else:
        raw = list(csv.DictReader(text.splitlines()))
    rows = []
    for i, r in enumerate(raw, 1):
        src, dst = r.get("src", r.get("source")), r.get("dst", r.get("target"))
        if not src or not dst:
            raise ConfigError(f"{path}: edge {i} needs node keys under src and dst, it has {', '.join(r) or 'nothing'}")
        weight = r.get("weight")
        try:
            weight = None if weight in (None, "") else float(weight)
        except ValueError:
            raise ConfigError(f"{path}: edge {i} has weight {weight!r}, not a number") from None
        rows.append({"source": str(src).strip(), "target": str(dst).strip(), "weight": weight})
    if rows and all(r["weight"] is not None for r in rows):
        rows.sort(key=lambda r: -abs(r["weight"]))
    return rows
