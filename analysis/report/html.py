"""``mechgraph report``: one self-contained HTML page about everything in the graph store.

The report is read back from Neo4j through library queries (``report_*``), never from a
pipeline's memory, so it describes whatever the database holds: the models, checkpoints and
tasks that were ingested, the size of every stored graph, the evaluations' faithfulness curves,
communities, ROIs, task disentanglement, matching across checkpoints and sizes. Figures the
analyses saved (their paths are stored on the nodes, or in the files named below) are embedded
as base64 PNG, so the single HTML file can be mailed or archived.

Sections whose analyses have not run say so instead of disappearing.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queries.loader import run_query


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


#: An extra section builder: (db, data dir) -> Section or None. Analyses register theirs here.
SectionBuilder = Callable[[Any, Path], Section | None]
EXTRA_SECTIONS: list[SectionBuilder] = []


def _round(rows: Sequence[dict[str, Any]], digits: int = 3) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append({k: round(v, digits) if isinstance(v, float) else v for k, v in r.items()})
    return out


def graphs_section(db: Any, data: Path) -> Section:
    rows = run_query(db, "report_graphs")
    models = sorted({(r["model"], r["checkpoint"]) for r in rows})
    tasks = sorted({r["task"] for r in rows})
    text = (f"{len(rows)} stored graphs: {len(models)} model checkpoints "
            f"({', '.join(f'{m} @ {c}' for m, c in models) or 'none'}), tasks {', '.join(tasks) or 'none'}.")
    text += (" nodes counts the nodes with at least one stored edge at that granularity; ingest's nodes_written also "
             "counts every active latent whose edges all fell under the threshold.") if rows else ""
    return Section("Graphs in the store", text, [("nodes and edges per run, task and granularity", _round(rows))])


def evaluations_section(db: Any, data: Path) -> Section:
    rows = run_query(db, "report_evaluations")
    section = Section("Faithfulness: edge vs node ablation",
                      "Faithfulness F = (m(G) − m(∅)) / (m(M) − m(∅)) against the number of edges kept, for "
                      "edge ablation (each node reads only its kept in-edges) and node ablation of the same "
                      "graphs; CPR = area under F, CMD = area under |1 − F| (MIB). Each row names the baseline "
                      "an ablated node takes (the one the graph was ingested with unless chosen)."
                      if rows else "No evaluation yet: `mechgraph evaluate`.")
    if rows:
        section.tables.append(("curve summaries", _round([{k: v for k, v in r.items() if k not in ("csv", "png")}
                                                          for r in rows])))
        section.images = _unique_paths(r["png"] for r in rows)
    shortcut = sorted((data / "evaluations").glob("shortcut-*.csv")) if (data / "evaluations").is_dir() else []
    for path in shortcut:
        section.tables.append((f"the gender shortcut ({path.stem.removeprefix('shortcut-')}): node ablation of the "
                               "gender features vs edge ablation of their edges into the profession output",
                               _csv_rows(path)))
    return section


def communities_section(db: Any, data: Path) -> Section:
    rows = run_query(db, "report_communities")
    out = []
    for r in rows:
        cfg = json.loads(r["config"] or "{}")
        sel = cfg.get("selection", {})
        out.append({"run": r["run"], "model": sel.get("model"), "checkpoint": sel.get("checkpoint"),
                    "tasks": ", ".join(sel.get("tasks", [])), "method": r["method"], "level": r["level"],
                    "communities": r["communities"], "largest sizes": ", ".join(map(str, r["sizes"][:8])),
                    "modularity": r["modularity"]})
    return Section("Communities", "" if out else "No communities yet: `mechgraph communities`.",
                   [("communities runs", _round(out))] if out else [])


def rois_section(db: Any, data: Path) -> Section:
    rows = run_query(db, "report_rois")
    section = Section("Regions of Interest",
                      "Within-ROI mean decoder cosine and latent correlation (size-weighted) against random "
                      "partitions of the same sizes. A within-ROI cosine near 1 would make an ROI a smaller "
                      "dictionary; near the baseline, an ROI groups different directions that act together."
                      if rows else "No ROIs yet: `mechgraph roi fit`.",
                      [("ROIs per dictionary", _round(rows))] if rows else [])
    for run in sorted({r["run"] for r in rows}):
        section.images += sorted((data / "rois" / run).glob("*.png")) if (data / "rois" / run).is_dir() else []
    return section


def _number(v: Any) -> Any:
    """A CSV cell as an int when it is one (community numbers, sizes), else a float, else as is."""
    for kind in (int, float):
        try:
            return kind(v)
        except (TypeError, ValueError):
            continue
    return v


def _unique_paths(paths: Any) -> list[Path]:
    seen: list[Path] = []
    for p in paths:
        if p and Path(p).is_file() and Path(p) not in seen:
            seen.append(Path(p))
    return seen


def build_sections(db: Any, data: Path) -> list[Section]:
    sections = [graphs_section(db, data), evaluations_section(db, data), communities_section(db, data),
                rois_section(db, data)]
    for builder in EXTRA_SECTIONS:
        extra = builder(db, data)
        if extra is not None:
            sections.append(extra)
    return sections


def write_report(db: Any, data: Path, out: Path, *, title: str = "mechgraph report") -> Path:
    """Render every section into one HTML file at ``out``."""
    sections = build_sections(db, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class=meta>generated {time.strftime('%Y-%m-%d %H:%M:%S')} from {html.escape(db.settings.uri)}</p>",
            "<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>" for i, s in enumerate(sections))
            + "</ul>"]
    for i, s in enumerate(sections):
        body.append(f"<h2 id='s{i}'>{html.escape(s.title)}</h2>")
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        for caption, rows in s.tables:
            body.append(_table(caption, rows))
        for img in s.images:
            data64 = base64.b64encode(img.read_bytes()).decode()
            body.append(f"<figure><img src='data:image/png;base64,{data64}'>"
                        f"<figcaption>{html.escape(img.name)}</figcaption></figure>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
            "th{background:#f3f3f3}caption{text-align:left;font-weight:bold;padding:4px 0}"
            "img{max-width:100%}.meta{color:#777}</style></head><body>" + "\n".join(body) + "</body></html>")
    out.write_text(page)
    return out


def _table(caption: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"<p><i>{html.escape(caption)}: none</i></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def matching_section(db: Any, data: Path) -> Section:
    """The emergence timelines and the comparison across sizes (``mechgraph match``)."""
    folder = data / "matching"
    timelines = sorted(folder.glob("timeline-*.png")) if folder.is_dir() else []
    sizes = sorted(folder.glob("sizes-*.csv"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    section = Section("Emergence across checkpoints, recurrence across sizes",
                      "Communities of consecutive checkpoints matched by the overlap of their members after "
                      "mapping features through MATCHES (decoder cosine, optimal assignment); a final community "
                      "emerges at the first checkpoint from which its chain of matches is unbroken. Across sizes, "
                      "communities are paired by the activation similarity of their members on the same prompts "
                      "and by their dominant task." if timelines or sizes else
                      "No matching yet: `mechgraph match features / timeline / sizes`.", images=timelines)
    for path in sorted(folder.glob("timeline-*.csv")) if folder.is_dir() else []:
        section.tables.append((f"timeline {path.stem.removeprefix('timeline-')}", _csv_rows(path)))
    if sizes:
        section.tables.append(("communities across sizes (newest comparison)", _csv_rows(sizes[-1])))
    return section


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return _round([{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)])


EXTRA_SECTIONS.append(matching_section)


def disentangle_section(db: Any, data: Path) -> Section | None:
    """The newest task disentanglement: NMI, ARI and z against its null, purity, the kill table."""
    runs = db.read("MATCH (r:Run {kind: 'disentangle'}) RETURN r.run AS run ORDER BY r.created_at DESC LIMIT 1")
    if not runs:
        return Section("Task disentanglement", "No disentanglement yet: `mechgraph disentangle`.")
    run = runs[0]["run"]
    rows = run_query(db, "disentanglement", {"run": run})
    section = Section("Task disentanglement")
    folder = data / "disentangle" / run
    if rows:
        r = rows[0]
        section.text = (f"Run {run}: do the union graph's communities follow the tasks? NMI {r['nmi']:.3f} and ARI "
                        f"{r['ari']:.3f} between communities and each node's dominant task; z = {r['z']:.1f} against "
                        "the null model.")
        if (folder / "kill.csv").is_file():  # --no-kill writes no kill table: say nothing of one
            config = json.loads(db.read("MATCH (r:Run {run: $run}) RETURN r.config AS c", {"run": run})[0]["c"] or "{}")
            section.text += (" The kill table gives F on each task's prompts when a community is ablated (kill C) "
                             "and when everything but it is (keep only C), ablated nodes at the "
                             f"{config.get('baseline', 'mean')} baseline.")
    for name, caption in (("purity.csv", "task purity per community"), ("kill.csv", "kill table")):
        if (folder / name).is_file():
            section.tables.append((caption, _csv_rows(folder / name)))
    section.images = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return section


EXTRA_SECTIONS.insert(0, disentangle_section)
