"""Order-independent checksums of a store's nodes and relationships.

Two stores hold the same graph when their node checksums (labels, key, every property with
its stored type: ``1`` and ``1.0`` differ) and relationship checksums (type, endpoint keys and
labels, every property) agree. Internal ids are left out: the importer and the online writer
number entities differently. Used to check a bulk load against an online write of the same rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_CYPHER = Path(__file__).parent / "cypher"


@cache
def _query(name: str) -> str:
    return (_CYPHER / f"{name}.cypher").read_text()


def _canon(value: Any) -> str:
    """A value with its type: repr tells ``1`` from ``1.0`` and ``'1'``, and lists by element."""
    return repr(value)


def node_entities(db: Any) -> Counter[str]:
    """Every node as one canonical line (sorted labels, sorted properties), with multiplicity."""
    return Counter(
        _canon((sorted(r["labels"]), sorted((k, _canon(v)) for k, v in r["props"].items())))
        for r in db.read(_query("checksum_nodes"))
    )


def relationship_entities(db: Any) -> Counter[str]:
    """Every relationship as one canonical line (type, endpoints, sorted properties)."""
    return Counter(
        _canon((r["type"], r["src"], sorted(r["src_labels"]), r["dst"], sorted(r["dst_labels"]),
                sorted((k, _canon(v)) for k, v in r["props"].items())))
        for r in db.read(_query("checksum_relationships"))
    )


def _digest(entities: Counter[str]) -> str:
    h = hashlib.sha256()
    for line in sorted(entities.elements()):
        h.update(hashlib.sha256(line.encode()).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Checksum:
    nodes: int
    relationships: int
    node_digest: str
    relationship_digest: str


def store_checksum(db: Any) -> Checksum:
    """Counts and SHA-256 digests of every node and relationship of ``db``."""
    nodes, rels = node_entities(db), relationship_entities(db)
    return Checksum(sum(nodes.values()), sum(rels.values()), _digest(nodes), _digest(rels))
