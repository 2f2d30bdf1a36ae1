"""The bulk path (ShardWriter -> Neo4j's real importer -> a new embedded store) against the
online writer on the session's server: the same rows must give the same nodes and relationships."""

from __future__ import annotations

import math
from typing import Any

import pytest

from graphdb.bulk.checksum import node_entities, relationship_entities, store_checksum
from graphdb.bulk.importer import prepare_import
from graphdb.bulk.load import FRESH_SERVER_RETRY, load_shards
from graphdb.bulk.shards import ShardWriter
from graphdb.connection import connect
from graphdb.embedded import EmbeddedServer, free_port
from graphdb.keys import node_key
from graphdb.sample import SampleSpec, sample_rows
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter, MissingEndpointError
from mechgraph.errors import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.neo4j]


def graph_calls() -> list[tuple[str, Any, list[dict[str, Any]], dict[str, Any]]]:
    """Writer calls ``(method, label or rel, rows, kwargs)``: the sample graph, then rows with
    the values CSV gets wrong most easily, a node written twice (labels and properties merge),
    and a column whose values change type between rows."""
    groups: dict[tuple[str, Any, Any], list[dict[str, Any]]] = {}
    for kind, what, row, ends in sample_rows(SampleSpec(seed=3)):
        groups.setdefault((kind, what, ends), []).append(row)
    calls: list[tuple[str, Any, list[dict[str, Any]], dict[str, Any]]] = []
    for (kind, what, ends), rows in sorted(groups.items(), key=lambda g: g[0][0] != "node"):
        if kind == "node":
            calls.append(("write_nodes", what, rows, {}))
        else:
            src, dst = ends or (Label.NODE, Label.NODE)
            calls.append(("write_relationships", what, rows, {"src": src, "dst": dst}))
    odd = [node_key(Label.INPUT, model="odd", checkpoint="final", name=f"t{i}") for i in range(4)]
    calls += [
        ("write_nodes", Label.INPUT, [
            {"key": odd[0], "text": "", "quote": 'say "hi", then, leave', "lines": "one\ntwo", "uni": "é ✓ 中"},
            {"key": odd[1], "tokens": ["a", "b c", 'd"e'], "empty": [], "ints": [1, 2, 3], "floats": [0.5, 2],
             "flags": [True, False], "none": None},
            {"key": odd[2], "big": 2**62, "tiny": 5e-324, "neg": -0.0, "flag": False},
            {"key": odd[3], "score": 1},
        ], {"common": {"model": "odd", "checkpoint": "final", "tag": "common"}}),
        # The same key again, as another graph label, with one property changed and one added.
        ("write_nodes", Label.OUTPUT, [{"key": odd[3], "score": 2.5, "task": "t"}], {}),
        ("write_relationships", Rel.ATTRIBUTES_TO, [
            {"src": odd[0], "dst": odd[1], "weight": 1},          # an int weight: stays an int
            {"src": odd[1], "dst": odd[2], "weight": -0.25, "note": None},
            {"src": odd[2], "dst": odd[3], "weight": 3.0, "note": "x", "task": "row-task"},
        ], {"common": {"model": "odd", "checkpoint": "final", "task": "t", "run": "r1"}}),
        ("write_relationships", Rel.ATTRIBUTES_TO, [{"src": odd[0], "dst": odd[1], "weight": 2.0}],
         {"common": {"model": "odd", "checkpoint": "final", "task": "t", "run": "r2", "granularity": "head"}}),
    ]
    return calls


def replay(writer: Any, calls: list[tuple[str, Any, list[dict[str, Any]], dict[str, Any]]]) -> None:
    for method, what, rows, kwargs in calls:
        getattr(writer, method)(what, [dict(r) for r in rows], **kwargs)


def schema_names(db: Any) -> tuple[set[str], set[str]]:
    constraints = {r["name"] for r in db.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    indexes = {r["name"] for r in db.read("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name")}
    return constraints, indexes


def test_bulk_load_equals_the_online_writer(db, tmp_path):
    calls = graph_calls()
    replay(GraphWriter(db, batch_size=7), calls)   # several batches per call
    online_nodes, online_rels = node_entities(db), relationship_entities(db)
    online = store_checksum(db)
    online_schema = schema_names(db)

    with ShardWriter(tmp_path / "shards", batch_size=7) as shards:
        replay(shards, calls)
    manifest = (tmp_path / "shards" / "manifest.json").read_text()
    assert '"multiline_fields": true' in manifest   # the "one\ntwo" value

    server = EmbeddedServer(tmp_path / "data", heap="512m", page_cache="64m")
    try:
        result = load_shards(tmp_path / "shards", tmp_path / "data", port=free_port(), server=server,
                             timeout=600, heap="512m", memory="256m")
        assert (result.imported.nodes, result.imported.relationships) == (online.nodes, online.relationships)
        with connect(server.settings(), retry=FRESH_SERVER_RETRY) as bulk:
            assert node_entities(bulk) == online_nodes
            assert relationship_entities(bulk) == online_rels
            assert store_checksum(bulk) == online
            # The importer creates no schema; the load does, so the store answers like the online one.
            assert schema_names(bulk) == online_schema
            got = bulk.read("MATCH (a {key: $k})-[r:ATTRIBUTES_TO {run: 'r1'}]->() "
                            "RETURN r.weight AS w, r.abs_weight AS a", {"k": node_key(Label.INPUT, model="odd",
                                                                                      checkpoint="final", name="t0")})
            assert got == [{"w": 1, "a": 1}] and isinstance(got[0]["w"], int)
        # Community imports into a new database only: a second load needs --force.
        server.stop()
        with pytest.raises(ConfigError, match="already holds a store"):
            prepare_import(tmp_path / "shards", server)
    finally:
        server.stop()


def test_relationship_to_a_node_never_written_is_refused(tmp_path):
    writer = ShardWriter(tmp_path / "shards")
    writer.write_nodes(Label.FEATURE, [{"key": "feature|a"}])
    with pytest.raises(MissingEndpointError, match="feature|b"):
        writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": "feature|a", "dst": "feature|b", "weight": 1.0}],
                                   common={"run": "r", "task": "t"})


