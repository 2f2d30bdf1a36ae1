"""Neo4j Browser, served locally from its Maven Central artifact, talking to the embedded server.

The embedded server has no HTTP connector, so it does not serve Neo4j Browser itself. This
module fetches the Browser's own release jar (``org.neo4j.client:neo4j-browser``, GPL-3.0; its
``LICENSE``, ``NOTICE.txt`` and ``LICENSES.txt`` are kept and served beside it) with Maven
into the per-user cache, and serves its static files on 127.0.0.1. The page then connects
straight to the server's Bolt port: Bolt accepts WebSocket connections on the same port as
plain Bolt, so nothing else has to listen. The page holds no data and no credentials; the user
logs in with the password of ``<data dir>/password``.

Besides the files, the server answers:

- ``/`` asked for JSON: the discovery document Neo4j's HTTP connector would give (the Bolt
  address), so the Browser's connection form is pre-filled;
- ``/mechgraph-guide.html``: a Browser guide (``:play``) with one slide per query of the analyst
  library, each runnable with a click. The Browser fetches guides only from hosts on its
  allowlist, whose default includes ``localhost``: the guide is offered at
  ``http://localhost:<port>/...`` and answers that origin's CORS preflight.
"""

from __future__ import annotations

import html
import json
import logging
import mimetypes
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from graphdb.errors import ServerError
from graphdb.settings import cache_dir

log = logging.getLogger(__name__)

#: The newest 5.x release of Neo4j Browser on Maven Central.
BROWSER_VERSION = "5.24.0"
BROWSER_ARTIFACT = f"org.neo4j.client:neo4j-browser:{BROWSER_VERSION}:jar"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
LICENCE_FILES = ("LICENSE", "NOTICE.txt", "LICENSES.txt")
HOST = "127.0.0.1"
GUIDE_PATH = "/mechgraph-guide.html"


@dataclass(frozen=True)
class GuideQuery:
    """One library query as the guide shows it."""

    name: str
    summary: str
    cypher: str
    params: dict[str, object]


def browser_dir(version: str = BROWSER_VERSION) -> Path:
    """The unpacked Browser (``index.html`` and its bundles), fetched with Maven the first time."""
    root = cache_dir() / f"neo4j-browser-{version}"
    if (root / "browser" / "index.html").is_file():
        return root / "browser"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError("no `mvn` on PATH: install Maven 3 (Debian: apt-get install maven) to fetch Neo4j Browser")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cmd = [mvn, "-B", "-q", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={BROWSER_ARTIFACT}", f"-DoutputDirectory={tmp}"]
    log.info("fetching Neo4j Browser %s with Maven (first time only)", version)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    jars = list(tmp.glob("neo4j-browser-*.jar"))
    if proc.returncode != 0 or not jars:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise ServerError(f"Maven could not fetch {BROWSER_ARTIFACT} (exit {proc.returncode}):\n{tail}")
    with zipfile.ZipFile(jars[0]) as jar:
        for member in jar.namelist():
            if member.startswith("browser/") and ".." not in member:
                jar.extract(member, tmp)
    jars[0].unlink()
    if not (tmp / "browser" / "index.html").is_file():
        raise ServerError(f"{BROWSER_ARTIFACT} holds no browser/index.html")
    missing = [f for f in LICENCE_FILES if not (tmp / "browser" / f).is_file()]
    if missing:
        raise ServerError(f"{BROWSER_ARTIFACT} lacks its licence files {missing}: not serving it without them")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root / "browser"


def guide_html(queries: Sequence[GuideQuery], *, title: str = "mechgraph: the analyst query library") -> str:
    """A Neo4j Browser guide (the ``:play`` slide format): an overview slide, then one slide per
    query with its parameters (``:param``) and its Cypher, each runnable with a click."""
    def pre(text: str) -> str:
        return f'<pre class="pre-scrollable code runnable">{html.escape(text)}</pre>'

    slides = [
        "<slide class=\"row-fluid\"><div class=\"col-sm-12\">"
        f"<h3>{html.escape(title)}</h3>"
        "<p>One slide per query of <code>queries/library/</code> (<code>mechgraph query list</code>). "
        "Click a block to copy it into the editor, then run it. Queries take their values as "
        "parameters: set them with the <code>:param</code> block first.</p><ul>"
        + "".join(f"<li><b>{html.escape(q.name)}</b>: {html.escape(q.summary)}</li>" for q in queries)
        + "</ul></div></slide>"
    ]
    for q in queries:
        body = f"<h3>{html.escape(q.name)}</h3><p>{html.escape(q.summary)}</p>"
        if q.params:
            body += pre(":params " + json.dumps(q.params))
        body += pre(q.cypher.strip())
        slides.append(f'<slide class="row-fluid"><div class="col-sm-12">{body}</div></slide>')
    return ('<article class="guide"><carousel class="deck container-fluid">' + "".join(slides)
            + "</carousel></article>")


class _Handler(BaseHTTPRequestHandler):
    server: _BrowserHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        log.debug("neo4j browser: " + format, *args)

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in (HOST, "localhost")

    def _cors(self) -> dict[str, str]:
        origin = self.headers.get("Origin") or ""
        allowed = {f"http://{HOST}:{self.server.port}", f"http://localhost:{self.server.port}"}
        if origin in allowed:
            # The Browser's fetch adds its own headers (pragma, cache-control, tracing): allow what
            # the preflight asks for, to these two origins only.
            asked = self.headers.get("Access-Control-Request-Headers") or "pragma, cache-control"
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Headers": asked,
                    "Access-Control-Allow-Methods": "GET", "Vary": "Origin"}
        return {}

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        self._send(204, b"", "text/plain", self._cors())

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._host_ok():
            self._send(403, b"wrong Host header\n", "text/plain")
            return
        path = unquote(urlsplit(self.path).path)
        if path == "/" and "application/json" in (self.headers.get("Accept") or ""):
            self._send(200, json.dumps(self.server.discovery).encode(), "application/json")
        elif path in ("/", "/browser"):
            self.send_response(302)
            self.send_header("Location", "/browser/")
            self.end_headers()
        elif path == GUIDE_PATH:
            self._send(200, self.server.guide.encode(), "text/html; charset=utf-8", self._cors())
        elif path.startswith("/browser/"):
            rel = path.removeprefix("/browser/") or "index.html"
            target = (self.server.root / rel).resolve()
            if self.server.root not in target.parents or not target.is_file():
                self._send(404, b"not found\n", "text/plain")
                return
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self._send(200, target.read_bytes(), ctype, {"Content-Security-Policy": self.server.csp})
        else:
            self._send(404, b"not found\n", "text/plain")


