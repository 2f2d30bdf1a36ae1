"""The README's screenshots of an mt-small ioi prompt graph with communities as supernodes:
``mechgraph view``'s prompt graph view and circuit-tracer's viewer showing the same graph's export.

    .venv/bin/python bench/screenshots.py          # make screenshots

Runs under mechgraph's venv, in its own store (``MECHGRAPH_HOME`` = bench/out/screens/home),
and prints every command and the figures it checks:

1. ``mechgraph ingest --graph transcoders`` of ioi on zoo:mt-small@final (the transcoder task
   graph), ``mechgraph communities`` on that run, ``mechgraph trace`` of an ioi prompt (the same
   default transcoders), ``mechgraph export neuronpedia --prompt ID --communities RUN``;
2. ``mechgraph view`` in headless Chromium (tests/browser.py's ``chrome()``): the traced prompt,
   the communities run chosen as supernodes; counts the drawn nodes against the store, saves
   docs/screenshots/view-prompt-graph-mt-small.png;
3. ``bench/ct_viewer.py --show EXPORT``: circuit-tracer's viewer on that export, supernodes pinned
   (docs/screenshots/circuit-tracer-viewer.png).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "screens"
SHOTS = ROOT / "docs" / "screenshots"
PROMPT = "When Mary and John went to the store , John gave a ring to"


def mechgraph(*args: str, env: dict[str, str], timeout: float = 3600) -> str:
    """One CLI command (niced: the machine is shared); its stdout. Printed first."""
    print("$ mechgraph " + " ".join(a if re.fullmatch(r"[\w@:.,/=|-]+", a) else repr(a) for a in args), flush=True)
    r = subprocess.run(["nice", "-n", "5", sys.executable, "-c", "from analysis.cli import main; main()", *args],
                       env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"mechgraph {args[0]} failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def rows(out: str) -> list[dict[str, Any]]:
    got = json.loads(out)
    return got if isinstance(got, list) else [got]


def build(model: str, task: str, examples: int, prompt: str, env: dict[str, str]) -> dict[str, Any]:
    """Task graph, its communities, the traced prompt and its export: the ids and the file."""
    mechgraph("db", "start", "--timeout", "900", env=env)   # a loaded machine needs more than the default
    ingest = rows(mechgraph("ingest", "--graph", "transcoders", "--model", model, "--task", task,
                            "--examples", str(examples), "-f", "json", env=env))
    from graphdb.connection import connect

    name = model.removeprefix("zoo:").split("@")[0]
    with connect(data=Path(env["MECHGRAPH_HOME"])) as db:     # the checkpoint as stored (final = step-N)
        ckpt = db.read("MATCH ()-[r:ATTRIBUTES_TO {run: $run, granularity: 'feature'}]->() "
                       "RETURN r.checkpoint AS c LIMIT 1", {"run": str(ingest[0]["run"])})[0]["c"]
    comms = rows(mechgraph("communities", "--model", name, "--checkpoint", ckpt, "--task", task,
                           "--run", str(ingest[0]["run"]), "-f", "json", env=env))
    if prompt:
        trace = rows(mechgraph("trace", "--model", model, "--prompt", prompt, "-f", "json", env=env))[0]
    else:   # the first of the prompt graphs the ingest stored (the same transcoders): no second trace
        with connect(data=Path(env["MECHGRAPH_HOME"])) as db:
            trace = db.read("MATCH (p:Prompt {model: $m, task: $t}) RETURN p.prompt AS prompt, p.text AS text "
                            "ORDER BY p.prompt LIMIT 1", {"m": name, "t": task})[0]
    run = str(comms[0]["run"])
    tmp = OUT / "export.json"
    print(mechgraph("export", "neuronpedia", "--prompt", trace["prompt"], "--communities", run, "-o", str(tmp),
                    env=env).strip())
    doc = json.loads(tmp.read_text())
    path = OUT / f"{doc['metadata']['slug']}.json"   # circuit-tracer's viewer reads <slug>.json
    tmp.rename(path)
    return {"ingest": ingest, "communities": comms, "run": run, "trace": trace, "export": path, "doc": doc}


def view_screenshot(prompt: str, run: str, env: dict[str, str], path: Path, timeout: float) -> dict[str, Any]:
    """``mechgraph view`` in headless Chromium: the prompt, supernodes = ``run``; counts and a PNG."""
    from tests.browser import chrome, wait_for

    from graphdb.connection import connect

    server = subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", "from analysis.cli import main; main()",
                               "view"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        url = re.search(r"http://\S+", line)
        if not url:
            raise SystemExit(f"mechgraph view printed no URL (exit {server.poll()}): {line!r}")
        with connect(data=Path(env["MECHGRAPH_HOME"])) as db:
            stored = db.read("MATCH (:Prompt {prompt: $p})<-[:IN_PROMPT]-(n:PromptNode) RETURN count(n) AS n",
                             {"p": prompt})[0]["n"]
            grouped = db.read("MATCH (:Prompt {prompt: $p})<-[:IN_PROMPT]-(n:PromptNode) "
                              "WHERE n.kind IN ['feature', 'error'] "
                              "MATCH (:Node {key: n.feature})-[:IN_COMMUNITY {run: $run}]->(c) "
                              "RETURN count(DISTINCT n) AS members, count(DISTINCT c) AS groups",
                              {"p": prompt, "run": run})[0]
        with chrome() as browser:
            js = browser.execute_script
            browser.get(url.group(0))
            wait_for(lambda: js("return window.mechgraph && window.mechgraph.ready"), timeout, "page ready")
            wait_for(lambda: js(f"return [...document.getElementById('prompt-select').options]"
                                f".some(o => o.value === {prompt!r})"), timeout, "the prompt listed")
            js(f"const s = document.getElementById('prompt-select'); s.value = {prompt!r};"
               "s.dispatchEvent(new Event('change'))")
            wait_for(lambda: js(f"return [...document.getElementById('prompt-groups').options]"
                                f".some(o => o.value === {run!r})"), timeout, "the communities run listed")
            drawn = ("const m = window.mechgraph, p = m.promptPage;"
                     f"return p && p.prompt.prompt === {prompt!r} ? m.promptCy.nodes().length : 0")
            plain = wait_for(lambda: js(drawn), timeout, "nodes drawn")
            js(f"const s = document.getElementById('prompt-groups'); s.value = {run!r};"
               "s.dispatchEvent(new Event('change'))")
            merged = wait_for(lambda: js("const cy = window.mechgraph.promptCy; const g = cy.nodes('[kind = \"group\"]');"
                                         "return g.length ? [cy.nodes().length, g.length] : null"), timeout, "supernodes")
            # closer in on the features, supernodes and targets (15 tokens make the layout wide)
            js("const cy = window.mechgraph.promptCy; cy.fit(cy.nodes().filter(n => n.data('kind') !== 'token'), 70)")
            time.sleep(1.0)
            path.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(path))
    finally:
        server.terminate()
        server.wait(timeout=30)
    shrink(path)
    return {"stored": stored, "drawn": plain, "drawn_merged": merged[0], "supernodes": merged[1], **grouped}


def shrink(path: Path) -> None:
    """A palette PNG: tens of KiB instead of hundreds."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo:mt-small@final")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--prompt", default=PROMPT, help="the prompt to trace (an ioi prompt by default); '' takes the "
                                                      "first prompt graph the ingest stored instead")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a page to draw")
    ap.add_argument("--skip-ct", action="store_true", help="only the explorer's screenshot")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))     # this tree's packages (and tests/browser.py's chrome())
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MECHGRAPH_HOME": os.environ.get("MECHGRAPH_SCREENS_HOME", str(OUT / "home")),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    try:
        got = build(args.model, args.task, args.examples, args.prompt, env)
        shot = SHOTS / "view-prompt-graph-mt-small.png"
        view = view_screenshot(got["trace"]["prompt"], got["run"], env, shot, args.timeout)
    finally:
        subprocess.run([sys.executable, "-c", "from analysis.cli import main; main()", "db", "stop"], env=env,
                       capture_output=True, timeout=300)
    for c in got["communities"]:
        print(f"communities run {got['run']} level {c['level']}: {c['communities']} communities "
              f"(largest {c['largest']}) of ingest run {c['graph_run']}")
    print(f"trace: prompt {got['trace']['prompt']}, {got['trace'].get('pruned_nodes')} pruned nodes, "
          f"{got['trace'].get('pruned_edges')} pruned edges")
    supernodes = got["doc"]["qParams"]["supernodes"]
    print(f"export {got['export'].name}: {len(got['doc']['nodes'])} nodes, {len(got['doc']['links'])} links, "
          f"{len(supernodes)} supernodes covering {sum(len(s) - 1 for s in supernodes)} nodes")
    print(f"mechgraph view: {view['drawn']} nodes drawn of {view['stored']} stored; with supernodes "
          f"{view['drawn_merged']} nodes ({view['supernodes']} supernodes of {view['groups']} communities holding "
          f"{view['members']} prompt nodes); {shot} ({shot.stat().st_size / 1024:.0f} KiB)")
    print(f"built in {time.perf_counter() - t0:.0f}s")
    if not args.skip_ct:
        subprocess.run(["nice", "-n", "5", sys.executable, str(HERE / "ct_viewer.py"), "--show", str(got["export"])],
                       env=env, check=True)


if __name__ == "__main__":
    main()
