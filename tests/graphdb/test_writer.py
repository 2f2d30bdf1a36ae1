import pytest

from graphdb.keys import node_key
from graphdb.sample import SampleSpec, sample_rows, write_sample
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter, MissingEndpointError
from mechgraph.errors import ConfigError


@pytest.fixture(params=["procedure", "cypher"])
def path(request):
    """Every writer test runs on both transports; they must agree exactly."""
    return request.param


def counts(db):
    nodes = {r["label"]: r["n"] for r in db.read(
        "MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS n")}
    rels = {r["type"]: r["n"] for r in db.read("MATCH ()-[r]->() RETURN type(r) AS type, count(*) AS n")}
    return nodes, rels


def expected_counts(spec):
    nodes, rels = {}, {}
    for kind, what, _, _ in sample_rows(spec):
        bucket = nodes if kind == "node" else rels
        bucket[str(what)] = bucket.get(str(what), 0) + 1
    return nodes, rels


def test_writing_the_same_run_twice_leaves_identical_counts(db, path):
    spec = SampleSpec()
    writer = GraphWriter(db, batch_size=50, path=path)  # several batches per type
    write_sample(writer, spec)
    first = counts(db)
    write_sample(writer, spec)
    assert counts(db) == first
    exp_nodes, exp_rels = expected_counts(spec)
    nodes, rels = first
    assert rels == exp_rels
    for label, n in exp_nodes.items():
        assert nodes[label] == n
    graph_nodes = sum(n for label, n in exp_nodes.items()
                      if label in {"Feature", "ErrorNode", "Head", "Output"})
    assert nodes["Node"] == graph_nodes


def test_edge_properties_round_trip_exactly(db, path):
    spec = SampleSpec()
    write_sample(GraphWriter(db, path=path), spec)
    edges = [row for kind, what, row, _ in sample_rows(spec) if what == Rel.ATTRIBUTES_TO]
    stored = {(r["s"], r["d"], r["task"]): r for r in db.read(
        "MATCH (a)-[r:ATTRIBUTES_TO]->(b) RETURN a.key AS s, b.key AS d, r.task AS task, "
        "r.weight AS weight, r.abs_weight AS abs_weight, r.run AS run, r.checkpoint AS checkpoint")}
    assert len(stored) == len(edges)
    for e in edges:
        got = stored[(e["src"], e["dst"], e["task"])]
        assert (got["weight"], got["abs_weight"], got["run"], got["checkpoint"]) == (
            e["weight"], abs(e["weight"]), e["run"], e["checkpoint"])


def test_writer_streams_batches_instead_of_materialising(db, path):
    batch = 100
    pulled = 0

    def rows():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield {"key": node_key(Label.FEATURE, model="m", checkpoint="c", hook="h", dictionary="d", index=i),
                   "index": i}

    seen = []
    writer = GraphWriter(db, batch_size=batch, progress=lambda n: seen.append(pulled), path=path)
    assert writer.write_nodes(Label.FEATURE, rows()) == 1000
    # After each committed batch, the generator has been pulled only one batch further.
    assert seen == [batch * (i + 1) for i in range(10)]


def test_missing_endpoint_rolls_back_the_batch_and_raises(db, path):
    writer = GraphWriter(db, batch_size=10, path=path)
    keys = [node_key(Label.FEATURE, model="m", checkpoint="c", hook="h", dictionary="d", index=i) for i in range(3)]
    writer.write_nodes(Label.FEATURE, [{"key": k} for k in keys[:2]])
    rows = [{"src": keys[0], "dst": keys[1], "run": "r", "task": "t", "weight": 1.0},
            {"src": keys[0], "dst": keys[2], "run": "r", "task": "t", "weight": 2.0}]
    with pytest.raises(MissingEndpointError, match="1 of 2"):
        writer.write_relationships(Rel.ATTRIBUTES_TO, rows)
    assert db.read("MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"] == 0


def test_rows_without_identity_properties_are_refused_before_writing(db):
    writer = GraphWriter(db)
    with pytest.raises(ConfigError, match="identity property 'task'"):
        writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": "a", "dst": "b", "run": "r"}])
    with pytest.raises(ConfigError, match="no key"):
        writer.write_nodes(Label.FEATURE, [{"index": 1}])


