"""Prompt graphs in Neo4j: write one (batched, idempotent), read one back, score what is stored.

What a stored prompt graph is::

    (:Prompt {text, tokens, token_strs, model, checkpoint, transcoders, targets, target_tokens,
              target_weights, task, run, scores ...})-[:PRODUCED_BY]->(:Run)
    (:PromptNode:Node {kind, layer, position, index, feature, activation, value, fixed,
                       influence, ...})-[:IN_PROMPT]->(:Prompt)
    (:PromptNode)-[:ATTRIBUTES_TO {weight, granularity: 'prompt', run, task, model, checkpoint}]->(:PromptNode)

Only the pruned graph is stored (its nodes and its edges): the full graph of a prompt is
dense and large, its scores are on the :Prompt. Node keys carry the prompt and the position
(``graphdb.keys``: ``promptnode|<prompt>|<kind>|<layer>|<position>|<index>``); ``feature`` is
the position-free key of what the node is an occurrence of (the task graph's Feature,
ErrorNode, Input or Output key), which aggregation and the cross-prompt queries group by.
Re-writing the same prompt under the same run MERGEs onto the same nodes and edges.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from graphdb.keys import node_key
from graphdb.provenance import RunRecord
from graphdb.schema import Granularity, Label, Rel
from graphdb.writer import GraphWriter
from ingest.dictionaries.transcoder import in_hook, out_hook
from ingest.errors import AttributionError
from ingest.replacement.graph import PromptGraph
from ingest.replacement.prune import Layout, Pruned, Scores, scores

EMBED_NAME = "embed"
#: The metric part of a task's logit-difference output key (as the rest of mechgraph writes it).
LOGIT_DIFF = "logit_diff"
NO_TASK = "trace"
_KIND_ORDER = {"feature": 0, "error": 1, "token": 2, "target": 3}


@dataclass(frozen=True)
class GraphLabels:
    """Names every key of one model checkpoint's prompt graphs shares."""

    model: str
    checkpoint: str
    dictionary: str          # the transcoder set's name in Feature/ErrorNode keys (its kind)
    task: str = NO_TASK

    def position_free(self, node: dict[str, Any]) -> str:
        """The task-graph key of what ``node`` (``PromptGraph.node``) is an occurrence of."""
        base = {"model": self.model, "checkpoint": self.checkpoint}
        kind = node["kind"]
        if kind == "feature":
            return node_key(Label.FEATURE, **base, hook=in_hook(node["layer"]), dictionary=self.dictionary,
                            index=node["feature"])
        if kind == "error":
            return node_key(Label.ERROR, **base, hook=out_hook(node["layer"]), dictionary=self.dictionary)
        if kind == "token":
            return node_key(Label.INPUT, **base, name=EMBED_NAME)
        metric = LOGIT_DIFF if node["counter_token"] is not None else f"logit-{node['token']}"
        return node_key(Label.OUTPUT, **base, task=self.task, metric=metric)


@dataclass(frozen=True)
class StoredPrompt:
    prompt: str
    nodes: int
    edges: int


def prompt_id(run: str, tokens: Tensor, targets: list[Any]) -> str:
    blob = json.dumps({"run": run, "tokens": [int(t) for t in tokens],
                       "targets": [[t.token, t.counter_token] for t in targets]}, sort_keys=True)
    return "p-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def prompt_node_key(prompt: str, node: dict[str, Any], target_index: int = 0) -> str:
    index = node.get("feature", target_index if node["kind"] == "target" else 0)
    return node_key(Label.PROMPT_NODE, prompt=prompt, kind=node["kind"], layer=node["layer"],
                    position=node["position"], index=index)


def write_prompt_graph(writer: GraphWriter, graph: PromptGraph, pruned: Pruned, labels: GraphLabels,
                       run: RunRecord, *, transcoders: str, full: Scores, pruned_scores: Scores) -> StoredPrompt:
    """MERGE the prompt, its pruned nodes and edges (batched through ``writer``)."""
    pid = prompt_id(run.run_id, graph.tokens, graph.targets)
    pkey = node_key(Label.PROMPT, prompt=pid)
    keep = pruned.node_mask.nonzero().flatten().tolist()
    A = graph.adjacency
    keys: dict[int, str] = {}
    rows = []
    for i in keep:
        node = graph.node(i)
        key = prompt_node_key(pid, node, i - graph.target_start)
        keys[i] = key
        row = {"key": key, "prompt": pid, "kind": node["kind"], "layer": node["layer"], "position": node["position"],
               "index": node.get("feature", 0), "feature": labels.position_free(node),
               "influence": float(pruned.cumulative[i]), "model": labels.model, "checkpoint": labels.checkpoint,
               "task": labels.task, "run": run.run_id}
        if node["kind"] in ("feature", "target"):
            row["value"], row["fixed"] = float(graph.value[i]), float(graph.fixed[i])
        if node["kind"] == "feature":
            row["activation"] = node["activation"]
        if node["kind"] == "token":
            row["token"], row["text"] = node["token"], node["text"]
        if node["kind"] == "target":
            row["token"], row["label"], row["weight"] = node["token"], node["label"], node["weight"]
            row["counter_token"] = node["counter_token"]
        rows.append(row)
    edges = pruned.edge_mask & (A != 0)
    t_idx, s_idx = edges.nonzero(as_tuple=True)
    edge_rows = [{"src": keys[s], "dst": keys[t], "weight": float(A[t, s])}
                 for t, s in zip(t_idx.tolist(), s_idx.tolist(), strict=True) if s in keys and t in keys]
    prompt_row = {"key": pkey, "prompt": pid, "text": graph.prompt, "tokens": [int(t) for t in graph.tokens],
                  "token_strs": graph.token_strs, "model": labels.model, "checkpoint": labels.checkpoint,
                  "transcoders": transcoders, "task": labels.task, "run": run.run_id,
                  "targets": [t.label for t in graph.targets], "target_tokens": [t.token for t in graph.targets],
                  "target_counter_tokens": [-1 if t.counter_token is None else t.counter_token for t in graph.targets],
                  "target_weights": [t.weight for t in graph.targets], "n_layers": graph.n_layers,
                  "active_features": int(graph.active_features.shape[0]), "graph_nodes": graph.n_nodes,
                  "graph_edges": int((A != 0).sum()), "pruned_nodes": len(rows), "pruned_edges": len(edge_rows),
                  "replacement_score": full.replacement, "completeness_score": full.completeness,
                  "pruned_replacement_score": pruned_scores.replacement,
                  "pruned_completeness_score": pruned_scores.completeness}
    edges_written = write_prompt_rows(writer, prompt_row, rows, edge_rows, labels, run)
    return StoredPrompt(prompt=pid, nodes=len(rows), edges=edges_written)


