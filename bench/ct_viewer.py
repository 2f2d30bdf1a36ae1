"""A mechgraph export in circuit-tracer 0.5.0's own viewer: validated with its graph model
classes, served by its local server, rendered in headless Chromium.

    .venv/bin/python bench/ct_viewer.py                        # zoo:mt-small@final, an ioi prompt
    .venv/bin/python bench/ct_viewer.py --prompt "..." --screenshot /tmp/ct.png --file task.json   # + other exports

Runs under mechgraph's venv and orchestrates:

1. ``mechgraph trace`` of the prompt into a fresh private store (``MECHGRAPH_HOME`` under
   bench/out/ct-viewer), then ``mechgraph export neuronpedia --prompt ID`` (its supernodes
   are the communities and ROIs the prompt's nodes belong to, when there are any);
2. in circuit-tracer's venv (``bench/peer_venv.sh``, bench/out/ct-venv), this file again with
   ``--side ct``: every exported file is validated with ``circuit_tracer.frontend.graph_models``
   (``Model``, and ``Link`` for each link, since ``Model.links`` is untyped), registered with
   circuit-tracer's ``add_graph_metadata``, and served by its ``CircuitGraphHandler`` on
   127.0.0.1 (its ``serve()`` binds every interface, so the same handler gets a loopback
   server here);
3. headless Chromium (selenium, Debian's chromium and chromium-driver) opens the graph page,
   waits until its link graph has drawn nodes, counts them, and saves the screenshot.

The viewer's page loads d3 (with d3-jetpack), dagre and pako from CDNs. Offline, the served copy
of circuit-tracer's frontend has those script tags pointing at the same libraries installed from
npm (bench/ct_viewer_web/package.json, ``npm ci`` into bench/out/ct-viewer-web); everything else
is circuit-tracer's code, unchanged. Chromium resolves no host name but loopback, so the page's
feature-example requests (a CDN) fail locally instead of leaving the machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "ct-viewer"
WEB = HERE / "out" / "ct-viewer-web"
SCREENSHOT = ROOT / "docs" / "screenshots" / "circuit-tracer-viewer.png"
PROMPT = "When Mary and John went to the store , John gave a ring to"

#: circuit-tracer 0.5.0's index.html script tags from CDNs -> the npm file standing in (None: dropped).
CDN_SCRIPTS = {
    "hotserver-client-ws.js": None,                                 # its authors' live-reload client
    "d3.js": "d3-jetpack/build/d3v7+jetpack.js",                    # d3 v7 with d3-jetpack in one bundle
    "jetpack_2024-07-20.js": "./jetpack_2024_shim.js",              # what 2.3.0 lacks (bench/ct_viewer_web)
    "npy_v0.js": None,                                              # .npy feature examples, not served here
    "dagre.min.js": "dagre/dist/dagre.min.js",
    "pako.min.js": "pako/dist/pako.min.js",
}
#: Added to the test suite's headless Chromium flags (tests/browser.py): a wider window, and no
#: host name but loopback resolves.
FLAGS = ("--window-size=1400,700", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
#: What the page drew: the link graph's nodes (SVG ``text.node``), the subgraph's nodes (a
#: ``div.supernode-container`` each, supernodes included) and its links (``path.link-path``).
COUNT_JS = ("return ['.link-graph text.node', '.subgraph .supernode-container', '.subgraph path.link-path']"
            ".map(s => document.querySelectorAll(s).length)")


# -- circuit-tracer's side (its venv) ----------------------------------------------------------

def frontend_copy(web: Path, dest: Path) -> Path:
    """circuit-tracer's frontend assets, with the CDN script tags pointing at ``web``'s npm files."""
    from circuit_tracer.frontend.local_server import DEFAULT_FRONTEND_DIR

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(str(DEFAULT_FRONTEND_DIR), dest)
    (dest / "vendor").mkdir()

    def swap(m: re.Match) -> str:
        name = m.group(1).rsplit("/", 1)[-1]
        if name not in CDN_SCRIPTS:
            raise SystemExit(f"circuit-tracer's index.html loads {m.group(1)}, which bench/ct_viewer.py has no "
                             "local copy of (a different circuit-tracer version?)")
        local = CDN_SCRIPTS[name]
        if local is None:
            return ""
        text = (HERE / "ct_viewer_web" / local if local.startswith("./") else web / "node_modules" / local).read_text()
        if local.endswith("d3v7+jetpack.js"):
            text = _jetpack_fix(text)
        (dest / "vendor" / Path(local).name).write_text(text)
        return f"<script src='./vendor/{Path(local).name}'></script>"

    index = dest / "index.html"
    index.write_text(re.sub(r"<script src='(https?://[^']+)'></script>", swap, index.read_text()))
    return dest


def _jetpack_fix(text: str) -> str:
    """d3-jetpack 2.3.0's d3 v7 bundle holds two copies of d3-selection and d3-transition, adds its
    methods (``appendMany``, ``at``, ``st``...) to the copy it keeps for itself and exports the
    other: give the exported ones the same methods."""
    exported = {k: re.search(rf"exports\.{k} = (\w+(?:\$\d+)?);", text) for k in ("selection", "transition")}
    if not all(exported.values()):
        raise SystemExit("d3-jetpack's bundle changed: bench/ct_viewer.py cannot find its exported selection")

    def both(m: re.Match) -> str:
        indent, kind, name, value = m.groups()
        other = exported[kind].group(1)  # type: ignore[union-attr]
        if other == kind or name in ("interrupt", "transition"):   # d3-transition's own, on both copies already
            return m.group(0)
        return f"{indent}{kind}.prototype.{name} = {other}.prototype.{name} = {value}"

    fixed, n = re.subn(r"^( +)(selection|transition)\.prototype\.(\w+) = (.+)$", both, text, flags=re.M)
    if n == 0 or f"{exported['selection'].group(1)}.prototype.appendMany" not in fixed:  # type: ignore[union-attr]
        raise SystemExit("d3-jetpack's bundle changed: bench/ct_viewer.py cannot find its appendMany")
    return fixed


def validate(data: Path) -> list[dict[str, Any]]:
    """Every graph file in ``data`` through circuit-tracer's models; registers each in graph-metadata.json."""
    from circuit_tracer.frontend.graph_models import Link, Model
    from circuit_tracer.frontend.utils import add_graph_metadata
    from pydantic import ValidationError

    out = []
    for f in sorted(data.glob("*.json")):
        if f.name == "graph-metadata.json":
            continue
        try:
            model = Model.model_validate(json.loads(f.read_text()))
            links = [Link.model_validate(link) for link in model.links]
        except ValidationError as e:
            raise SystemExit(f"{f.name} is not a circuit-tracer graph file: {e.errors()[0]}") from None
        ids = {n.node_id for n in model.nodes}
        if len(ids) != len(model.nodes) or any(x.source not in ids or x.target not in ids for x in links):
            raise SystemExit(f"{f.name}: duplicate node ids, or links to nodes the file does not have")
        add_graph_metadata(model.metadata.model_dump(), str(data))
        kinds: dict[str, int] = {}
        for n in model.nodes:
            kinds[n.feature_type] = kinds.get(n.feature_type, 0) + 1
        out.append({"file": f.name, "slug": model.metadata.slug, "nodes": len(model.nodes),
                    "links": len(model.links), "supernodes": len(model.qParams.supernodes), "node_types": kinds,
                    "prompt_tokens": len(model.metadata.prompt_tokens),
                    "pin": [n.node_id for n in model.nodes if n.feature_type != "embedding"],
                    "logit": next((n.node_id for n in model.nodes if n.is_target_logit), "")})
    return out


