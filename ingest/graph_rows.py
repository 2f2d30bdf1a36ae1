"""From an accumulated attribution graph to Neo4j rows: node keys, nodes, edges, heads.

Every key comes from :func:`graphdb.keys.node_key`. A feature is written when it was active
(clean or baseline) somewhere in the task's data; error nodes, the embedding input and the
task's output node always are. Feature-level edges carry ``granularity = "feature"``; the
head-level graph (features of attention dictionaries contracted to their argmax head, every
other node kept, weights summed) carries ``granularity = "head"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphdb.keys import node_key, parse_key
from graphdb.schema import Granularity, Label, Rel
from ingest.attribution.aggregate import Edges, GraphAccumulator
from ingest.attribution.slots import Slot
from mechgraph.errors import ConfigError

METRIC = "logit_diff"
EMBED_NAME = "embed"


def attribution_property(task: str) -> str:
    """Node property holding a node's attribution to ``task``'s metric (``attribution_<task>``)."""
    return "attribution_" + re.sub(r"\W", "_", task)


@dataclass(frozen=True)
class GraphNames:
    """Names shared by every key of one model checkpoint's graph."""

    model: str
    checkpoint: str
    slots: tuple[Slot, ...]
    n_layers: int

    def dictionary_name(self, slot: Slot) -> str:
        """The key's ``dictionary`` part: the dictionary's kind (``sae/topk``, ``identity``, ...)."""
        return slot.dictionary.kind if slot.dictionary is not None else "embed"

    def dictionary_key(self, slot: Slot) -> str:
        return node_key(Label.DICTIONARY, model=self.model, checkpoint=self.checkpoint, hook=slot.hook,
                        dictionary=self.dictionary_name(slot))

    def node_key(self, s: int, index: int, task: str) -> str:
        """Key of node ``index`` of slot ``s`` (``s == len(slots)``: the task's output)."""
        if s == len(self.slots):
            return node_key(Label.OUTPUT, model=self.model, checkpoint=self.checkpoint, task=task, metric=METRIC)
        slot = self.slots[s]
        if slot.dictionary is None:
            return node_key(Label.INPUT, model=self.model, checkpoint=self.checkpoint, name=EMBED_NAME)
        parts = {"model": self.model, "checkpoint": self.checkpoint, "hook": slot.hook,
                 "dictionary": self.dictionary_name(slot)}
        if index == slot.vector:
            return node_key(Label.ERROR, **parts)
        return node_key(Label.FEATURE, **parts, index=index)

    def locate(self, key: str) -> tuple[int, int]:
        """Invert :meth:`node_key`: (slot, index) of a feature, error, input or output key of
        this model checkpoint (the output is slot ``len(slots)``, index 0)."""
        label, parts = parse_key(key)
        if parts.get("model") != self.model or parts.get("checkpoint") != self.checkpoint:
            raise ConfigError(f"{key} is not a node of {self.model} @ {self.checkpoint}")
        if label is Label.OUTPUT:
            return len(self.slots), 0
        for s, slot in enumerate(self.slots):
            if label is Label.INPUT and slot.dictionary is None:
                return s, slot.vector
            if slot.dictionary is None or parts.get("hook") != slot.hook:
                continue
            if label is Label.ERROR:
                return s, slot.vector
            if label is Label.FEATURE:
                return s, int(parts["index"])
        raise ConfigError(f"{key} is not a node of this graph's dictionaries (a {label} node, or another hook)")

    def head_key(self, layer: int, head: int) -> str:
        return node_key(Label.HEAD, model=self.model, checkpoint=self.checkpoint, layer=layer, head=head)

    @property
    def base(self) -> dict[str, str]:
        return {"model": self.model, "checkpoint": self.checkpoint}


@dataclass
class HeadAssignment:
    """Per attention slot: share [n_latents, H], argmax head and normalised entropy per latent."""

    share: Any
    head: Any
    entropy: Any
    assigned: Any  # bool per latent: it had any mass (was active)


