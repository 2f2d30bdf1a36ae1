"""A small, deterministic sample graph with the full data model, for the demo and the tests.

It is not computed from a model (that is ``ingest``'s job): it is a hand-shaped residual
graph of a toy ``sample-tiny`` model, with dictionaries on ``resid_post`` of each layer, one
error node per dictionary, heads with ``IN_HEAD`` shares, a per-task output node, and
``ATTRIBUTES_TO`` edges in which each task uses its own planted group of features (so
community and disentanglement queries have a known answer). ``sample_rows`` generates it
lazily; ``write_sample`` groups the rows by type and writes them nodes first.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from graphdb.keys import node_key
from graphdb.provenance import RunRecord
from graphdb.schema import Granularity, Label, Rel
from graphdb.writer import GraphWriter
from mechgraph.errors import ConfigError


@dataclass(frozen=True)
class SampleSpec:
    """Shape of the sample graph."""

    model: str = "sample-tiny"
    checkpoints: tuple[str, ...] = ("step-100", "final")
    n_layers: int = 3
    """Layers of features; the embedding input sits below layer 0, the output above the last."""
    features_per_layer: int = 24
    """Feature nodes per layer; each task owns a block of them (so at least one per task)."""
    tasks: tuple[str, ...] = ("ioi", "induction")
    n_heads: int = 4
    fan_in: int = 4
    """In-edges of each feature from the layer below (within its task's block)."""
    seed: int = 0
    dictionary: str = "sae"
    metric: str = "logit_diff"

    def __post_init__(self) -> None:
        if self.n_layers < 2:
            raise ConfigError("a sample graph needs at least 2 layers")
        if self.features_per_layer < len(self.tasks):
            raise ConfigError("features_per_layer must be at least the number of tasks")
        if self.fan_in < 1:
            raise ConfigError("fan_in must be at least 1")

    def hook(self, layer: int) -> str:
        return f"blocks.{layer}.hook_resid_post"

    def feature_key(self, checkpoint: str, layer: int, index: int) -> str:
        return node_key(Label.FEATURE, model=self.model, checkpoint=checkpoint, hook=self.hook(layer),
                        dictionary=self.dictionary, index=index)

    def task_of(self, index: int) -> str:
        """Planted ground truth: latent ``index`` of every layer serves this task."""
        return self.tasks[index % len(self.tasks)]

    def run(self) -> RunRecord:
        return RunRecord(kind="sample", config=asdict(self), seed=self.seed)


def sample_rows(spec: SampleSpec) -> Iterator[tuple[str, Label | Rel, dict[str, Any], tuple[Label, Label] | None]]:
    """Every row of the sample graph, nodes before the relationships that need them.

    Yields ``(kind, label_or_rel, row, endpoints)`` with kind ``"node"`` or ``"rel"``.
    """
    run = spec.run()
    yield "node", Label.RUN, run.row(), None
    yield "node", Label.MODEL, {"key": node_key(Label.MODEL, model=spec.model), "name": spec.model,
                                "n_layers": spec.n_layers}, None
    for task in spec.tasks:
        yield "node", Label.TASK, {"key": node_key(Label.TASK, task=task), "name": task}, None
        yield "rel", Rel.FOR_TASK, {"src": run.key, "dst": node_key(Label.TASK, task=task)}, (Label.RUN, Label.TASK)
    for ckpt in spec.checkpoints:
        yield from _checkpoint_rows(spec, run, ckpt)


def _checkpoint_rows(spec: SampleSpec, run: RunRecord, ckpt: str) -> Iterator[Any]:
    rng = random.Random(f"{spec.seed}|{ckpt}")
    m = spec.model
    base = {"model": m, "checkpoint": ckpt}
    ckpt_key = node_key(Label.CHECKPOINT, model=m, checkpoint=ckpt)
    yield "node", Label.CHECKPOINT, {"key": ckpt_key, "name": ckpt, **base}, None
    yield "rel", Rel.OF_MODEL, {"src": ckpt_key, "dst": node_key(Label.MODEL, model=m)}, (Label.CHECKPOINT, Label.MODEL)
    for layer in range(spec.n_layers):
        hook = spec.hook(layer)
        dkey = node_key(Label.DICTIONARY, model=m, checkpoint=ckpt, hook=hook, dictionary=spec.dictionary)
        yield "node", Label.DICTIONARY, {"key": dkey, "hook": hook, "kind": "sae", "layer": layer,
                                         "d_sae": spec.features_per_layer, **base}, None
        yield "rel", Rel.AT_CHECKPOINT, {"src": dkey, "dst": ckpt_key}, (Label.DICTIONARY, Label.CHECKPOINT)
        ekey = node_key(Label.ERROR, model=m, checkpoint=ckpt, hook=hook, dictionary=spec.dictionary)
        yield "node", Label.ERROR, {"key": ekey, "hook": hook, "layer": layer, "dictionary": dkey, **base}, None
        yield "rel", Rel.OF_DICTIONARY, {"src": ekey, "dst": dkey}, (Label.NODE, Label.DICTIONARY)
        for h in range(spec.n_heads):
            hkey = node_key(Label.HEAD, model=m, checkpoint=ckpt, layer=layer, head=h)
            yield "node", Label.HEAD, {"key": hkey, "layer": layer, "head": h, **base}, None
        for i in range(spec.features_per_layer):
            fkey = spec.feature_key(ckpt, layer, i)
            yield "node", Label.FEATURE, {"key": fkey, "hook": hook, "layer": layer, "index": i,
                                          "dictionary": dkey, **base}, None
            yield "rel", Rel.OF_DICTIONARY, {"src": fkey, "dst": dkey}, (Label.NODE, Label.DICTIONARY)
            head = i % spec.n_heads
            hkey = node_key(Label.HEAD, model=m, checkpoint=ckpt, layer=layer, head=head)
            yield "rel", Rel.IN_HEAD, {"src": fkey, "dst": hkey, "share": round(0.6 + 0.4 * rng.random(), 4),
                                       "run": run.run_id}, None
    for task in spec.tasks:
        okey = node_key(Label.OUTPUT, model=m, checkpoint=ckpt, task=task, metric=spec.metric)
        yield "node", Label.OUTPUT, {"key": okey, "task": task, "metric": spec.metric,
                                     "layer": spec.n_layers, **base}, None
        yield from _task_edges(spec, run, ckpt, task, okey, rng)


def _task_edges(spec: SampleSpec, run: RunRecord, ckpt: str, task: str, okey: str,
                rng: random.Random) -> Iterator[Any]:
    """Each downstream feature of the task's planted group takes ``fan_in`` in-edges, mostly
    (80%) from the same group in earlier layers, with heavy-tailed signed weights."""
    own = [i for i in range(spec.features_per_layer) if spec.task_of(i) == task]
    common = {"model": spec.model, "checkpoint": ckpt, "task": task, "run": run.run_id,
              "granularity": str(Granularity.FEATURE)}

    def edge(src: str, dst: str, weight: float) -> tuple[str, Rel, dict[str, Any], None]:
        return "rel", Rel.ATTRIBUTES_TO, {"src": src, "dst": dst, "weight": weight, "abs_weight": abs(weight),
                                          **common}, None

    for layer in range(1, spec.n_layers):
        for i in own:
            dst = spec.feature_key(ckpt, layer, i)
            srcs = set()
            while len(srcs) < min(spec.fan_in, layer * spec.features_per_layer):
                up = rng.randrange(layer)
                pool = own if rng.random() < 0.8 else range(spec.features_per_layer)
                srcs.add((up, rng.choice(list(pool))))
            for up, j in sorted(srcs):
                yield edge(spec.feature_key(ckpt, up, j), dst, round(rng.gauss(0, 1) ** 3, 5))
        err = node_key(Label.ERROR, model=spec.model, checkpoint=ckpt, hook=spec.hook(layer - 1),
                       dictionary=spec.dictionary)
        yield edge(err, spec.feature_key(ckpt, layer, own[0]), round(rng.gauss(0, 0.1), 5))
    for i in own:
        yield edge(spec.feature_key(ckpt, spec.n_layers - 1, i), okey, round(rng.gauss(0, 1) ** 3, 5))


def write_sample(writer: GraphWriter, spec: SampleSpec | None = None) -> dict[str, int]:
    """Write the sample graph (idempotently). Returns rows written per label / type."""
    groups: dict[tuple[str, Label | Rel, tuple[Label, Label] | None], list[dict[str, Any]]] = {}
    for kind, what, row, ends in sample_rows(spec or SampleSpec()):
        groups.setdefault((kind, what, ends), []).append(row)
    counts: dict[str, int] = {}
    # Nodes first (a stable sort keeps generation order within each kind), so every
    # endpoint exists when its relationships arrive.
    for (kind, what, ends), rows in sorted(groups.items(), key=lambda g: g[0][0] != "node"):
        if kind == "node":
            n = writer.write_nodes(what, rows)
        else:
            src, dst = ends or (Label.NODE, Label.NODE)
            n = writer.write_relationships(what, rows, src=src, dst=dst)
        counts[str(what)] = counts.get(str(what), 0) + n
    return counts
