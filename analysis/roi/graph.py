"""ROIs into Neo4j and onto disk: ``:ROI`` nodes, ``IN_ROI``, the ROI-level graph, head tables.

Write-back (idempotent: the run id is the hash of the ROI configuration; writing the run again
writes a new generation and retires the old ROIs and ROI-level edges only once it is complete,
``graphdb/generations.py``, so an interrupted re-run keeps the old result):

* a ``:Run`` (kind ``roi``; its configuration names the ingest run it reads);
* per dictionary and block, an ``:ROI`` node keyed by (model, checkpoint, hook, dictionary,
  partition = the ROI run id, index), with its size and within-ROI statistics, linked
  ``PRODUCED_BY`` the run and ``AT_CHECKPOINT``;
* ``(:Feature)-[:IN_ROI {run}]->(:ROI)`` (a latent the ingest never wrote is MERGEd with the
  properties the ingest gives features);
* the ROI-level graph of each task: the ingest run's feature-level edges contracted by the
  partition (a feature in an ROI becomes the ROI; error nodes, the embedding input, the output
  and features in no ROI stay themselves), weights combined by ``aggregate`` (sum; mean; max =
  the weight of largest magnitude, sign kept), self-loops dropped, as ``ATTRIBUTES_TO`` with
  ``granularity = "roi"`` and ``run`` = the ROI run.

On disk, under ``<out_root>/<roi run>/``: ``summary.csv`` (one line per dictionary),
``rois_<hook>.csv`` (latent, ROI, head), and for attention dictionaries ``heads_<hook>.csv``
(head × ROI counts) and ``heads_<hook>.png`` (the similarity matrix with latents sorted by head
then ROI, and the head × ROI heatmap).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from graphdb.keys import node_key
from graphdb import generations
from graphdb.provenance import RunRecord, tasks_done
from graphdb.schema import Granularity, Label, Rel
from graphdb.writer import GraphWriter
from queries.loader import run_query


def _number(x: Any) -> float | None:
    """A float for Neo4j, or None (no property) for NaN."""
    x = float(x)
    return None if math.isnan(x) else x


def roi_key(names: Any, d: Any, run: str, index: int) -> str:
    return node_key(Label.ROI, model=names.model, checkpoint=names.checkpoint, hook=d.hook,
                    dictionary=d.dictionary, partition=run, index=index)


def roi_rows(names: Any, d: Any, run: str, tasks: list[str]) -> list[dict[str, Any]]:
    """One ``:ROI`` row per block of ``d`` (a :class:`analysis.roi.fit.DictionaryRois`)."""
    sizes = np.bincount(d.labels, minlength=d.n_rois)
    c, r = d.cosine, d.correlation
    return [{"key": roi_key(names, d, run, b), "run": run, "partition": run, "index": b, "size": int(sizes[b]),
             "decoder_cosine": _number(c.observed[b]), "baseline_cosine": _number(c.baseline[b]),
             "baseline_cosine_std": _number(c.baseline_std[b]), "cosine_z": _number(c.z[b]),
             "correlation": _number(r.observed[b]), "baseline_correlation": _number(r.baseline[b]),
             "baseline_correlation_std": _number(r.baseline_std[b]), "correlation_z": _number(r.z[b]),
             "hook": d.hook, "layer": d.layer, "dictionary": d.dictionary_key, "kind": d.dictionary,
             "tasks": tasks, **names.base} for b in range(d.n_rois)]


def contract_edges(rows: list[dict[str, Any]], roi_of: dict[str, str], aggregate: str = "sum") -> list[dict[str, Any]]:
    """Feature-level edges (``source``, ``target``, ``weight``) contracted by ``roi_of`` (node key
    -> ROI key; other nodes stay themselves), combined by ``aggregate``, self-loops dropped."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        src, dst = roi_of.get(row["source"], row["source"]), roi_of.get(row["target"], row["target"])
        if src != dst:
            groups.setdefault((src, dst), []).append(float(row["weight"]))
    out = []
    for (src, dst), ws in sorted(groups.items()):
        w = sum(ws) if aggregate == "sum" else sum(ws) / len(ws) if aggregate == "mean" else max(ws, key=abs)
        if w != 0:
            out.append({"src": src, "dst": dst, "weight": w})
    return out


