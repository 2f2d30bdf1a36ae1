"""The analyst query library: one ``.cypher`` file per query under ``queries/library/``.

Each file starts with a header of ``//`` comments that this loader parses::

    // name: task_subgraph                      (must equal the file name)
    // summary: one line for `mechgraph query list`
    // param model: string  free text after the type     (required: no default)
    // param limit: int = 1000  ...                      (optional, with a default)
    // param hops: int = 2 [1..3]  ...                   (optional, with an allowed range)
    // returns: source, target, weight

Types are ``string``, ``int`` (64-bit, as Neo4j stores integers), ``float`` (finite: NaN
compares false with everything, so it would silently match nothing) and ``bool``. Values always reach Neo4j as Cypher
parameters (``$name``), never spliced into the text; the loader checks that every ``$name``
in the body is declared and every declared parameter is used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from graphdb.connection import Database
from graphdb.errors import QueryError

LIBRARY_DIR = Path(__file__).parent / "library"

_TYPES: dict[str, type] = {"string": str, "int": int, "float": float, "bool": bool}
_PARAM_RE = re.compile(
    r"^param\s+(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>\w+)"
    r"(?:\s*=\s*(?P<default>[^\s\[]+))?(?:\s*\[(?P<lo>-?[\d.]+)\.\.(?P<hi>-?[\d.]+)\])?\s*(?P<doc>.*)$"
)
_USE_RE = re.compile(r"\$([A-Za-z_]\w*)")
#: Neo4j integers are signed 64-bit; the driver cannot send a larger Python int.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool
    default: Any = None
    low: float | None = None
    high: float | None = None
    doc: str = ""

    def convert(self, value: Any) -> Any:
        """Coerce a CLI string (or a Python value) to this parameter's type and check its range."""
        kind = _TYPES[self.type]
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                out: Any = value.lower() in {"true", "1", "yes"}
            elif kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                out = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise QueryError(f"parameter {self.name} must be {self.type}, got {_shown(value)}") from None
        if kind is int and not INT_MIN <= out <= INT_MAX:
            raise QueryError(f"parameter {self.name} must be a 64-bit integer "
                             f"({INT_MIN}..{INT_MAX}), got {_shown(value)}")
        if kind is float and not math.isfinite(out):
            raise QueryError(f"parameter {self.name} must be a finite number, got {_shown(value)}")
        if self.low is not None and self.high is not None and not self.low <= out <= self.high:
            raise QueryError(f"parameter {self.name} must be in {self.low:g}..{self.high:g}, got {out!r}")
        return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Query:
    name: str
    summary: str
    params: tuple[Param, ...]
    returns: tuple[str, ...]
    text: str
    path: Path

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert parameter values; fill defaults. Raises ``QueryError``."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise QueryError(f"query {self.name} has no parameter {', '.join(unknown)}; "
                             f"it takes {', '.join(known) or 'none'}")
        out = {}
        for p in self.params:
            if p.name in values:
                out[p.name] = p.convert(values[p.name])
            elif p.required:
                raise QueryError(f"query {self.name} needs --param {p.name}=<{p.type}> ({p.doc or 'required'})")
            else:
                out[p.name] = p.default
        return out


def parse_query(path: Path) -> Query:
    """Parse one library file. Raises ``QueryError`` on a malformed header."""
    text = path.read_text()
    fields: dict[str, str] = {}
    params: list[Param] = []
    for line in text.splitlines():
        if not line.startswith("//"):
            break
        body = line[2:].strip()
        if body.startswith("param "):
            m = _PARAM_RE.match(body)
            if not m or m["type"] not in _TYPES:
                raise QueryError(f"{path.name}: bad parameter line {line!r}")
            p = Param(m["name"], m["type"], required=m["default"] is None,
                      low=float(m["lo"]) if m["lo"] else None, high=float(m["hi"]) if m["hi"] else None,
                      doc=m["doc"].strip())
            if m["default"] is not None:
                p = Param(p.name, p.type, False, p.convert(m["default"]), p.low, p.high, p.doc)
            params.append(p)
        elif ":" in body:
            k, v = body.split(":", 1)
            fields[k.strip()] = v.strip()
    name = fields.get("name")
    if name != path.stem:
        raise QueryError(f"{path.name}: header `// name:` must be {path.stem!r}, found {name!r}")
    if "summary" not in fields or "returns" not in fields:
        raise QueryError(f"{path.name}: header needs `// summary:` and `// returns:` lines")
    cypher = "\n".join(ln for ln in text.splitlines() if not ln.startswith("//"))
    used = set(_USE_RE.findall(cypher))
    declared = {p.name for p in params}
    if used != declared:
        raise QueryError(f"{path.name}: parameters used {sorted(used)} but declared {sorted(declared)}")
    returns = tuple(c.strip() for c in fields["returns"].split(",") if c.strip())
    return Query(name, fields["summary"], tuple(params), returns, text, path)


@cache
def library() -> dict[str, Query]:
    """Every query in the library, by name."""
    return {q.name: q for q in (parse_query(p) for p in sorted(LIBRARY_DIR.glob("*.cypher")))}


def get_query(name: str) -> Query:
    try:
        return library()[name]
    except KeyError:
        raise QueryError(f"no query named {name!r}; `mechgraph query list` shows {len(library())} queries") from None


def run_query(db: Database, name: str, values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a library query with checked parameters; records as dicts in ``returns`` order."""
    query = get_query(name)
    rows = db.read(query.text, query.bind(values or {}))
    if rows and list(rows[0]) != list(query.returns):
        raise QueryError(f"{query.path.name}: header says it returns {list(query.returns)}, "
                         f"the query returns {list(rows[0])}")
    return rows
