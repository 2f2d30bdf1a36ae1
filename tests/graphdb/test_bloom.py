"""The Bloom perspective (graphdb/bloom.py, `mechgraph db bloom-perspective`): everything it
names exists in the schema; a category per label; edge width by abs_weight; the library
queries as search phrases."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from analysis.cli import app
from graphdb.bloom import perspective, schema_vocabulary
from graphdb.schema import Label, Rel
from queries.loader import library


def _names(doc: dict[str, Any]) -> dict[str, set[str]]:
    """Every label, relationship type and property the perspective refers to."""
    labels = {lab for c in doc["categories"] for lab in c["labels"]} | set(doc["labels"])
    labels |= {i["label"] for i in doc["metadata"]["indexes"]}
    node_props = {p["name"] for c in doc["categories"] for p in c["properties"]}
    node_props |= {cap["key"] for c in doc["categories"] for cap in c["captions"]}
    node_props |= {p["propertyKey"] for props in doc["labels"].values() for p in props}
    node_props |= {k["key"] for i in doc["metadata"]["indexes"] for k in i["propertyKeys"]}
    rels = {r["name"] for r in doc["relationshipTypes"]} | set(doc["hiddenRelationshipTypes"])
    rel_props = {p["name"] for r in doc["relationshipTypes"] for p in r["properties"]}
    rel_props |= {cap["key"] for r in doc["relationshipTypes"] for cap in r["captions"]}
    rel_props |= {rule["basedOn"] for r in doc["relationshipTypes"] for rule in r["styleRules"]}
    for t in doc["templates"]:   # labels and types the search phrases' Cypher names
        labels |= set(re.findall(r"\(\w*:(\w+)", t["cypher"]))
        rels |= set(re.findall(r"\[\w*:(\w+)", t["cypher"]))
    return {"labels": labels, "relationship_types": rels, "node_properties": node_props,
            "relationship_properties": rel_props}


def test_the_perspective_names_only_what_the_schema_has(tmp_path: Path) -> None:
    out = tmp_path / "mechgraph.bloom.json"
    result = CliRunner().invoke(app, ["db", "bloom-perspective", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    vocab = schema_vocabulary()
    for what, names in _names(doc).items():
        assert names <= vocab[what], f"{what} not in the schema: {sorted(names - vocab[what])}"
    assert {c["name"] for c in doc["categories"]} == {str(x) for x in Label if x is not Label.NODE}
    assert len({c["color"] for c in doc["categories"]}) == len(doc["categories"])
    assert {r["name"] for r in doc["relationshipTypes"]} == {str(r) for r in Rel}
    attr = next(r for r in doc["relationshipTypes"] if r["name"] == "ATTRIBUTES_TO")
    assert any(rule["basedOn"] == "abs_weight" and rule["applySize"] for rule in attr["styleRules"])
    assert [t["name"] for t in doc["templates"]] == list(library())
    hubs = next(t for t in doc["templates"] if t["name"] == "hubs")
    assert {p["name"] for p in hubs["params"]} == {"$model", "$checkpoint", "$task", "$run", "$granularity", "$limit"}
    assert next(p for p in hubs["params"] if p["name"] == "$limit")["dataType"] == "Integer"
    assert "wrote" in result.output and "search phrases" in result.output


def test_the_perspective_is_deterministic() -> None:
    assert perspective() == perspective()
