"""The explorer's JSON endpoints (``/api/...``): thin wrappers over :mod:`analysis.view.reads`.

Every endpoint answers one bounded page; a user's mistake (an unknown prompt, a task graph
without a task) is a 400 with one sentence, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from analysis.view import reads
from analysis.view.reads import ANY, MAX_EDGES, MAX_NODES, Filters
from graphdb.connection import Database
from graphdb.schema import Granularity
from mechgraph.errors import MechgraphError
from queries.loader import run_query

Text = Annotated[str, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1)]


def _db(request: Request) -> Database:
    return request.app.state.db


def _filters(model: str, checkpoint: str, task: str, run: str, granularity: str, min_abs_weight: float) -> Filters:
    return Filters(model=model or ANY, checkpoint=checkpoint or ANY, task=task or ANY, run=run or ANY,
                   granularity=granularity or ANY, min_abs_weight=max(0.0, float(min_abs_weight)))


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except MechgraphError as e:
        raise HTTPException(status_code=400, detail=str(e)) from None


router = APIRouter(prefix="/api")


@router.get("/limits")
def limits() -> dict[str, Any]:
    """The server's page sizes and the granularities edges can have."""
    return {"max_nodes": MAX_NODES, "max_edges": MAX_EDGES, "granularities": [str(g) for g in Granularity]}


@router.get("/facets")
def facets(request: Request) -> dict[str, Any]:
    """Models with their checkpoints, tasks, and runs by kind (newest first)."""
    rows = _call(reads.run, _db(request), "facets", {"limit": 5000})
    models: dict[str, list[str]] = {}
    tasks: list[str] = []
    runs: list[dict[str, Any]] = []
    for r in rows:
        if r["facet"] == "checkpoint" and r["model"] is not None:
            models.setdefault(r["model"], []).append(r["value"])
        elif r["facet"] == "task":
            tasks.append(r["value"])
        elif r["facet"] == "run":
            runs.append({"run": r["value"], "kind": r["kind"], "created_at": r["created_at"]})
    runs.sort(key=lambda r: -(r["created_at"] or 0))
    return {"models": {m: sorted(set(c)) for m, c in sorted(models.items())}, "tasks": tasks, "runs": runs}


@router.get("/search")
def search(request: Request, q: Text, model: Text = ANY, checkpoint: Text = ANY, limit: Limit = 25) -> dict[str, Any]:
    """Features, ROIs, communities (any graph node) by key or description."""
    text = q.strip().lower()
    if not text:
        return {"results": []}
    rows = _call(reads.run, _db(request), "search", {"q": text, "model": model or ANY, "checkpoint": checkpoint or ANY,
                                                     "limit": reads.clamp(limit, 100)})
    return {"results": rows}


@router.get("/neighbourhood")
def neighbourhood(request: Request, key: Text, model: Text = ANY, checkpoint: Text = ANY, task: Text = ANY,
                  run: Text = ANY, granularity: Text = ANY, min_abs_weight: float = 0.0, limit: Limit = 50,
                  group_run: Text = ANY) -> dict[str, Any]:
    """One page of a node's strongest edges, with their endpoints."""
    f = _filters(model, checkpoint, task, run, granularity, min_abs_weight)
    return _call(reads.neighbourhood, _db(request), key, f, limit=limit, group_run=group_run or ANY)


@router.get("/task-graph")
def task_graph(request: Request, model: Text, checkpoint: Text, task: Text, run: Text = ANY, granularity: Text = ANY,
               min_abs_weight: float = 0.0, limit: Limit = 100, group_run: Text = ANY) -> dict[str, Any]:
    """One page of a task graph's strongest edges."""
    f = _filters(model, checkpoint, task, run, granularity, min_abs_weight)
    return _call(reads.task_edges, _db(request), f, limit=limit, group_run=group_run or ANY)


@router.get("/node")
def node(request: Request, key: Text, model: Text = ANY, checkpoint: Text = ANY, task: Text = ANY, run: Text = ANY,
         granularity: Text = ANY, min_abs_weight: float = 0.0, limit: Limit = 10) -> dict[str, Any]:
    """Everything stored on a node, its strongest in- and out-edges, and its MATCHES."""
    db = _db(request)
    found = _call(reads.run, db, "node", {"key": key})
    if not found:
        raise HTTPException(status_code=404, detail=f"no node {key!r}")
    f = _filters(model, checkpoint, task, run, granularity, min_abs_weight)
    page = _call(reads.run, db, "neighbourhood", {"key": key, **f.params(), "limit": reads.clamp(limit * 4, 200)})
    incoming = [e for e in page if e["target"] == key][:limit]
    outgoing = [e for e in page if e["source"] == key][:limit]
    matches = _call(reads.run, db, "matches", {"key": key, "limit": 20}) if "Feature" in found[0]["labels"] else []
    return {"key": key, **found[0], "incoming": incoming, "outgoing": outgoing, "matches": matches}


