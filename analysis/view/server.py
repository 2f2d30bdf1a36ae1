"""The explorer's web server: FastAPI on 127.0.0.1 only, behind a random token.

The server holds the Neo4j connection (and so the credentials); the page only ever talks to
``/api`` here. Every request but the static assets must carry the token (``?token=`` on the
page's URL, which the page sends back as the ``X-Mechgraph-Token`` header), and the ``Host``
header must name the loopback address, so another site in the same browser cannot read the
store through it (DNS rebinding). The JavaScript libraries are served from the npm packages
the project's set-up installs (``analysis/view/web/node_modules``), never copied or edited.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from analysis.view.api import router
from graphdb.connection import Database
from mechgraph.errors import ConfigError

HOST = "127.0.0.1"
WEB_DIR = Path(__file__).parent / "web"
TOKEN_HEADER = "X-Mechgraph-Token"
#: URL path -> file inside node_modules: the maintained libraries the page loads, as published.
VENDOR: dict[str, str] = {
    "cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
    "cytoscape.LICENSE": "cytoscape/LICENSE",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "chart.js.LICENSE.md": "chart.js/LICENSE.md",
}
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")


def vendor_files(web_dir: Path = WEB_DIR) -> dict[str, Path]:
    """The vendored files, checked: a clear error if ``npm ci`` has not run."""
    files = {name: web_dir / "node_modules" / rel for name, rel in VENDOR.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"the explorer's JavaScript libraries are not installed ({missing[0]} is missing): "
                          f"run `make install` (or `npm ci` in {web_dir})")
    return files


def new_token() -> str:
    return secrets.token_urlsafe(24)


def create_app(db: Database, token: str, *, web_dir: Path = WEB_DIR) -> FastAPI:
    """The explorer app over an open connection. ``token`` guards the page and the API."""
    vendor = vendor_files(web_dir)
    app = FastAPI(title="mechgraph view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[HOST, "localhost"])

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path == "/" or path.startswith("/api/"):
            given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong token: open the URL `mechgraph view` printed"},
                                    status_code=403)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the page's URL
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(web_dir / "index.html", media_type="text/html")

    @app.get("/vendor/{name}", include_in_schema=False)
    def vendor_file(name: str) -> FileResponse:
        if name not in vendor:
            return JSONResponse({"detail": "not found"}, status_code=404)  # type: ignore[return-value]
        media = "text/javascript" if name.endswith(".js") else "text/plain"
        return FileResponse(vendor[name], media_type=media)

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=web_dir / "static"), name="static")
    return app


@dataclass
class ViewServer:
    """A running explorer (uvicorn in a background thread); ``url`` carries the token."""

    port: int
    token: str
    _server: object
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/?token={self.token}"

    def stop(self) -> None:
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(10)


def start_in_thread(db: Database, *, port: int = 0, token: str | None = None, timeout: float = 30.0) -> ViewServer:
    """Serve the explorer in a background thread (tests, notebooks); returns once it listens."""
    import uvicorn

    from graphdb.embedded import free_port

    token = token or new_token()
    port = port or free_port()
    config = uvicorn.Config(create_app(db, token), host=HOST, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mechgraph-view", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the explorer did not start on {HOST}:{port}")
        time.sleep(0.05)
    return ViewServer(port=port, token=token, _server=server, _thread=thread)


def serve(db: Database, *, port: int, token: str) -> None:
    """Serve the explorer in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(create_app(db, token), host=HOST, port=port, log_level="warning", lifespan="off")
