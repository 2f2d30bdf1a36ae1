"""``mechgraph evaluate --granularity component``: a stored component graph, run as components.

The edges are the run's ``granularity = "component"`` edges (or a query's, an edge list's, a
community's, as for other granularities), each located on its two components; the masks go to
:mod:`ingest.component_ablation` (node ablation: components outside the graph output their
baseline; edge ablation: each component reads only its kept in-edges, the others' outputs at
baseline). The baseline is the one the graph was ingested with unless ``--baseline`` says
otherwise; the model and task data are rebuilt from the ingest run's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.evaluate.selection import Located, select_edges
from graphdb.keys import parse_key
from graphdb.schema import Label
from mechgraph.errors import ConfigError


@dataclass(frozen=True)
class ComponentNames:
    """Locates stored keys on the components of one model checkpoint: ``(index in
    component_nodes, 0)``."""

    model: str
    checkpoint: str
    nodes: tuple[str, ...]

    def locate(self, key: str) -> tuple[int, int]:
        label, parts = parse_key(key)
        if (parts.get("model"), parts.get("checkpoint")) != (self.model, self.checkpoint):
            raise ConfigError(f"{key} is not a node of {self.model} @ {self.checkpoint}")
        if label is Label.INPUT:
            name = "embed"
        elif label is Label.OUTPUT:
            name = "output"
        elif label is Label.HEAD:
            name = f"L{parts['layer']}.H{parts['head']}"
        elif label is Label.MLP:
            name = f"L{parts['layer']}.MLP"
        else:
            raise ConfigError(f"{key} is not a component (embedding, head, MLP or output)")
        if name not in self.nodes:
            raise ConfigError(f"{key}: the model has no component {name}")
        return self.nodes.index(name), 0


class ComponentSweep:
    """Runs component graphs of one model on one dataset (the counterpart of
    :class:`analysis.evaluate.sweep.AblationSweep`): baselines prepared and m(M), m(∅) measured once."""

    def __init__(self, model: Any, batch: Any, batch_size: int, baseline: str, *, mean: Any = None,
                 point: Any = None) -> None:
        from ingest.attribution.components import component_nodes
        from ingest.component_ablation import ComponentMask, node_ablation, prepare
        from ingest.component_graph import graph_positions

        self.model, self.baseline, self.point_type = model, baseline, point
        self.every = component_nodes(model.cfg)
        parts = [batch[i:i + batch_size] for i in range(0, len(batch), batch_size)]
        if getattr(model.cfg, "attention_dir", "causal") != "causal":  # padding would be read: one length per part
            parts = [g for p in parts for _, g in p.unpadded()]
        self.parts = parts
        self.preps = [prepare(model, p, graph_positions(p), baseline, mean=mean) for p in parts]
        everything = ComponentMask.complete(self.every, set(self.every))
        self.clean = [node_ablation(model, p, prep, everything) for p, prep in zip(parts, self.preps, strict=True)]
        self.m_full = self.measure("node", everything)["logit_diff"]
        self.m_empty = self.measure("node", ComponentMask.from_edges(set()))["logit_diff"]
        if abs(self.m_full - self.m_empty) < 1e-9:
            raise ConfigError("the logit difference does not change when every component is ablated; "
                              "faithfulness is undefined")

    def measure(self, kind: str, mask: Any) -> dict[str, float]:
        """Mean over the examples of each output metric, with ``mask`` ablated by ``kind``."""
        import torch

        from ingest.ablation import output_metrics
        from ingest.component_ablation import edge_ablation, node_ablation

        run = edge_ablation if kind == "edge" else node_ablation
        per: dict[str, list[Any]] = {}
        for p, prep, c in zip(self.parts, self.preps, self.clean, strict=True):
            for k, v in output_metrics(run(self.model, p, prep, mask), c, p).items():
                per.setdefault(k, []).append(v)
        return {k: float(torch.cat(v).mean()) for k, v in per.items()}

    def point(self, located: list[list[Located]], budget: int, kind: str, *, shape: Any = None) -> Any:
        """The graph of the ``budget`` strongest edges, kept and removed, under ``kind`` ablation;
        nodes count the output, density is against every possible edge between those nodes."""
        from ingest.component_ablation import ComponentMask

        edges = {(self.every[s], self.every[m]) for group in located[:budget] for s, _, m, _ in group}
        mask = ComponentMask.from_edges(edges)
        span = self.m_full - self.m_empty
        nodes = len(mask.nodes)
        possible = len(ComponentMask.complete(self.every, mask.nodes).edges)
        kept = self.measure(kind, mask)
        removed = self.measure(kind, mask.complement(self.every, kind))
        return self.point_type(ablation=kind, budget=budget, edges=budget, nodes=nodes, avg_degree=budget / nodes,
                               density=budget / max(possible, 1),
                               faithfulness=(kept["logit_diff"] - self.m_empty) / span,
                               completeness=(removed["logit_diff"] - self.m_empty) / span,
                               logit_diff=kept["logit_diff"], kl=kept["kl"], loss=kept["loss"],
                               answer_prob=kept["answer_prob"], baseline=self.baseline)


def component_sweep(db: Any, config: Any, graph_run: str, run_cfg: dict[str, Any], *, device: str = "cpu",
                    point: Any = None) -> tuple[ComponentNames, Any, ComponentSweep]:
    """The names, selected edges and sweep of ``graph_run``'s component graph of ``config.task``
    (``config``: an EvaluateConfig whose baseline is settled; ``point``: the CurvePoint type)."""
    from ingest.attribution.components import component_nodes
    from ingest.attribution.config import AttributionConfig
    from ingest.component_graph import reference_mean
    from ingest.pipeline import IngestConfig, resolve

    if run_cfg.get("graph") != "component":
        raise ConfigError(f"run {graph_run} is a {run_cfg.get('graph', 'feature')} graph, not a component graph "
                          "(`mechgraph ingest --graph component`)")
    ingest_cfg = IngestConfig(model=run_cfg["model"], tasks=(config.task,), graph="component",
                              examples=config.examples, split=config.split, seed=config.seed,
                              attribution=AttributionConfig(baseline=config.baseline))
    resolved = resolve(ingest_cfg, device=device)
    model = resolved.model
    names = ComponentNames(model=resolved.model_label, checkpoint=resolved.checkpoint,
                           nodes=tuple(component_nodes(model.cfg)))
    selected = select_edges(db, config.selection, run=graph_run, task=config.task, names=names)
    mean = reference_mean(model, resolved.reference[config.task]) if config.baseline == "mean" else None
    sweep = ComponentSweep(model, resolved.batches[config.task], config.batch_size, str(config.baseline),
                           mean=mean, point=point)
    return names, selected, sweep