def head_assignments(acc: GraphAccumulator) -> dict[int, HeadAssignment]:
    import torch

    out = {}
    for s, mass in acc.head_mass.items():
        total = mass.sum(1, keepdim=True)
        share = torch.where(total > 0, mass / total.clamp(min=1e-30), torch.zeros_like(mass))
        H = mass.shape[1]
        plogp = torch.where(share > 0, share * share.clamp(min=1e-30).log(), torch.zeros_like(share))
        entropy = -plogp.sum(1) / math.log(H) if H > 1 else torch.zeros(mass.shape[0], dtype=mass.dtype)
        out[s] = HeadAssignment(share=share, head=share.argmax(1), entropy=entropy, assigned=total[:, 0] > 0)
    return out


Row = tuple[Label | Rel, dict[str, Any], tuple[Label, Label] | None]


def node_rows(names: GraphNames, task: str, acc: GraphAccumulator,
              heads: dict[int, HeadAssignment]) -> Iterator[Row]:
    """Model, checkpoint, dictionaries, heads and every node of the task's graph."""
    m, ck = names.model, names.checkpoint
    model_key = node_key(Label.MODEL, model=m)
    ckpt_key = node_key(Label.CHECKPOINT, model=m, checkpoint=ck)
    yield Label.MODEL, {"key": model_key, "name": m, "n_layers": names.n_layers}, None
    yield Label.CHECKPOINT, {"key": ckpt_key, "name": ck, **names.base}, None
    yield Rel.OF_MODEL, {"src": ckpt_key, "dst": model_key}, (Label.CHECKPOINT, Label.MODEL)
    prop = attribution_property(task)
    for s, slot in enumerate(names.slots):
        attr = acc.node_attribution(s)
        active = acc.active.get(s)
        if slot.dictionary is None:
            row = {"key": names.node_key(s, 0, task), "name": EMBED_NAME, "hook": slot.hook, "layer": -1,
                   **names.base}
            if attr is not None:
                row[prop] = float(attr[slot.vector])
            yield Label.INPUT, row, None
            continue
        dkey = names.dictionary_key(slot)
        yield Label.DICTIONARY, {"key": dkey, "hook": slot.hook, "layer": slot.layer, "kind": slot.dictionary.kind,
                                 "d_dict": slot.n_latents, "d_in": slot.dictionary.d_in,
                                 "source": slot.dictionary.source, **names.base}, None
        yield Rel.AT_CHECKPOINT, {"src": dkey, "dst": ckpt_key}, (Label.DICTIONARY, Label.CHECKPOINT)
        ekey = names.node_key(s, slot.vector, task)
        err = {"key": ekey, "hook": slot.hook, "layer": slot.layer, "dictionary": dkey, **names.base}
        if attr is not None:
            err[prop] = float(attr[slot.vector])
        yield Label.ERROR, err, None
        yield Rel.OF_DICTIONARY, {"src": ekey, "dst": dkey}, (Label.NODE, Label.DICTIONARY)
        assign = heads.get(s)
        if assign is not None:
            for h in range(assign.share.shape[1]):
                yield Label.HEAD, {"key": names.head_key(slot.layer, h), "layer": slot.layer, "head": h,
                                   **names.base}, None
        idx = (active[:slot.n_latents] > 0).nonzero().flatten().tolist() if active is not None else []
        for i in idx:
            fkey = names.node_key(s, i, task)
            row = {"key": fkey, "hook": slot.hook, "layer": slot.layer, "index": i, "dictionary": dkey,
                   "kind": slot.dictionary.kind, **names.base}
            if attr is not None:
                row[prop] = float(attr[i])
            if assign is not None and bool(assign.assigned[i]):
                row["head"] = int(assign.head[i])
                row["head_entropy"] = float(assign.entropy[i])
            yield Label.FEATURE, row, None
            yield Rel.OF_DICTIONARY, {"src": fkey, "dst": dkey}, (Label.NODE, Label.DICTIONARY)
    yield Label.OUTPUT, {"key": names.node_key(len(names.slots), 0, task), "task": task, "metric": METRIC,
                         "layer": names.n_layers, **names.base}, None


