from graphdb.schema import INDEXES, KEYED_LABELS, init_schema


def _schema(db):
    constraints = {r["name"] for r in db.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    indexes = {(r["name"], r["state"]) for r in db.read("SHOW INDEXES YIELD name, state RETURN name, state")}
    return constraints, indexes


def test_init_twice_is_idempotent_and_everything_is_online(db):
    init_schema(db)
    first = _schema(db)
    init_schema(db)
    assert _schema(db) == first
    constraints, indexes = first
    assert {f"{label.lower()}_key" for label in KEYED_LABELS} <= constraints
    names = {name for name, _ in indexes}
    assert {name for name, _, _ in INDEXES} <= names
    assert all(state == "ONLINE" for _, state in indexes)


def test_task_subgraph_query_is_served_by_the_relationship_index(db):
    from queries.loader import get_query

    init_schema(db)
    q = get_query("task_subgraph")
    plan = db.driver.execute_query("EXPLAIN " + q.text, q.bind({"model": "m", "checkpoint": "c", "task": "t"}),
                                   database_=db.database).summary.plan
    def operators(p):
        yield p["operatorType"] if isinstance(p, dict) else p.operator_type
        for child in (p.get("children", []) if isinstance(p, dict) else p.children):
            yield from operators(child)
    ops = list(operators(plan))
    assert any("RelationshipIndexSeek" in op or "RelationshipIndexScan" in op for op in ops), ops
