"""Neo4j Browser served locally (graphdb/browser.py): the guide of library queries, the
discovery document, the host and path checks, and in headless Chromium: log in with the
generated password, run a library query, open the guide."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from analysis.view.cli import _library_guide
from graphdb.browser import LICENCE_FILES, BrowserServer, browser_dir, browser_server, guide_html
from graphdb.connection import connect
from graphdb.settings import Neo4jSettings
from queries.loader import get_query, library
from tests.browser import chrome, screenshot, wait_for


def test_guide_has_a_runnable_slide_per_library_query() -> None:
    page = guide_html(_library_guide())
    assert page.count("<slide") == len(library()) + 1
    for name in library():
        assert f"<h3>{name}</h3>" in page
    assert page.count('class="pre-scrollable code runnable"') >= len(library())
    assert "&lt;" not in guide_html([]) and "<script" not in page


@pytest.fixture(scope="module")
def served(neo4j_settings: Neo4jSettings) -> Iterator[BrowserServer]:
    try:
        root = browser_dir()
    except Exception as e:  # noqa: BLE001 - no Maven or no network to Maven Central: say so
        pytest.skip(f"cannot fetch Neo4j Browser: {e}")
    assert all((root / f).is_file() for f in LICENCE_FILES)
    server = browser_server(neo4j_settings.uri, neo4j_version="5", queries=_library_guide(), root=root).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


def _get(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback URLs of this test
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_files_discovery_and_checks(served: BrowserServer) -> None:
    base = f"http://127.0.0.1:{served.port}"
    code, body, headers = _get(base + "/browser/index.html")
    assert code == 200 and b"<html" in body.lower() and "connect-src" in headers["Content-Security-Policy"]
    assert _get(base + "/browser/LICENSE")[0] == 200                 # GPL-3.0 notice served beside it
    code, body, _ = _get(base + "/", Accept="application/json")
    assert json.loads(body)["bolt_direct"] == served.bolt_uri
    assert _get(base + "/browser/../../../etc/passwd")[0] == 404
    assert _get(base + "/browser/index.html", Host="evil.example")[0] == 403
    code, body, headers = _get(served.guide_url, Origin=base)
    assert code == 200 and headers["Access-Control-Allow-Origin"] == base and b"<slide" in body
    assert "Access-Control-Allow-Origin" not in _get(served.guide_url, Origin="http://evil.example")[2]


@pytest.mark.slow
def test_log_in_and_run_a_library_query(served: BrowserServer, neo4j_settings: Neo4jSettings) -> None:
    with connect(neo4j_settings) as db:
        db.write("MATCH (n) DETACH DELETE n")
        from graphdb.sample import write_sample
        from graphdb.writer import GraphWriter

        write_sample(GraphWriter(db))
        expected = db.read(get_query("graph_summary").text)
    with chrome() as browser:
        browser.get(served.url)
        password = wait_for(lambda: browser.find_element("css selector", "input[data-testid=password]"), 90,
                            "the connection form")
        assert browser.find_element("css selector", "input[data-testid=username]").get_attribute("value") == "neo4j"
        password.send_keys(neo4j_settings.password)
        browser.find_element("css selector", "button[data-testid=connect]").click()
        wait_for(lambda: not browser.find_elements("css selector", "input[data-testid=password]"), 60, "logged in")
        one_line = " ".join(ln for ln in get_query("graph_summary").text.splitlines() if not ln.startswith("//"))
        editor = wait_for(lambda: browser.find_element("css selector", ".monaco-editor textarea"), 30, "the editor")
        editor.send_keys(one_line)
        browser.find_element("css selector", "button[data-testid=editor-Run]").click()
        cells = [f'"{row["task"]}" "{row["run"]}" "{row["granularity"]}" {row["edges"]}' for row in expected]
        assert cells
        wait_for(lambda: all(c in browser.find_element("tag name", "body").text for c in cells), 60,
                 "every row of graph_summary in the result table")
        screenshot(browser, "neo4j-browser-query")
        editor = browser.find_element("css selector", ".monaco-editor textarea")
        editor.send_keys(f":play {served.guide_url}")
        browser.find_element("css selector", "button[data-testid=editor-Run]").click()
        wait_for(lambda: "the analyst query library" in browser.find_element("tag name", "body").text, 60, "the guide")
        screenshot(browser, "neo4j-browser-guide")
