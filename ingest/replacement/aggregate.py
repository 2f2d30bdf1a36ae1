"""A task's prompt graphs into the position-free task graph the rest of mechgraph uses.

Every stored (pruned) prompt-graph edge ``u@p -> v@q`` maps to ``u -> v`` on the task graph's
keys (``PromptNode.feature``: Feature, ErrorNode, Input and Output keys, the same keys the
resid/module graphs use). Per prompt, the edges between the same two position-free nodes are
summed over positions (an absent edge counts 0); across prompts they are combined as ``beta``
says: ``sum``, or ``mean`` (the sum divided by the number of prompts). Edges that would join a
node to itself (a feature at two positions) are dropped: the task graph has no self-loops.
The result is written as feature-granularity ``ATTRIBUTES_TO`` edges of the ingest run, with
the task's Model/Checkpoint/Task/Dictionary/node rows, through the batched writer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from graphdb.keys import node_key, parse_key
from graphdb.provenance import RunRecord
from graphdb.schema import Granularity, Label, Rel
from graphdb.writer import GraphWriter

Beta = Literal["mean", "sum"]


@dataclass(frozen=True)
class PromptEdge:
    """One stored prompt-graph edge on position-free keys."""

    prompt: str
    src: str
    dst: str
    weight: float


def aggregate(edges: Iterable[PromptEdge], n_prompts: int, beta: Beta) -> dict[tuple[str, str], float]:
    """``(src, dst) -> weight`` of the task graph (module docstring)."""
    if beta not in ("mean", "sum"):
        raise ValueError(f"beta must be mean or sum for prompt graphs, got {beta!r}")
    total: dict[tuple[str, str], float] = defaultdict(float)
    for e in edges:
        if e.src != e.dst:
            total[(e.src, e.dst)] += e.weight
    if beta == "mean":
        return {k: v / max(n_prompts, 1) for k, v in total.items()}
    return dict(total)


def read_prompt_edges(db: Any, prompts: list[str]) -> list[PromptEdge]:
    """Every stored edge of these prompts' graphs, on position-free keys."""
    from graphdb.writer import cypher_template

    rows = db.read(cypher_template("prompt_edges_position_free"),
                   {"keys": [node_key(Label.PROMPT, prompt=p) for p in prompts],
                    "granularity": str(Granularity.PROMPT)})
    return [PromptEdge(prompt=r["prompt"], src=r["src"], dst=r["dst"], weight=r["weight"]) for r in rows]


def write_task_graph(writer: GraphWriter, weights: dict[tuple[str, str], float], run: RunRecord, *, model: str,
                     checkpoint: str, task: str, dictionary: str) -> int:
    """MERGE the task graph's nodes (with their Model/Checkpoint/Dictionary) and edges."""
    model_key = node_key(Label.MODEL, model=model)
    ckpt_key = node_key(Label.CHECKPOINT, model=model, checkpoint=checkpoint)
    writer.write_nodes(Label.MODEL, [{"key": model_key, "name": model}])
    writer.write_nodes(Label.CHECKPOINT, [{"key": ckpt_key, "name": checkpoint, "model": model,
                                           "checkpoint": checkpoint}])
    writer.write_relationships(Rel.OF_MODEL, [{"src": ckpt_key, "dst": model_key}], src=Label.CHECKPOINT,
                               dst=Label.MODEL)
    task_key = node_key(Label.TASK, task=task)
    writer.write_nodes(Label.TASK, [{"key": task_key, "name": task}])
    writer.write_relationships(Rel.FOR_TASK, [{"src": run.key, "dst": task_key}], src=Label.RUN, dst=Label.TASK)
    by_label: dict[Label, dict[str, dict[str, Any]]] = defaultdict(dict)
    dicts: dict[str, dict[str, Any]] = {}
    links: list[dict[str, Any]] = []
    for key in {k for pair in weights for k in pair}:
        label, parts = parse_key(key)
        row: dict[str, Any] = {"key": key, "model": model, "checkpoint": checkpoint}
        if label in (Label.FEATURE, Label.ERROR):
            layer = int(parts["hook"].split(".")[1])
            dkey = node_key(Label.DICTIONARY, model=model, checkpoint=checkpoint, hook=parts["hook"],
                            dictionary=dictionary)
            dicts[dkey] = {"key": dkey, "hook": parts["hook"], "layer": layer, "kind": dictionary, "model": model,
                           "checkpoint": checkpoint}
            row.update(hook=parts["hook"], layer=layer, dictionary=dkey)
            if label is Label.FEATURE:
                row.update(index=int(parts["index"]), kind=dictionary)
            links.append({"src": key, "dst": dkey})
        elif label is Label.INPUT:
            row.update(name=parts["name"], layer=-1)
        elif label is Label.OUTPUT:
            row.update(task=parts["task"], metric=parts["metric"])
        by_label[label][key] = row
    writer.write_nodes(Label.DICTIONARY, dicts.values())
    writer.write_relationships(Rel.AT_CHECKPOINT, ({"src": d, "dst": ckpt_key} for d in dicts),
                               src=Label.DICTIONARY, dst=Label.CHECKPOINT)
    for label, rows in by_label.items():
        writer.write_nodes(label, rows.values())
    writer.write_relationships(Rel.OF_DICTIONARY, links, src=Label.NODE, dst=Label.DICTIONARY)
    return writer.write_relationships(
        Rel.ATTRIBUTES_TO, ({"src": s, "dst": d, "weight": w} for (s, d), w in sorted(weights.items())),
        common={"run": run.run_id, "task": task, "model": model, "checkpoint": checkpoint,
                "granularity": str(Granularity.FEATURE)})