def ct_side(data: Path, port: int, web: Path) -> None:
    """Validate, then serve until stdin closes; the first stdout line is a JSON summary."""
    import circuit_tracer
    from circuit_tracer.frontend.local_server import CircuitGraphHandler, ReusableTCPServer

    checked = validate(data)
    frontend = frontend_copy(web, data.parent / "frontend")
    handler = functools.partial(CircuitGraphHandler, frontend_dir=frontend, data_dir=str(data))
    httpd = ReusableTCPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    print(json.dumps({"circuit_tracer": getattr(circuit_tracer, "__version__", "?"),
                      "url": f"http://127.0.0.1:{port}/index.html", "validated": checked}), flush=True)
    sys.stdin.read()
    httpd.shutdown()
    httpd.server_close()


# -- mechgraph's side (this venv) --------------------------------------------------------------

def mechgraph(*args: str, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-c", "from analysis.cli import main; main()", *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise SystemExit(f"mechgraph {' '.join(args[:2])} failed ({r.returncode}): "
                         f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return r.stdout


def trace_and_export(model: str, prompt: str, data: Path, env: dict[str, str]) -> tuple[dict[str, Any], Path]:
    """``mechgraph trace`` then ``export neuronpedia``: the trace summary and the exported file."""
    mechgraph("db", "start", "--timeout", "900", env=env)   # a loaded machine may need more than trace's 180 s
    out = json.loads(mechgraph("trace", "--model", model, "--prompt", prompt, "-f", "json", env=env))
    summary = out[0] if isinstance(out, list) else out
    tmp = data / "export.tmp"
    mechgraph("export", "neuronpedia", "--prompt", summary["prompt"], "-o", str(tmp), env=env)
    slug = json.loads(tmp.read_text())["metadata"]["slug"]
    path = data / f"{slug}.json"      # the viewer reads graph_data/<slug>.json
    tmp.rename(path)
    return summary, path


def npm_web() -> Path:
    """The viewer's CDN libraries from npm (bench/ct_viewer_web), installed once into bench/out."""
    src = HERE / "ct_viewer_web"
    stamp = WEB / "node_modules" / ".package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= (src / "package-lock.json").stat().st_mtime:
        return WEB
    if shutil.which("npm") is None:
        raise SystemExit("npm is not installed (`make system-deps` installs Node.js and npm from Debian)")
    WEB.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(src / name, WEB / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True, stdout=subprocess.DEVNULL)
    return WEB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(url: str, graph: dict[str, Any], screenshot: Path, timeout: float,
           supernodes: list[list[str]] | None = None) -> dict[str, Any]:
    """Open the graph page headless (every node but the embeddings pinned into the subgraph, the
    target logit clicked and the file's supernodes, through the page's own URL parameters), wait
    for the drawing to settle, count what it drew, save the screenshot.

    The supernodes go in the URL because circuit-tracer 0.5.0's ``init-cg.js`` replaces
    ``qParams.supernodes`` with its ``supernodes`` URL parameter, an empty list when absent."""
    from urllib.parse import urlencode

    if not all(map(shutil.which, ("chromium", "chromedriver"))):
        raise SystemExit("Chromium or its driver is not installed (apt-get install chromium chromium-driver)")
    sys.path.insert(0, str(ROOT))
    from tests.browser import chrome

    with chrome(*FLAGS) as browser:
        t0 = time.perf_counter()
        params = {"slug": graph["slug"], "pinnedIds": ",".join(graph["pin"]), "clickedId": graph["logit"]}
        if supernodes:
            params["supernodes"] = json.dumps(supernodes)
        browser.get(f"{url}?" + urlencode(params))
        deadline, last, stable_since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            errors = [e["message"] for e in browser.get_log("browser") if "Uncaught" in e.get("message", "")]
            if errors:
                raise SystemExit(f"circuit-tracer's viewer failed: {errors[:3]}")
            counts = browser.execute_script(COUNT_JS)
            if counts != last:
                last, stable_since = counts, time.monotonic()
            elif counts[0] > 0 and time.monotonic() - stable_since >= 2.0:
                break
            time.sleep(0.25)
        else:
            raise SystemExit(f"circuit-tracer's viewer drew no nodes within {timeout:.0f}s (counts: {last})")
        seconds = time.perf_counter() - t0
        info = browser.execute_script(
            "return {title: document.title, tokens: document.querySelectorAll('.link-graph .prompt-token').length}")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(screenshot))
    _shrink(screenshot)
    return {"link_graph_nodes": last[0], "subgraph_nodes": last[1], "subgraph_links": last[2], "seconds": seconds,
            **info}