def in_head_rows(names: GraphNames, task: str, heads: dict[int, HeadAssignment], acc: GraphAccumulator,
                 run: str, min_share: float = 0.0) -> Iterator[dict[str, Any]]:
    """``(:Feature)-[:IN_HEAD {share}]->(:Head)`` for every written attention feature."""
    for s, assign in heads.items():
        slot = names.slots[s]
        active = acc.active[s]
        for i in (active[:slot.n_latents] > 0).nonzero().flatten().tolist():
            if not bool(assign.assigned[i]):
                continue
            fkey = names.node_key(s, i, task)
            for h, share in enumerate(assign.share[i].tolist()):
                if share > min_share:
                    yield {"src": fkey, "dst": names.head_key(slot.layer, h), "share": share, "run": run}


def edge_rows(names: GraphNames, task: str, edges: dict[tuple[int, int], Edges]) -> Iterator[dict[str, Any]]:
    """Feature-level ``ATTRIBUTES_TO`` rows (src/dst keys and weight)."""
    for (s, m), e in sorted(edges.items()):
        for d, u, w in zip(e.dst.tolist(), e.src.tolist(), e.weight.tolist(), strict=True):
            yield {"src": names.node_key(s, u, task), "dst": names.node_key(m, d, task), "weight": w}


def head_graph(names: GraphNames, task: str, acc: GraphAccumulator, heads: dict[int, HeadAssignment],
               threshold: float, top_k: int) -> list[dict[str, Any]]:
    """The feature graph contracted by the head partition (weights summed), then the same
    threshold and top-k as the feature graph. Empty without attention dictionaries."""
    import pandas as pd

    if not heads:
        return []
    frames = []
    for s, m in sorted(acc.keys):
        e = acc.weights((s, m))
        frames.append(pd.DataFrame({"src": [_coarse(names, heads, s, u, task) for u in e.src.tolist()],
                                    "dst": [_coarse(names, heads, m, d, task) for d in e.dst.tolist()],
                                    "weight": e.weight.numpy()}))
    if not frames:
        return []
    df = pd.concat(frames).groupby(["src", "dst"], as_index=False, sort=True)["weight"].sum()
    df = df[(df["weight"].abs() >= threshold) & (df["weight"] != 0) & (df["src"] != df["dst"])]
    if top_k > 0:
        df = df.assign(a=df["weight"].abs()).sort_values(["dst", "a", "src"], ascending=[True, False, True])
        df = df.groupby("dst", sort=False).head(top_k).drop(columns="a")
    return [{"src": r.src, "dst": r.dst, "weight": float(r.weight)} for r in df.itertuples(index=False)]


def _coarse(names: GraphNames, heads: dict[int, HeadAssignment], s: int, index: int, task: str) -> str:
    assign = heads.get(s)
    if assign is not None and index < names.slots[s].n_latents and bool(assign.assigned[index]):
        return names.head_key(names.slots[s].layer, int(assign.head[index]))
    return names.node_key(s, index, task)


def edge_common(names: GraphNames, task: str, run: str, granularity: Granularity) -> dict[str, str]:
    return {**names.base, "task": task, "run": run, "granularity": str(granularity)}


def count_edges(edges: dict[tuple[int, int], Edges]) -> int:
    return sum(len(e) for e in edges.values())



def head_report(names: GraphNames, heads: dict[int, HeadAssignment], acc: GraphAccumulator) -> list[dict[str, Any]]:
    """Per head: how many active features it is the argmax head of, their mean share of it,
    and the mean normalised entropy of their assignment (0 = one head, 1 = spread evenly)."""
    out = []
    for s, assign in heads.items():
        slot = names.slots[s]
        live = (acc.active[s][:slot.n_latents] > 0) & assign.assigned
        for h in range(assign.share.shape[1]):
            mine = live & (assign.head == h)
            n = int(mine.sum())
            out.append({"hook": slot.hook, "layer": slot.layer, "head": h, "features": n,
                        "mean_share": round(float(assign.share[mine, h].mean()), 3) if n else None,
                        "mean_entropy": round(float(assign.entropy[mine].mean()), 3) if n else None})
    return out
