"""`mechgraph view` in a real (headless) Chromium: the prompt graph draws exactly the stored
nodes; a searched feature expands into its stored neighbourhood; screenshots for the README."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from analysis.view.server import ViewServer, start_in_thread, vendor_files
from graphdb.connection import Database, connect
from graphdb.settings import Neo4jSettings
from tests.analysis.view_store import COMMUNITY_RUN, ViewStore, write_view_store
from tests.browser import chrome, screenshot, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(neo4j_settings: Neo4jSettings) -> Iterator[tuple[ViewServer, ViewStore, Database]]:
    try:
        vendor_files()
    except Exception as e:  # noqa: BLE001 - the reason is the skip message
        pytest.skip(str(e))
    with connect(neo4j_settings) as db:
        db.write("MATCH (n) DETACH DELETE n")
        store = write_view_store(db)
        server = start_in_thread(db)
        try:
            yield server, store, db
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chrome() as b:
        yield b


def _js(browser: Any, script: str) -> Any:
    return browser.execute_script(script)


def test_prompt_graph_draws_the_stored_nodes(served: tuple[ViewServer, ViewStore, Database], browser: Any) -> None:
    server, store, db = served
    browser.get(server.url)
    wait_for(lambda: _js(browser, "return window.mechgraph && window.mechgraph.ready"), message="page ready")
    stored = db.read("MATCH (:Prompt {prompt: $p})<-[:IN_PROMPT]-(n:PromptNode) RETURN count(n) AS n",
                     {"p": store.prompt})[0]["n"]
    drawn = wait_for(lambda: _js(browser, "return window.mechgraph.promptCy.nodes().length"), message="nodes drawn")
    assert drawn == stored == store.prompt_nodes
    assert _js(browser, "return window.mechgraph.promptCy.edges().length") == store.prompt_edges
    # targets on top, tokens at the bottom (cytoscape's y grows downwards)
    ys = _js(browser, "const cy = window.mechgraph.promptCy; return ['target', 'token'].map("
                      "k => cy.nodes().filter(n => n.data('kind') === k).map(n => n.position('y')))")
    assert max(ys[0]) < min(ys[1])
    # clicking a node shows its details
    key = _js(browser, "return window.mechgraph.promptCy.nodes().filter(n => n.data('kind') === 'feature')[0].id()")
    _js(browser, f"window.mechgraph.promptCy.getElementById({key!r}).emit('tap')")
    wait_for(lambda: "in-edges" in browser.find_element("id", "prompt-details").text, message="details")
    screenshot(browser, "view-prompt-graph")
    # supernodes: the community's members merge into one node
    _js(browser, f"const s = document.getElementById('prompt-groups'); s.value = {COMMUNITY_RUN!r};"
                 "s.dispatchEvent(new Event('change'))")
    merged = wait_for(lambda: _js(browser, "const n = window.mechgraph.promptCy.nodes('[kind = \"group\"]');"
                                           "return n.length ? window.mechgraph.promptCy.nodes().length : 0"),
                      message="supernodes")
    members = sum(1 for r in db.read(
        "MATCH (:Prompt {prompt: $p})<-[:IN_PROMPT]-(n:PromptNode) WHERE n.kind = 'feature' "
        "MATCH (:Node {key: n.feature})-[:IN_COMMUNITY {run: $run}]->() RETURN n.key AS k",
        {"p": store.prompt, "run": COMMUNITY_RUN}))
    assert members > 1 and merged == stored - members + 1
    # the node threshold slider: fewer features, tokens and targets stay
    _js(browser, "const s = document.getElementById('prompt-groups'); s.value = ''; s.dispatchEvent(new Event('change'));"
                 "const r = document.getElementById('node-threshold'); r.value = 0.35; r.dispatchEvent(new Event('input'))")
    wait_for(lambda: _js(browser, "return window.mechgraph.promptCy.nodes().length") == stored - 5 - 3,
             message="threshold applied")


def test_search_and_expand_a_feature(served: tuple[ViewServer, ViewStore, Database], browser: Any) -> None:
    server, store, db = served
    browser.get(server.url)
    wait_for(lambda: _js(browser, "return window.mechgraph && window.mechgraph.ready"), message="page ready")
    browser.find_element("css selector", "button.tab[data-tab='explore']").click()
    _js(browser, f"const s = document.getElementById('f-groups'); s.value = {COMMUNITY_RUN!r}")
    box = browser.find_element("id", "search")
    box.send_keys("which name comes second")
    browser.find_element("id", "search-go").click()
    hit = wait_for(lambda: browser.find_element("css selector", "#search-results button.search-hit"), message="hit")
    assert hit.get_attribute("data-key") == store.feature
    hit.click()
    first = db.read("MATCH (n:Node {key: $k})-[r:ATTRIBUTES_TO]-(m) WITH r ORDER BY r.abs_weight DESC LIMIT 30 "
                    "RETURN collect(DISTINCT startNode(r).key) + collect(DISTINCT endNode(r).key) AS ks",
                    {"k": store.feature})[0]["ks"]
    drawn = wait_for(lambda: _js(browser, "return window.mechgraph.exploreCy.nodes().map(n => n.id())"),
                     message="expanded")
    assert set(drawn) == set(first) | {store.feature}
    # expand a neighbour: exactly its new neighbours are added
    other = next(k for k in sorted(set(first)) if k != store.feature and k.startswith("feature|"))
    second = db.read("MATCH (n:Node {key: $k})-[r:ATTRIBUTES_TO]-(m) WITH r ORDER BY r.abs_weight DESC LIMIT 30 "
                     "RETURN collect(DISTINCT startNode(r).key) + collect(DISTINCT endNode(r).key) AS ks",
                     {"k": other})[0]["ks"]
    _js(browser, f"window.mechgraph.exploreCy.getElementById({other!r}).emit('dbltap')")
    want = set(first) | set(second) | {store.feature}
    wait_for(lambda: set(_js(browser, "return window.mechgraph.exploreCy.nodes().map(n => n.id())")) == want,
             message="second expansion")
    # community colouring: members of the community share its colour
    colours = _js(browser, "return window.mechgraph.exploreCy.nodes().filter(n => n.data('group')).map(n => n.data('colour'))")
    assert colours and len(set(colours)) == 1
    # compare the feature with its MATCHES counterpart at step-100
    _js(browser, f"window.mechgraph.exploreCy.getElementById({store.feature!r}).emit('tap')")
    button = wait_for(lambda: browser.find_element("css selector", "#explore-details button.compare"), message="compare")
    button.click()
    match = f"match:{store.feature}:{store.matched}"
    wait_for(lambda: _js(browser, f"return window.mechgraph.exploreCy.getElementById({match!r}).length"),
             message="MATCHES edge from the feature to its counterpart drawn")
    assert "step-100" in browser.find_element("id", "explore-details").text
    _js(browser, "window.scrollTo(0, 0)")
    screenshot(browser, "view-explorer")


def test_evaluations_page(served: tuple[ViewServer, ViewStore, Database], browser: Any) -> None:
    server, store, _ = served
    browser.get(server.url)
    wait_for(lambda: _js(browser, "return window.mechgraph && window.mechgraph.ready"), message="page ready")
    browser.find_element("css selector", "button.tab[data-tab='evals']").click()
    wait_for(lambda: _js(browser, "return window.mechgraph.evalChart && window.mechgraph.evalChart.data.datasets.length"),
             message="curves")
    assert _js(browser, "return window.mechgraph.evalChart.data.datasets.length") == 4
    wait_for(lambda: "kill" in browser.find_element("id", "kill-table").text, message="kill table")
    assert "0.200" in browser.find_element("id", "kill-table").text
    # the sample's checkpoints are not training steps, so the timeline says why it has nothing to show
    wait_for(lambda: "computing" not in browser.find_element("id", "timeline-status").text, message="timeline")
    screenshot(browser, "view-evaluations")