def write_rois(db: Any, record: RunRecord, names: Any, rois: list[Any], ingest_run: str,
               config: Any) -> dict[str, int]:
    """Write the ROIs and the ROI-level graph of every task (module docstring); returns the
    number of ROI-level edges per task."""
    tasks = list(config.tasks)
    writer = GraphWriter(db)
    # The first write of a run marks its tasks as being written (the library hides ROI-level
    # edges of unfinished tasks); a re-write keeps the finished graph visible until it is replaced.
    first = not tasks_done(db, record)
    gen = generations.begin(writer, record, **({"tasks_writing": tasks} if first else {}))
    tag = {"gen": gen}
    writer.write_relationships(Rel.FOR_TASK, [{"src": record.key, "dst": node_key(Label.TASK, task=t)} for t in tasks],
                               src=Label.RUN, dst=Label.TASK)
    ckpt = node_key(Label.CHECKPOINT, model=names.model, checkpoint=names.checkpoint)
    features, rois_, members, roi_of = [], [], [], {}
    for d in rois:
        rows = roi_rows(names, d, record.run_id, tasks)
        rois_ += rows
        for key, i, b in zip(d.features, d.indices.tolist(), d.labels.tolist(), strict=True):
            features.append({"key": key, "hook": d.hook, "layer": d.layer, "index": i, "dictionary": d.dictionary_key,
                             "kind": d.dictionary, **names.base})
            members.append({"src": key, "dst": rows[b]["key"], "run": record.run_id})
            roi_of[key] = rows[b]["key"]
    writer.write_nodes(Label.FEATURE, features)
    writer.write_relationships(Rel.OF_DICTIONARY, [{"src": f["key"], "dst": f["dictionary"]} for f in features],
                               dst=Label.DICTIONARY)
    writer.write_nodes(Label.ROI, rois_, common=tag)
    writer.write_relationships(Rel.PRODUCED_BY, [{"src": r["key"], "dst": record.key} for r in rois_], dst=Label.RUN,
                               common=tag)
    writer.write_relationships(Rel.AT_CHECKPOINT, [{"src": r["key"], "dst": ckpt} for r in rois_], dst=Label.CHECKPOINT,
                               common=tag)
    writer.write_relationships(Rel.IN_ROI, members, common=tag)
    counts = {}
    for task in tasks:
        edges = run_query(db, "run_edges", {"run": ingest_run, "task": task, "granularity": str(Granularity.FEATURE)})
        coarse = contract_edges(edges, roi_of, config.aggregate)
        writer.write_relationships(Rel.ATTRIBUTES_TO, coarse, common={
            **names.base, "task": task, "run": record.run_id, "granularity": str(Granularity.ROI),
            "aggregation": config.aggregate, **tag})
        counts[task] = len(coarse)
    generations.finish(db, record, gen, "finish_run_rois", model=names.model, checkpoint=names.checkpoint, tasks=tasks)
    return counts


def run_heads(db: Any, ingest_run: str, d: Any) -> Any:
    """Head of each used latent of ``d`` in the ingest run (its largest IN_HEAD share; -1: none)."""
    head = {int(r["index"]): int(r["head"]) for r in run_query(db, "run_feature_heads",
                                                                 {"run": ingest_run, "hook": d.hook})}
    return np.array([head.get(int(i), -1) for i in d.indices], dtype=int)


def head_tables(rois: list[Any]) -> dict[str, Any]:
    """{hook: head × ROI count DataFrame} for the dictionaries with head assignments."""
    import pandas as pd

    out = {}
    for d in rois:
        if d.heads is None or not len(d.labels):
            continue
        heads = [f"L{d.layer}.H{h}" if h >= 0 else "none" for h in d.heads.tolist()]
        table = pd.crosstab(pd.Series(heads, name="head"), pd.Series(d.labels, name="roi"))
        out[d.hook] = table.reindex(columns=range(d.n_rois), fill_value=0)
    return out


def _safe(hook: str) -> str:
    return re.sub(r"[^\w.-]", "_", hook)


def write_outputs(result: Any, tables: dict[str, Any]) -> list[Path]:
    """CSV summary, per-dictionary membership, head tables and plots (module docstring)."""
    import pandas as pd

    out: Path = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "summary.csv"]
    pd.DataFrame(result.summary).to_csv(files[0], index=False)
    for d in result.rois:
        path = out / f"rois_{_safe(d.hook)}.csv"
        pd.DataFrame({"feature": d.features, "index": d.indices, "roi": d.labels,
                      **({"head": d.heads} if d.heads is not None else {})}).to_csv(path, index=False)
        files.append(path)
        if d.hook in tables:
            files.append(out / f"heads_{_safe(d.hook)}.csv")
            tables[d.hook].to_csv(files[-1])
            files.append(_plot_heads(d, tables[d.hook], out / f"heads_{_safe(d.hook)}.png"))
    return files


def _plot_heads(d: Any, table: Any, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.lexsort((d.labels, d.heads))  # by head, then ROI
    S = d.similarity[np.ix_(order, order)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    lim = float(np.abs(S).max()) or 1.0
    im = left.imshow(S, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    heads = d.heads[order]
    for edge in np.flatnonzero(np.diff(heads)) + 0.5:  # head boundaries
        left.axhline(edge, color="k", lw=0.6)
        left.axvline(edge, color="k", lw=0.6)
    left.set_title(f"similarity, latents by head then ROI ({len(order)})", fontsize=9)
    fig.colorbar(im, ax=left, fraction=0.046)
    hm = right.imshow(table.to_numpy(), cmap="viridis", aspect="auto", interpolation="nearest")
    right.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], fontsize=7)
    right.set_yticks(range(table.shape[0]), list(table.index), fontsize=7)
    right.set_xlabel("ROI")
    right.set_ylabel("head")
    if table.size <= 400:
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            right.text(j, i, str(v), ha="center", va="center", fontsize=6, color="w")
    right.set_title("latents per head and ROI", fontsize=9)
    fig.colorbar(hm, ax=right, fraction=0.046)
    fig.suptitle(f"{d.hook} ({d.dictionary})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