def write_prompt_rows(writer: GraphWriter, prompt_row: dict[str, Any], node_rows: list[dict[str, Any]],
                      edge_rows: Iterable[dict[str, Any]], labels: GraphLabels, run: RunRecord, *,
                      create_edges: bool = False) -> int:
    """The one write path of a prompt graph (traced here, or imported by ``analysis.exchange``):
    the run, the prompt, its nodes and ``IN_PROMPT``, then its edges, which may be a generator
    (the writer batches it, so an imported graph's links are never all in memory). Returns the
    number of edges written. ``create_edges``: the prompt's nodes were just written for the
    first time and no edge repeats, so the edges are CREATEd (``GraphWriter.write_relationships``)."""
    pkey = prompt_row["key"]
    writer.write_nodes(Label.RUN, [run.row()])
    writer.write_nodes(Label.PROMPT, [prompt_row])
    writer.write_relationships(Rel.PRODUCED_BY, [{"src": pkey, "dst": run.key}], src=Label.PROMPT, dst=Label.RUN)
    writer.write_nodes(Label.PROMPT_NODE, node_rows)
    writer.write_relationships(Rel.IN_PROMPT, ({"src": r["key"], "dst": pkey} for r in node_rows),
                               src=Label.NODE, dst=Label.PROMPT)
    return writer.write_relationships(Rel.ATTRIBUTES_TO, edge_rows,
                                      common={"run": run.run_id, "task": labels.task, "model": labels.model,
                                              "checkpoint": labels.checkpoint,
                                              "granularity": str(Granularity.PROMPT)},
                                      create=create_edges)


@dataclass
class StoredGraph:
    """A stored prompt graph read back: node keys in graph order, adjacency, layout, weights."""

    prompt: str
    keys: list[str]
    nodes: list[dict[str, Any]]
    adjacency: Tensor
    layout: Layout
    weights: Tensor


def read_prompt_graph(db: Any, prompt: str, *, keys: set[str] | None = None) -> StoredGraph:
    """The stored (pruned) graph of ``prompt``, or its subgraph induced by ``keys``, in the
    replacement-graph node order (features, errors, tokens, targets)."""
    from graphdb.writer import cypher_template

    pkey = node_key(Label.PROMPT, prompt=prompt)
    rows = db.read(cypher_template("prompt_nodes"), {"key": pkey})
    if not rows:
        raise AttributionError(f"no stored prompt graph {prompt!r}")
    nodes = [r["node"] for r in rows if keys is None or r["node"]["key"] in keys]
    nodes.sort(key=lambda n: (_KIND_ORDER[n["kind"]], n["layer"], n["position"], n["index"]))
    order = [n["key"] for n in nodes]
    where = {k: i for i, k in enumerate(order)}
    A = torch.zeros(len(order), len(order), dtype=torch.float64)
    for e in db.read(cypher_template("prompt_edges"), {"key": pkey, "granularity": str(Granularity.PROMPT)}):
        if e["src"] in where and e["dst"] in where:
            A[where[e["dst"]], where[e["src"]]] = e["weight"]
    count = {k: sum(n["kind"] == k for n in nodes) for k in _KIND_ORDER}
    layout = Layout(count["feature"], count["error"], count["token"], count["target"])
    weights = torch.tensor([n["weight"] for n in nodes if n["kind"] == "target"], dtype=torch.float64)
    return StoredGraph(prompt=prompt, keys=order, nodes=nodes, adjacency=A, layout=layout, weights=weights)


def stored_scores(db: Any, prompt: str, *, keys: set[str] | None = None) -> Scores:
    """Replacement and completeness scores of a stored prompt graph or of its subgraph on ``keys``."""
    g = read_prompt_graph(db, prompt, keys=keys)
    return scores(g.adjacency, g.layout, g.weights)