def test_a_repeated_relationship_identity_is_refused(tmp_path):
    writer = ShardWriter(tmp_path / "shards")
    writer.write_nodes(Label.FEATURE, [{"key": "feature|a"}, {"key": "feature|b"}])
    row = {"src": "feature|a", "dst": "feature|b", "weight": 1.0}
    writer.write_relationships(Rel.ATTRIBUTES_TO, [row], common={"run": "r", "task": "t"})
    writer.write_relationships(Rel.ATTRIBUTES_TO, [row], common={"run": "r", "task": "t2"})   # another identity
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{**row, "weight": 2.0}], common={"run": "r", "task": "t"})
    with pytest.raises(ConfigError, match="1 relationship rows repeat"):
        writer.close()


def test_values_keep_their_types_in_the_shards(tmp_path):
    from graphdb.bulk.shards import format_value, value_type

    assert [value_type(v) for v in ("", 1, 1.0, True, [], [1, 2.5], ["a"])] == [
        "string", "long", "double", "boolean", "string[]", "double[]", "string[]"]
    assert format_value("double", 0.1) == "0.1" and float(format_value("double", 1 / 3)) == 1 / 3
    assert format_value("double", math.inf) == "Infinity"
    assert format_value("string", "") == '""' and format_value("string", None) == ""
    with pytest.raises(ConfigError, match="only strings"):
        value_type([1, "a"])


def test_relationships_as_columns_make_the_shards_rows_make(tmp_path):
    import numpy as np

    keys = [f"feature|m|c|h|d|{i}" for i in range(50)]
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    keep = np.unique(src * 50 + dst, return_index=True)[1]
    src, dst = src[keep], dst[keep]
    weight = rng.standard_normal(len(src)) ** 3
    weight[:3] = [-0.0, 5e-324, math.nan]   # NaN: format_value's spelling, not repr's
    layer = rng.integers(0, 4, len(src))
    common = {"model": "m", "checkpoint": "c", "task": "t", "run": "r"}
    out = {}
    for how in ("rows", "columns"):
        with ShardWriter(tmp_path / how, batch_size=64) as w:
            w.write_nodes(Label.FEATURE, [{"key": k, "index": i} for i, k in enumerate(keys)])
            if how == "rows":
                w.write_relationships(Rel.ATTRIBUTES_TO, [
                    {"src": keys[s], "dst": keys[d], "weight": x, "hop": h}
                    for s, d, x, h in zip(src.tolist(), dst.tolist(), weight.tolist(), layer.tolist())], common=common)
            else:
                w.write_relationship_columns(Rel.ATTRIBUTES_TO, [keys[s] for s in src], [keys[d] for d in dst],
                                             {"weight": weight, "hop": layer}, common=common)
        out[how] = {p.name: p.read_bytes() for p in (tmp_path / how).iterdir()}
    assert out["rows"] == out["columns"] and len(out["rows"]) == 3
    assert b"NaN" in out["columns"]["rels-0000-ATTRIBUTES_TO.csv"]
    with pytest.raises(MissingEndpointError):
        ShardWriter(tmp_path / "x").write_relationship_columns(Rel.ATTRIBUTES_TO, ["a"], ["b"], {"weight": [1.0]},
                                                               common=common)


def test_an_importer_failure_is_one_error_with_its_lines_and_no_server(tmp_path):
    """The importer runs in the server's JVM: when it fails, the load says so with the importer's
    own last lines, and no server is left running on the half-written store."""
    from graphdb.errors import ServerError

    with ShardWriter(tmp_path / "shards") as writer:
        writer.write_nodes(Label.FEATURE, [{"key": "feature|a"}, {"key": "feature|b"}])
        writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": "feature|a", "dst": "feature|b", "weight": 1.0}],
                                   common={"run": "r", "task": "t"})
    rels = next((tmp_path / "shards").glob("rels-*.csv"))
    header, row = rels.read_text().splitlines()
    rels.write_text(f"{header}\n{row}\n{row.replace(row.split(',')[0], '99', 1)}\n")   # a start node never written
    server = EmbeddedServer(tmp_path / "data", heap="512m", page_cache="64m")
    with pytest.raises(ServerError, match=r"(?s)Neo4j.s importer failed.*IMPORT FAILED"):
        load_shards(tmp_path / "shards", tmp_path / "data", port=free_port(), server=server, timeout=600, memory="256m")
    assert server.state() is None
    assert not (tmp_path / "data" / "import.args").exists()
