"""``mechgraph view`` (the graph explorer), and the bodies of ``mechgraph db browser`` and
``mechgraph db bloom-perspective``.

The two ``db`` commands live here rather than in ``graphdb/cli.py`` because they offer the
analyst query library (``queries``), which ``graphdb`` may not import; the root CLI registers
them under ``db``. What they serve and write is built by ``graphdb.browser`` and
``graphdb.bloom`` from plain values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _library_guide() -> list:  # noqa: ANN202 - graphdb.browser.GuideQuery
    from graphdb.browser import GuideQuery
    from queries.loader import library

    out = []
    for q in library().values():
        body = "\n".join(ln for ln in q.text.splitlines() if not ln.startswith("//")).strip()
        params = {p.name: (p.default if not p.required else _example(p.type)) for p in q.params}
        out.append(GuideQuery(q.name, q.summary, body, params))
    return out


def _example(kind: str) -> object:
    return {"string": "", "int": 0, "float": 0.0, "bool": False}[kind]


def view(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1. [default: any free port]")] = 0,
    token: Annotated[str | None, typer.Option(envvar="MECHGRAPH_VIEW_TOKEN",
                                              help="Access token in the URL. [default: a new random one]")] = None,
) -> None:
    """Explore the stored graph in the browser: prompt graphs, the task graph, evaluations.

    Serves on 127.0.0.1 only; the URL it prints carries a random access token. The server holds
    the Neo4j credentials; the page never sees them. Stop it with Ctrl-C.
    """
    from analysis.view.server import HOST, new_token, serve, vendor_files
    from graphdb.cli import open_store
    from graphdb.embedded import free_port

    vendor_files()  # a clear error before anything starts if `npm ci` has not run
    token = token or new_token()
    port = port or free_port()
    with open_store(ctx) as (_home, db):
        typer.echo(f"mechgraph view: http://{HOST}:{port}/?token={token}")
        typer.echo("(loopback only; Ctrl-C stops it)", err=True)
        serve(db, port=port, token=token)


def db_browser(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1. [default: any free port]")] = 0,
) -> None:
    """Serve Neo4j Browser (from its Maven Central release) on 127.0.0.1, connected to the store.

    Log in as user neo4j with the password in <data dir>/password. The analyst query library is
    a Browser guide: run the `:play` line this command prints. Ctrl-C stops it.
    """
    from graphdb.browser import BROWSER_VERSION, browser_server
    from graphdb.cli import open_store
    from graphdb.settings import external_settings

    with open_store(ctx) as (home, db):
        uri = db.settings.uri
        info = db.server_info()
    ext = external_settings()
    server = browser_server(uri, neo4j_version=info.get("version", "5"), queries=_library_guide(), port=port)
    where = "NEO4J_PASSWORD" if ext is not None else str(home / "password")
    typer.echo(f"Neo4j Browser {BROWSER_VERSION}: {server.url}")
    typer.echo(f"log in as user neo4j with the password in {where}; then run")
    typer.echo(f"  :play {server.guide_url}")
    typer.echo("for the analyst query library. (loopback only; Ctrl-C stops it)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def db_bloom_perspective(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the perspective (JSON).")],
) -> None:
    """Write a Neo4j Bloom perspective generated from the schema: a category per label, edge
    width by abs_weight, and the analyst library queries as search phrases."""
    from graphdb.bloom import SearchPhrase, perspective
    from queries.loader import library

    kinds = {"string": "String", "int": "Integer", "float": "Float", "bool": "Boolean"}
    phrases = [SearchPhrase(q.name, q.summary, "\n".join(ln for ln in q.text.splitlines() if not ln.startswith("//")),
                            {p.name: kinds[p.type] for p in q.params}) for q in library().values()]
    doc = perspective(phrases)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    typer.echo(f"wrote {out}: {len(doc['categories'])} categories, {len(doc['relationshipTypes'])} relationship "
               f"types, {len(doc['templates'])} search phrases")
