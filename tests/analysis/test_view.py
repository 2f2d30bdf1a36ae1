"""`mechgraph view`'s server against a real Neo4j: token and host checks, bounded pages, the
prompt graph (a small one written with the prompt-graph schema), search, neighbourhood,
matches, evaluations and the kill table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from analysis.view import reads  # noqa: E402
from analysis.view.server import TOKEN_HEADER, create_app, vendor_files  # noqa: E402
from graphdb.connection import Database, connect  # noqa: E402
from graphdb.settings import Neo4jSettings  # noqa: E402
from tests.analysis.view_store import COMMUNITY_RUN, ViewStore, write_view_store  # noqa: E402

TOKEN = "test-token-123"

try:
    vendor_files()
    HAVE_JS = ""
except Exception as e:  # noqa: BLE001 - the reason is the skip message
    HAVE_JS = str(e)


@pytest.fixture(scope="module")
def view_db(neo4j_settings: Neo4jSettings) -> Iterator[tuple[Database, ViewStore]]:
    """One store for the module (the tests only read it): written once, not per test."""
    with connect(neo4j_settings) as database:
        database.write("MATCH (n) DETACH DELETE n")
        yield database, write_view_store(database)


@pytest.fixture()
def store(view_db: tuple[Database, ViewStore]) -> ViewStore:
    return view_db[1]


@pytest.fixture()
def client(view_db: tuple[Database, ViewStore]) -> Iterator[TestClient]:
    if HAVE_JS:
        pytest.skip(HAVE_JS)
    with TestClient(create_app(view_db[0], TOKEN), base_url="http://127.0.0.1") as c:
        c.headers[TOKEN_HEADER] = TOKEN
        yield c


def test_every_query_file_takes_declared_parameters() -> None:
    for path in reads.CYPHER_DIR.glob("*.cypher"):
        text = path.read_text()
        assert text.startswith("//"), f"{path.name} needs a header comment"
        header = " ".join(ln for ln in text.splitlines() if ln.startswith("//"))
        for p in reads.query_params(path.stem):
            assert f"${p}" in header, f"{path.name}: ${p} is not named in its header"


def test_token_and_host_are_checked(view_db: tuple[Database, ViewStore]) -> None:
    if HAVE_JS:
        pytest.skip(HAVE_JS)
    app = create_app(view_db[0], TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/").status_code == 403
        assert c.get("/api/facets").status_code == 403
        assert c.get("/api/facets", headers={TOKEN_HEADER: "wrong"}).status_code == 403
        assert c.get(f"/?token={TOKEN}").status_code == 200
        assert c.get("/api/facets", headers={TOKEN_HEADER: TOKEN}).status_code == 200
        assert c.get("/vendor/cytoscape.min.js").status_code == 200       # static: no data, no token
        assert c.get("/vendor/../../etc/passwd").status_code == 404
    with TestClient(app, base_url="http://evil.example") as c:             # DNS rebinding
        assert c.get(f"/?token={TOKEN}").status_code == 400


def test_prompt_graph_page(client: TestClient, store: ViewStore) -> None:
    prompts = client.get("/api/prompts").json()["prompts"]
    assert [p["prompt"] for p in prompts] == [store.prompt]
    page = client.get("/api/prompt", params={"prompt": store.prompt}).json()
    assert len(page["nodes"]) == store.prompt_nodes and len(page["edges"]) == store.prompt_edges
    kinds = {n["kind"] for n in page["nodes"]}
    assert kinds == {"token", "feature", "error", "target"}
    # node threshold: tokens and targets always, features by cumulative influence
    few = client.get("/api/prompt", params={"prompt": store.prompt, "node_threshold": 0.35}).json()
    assert sorted(n["kind"] for n in few["nodes"] if n["kind"] in ("feature", "error")) == ["feature"] * 3
    assert all(e["source"] in {n["key"] for n in few["nodes"]} for e in few["edges"])
    # edge threshold
    strong = client.get("/api/prompt", params={"prompt": store.prompt, "min_abs_weight": 1.0}).json()
    assert sorted(abs(e["weight"]) for e in strong["edges"]) == [1.1, 1.2, 1.5, 2.0]
    # supernodes: groups of a communities run, through PromptNode.feature
    grouped = client.get("/api/prompt", params={"prompt": store.prompt, "group_run": COMMUNITY_RUN}).json()
    assert {n["group"] for n in grouped["nodes"] if n["kind"] == "feature"} == {store.community, None}
    assert client.get("/api/prompt", params={"prompt": "p-nope"}).status_code == 400


def test_pages_are_bounded_whatever_the_client_asks(client: TestClient, store: ViewStore) -> None:
    page = client.get("/api/prompt", params={"prompt": store.prompt, "node_limit": 3, "edge_limit": 2}).json()
    assert len(page["nodes"]) == 3 and len(page["edges"]) <= 2
    huge = client.get("/api/task-graph", params={"model": "sample-tiny", "checkpoint": "final", "task": "ioi",
                                                 "limit": 10**9}).json()
    assert len(huge["edges"]) <= reads.MAX_NODES // 2 and len(huge["nodes"]) <= reads.MAX_NODES
    assert client.get("/api/task-graph", params={"model": "sample-tiny", "checkpoint": "*", "task": "ioi"}).status_code == 400


def test_search_expand_and_compare(client: TestClient, store: ViewStore) -> None:
    hits = client.get("/api/search", params={"q": "which name comes second"}).json()["results"]
    assert [h["key"] for h in hits] == [store.feature]
    by_key = client.get("/api/search", params={"q": store.feature[:-2], "checkpoint": "final"}).json()["results"]
    assert store.feature in [h["key"] for h in by_key]
    hood = client.get("/api/neighbourhood", params={"key": store.feature, "task": "ioi", "checkpoint": "final",
                                                    "group_run": COMMUNITY_RUN, "limit": 5}).json()
    assert 0 < len(hood["edges"]) <= 5
    assert all(store.feature in (e["source"], e["target"]) and e["task"] == "ioi" for e in hood["edges"])
    keys = {n["key"] for n in hood["nodes"]}
    assert store.feature in keys and {e["source"] for e in hood["edges"]} | {e["target"] for e in hood["edges"]} <= keys
    assert next(n for n in hood["nodes"] if n["key"] == store.feature)["group"] == store.community
    detail = client.get("/api/node", params={"key": store.feature, "task": "ioi"}).json()
    assert detail["props"]["description"].startswith("says which name")
    assert [m["other"] for m in detail["matches"]] == [store.matched]
    assert detail["matches"][0]["direction"] == "earlier" and detail["matches"][0]["checkpoint"] == "step-100"
    other = client.get("/api/node", params={"key": store.matched, "task": "ioi"}).json()
    assert other["incoming"] and other["props"]["checkpoint"] == "step-100"
    community = client.get("/api/search", params={"q": COMMUNITY_RUN}).json()["results"]
    assert [c["kind"] for c in community] == ["Community"]


def test_facets_evaluations_and_kill_table(client: TestClient, store: ViewStore) -> None:
    f = client.get("/api/facets").json()
    assert f["models"]["sample-tiny"] == ["final", "step-100"]
    assert {"ioi", "induction"} <= set(f["tasks"])
    assert {r["kind"] for r in f["runs"]} >= {"communities", "evaluate"}
    ev = client.get("/api/evaluations").json()["evaluations"]
    assert {e["ablation"] for e in ev} == {"edge", "node"}
    pts = client.get("/api/evaluation", params={"run": store.evaluation_run}).json()["points"]
    assert len(pts) == 14 and {p["ablation"] for p in pts} == {"edge", "node"}
    d = client.get("/api/disentanglement").json()
    assert d["run"] == store.disentangle_run
    assert d["communities"][0]["kill_edge"] == [0.2, 0.9]
    assert client.get("/api/png", params={"path": "/etc/passwd"}).status_code == 404


def test_prompt_graph_downloads_as_neuronpedia_json(client: TestClient, store: ViewStore) -> None:
    res = client.get("/api/neuronpedia", params={"prompt": store.prompt})
    assert res.status_code == 200 and "attachment" in res.headers["content-disposition"]
    doc = res.json()
    assert len(doc["nodes"]) == store.prompt_nodes and len(doc["links"]) == store.prompt_edges
    assert doc["metadata"]["info"]["generator"]["name"] == "mechgraph"
    assert client.get("/api/neuronpedia", params={"prompt": "no-such-prompt"}).status_code == 400