def _shrink(path: Path) -> None:
    """A palette PNG: a few tens of KiB instead of hundreds (when Pillow is there)."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("side_args", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="zoo:mt-small@final")
    ap.add_argument("--prompt", default=PROMPT, help="an ioi prompt by default")
    ap.add_argument("--screenshot", type=Path, default=SCREENSHOT)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the page to draw")
    ap.add_argument("--show", type=Path, help="show this exported prompt graph (named <slug>.json) instead of "
                                              "tracing --prompt")
    ap.add_argument("--file", type=Path, action="append", default=[],
                    help="another exported graph JSON to validate and list in the viewer (repeatable)")
    args = ap.parse_args()
    if args.side == "ct":
        data, port, web = args.side_args
        ct_side(Path(data), int(port), Path(web))
        return
    venv = subprocess.run(["bash", str(HERE / "peer_venv.sh")], check=True, capture_output=True, text=True,
                          env={**os.environ, "MECHGRAPH_PYTHON": sys.executable}).stdout.strip().splitlines()[-1]
    web = npm_web()
    shutil.rmtree(OUT, ignore_errors=True)
    data = OUT / "data"
    data.mkdir(parents=True)
    env = {**os.environ, "MECHGRAPH_HOME": str(OUT / "home"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    if args.show is not None:
        path = Path(shutil.copy2(args.show, data / args.show.name))
    else:
        try:
            summary, path = trace_and_export(args.model, args.prompt, data, env)
        finally:
            subprocess.run([sys.executable, "-c", "from analysis.cli import main; main()", "db", "stop"], env=env,
                           capture_output=True, timeout=300)
        print(f"traced {args.model} on {args.prompt!r} in {time.perf_counter() - t0:.0f}s: prompt "
              f"{summary['prompt']}, {summary['pruned_nodes']} pruned nodes, {summary['pruned_edges']} pruned edges; "
              f"exported {path.name}")
    for f in args.file:
        shutil.copy2(f, data / f.name)
    port = free_port()
    side = subprocess.Popen([str(Path(venv) / "bin" / "python"), str(Path(__file__)), "--side", "ct", str(data),
                             str(port), str(web)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = side.stdout.readline() if side.stdout else ""
        if not line:
            raise SystemExit(f"circuit-tracer's side failed (exit {side.wait()})")
        served = json.loads(line)
        for v in served["validated"]:
            print(f"validated with circuit-tracer {served['circuit_tracer']}'s graph_models.Model and Link: "
                  f"{v['file']} (slug {v['slug']}): {v['nodes']} nodes {v['node_types']}, {v['links']} links, "
                  f"{v['supernodes']} supernodes, {v['prompt_tokens']} prompt tokens")
        graph = next(v for v in served["validated"] if v["file"] == path.name)
        shown = render(served["url"], graph, args.screenshot, args.timeout,
                       json.loads(path.read_text())["qParams"]["supernodes"])
    finally:
        if side.stdin:
            side.stdin.close()
        side.wait(timeout=30)
    print(f"circuit-tracer's viewer ({served['url']}?slug={graph['slug']}) drew {shown['link_graph_nodes']} nodes "
          f"in its link graph (exported: {graph['nodes']}); its subgraph {shown['subgraph_nodes']} nodes (pinned: "
          f"{len(graph['pin'])}, less members of supernodes, plus {graph['supernodes']} supernodes) and "
          f"{shown['subgraph_links']} links; {shown['tokens']} prompt tokens (exported: {graph['prompt_tokens']}); "
          f"drawn in {shown['seconds']:.1f}s; title {shown['title']!r}")
    print(f"screenshot: {args.screenshot} ({args.screenshot.stat().st_size / 1024:.0f} KiB)")
    if shown["link_graph_nodes"] != graph["nodes"]:
        print("note: the viewer hides nodes above its pruning slider (metadata.node_threshold)")


if __name__ == "__main__":
    main()