@router.get("/prompts")
def prompts(request: Request, model: Text = ANY, task: Text = ANY, limit: Limit = 100) -> dict[str, Any]:
    """The stored prompt graphs."""
    rows = _call(reads.run, _db(request), "prompts", {"model": model or ANY, "task": task or ANY,
                                                      "limit": reads.clamp(limit, MAX_NODES)})
    return {"prompts": rows}


@router.get("/prompt")
def prompt(request: Request, prompt: Text, node_threshold: float = 1.0, min_abs_weight: float = 0.0,
           node_limit: Limit = 200, edge_limit: Limit = 1000, group_run: Text = ANY) -> dict[str, Any]:
    """One page of a prompt graph: nodes within the influence threshold, edges above |w|."""
    return _call(reads.prompt_graph, _db(request), prompt, node_threshold=node_threshold,
                 min_abs_weight=max(0.0, min_abs_weight), node_limit=node_limit, edge_limit=edge_limit,
                 group_run=group_run or ANY)


@router.get("/neuronpedia")
def neuronpedia(request: Request, prompt: Text, min_abs_weight: float = 0.0) -> JSONResponse:
    """One stored prompt graph as Neuronpedia graph JSON, as a download (``mechgraph export
    neuronpedia --prompt``)."""
    from analysis.exchange.export import export_prompt

    doc = _call(export_prompt, _db(request), prompt, min_abs_weight=max(0.0, min_abs_weight))
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in doc["metadata"]["slug"]) or "graph"
    return JSONResponse(doc, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


@router.get("/evaluations")
def evaluations(request: Request) -> dict[str, Any]:
    """Every evaluation summary (CPR, CMD per ablation; the library's report_evaluations)."""
    rows = _call(run_query, _db(request), "report_evaluations")
    return {"evaluations": rows[:MAX_NODES]}


@router.get("/evaluation")
def evaluation(request: Request, run: Text) -> dict[str, Any]:
    """The faithfulness/completeness curve points of one evaluation run."""
    return {"run": run, "points": _call(reads.run, _db(request), "evaluation_curves", {"run": run})[:MAX_EDGES]}


@router.get("/disentanglement")
def disentanglement(request: Request, run: Text = "") -> dict[str, Any]:
    """The disentanglement runs, and one run's communities with their kill table."""
    db = _db(request)
    runs = _call(reads.run, db, "disentangle_runs", {"limit": 200})
    chosen = run or (runs[-1]["run"] if runs else "")
    rows = _call(run_query, db, "disentanglement", {"run": chosen})[:MAX_NODES] if chosen else []
    return {"runs": runs, "run": chosen, "communities": rows}


@router.get("/timeline")
def timeline(request: Request, model: Text) -> dict[str, Any]:
    """The emergence timeline of a model's final communities, computed from the stored
    community runs and MATCHES (as ``mechgraph match timeline``)."""
    from analysis.matching.timeline import TimelineConfig, build_timeline

    try:
        config = TimelineConfig(model=model)
    except ValueError as e:
        raise HTTPException(status_code=400, detail=str(e)) from None
    t = _call(build_timeline, _db(request), config)
    steps = [r.step for r in t.runs]
    return {"model": t.model, "steps": steps, "rows": [
        {k: (v if isinstance(v, (int, float, str)) or v is None else str(v)) for k, v in row.items()}
        for row in t.rows[:MAX_EDGES]]}


@router.get("/png")
def png(request: Request, path: Annotated[str, Query(max_length=4000)]) -> FileResponse:
    """A PNG the store names (an evaluation curve, a kill-table heatmap); no other file."""
    known = _call(reads.run, _db(request), "stored_png", {"path": path})
    p = Path(path)
    if not known or not known[0]["n"] or p.suffix.lower() != ".png" or not p.is_file():
        raise HTTPException(status_code=404, detail="not a PNG named by the store")
    return FileResponse(p, media_type="image/png")
