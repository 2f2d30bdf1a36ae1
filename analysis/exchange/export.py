"""Stored graphs out as Neuronpedia graph JSON (conventions: :mod:`analysis.exchange.neuronpedia`).

Three kinds of selection, one document shape:

* a **prompt graph** (``mechgraph trace`` or an import): its stored (pruned) nodes and edges,
  optionally pruned further by influence at the thresholds given (the same pruning as the
  trace's) or cut at a minimum |weight|; token positions are ``ctx_idx``;
* a **task graph** (one run x task at one granularity, the library query ``task_subgraph``),
  a **community** (its members' edges inside the graph its run partitioned), or **any library
  query** returning ``source``, ``target``, ``weight`` node keys: position-free graphs, every
  node at ``ctx_idx`` 0. Two dictionaries at one layer (e.g. resid and MLP SAEs) would share
  feature ids: the second and later dictionaries of a layer get their indices offset by a
  power of ten above every index (circuit-tracer's old per-layer offset) and their error node
  the ``ctx_idx`` of its dictionary's rank.

``clerp`` is the feature's automatic description (``mechgraph describe``) where there is one,
else what an imported file said. Communities and ROIs become ``qParams.supernodes``: ``[label,
node ids...]``: for a task graph or a query the communities of ``--communities RUN``; for a prompt
graph the communities its nodes belong to through their ``feature`` (as ``mechgraph view`` groups
them; the newest covering run by default), those attached to its own nodes (imported supernodes)
and ROIs.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from analysis.exchange import neuronpedia as np_
from mechgraph.errors import ConfigError, MechgraphError

_CYPHER = Path(__file__).parent / "cypher"
_KIND_ORDER = {"feature": 0, "error": 1, "token": 2, "target": 3}
_LAYER_RE = re.compile(r"blocks\.(\d+)\.")


class ExportError(MechgraphError):
    """The selection to export does not exist or is empty."""


def cypher(name: str) -> str:
    return (_CYPHER / f"{name}.cypher").read_text()


def _metadata(slug: str, scan: str, prompt: str, tokens: list[str], *, transcoders: list[str] | None = None,
              node_threshold: float | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from mechgraph import version

    meta = {**(extra or {}), "slug": slug, "scan": scan, "transcoder_list": transcoders or [],
            "prompt_tokens": tokens, "prompt": prompt, "node_threshold": node_threshold,
            "schema_version": np_.SCHEMA_VERSION}
    meta["info"] = {**(meta.get("info") or {}), "generator": {"name": "mechgraph", "version": version()}}
    return meta


def _document(meta: dict[str, Any], nodes: list[dict[str, Any]], links: list[dict[str, Any]],
              supernodes: list[list[str]], qparams: dict[str, Any] | None = None) -> dict[str, Any]:
    q = {**np_.QPARAM_DEFAULTS, **(qparams or {}), "supernodes": supernodes}
    return {"metadata": meta, "qParams": q, "nodes": [np_.full_node(n) for n in nodes], "links": links}


# -- prompt graphs -------------------------------------------------------------------------
#: ``communities=`` value of :func:`export_prompt` for "the newest run covering the prompt's features".
NEWEST = "newest"
#: ``communities=`` value for "no communities run" (imported supernodes and ROIs still come).
NONE = "none"


def export_prompt(db: Any, prompt: str, *, min_abs_weight: float = 0.0, node_threshold: float | None = None,
                  edge_threshold: float | None = None, slug: str | None = None,
                  communities: str = NEWEST) -> dict[str, Any]:
    """The Neuronpedia document of one stored prompt graph (see the module docstring).

    ``communities``: the communities run whose communities become supernodes, reached as
    ``mechgraph view`` reaches them (each prompt node's ``feature`` -> its community); ``newest``
    (the newest run covering any of the prompt's features; none for an imported prompt with its
    own supernodes, so a round trip keeps exactly the file's) or ``none``. The run used is
    ``metadata.info.communities_run``."""
    from graphdb.keys import node_key
    from graphdb.schema import Granularity, Label
    from graphdb.writer import cypher_template

    if not math.isfinite(min_abs_weight) or min_abs_weight < 0:
        raise ConfigError(f"min_abs_weight must be a finite number >= 0, got {min_abs_weight}")
    pkey = node_key(Label.PROMPT, prompt=prompt)
    found = db.read(cypher("export_prompt"), {"key": pkey})
    if not found:
        raise ExportError(f"no stored prompt graph {prompt!r} (`mechgraph query run runs` lists runs; "
                          "`mechgraph trace` and `mechgraph import neuronpedia` print prompt ids)")
    p = found[0]["prompt"]
    rows = db.read(cypher("export_prompt_nodes"), {"key": pkey})
    edges = db.read(cypher_template("prompt_edges"), {"key": pkey, "granularity": str(Granularity.PROMPT)})
    keep: set[str] | None = None
    if node_threshold is not None or edge_threshold is not None:
        keep, kept_edges = _repruned(db, prompt, node_threshold, edge_threshold)
        edges = [e for e in edges if (e["src"], e["dst"]) in kept_edges]
    edges = [e for e in edges if abs(e["weight"]) >= min_abs_weight]
    n_layers = int(p.get("n_layers") or 0)
    nodes: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: _prompt_order(r["node"])):
        n = r["node"]
        if keep is None or n["key"] in keep:
            nodes[n["key"]] = _prompt_node(n, r["description"], n_layers)
    links = [{"source": nodes[e["src"]]["node_id"], "target": nodes[e["dst"]]["node_id"], "weight": e["weight"]}
             for e in edges if e["src"] in nodes and e["dst"] in nodes]
    groups = db.read(cypher("export_prompt_supernodes"), {"key": pkey})
    run = _community_run(db, pkey, communities, imported=any(g["group"].get("member_ids") is not None for g in groups))
    if run is not None:
        seen = {g["group"].get("key") for g in groups}
        groups += [g for g in db.read(cypher("export_prompt_feature_communities"), {"key": pkey, "run": run})
                   if g["group"].get("key") not in seen]
    supernodes = _supernodes(groups, {k: n["node_id"] for k, n in nodes.items()})
    extra = json.loads(p.get("metadata_extra") or "{}")
    if run is not None:
        extra["info"] = {**(extra.get("info") or {}), "communities_run": run}
    meta = _metadata(slug or p.get("slug") or prompt, p.get("scan") or p.get("model", ""), p.get("text", ""),
                     list(p.get("token_strs") or []), transcoders=list(p.get("transcoder_list") or []),
                     node_threshold=node_threshold if node_threshold is not None else p.get("node_threshold"),
                     extra=extra)
    q = {"pinnedIds": list(p.get("pinned_ids") or []), "linkType": p.get("link_type") or "both",
         "clickedId": p.get("clicked_id") or "", "sg_pos": p.get("sg_pos") or ""}
    return _document(meta, list(nodes.values()), links, supernodes, q)


def _community_run(db: Any, pkey: str, communities: str, *, imported: bool) -> str | None:
    """The communities run to take supernodes from (``export_prompt``'s ``communities``)."""
    if communities == NONE or (communities == NEWEST and imported):
        return None
    runs = db.read(cypher("prompt_community_runs"), {"key": pkey})
    if communities == NEWEST:
        return runs[0]["run"] if runs else None
    if not any(r["run"] == communities for r in runs):
        known = ", ".join(r["run"] for r in runs) or "none"
        raise ExportError(f"communities run {communities!r} has none of this prompt's features "
                          f"(runs that do: {known}; `mechgraph communities` makes one)")
    return communities


def _prompt_order(n: dict[str, Any]) -> tuple:
    if n.get("np_order") is not None:
        return (0, n["np_order"])
    return (1, _KIND_ORDER[n["kind"]], n["layer"], n["position"], n["index"])


def _prompt_node(n: dict[str, Any], description: str | None, n_layers: int) -> dict[str, Any]:
    """A stored prompt node as a Neuronpedia node: the fields an imported file gave it, else the
    format's conventions."""
    clerp = description or n.get("clerp") or ""
    if n.get("np_node_id") is not None:
        act = n.get("activation") if n["kind"] == "feature" else n.get("np_activation")
        return {"node_id": n["np_node_id"], "feature": n.get("np_feature"), "layer": n.get("np_layer"),
                "ctx_idx": n["position"], "feature_type": n.get("np_feature_type"), "jsNodeId": n.get("np_js_id"),
                "token_prob": n.get("np_token_prob", 0.0), "is_target_logit": n.get("np_is_target_logit", False),
                "run_idx": n.get("np_run_idx", 0), "reverse_ctx_idx": n.get("np_reverse_ctx_idx", 0),
                "clerp": clerp, "influence": n.get("influence"), "activation": act}
    kind, layer, pos = n["kind"], n["layer"], n["position"]
    if kind == "feature":
        return {**np_.feature_node(layer, n["index"], pos), "clerp": clerp, "influence": n.get("influence"),
                "activation": n.get("activation")}
    if kind == "error":
        return {**np_.error_node(layer, pos), "influence": n.get("influence")}
    if kind == "token":
        return {**np_.embedding_node(n["token"], pos), "influence": n.get("influence")}
    prob = float(n.get("weight") or 0.0)
    return {**np_.logit_node(n["token"], pos, n_layers), "token_prob": prob, "is_target_logit": n["index"] == 0,
            "clerp": np_.logit_clerp(str(n.get("label", n["token"])), prob), "influence": n.get("influence")}


def _repruned(db: Any, prompt: str, node_threshold: float | None,
              edge_threshold: float | None) -> tuple[set[str], set[tuple[str, str]]]:
    """The stored graph pruned again by influence (``ingest.replacement.prune``)."""
    from ingest.replacement.prune import prune
    from ingest.replacement.store import read_prompt_graph

    g = read_prompt_graph(db, prompt)
    try:
        pr = prune(g.adjacency, g.layout, g.weights, node_threshold=0.8 if node_threshold is None else node_threshold,
                   edge_threshold=0.98 if edge_threshold is None else edge_threshold)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    keep = {g.keys[i] for i in pr.node_mask.nonzero().flatten().tolist()}
    mask = pr.edge_mask & (g.adjacency != 0)
    t_idx, s_idx = mask.nonzero(as_tuple=True)
    edges = {(g.keys[s], g.keys[t]) for t, s in zip(t_idx.tolist(), s_idx.tolist(), strict=True)
             if g.keys[s] in keep and g.keys[t] in keep}
    return keep, edges


def _supernodes(groups: list[dict[str, Any]], node_id: dict[str, str]) -> list[list[str]]:
    out = []
    for g in groups:
        c = g["group"]
        if c.get("member_ids") is not None:          # an imported supernode: its members as the file had them
            out.append([str(c.get("label", "")), *c["member_ids"]])
            continue
        members = [node_id[k] for k in g["members"] if k in node_id]
        if members:
            out.append([_group_label(g, len(set(members))), *dict.fromkeys(members)])
    return out


def _group_label(g: dict[str, Any], shown: int) -> str:
    kind, c = g["kind"], g["group"]
    if c.get("label"):
        return str(c["label"])
    if kind == "roi":
        return f"ROI {c.get('index')} of {c.get('dictionary')} at {c.get('hook')} ({c.get('size', '?')} latents)"
    if "layers" in g:        # a prompt graph's community, reached through its features
        layers = sorted({int(x) for x in g["layers"] if x is not None})
        span = f"L{layers[0]}" + (f"-L{layers[-1]}" if layers[-1] != layers[0] else "") if layers else ""
        about = f": {g['description']}" if g.get("description") else ""
        return f"community {c.get('index')} ({shown} nodes {span}){about}"
    return f"community {c.get('index')} (level {c.get('level')}, {c.get('size', '?')} nodes, run {c.get('run')})"


# -- task graphs and selections ------------------------------------------------------------
def export_edges(db: Any, edges: Iterable[dict[str, Any]], *, slug: str, scan: str, title: str,
                 community_run: str | None = None) -> dict[str, Any]:
    """The Neuronpedia document of a position-free graph given by its edges (``source``,
    ``target`` node keys and ``weight``; parallel edges of one pair are summed)."""
    summed: dict[tuple[str, str], float] = {}
    for e in edges:
        try:
            pair = (e["source"], e["target"])
            summed[pair] = summed.get(pair, 0.0) + float(e["weight"])
        except (KeyError, TypeError):
            raise ConfigError("a selection to export must return source, target (node keys) and weight") from None
    if not summed:
        raise ExportError(f"the selection {title!r} has no edges")
    keys = sorted({k for pair in summed for k in pair})
    rows = db.read(cypher("export_nodes"), {"keys": keys})
    props = {r["node"]["key"]: (r["node"], set(r["labels"])) for r in rows}
    missing = [k for k in keys if k not in props]
    if missing:
        raise ExportError(f"the selection names {len(missing)} nodes that are not stored, e.g. {missing[0]!r}")
    nodes = _task_nodes(props)
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": w}
             for (s, t), w in summed.items()]
    groups = db.read(cypher("export_node_groups"), {"keys": keys, "community_run": community_run or ""})
    supernodes = _supernodes(groups, {k: n["node_id"] for k, n in nodes.items()})
    meta = _metadata(slug, scan, title, [])
    order = sorted(nodes.values(), key=lambda n: (n["layer"] == "E", _num(n["layer"]), n["ctx_idx"], n["node_id"]))
    return _document(meta, order, links, supernodes)


def _num(layer: str) -> int:
    return -1 if layer == "E" else int(layer)


def _layer(node: dict[str, Any]) -> int:
    if node.get("layer") is not None:
        return int(node["layer"])
    m = _LAYER_RE.search(str(node.get("hook", "")))
    return int(m.group(1)) if m else 0


def _task_nodes(props: dict[str, tuple[dict[str, Any], set[str]]]) -> dict[str, dict[str, Any]]:
    from graphdb.schema import Label

    features = [n for n, labels in props.values() if str(Label.FEATURE) in labels]
    layered = {str(Label.FEATURE), str(Label.ERROR), str(Label.HEAD)}
    n_layers = max((_layer(n) for n, labels in props.values() if layered & labels), default=-1) + 1
    # rank of each dictionary among the dictionaries of its layer (disambiguates shared ids)
    dicts: dict[int, set[str]] = {}
    for n, _labels in props.values():
        if n.get("dictionary") is not None and n.get("hook") is not None:
            dicts.setdefault(_layer(n), set()).add(str(n["dictionary"]))
    by_layer = {layer: sorted(ds) for layer, ds in dicts.items()}
    biggest = max((int(n.get("index", 0)) for n in features), default=0)
    offset = 10 ** max(1, math.ceil(math.log10(biggest + 1)))
    out: dict[str, dict[str, Any]] = {}
    outputs = 0
    for key in sorted(props):
        n, labels = props[key]
        layer = _layer(n)
        ranked = by_layer.get(layer, [])
        rank = ranked.index(str(n["dictionary"])) if str(n.get("dictionary")) in ranked else 0
        if str(Label.FEATURE) in labels:
            node = {**np_.feature_node(layer, int(n["index"]) + rank * offset, 0), "clerp": n.get("description") or ""}
        elif str(Label.ERROR) in labels:
            node = np_.error_node(layer, rank)
        elif str(Label.INPUT) in labels:
            node = {**np_.embedding_node(0, 0), "clerp": str(n.get("name", "embed"))}
        elif str(Label.OUTPUT) in labels:
            node = {**np_.logit_node(outputs, 0, n_layers), "is_target_logit": outputs == 0, "token_prob": 1.0,
                    "clerp": f"{n.get('task', '')} {n.get('metric', '')}".strip()}
            outputs += 1
        elif str(Label.HEAD) in labels:
            node = {"node_id": f"{layer}_{n.get('head')}_0", "feature": int(n.get("head", 0)), "layer": str(layer),
                    "ctx_idx": 0, "feature_type": "attention head", "clerp": f"L{layer}H{n.get('head')}"}
        elif str(Label.ROI) in labels:
            node = {"node_id": f"{layer}_{n.get('index')}_0", "feature": int(n.get("index", 0)), "layer": str(layer),
                    "ctx_idx": 0, "feature_type": "roi", "clerp": f"ROI {n.get('index')} at {n.get('hook')}"}
        else:
            raise ExportError(f"cannot export node {key!r} (labels {sorted(labels)}) to Neuronpedia JSON")
        out[key] = node
    return out


def export_task(db: Any, *, model: str, checkpoint: str, task: str, run: str = "newest",
                granularity: str = "feature", min_abs_weight: float = 0.0, limit: int = 1_000_000,
                community_run: str | None = None) -> dict[str, Any]:
    """A task graph (one run x task) via the library query ``task_subgraph``."""
    from queries.loader import run_query

    rows = run_query(db, "task_subgraph", {"model": model, "checkpoint": checkpoint, "task": task, "run": run,
                                            "granularity": granularity, "min_abs_weight": min_abs_weight,
                                            "limit": limit})
    return export_edges(db, rows, slug=f"{model}-{checkpoint}-{task}", scan=model,
                        title=f"{task} on {model}@{checkpoint} (run {run}, {granularity})", community_run=community_run)


def export_community(db: Any, community: str) -> dict[str, Any]:
    """One community's members and their edges inside the graph its run partitioned."""
    from graphdb.keys import parse_key

    try:
        _, parts = parse_key(community)
    except ConfigError:
        raise ConfigError(f"{community!r} is not a community key (community|<run>|<level>|<index>)") from None
    rows = db.read(cypher("export_community_edges"), {"community": community})
    return export_edges(db, rows, slug=f"community-{parts.get('run', '')}-{parts.get('index', '')}",
                        scan=str(parts.get("run", "")), title=f"community {community}", community_run=parts.get("run"))


def export_query(db: Any, name: str, params: dict[str, Any], *, community_run: str | None = None) -> dict[str, Any]:
    """The edges any library query returns (it must return ``source``, ``target``, ``weight``)."""
    from queries.loader import get_query, run_query

    q = get_query(name)
    if not {"source", "target", "weight"} <= set(q.returns):
        raise ConfigError(f"query {name} returns {list(q.returns)}; an export needs source, target and weight")
    rows = run_query(db, name, params)
    return export_edges(db, rows, slug=name, scan=str(params.get("model", name)),
                        title=f"query {name} {params}", community_run=community_run)


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    """Write ``doc`` to ``path`` atomically: a reader never sees half a file."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