class _BrowserHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    port: int
    discovery: dict[str, str]
    guide: str
    csp: str


@dataclass
class BrowserServer:
    """A running local Neo4j Browser; ``url`` opens it with the Bolt address filled in."""

    port: int
    bolt_uri: str
    _httpd: _BrowserHTTPServer
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        # user@ in the URL pre-fills the user name of the connection form
        return f"http://{HOST}:{self.port}/browser/?dbms={self.bolt_uri.replace('://', '://neo4j@', 1)}&db=neo4j"

    @property
    def guide_url(self) -> str:
        return f"http://localhost:{self.port}{GUIDE_PATH}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def start_in_thread(self) -> BrowserServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="neo4j-browser", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)


def browser_server(bolt_uri: str, *, neo4j_version: str, queries: Sequence[GuideQuery] = (), port: int = 0,
                   root: Path | None = None) -> BrowserServer:
    """Bind (not yet serve) Neo4j Browser on 127.0.0.1 for the server at ``bolt_uri``."""
    root = (root or browser_dir()).resolve()
    try:
        httpd = _BrowserHTTPServer((HOST, port), _Handler)
    except OSError as e:
        raise ServerError(f"cannot serve Neo4j Browser on {HOST}:{port}: {e.strerror or e}") from None
    httpd.root = root
    httpd.port = int(httpd.server_address[1])
    httpd.discovery = {"bolt_direct": bolt_uri, "bolt_routing": bolt_uri.replace("bolt://", "neo4j://", 1),
                       "neo4j_version": neo4j_version, "neo4j_edition": "community"}
    httpd.guide = guide_html(queries)
    # The page may talk to this server, the guide's localhost origin and the Bolt port (WebSocket),
    # nothing else: the Browser's usage statistics, remote fonts and news feeds are blocked, so the
    # page never reaches outside the machine.
    bolt = bolt_uri.split("://", 1)[-1]
    httpd.csp = ("default-src 'self'; "
                 f"connect-src 'self' http://localhost:{httpd.port} ws://{bolt} http://{bolt}; "
                 "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; worker-src 'self' blob:; "
                 "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:")
    return BrowserServer(port=httpd.port, bolt_uri=bolt_uri, _httpd=httpd)
