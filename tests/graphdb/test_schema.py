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


def _drop_schema(db):
    for r in db.read("SHOW CONSTRAINTS YIELD name RETURN name"):
        db.write(f"DROP CONSTRAINT {r['name']}")
    for r in db.read("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"):
        db.write(f"DROP INDEX {r['name']}")


def test_concurrent_initialisers_on_a_fresh_schema_all_succeed(db, neo4j_settings):
    """Two ingests starting at once on a fresh store both run init_schema: neither may fail
    with EquivalentSchemaRuleAlreadyExists (before the fix, 10 of 20 initialisers did)."""
    import threading

    from graphdb.connection import connect

    workers = 4
    conns = [connect(neo4j_settings) for _ in range(workers)]
    failures: list[str] = []
    try:
        for _ in range(3):
            _drop_schema(db)
            barrier = threading.Barrier(workers)

            def initialise(conn):
                barrier.wait()
                try:
                    init_schema(conn)
                except Exception as e:  # noqa: BLE001 - collected and asserted on below
                    failures.append(f"{type(e).__name__}: {e}")

            threads = [threading.Thread(target=initialise, args=(c,)) for c in conns]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        for c in conns:
            c.close()
        init_schema(db)  # whatever happened, leave the complete schema for the other tests
    assert failures == []
    constraints, indexes = _schema(db)
    assert {f"{label.lower()}_key" for label in KEYED_LABELS} <= constraints
    assert {name for name, _, _ in INDEXES} <= {name for name, _ in indexes}
