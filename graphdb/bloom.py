"""A Neo4j Bloom perspective generated from the schema (``mechgraph db bloom-perspective``).

Bloom's perspective file format is not documented. The structure written here follows
perspective files and perspective generators in public repositories (Bloom 2.x exports:
``categories`` with ``labels``, ``color``, ``captions`` and ``styleRules``; ``relationshipTypes``
with ``size`` and ``styleRules``; ``templates`` for search phrases with ``text``, ``cypher`` and
``params``; a ``palette``; ``metadata.indexes``). It has not been imported into Bloom here (Bloom
needs Neo4j Desktop or an Enterprise server): treat it as a starting point that Bloom's import
fills in, not as a validated export.

What it holds, all derived from :mod:`graphdb.schema` and :mod:`graphdb.keys`:

- a category per label (caption ``key``; graph nodes also show ``layer``), each its own colour;
- a type per relationship type; ``ATTRIBUTES_TO`` drawn with width by ``abs_weight`` and
  coloured by the sign of ``weight``;
- a search phrase per analyst library query given (its Cypher, its parameters as ``$name``).

:func:`schema_vocabulary` is what a perspective may name: the test checks the file against it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graphdb.keys import KEY_PARTS
from graphdb.schema import GRAPH_NODE_LABELS, INDEXES, REL_IDENTITY, Label, Rel

BLOOM_FORMAT_VERSION = "2.x"
#: Neo4j's own default palette (the one Bloom and Browser start from).
PALETTE = ("#FFE081", "#C990C0", "#F79767", "#57C7E3", "#F16667", "#D9C8AE", "#8DCC93", "#ECB5C9",
           "#4C8EDA", "#FFC454", "#DA7194", "#569480", "#848484", "#D9D9D9", "#A5ABB6", "#6DCE9E",
           "#B07AA1", "#9C755F", "#76B7B2", "#E15759")   # more colours than labels: one each
#: The edge properties every attribution edge has (graphdb/schema.py's module docstring).
ATTRIBUTION_PROPERTIES = ("weight", "abs_weight", "model", "checkpoint", "task", "run", "granularity")
_PARAM = re.compile(r"\$([A-Za-z_]\w*)")
# A fixed namespace: the same schema gives the same ids, so a regenerated file diffs cleanly.
_NS = uuid.UUID("6f1c1a52-7c1e-4b8e-9c55-6d0b3e1f4a10")


@dataclass(frozen=True)
class SearchPhrase:
    """An analyst query offered as a Bloom search phrase."""

    name: str
    summary: str
    cypher: str
    params: dict[str, str]   # name -> Bloom data type ("String", "Integer", "Float", "Boolean")


def schema_vocabulary() -> dict[str, set[str]]:
    """The labels, relationship types and properties the schema defines."""
    node_props = {"key", "nid", "name", "layer"}
    for parts in KEY_PARTS.values():
        node_props.update(parts)
    rel_props = set(ATTRIBUTION_PROPERTIES)
    for _, target, props in INDEXES:
        (rel_props if target.startswith("()") else node_props).update(props)
    for props in REL_IDENTITY.values():
        rel_props.update(props)
    rel_props.update({"share", "score"})   # IN_HEAD {share}, MATCHES {score} (schema docstring)
    return {"labels": {str(label) for label in Label}, "relationship_types": {str(r) for r in Rel},
            "node_properties": node_props, "relationship_properties": rel_props}


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "|".join(parts)))


def _category(i: int, label: Label) -> dict[str, Any]:
    props = ["key", *(["layer"] if label in GRAPH_NODE_LABELS else []), *KEY_PARTS.get(label, ())]
    props = list(dict.fromkeys(props))
    return {
        "id": i + 1, "name": str(label), "labels": [str(label)],
        "color": PALETTE[i % len(PALETTE)], "icon": "no-icon", "size": 1, "textSize": 1, "textAlign": "top",
        "properties": [{"name": p, "exclude": False, "dataType": "number" if p in ("layer", "index", "nid") else "string"}
                       for p in props],
        "captions": [{"key": "key", "type": "property", "isCaption": True, "inTooltip": True, "styles": []}]
                    + ([{"key": "layer", "type": "property", "isCaption": False, "inTooltip": True, "styles": []}]
                       if label in GRAPH_NODE_LABELS else []),
        "captionKeys": ["key"], "styleRules": [], "createdAt": 0, "lastEditedAt": 0,
    }


def _relationship(rel: Rel) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(rel), "name": str(rel), "color": "#A5ABB6", "size": 1, "textSize": 1,
                           "textAlign": "top", "properties": [], "captions": [], "captionKeys": [], "styleRules": []}
    if rel is Rel.ATTRIBUTES_TO:
        out["properties"] = [{"name": p, "exclude": False, "dataType": "number" if "weight" in p else "string"}
                             for p in ATTRIBUTION_PROPERTIES]
        out["captions"] = [{"key": "weight", "type": "property", "isCaption": False, "inTooltip": True, "styles": []}]
        out["styleRules"] = [
            # width grows with |weight| (a range rule on abs_weight)
            {"id": _id("rule", "abs_weight"), "type": "range", "basedOn": "abs_weight", "dataType": "number",
             "condition": "range", "applySize": True, "applyColor": False, "applyCaption": False,
             "minValue": 0, "maxValue": 1, "sizeRange": {"min": 1, "max": 10}, "existingField": True, "priority": 0},
            # inhibitory edges red, excitatory blue (sign of weight)
            {"id": _id("rule", "weight<0"), "type": "single", "basedOn": "weight", "dataType": "number",
             "condition": "less-than", "value": 0, "applyColor": True, "color": "#DC2626", "applySize": False,
             "applyCaption": False, "existingField": True, "priority": 1},
            {"id": _id("rule", "weight>=0"), "type": "single", "basedOn": "weight", "dataType": "number",
             "condition": "greater-than-or-equal", "value": 0, "applyColor": True, "color": "#2563EB",
             "applySize": False, "applyCaption": False, "existingField": True, "priority": 2},
        ]
    return out


def _template(i: int, phrase: SearchPhrase) -> dict[str, Any]:
    used = list(dict.fromkeys(_PARAM.findall(phrase.cypher)))
    text = phrase.name.replace("_", " ") + "".join(f" ${p}" for p in used)
    return {"id": _id("template", phrase.name), "name": phrase.name, "text": text, "description": phrase.summary,
            "cypher": phrase.cypher.strip(), "createdAt": i, "isUpdateQuery": None, "hasCypherErrors": False,
            "params": [{"name": f"${p}", "dataType": phrase.params.get(p, "String"), "collapsed": False,
                        "suggestionLabel": None, "suggestionProp": None, "suggestionBoolean": False, "cypher": None}
                       for p in used]}


def perspective(phrases: Sequence[SearchPhrase] = (), *, name: str = "mechgraph") -> dict[str, Any]:
    """The perspective document (JSON-serialisable)."""
    # ``Node`` is the super-label of every graph node: a category for it would shadow theirs.
    labels = [label for label in Label if label is not Label.NODE]
    categories = [_category(i, label) for i, label in enumerate(labels)]
    return {
        "name": name, "id": _id("perspective", name), "version": BLOOM_FORMAT_VERSION, "type": "STANDARD_PERSPECTIVE",
        "createdAt": 0, "lastEditedAt": 0,
        "categories": categories,
        "labels": {c["name"]: [{"propertyKey": p["name"], "type": c["name"], "dataType": p["dataType"]}
                               for p in c["properties"]] for c in categories},
        "relationshipTypes": [_relationship(r) for r in Rel],
        "templates": [_template(i, p) for i, p in enumerate(phrases)],
        "sceneActions": [], "hiddenRelationshipTypes": [], "hiddenCategories": [],
        "hideUncategorisedData": False, "parentPerspectiveId": None,
        "palette": {"colors": list(PALETTE), "currentIndex": len(categories) % len(PALETTE)},
        "metadata": {"pathSegments": [],
                     "indexes": [{"label": str(label), "type": "native",
                                  "propertyKeys": [{"key": "key", "metadataProp": False}]} for label in labels]},
    }