def test_two_runs_between_the_same_nodes_are_two_edges(db, path):
    writer = GraphWriter(db, path=path)
    a, b = (node_key(Label.FEATURE, model="m", checkpoint="c", hook="h", dictionary="d", index=i) for i in range(2))
    writer.write_nodes(Label.FEATURE, [{"key": a}, {"key": b}])
    for run, task in [("r1", "t"), ("r2", "t"), ("r1", "u"), ("r1", "t")]:
        writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": a, "dst": b, "run": run, "task": task, "weight": 1.0}])
    assert db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN count(r) AS n")[0]["n"] == 3


def test_common_properties_and_update_in_place(db, path):
    writer = GraphWriter(db, path=path)
    a, b = (node_key(Label.FEATURE, model="m", checkpoint="c", hook="h", dictionary="d", index=i) for i in range(2))
    writer.write_nodes(Label.FEATURE, [{"key": a, "index": 0}, {"key": b, "index": 1}], common={"model": "m"})
    common = {"run": "r", "task": "t", "model": "m"}
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": a, "dst": b, "weight": -2.5}], common=common)
    writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": a, "dst": b, "weight": 0.25}], common=common)
    rows = db.read("MATCH (x)-[r:ATTRIBUTES_TO]->(y) RETURN x.model AS xm, x.index AS xi, r.weight AS w, "
                   "r.abs_weight AS aw, r.model AS m, r.run AS run")
    assert rows == [{"xm": "m", "xi": 0, "w": 0.25, "aw": 0.25, "m": "m", "run": "r"}]


def test_both_paths_write_the_same_graph(db):
    spec = SampleSpec(features_per_layer=12)
    snapshot = []
    for path in ("cypher", "procedure"):
        db.write("MATCH (n) DETACH DELETE n")
        write_sample(GraphWriter(db, path=path), spec)
        snapshot.append(sorted(
            (r["a"], r["t"], r["b"], sorted(r["p"].items())) for r in db.read(
                "MATCH (a)-[r]->(b) RETURN a.key AS a, type(r) AS t, b.key AS b, properties(r) AS p")))
    assert snapshot[0] == snapshot[1]


def test_every_written_node_carries_its_key_id(db, path):
    from graphdb.keys import key_id

    write_sample(GraphWriter(db, path=path), SampleSpec())
    rows = db.read("MATCH (n) RETURN n.key AS key, n.nid AS nid")
    assert rows and all(r["nid"] == key_id(r["key"]) for r in rows)
    # a caller's own nid is overridden: it is derived from the key in one place only
    key = node_key(Label.TASK, task="t")
    GraphWriter(db, path=path).write_nodes(Label.TASK, [{"key": key, "nid": 7}], common={"nid": 8})
    assert db.read("MATCH (n:Task {key: $k}) RETURN n.nid AS nid", {"k": key})[0]["nid"] == key_id(key)


def test_create_writes_what_merge_writes_without_searching(db, path):
    """``create=True`` gives new edges the properties MERGE would (identity, common, derived
    abs_weight); it does not look for an existing edge, so writing twice makes two."""
    writer = GraphWriter(db, batch_size=3, path=path)
    keys = [node_key(Label.FEATURE, model="m", checkpoint="c", hook="h", dictionary="d", index=i) for i in range(4)]
    writer.write_nodes(Label.FEATURE, [{"key": k} for k in keys])
    rows = [{"src": keys[i], "dst": keys[j], "weight": float(i - j)} for i in range(4) for j in range(4) if i != j]
    common = {"task": "t", "model": "m"}
    writer.write_relationships(Rel.ATTRIBUTES_TO, rows, common={**common, "run": "merged"})
    assert writer.write_relationships(Rel.ATTRIBUTES_TO, rows, common={**common, "run": "created"}, create=True) == 12

    def edges(run):
        return sorted((r["a"], r["b"], sorted((k, v) for k, v in r["p"].items() if k != "run")) for r in db.read(
            "MATCH (a)-[r:ATTRIBUTES_TO {run: $run}]->(b) RETURN a.key AS a, b.key AS b, properties(r) AS p",
            {"run": run}))

    assert edges("created") == edges("merged") and len(edges("created")) == 12
    writer.write_relationships(Rel.ATTRIBUTES_TO, rows[:2], common={**common, "run": "created"}, create=True)
    assert len(edges("created")) == 14
    with pytest.raises(MissingEndpointError):
        writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": keys[0], "dst": "nope", "weight": 1.0}],
                                   common={**common, "run": "x"}, create=True)
    assert edges("x") == []
