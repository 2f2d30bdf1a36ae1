"""Task disentanglement: do the communities of a multi-task graph follow the tasks?

For the graphs of two or more tasks on one model checkpoint (one ingest run with several tasks,
or the newest ingest run of each task):

**Alignment.** Each task's feature graph ``A_t`` is pulled on its own (sorted keys); the node
set is the union of their keys, sorted. A node's *task strength* ``s_t`` is the sum of ``|w|``
over its incident edges (in and out, the edges into the task's output included) in ``A_t``;
its *dominant task* is ``argmax_t s_t`` (ties: the first task named) and its *dominance*
``max_t s_t / sum_t s_t``. The *union graph* is ``sum_t A_t`` on the union index.

**Which nodes.** Output nodes are left out of the partition and of every score: each task has
its own output (its key names the task), so its label is true by construction, and it is the
metric rather than a model component; including one node per task would only add ``T`` free
agreements to NMI. Their edges still count in the strength of the nodes that feed them. Nodes
with no task strength (every incident edge of weight 0) are left out too, and counted. Error
nodes and the embedding input stay: they are components every task reads, their strengths are
measured like a feature's, and a community that holds one kills it too.

**Scores.** The union graph on the kept nodes is partitioned with
:func:`analysis.communities.partition` (a :class:`~analysis.communities.CommunityConfig`,
Leiden by default, seeded). NMI (arithmetic normalisation) and ARI (sklearn) compare the
community labels with the dominant-task labels. Per community: each task's share of the
community's total strength, the *dominant task* (largest share) and *purity* (that share), the
*majority task* (the most frequent dominant task among members) and the fraction of members it
dominates.

**Null model.** ``permutation`` (default, 200 draws): the dominant-task labels permuted across
the kept nodes, NMI recomputed against the same communities. ``rewire`` (default 20 draws):
the union graph rewired by directed double-edge swaps (``a→b, c→d`` becomes ``a→d, c→b``,
skipping swaps that would make a self-loop or a duplicate; each edge keeps its weight and
source, so out- and in-degrees and out-strengths are preserved), 10 swap attempts per edge,
re-partitioned with the same configuration, NMI recomputed against the fixed task labels.
``z = (NMI − mean_null) / std_null`` (``inf`` when the null has no spread and NMI is above it).

**Kill table** (:mod:`analysis.disentangle.kill`): for each of the ``top_k`` largest communities
C and each task D, the evaluator's normalized metric F = (m − m(∅)) / (m(M) − m(∅)) on D's
prompts when C is killed and when only C is kept; written as a CSV and heatmaps.

Write-back: the partition as a communities run (:func:`analysis.communities.partition.write_communities`),
a ``:Run`` of kind ``disentangle``, and ``:Disentanglement`` nodes (a ``summary`` and one per
community) linked by ``PRODUCED_BY`` to that run and by ``DESCRIBES`` to the communities run
and to each ``:Community``. The run id hashes the configuration and the graph runs, so running
it again replaces its nodes (a new write generation, the old one retired when it is complete).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from analysis.communities.partition import CommunityConfig, Partition, partition, write_communities
from analysis.subgraph import Selection, Subgraph, ingest_run_config, pull_subgraph
from analysis.tasks import stored_tasks
from graphdb import generations
from graphdb.keys import node_key, parse_key
from graphdb.provenance import RunRecord
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter, cypher_template
from mechgraph.errors import ConfigError
from queries.loader import run_query

Null = Literal["permutation", "rewire"]
Ablation = Literal["edge", "node"]
#: progress(done, total) over kill-table measurements
Progress = Callable[[int, int], None]
DEFAULT_DRAWS: dict[str, int] = {"permutation": 200, "rewire": 20}
SWAPS_PER_EDGE = 10


@dataclass(frozen=True)
class DisentangleConfig:
    """Which graphs, how they are partitioned and scored, and which kill tables."""

    model: str
    tasks: tuple[str, ...]
    run: str | None = None
    community: CommunityConfig = field(default_factory=CommunityConfig)
    null: Null = "permutation"
    draws: int | None = None
    min_abs_weight: float = 0.0
    kill: bool = True
    ablations: tuple[Ablation, ...] = ("edge", "node")
    top_k: int = 12
    examples: int = 32
    batch_size: int = 16
    split: Literal["train", "test"] = "test"
    baseline: str = "mean"
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.tasks) < 2:
            raise ValueError("disentanglement needs at least two tasks (--task, repeated)")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"a task is named twice: {list(self.tasks)}")
        if self.null not in DEFAULT_DRAWS:
            raise ValueError(f"null must be permutation or rewire, got {self.null!r}")
        if self.draws is not None and self.draws < 2:
            raise ValueError(f"draws must be at least 2 (a null needs a spread), got {self.draws}")
        if self.min_abs_weight < 0:
            raise ValueError(f"min_abs_weight must be >= 0, got {self.min_abs_weight}")
        if not self.ablations or set(self.ablations) - {"edge", "node"}:
            raise ValueError(f"ablations are edge and/or node, got {self.ablations!r}")
        if self.top_k < 1 or self.examples < 1 or self.batch_size < 1:
            raise ValueError("top_k, examples and batch_size must be at least 1")
        if self.baseline not in ("mean", "zero", "counterfactual"):
            raise ValueError(f"baseline must be mean, zero or counterfactual, got {self.baseline!r}")

    @property
    def n_draws(self) -> int:
        return self.draws if self.draws is not None else DEFAULT_DRAWS[self.null]


@dataclass
class Alignment:
    """The task graphs on one index. ``keys`` (sorted union); ``union`` [n, n] CSR, the sum of
    the task graphs; ``strength`` [n, T] (column t: task ``tasks[t]``); ``dominant`` [n] task
    index; ``dominance`` [n]; ``kept`` [n] bool (not an output, some strength)."""

    tasks: tuple[str, ...]
    keys: Any
    union: Any
    pattern: Any
    strength: Any
    dominant: Any
    dominance: Any
    kept: Any
    outputs: dict[str, str]

    @property
    def excluded_outputs(self) -> int:
        return len(self.outputs)

    @property
    def excluded_zero(self) -> int:
        return int((~self.kept).sum()) - self.excluded_outputs


@dataclass
class CommunityPurity:
    index: int
    size: int
    shares: list[float]
    dominant_task: str
    purity: float
    majority_task: str
    majority_fraction: float
    members: list[str] = field(repr=False, default_factory=list)


@dataclass
class Analysis:
    """Scores on the kept nodes: ``keys``/``labels``/``dominant`` are aligned, kept nodes only."""

    alignment: Alignment
    keys: Any
    labels: Any
    dominant: Any
    modularity: float
    nmi: float
    ari: float
    null: str
    null_nmi: Any
    purity: list[CommunityPurity]

    @property
    def null_mean(self) -> float:
        return float(self.null_nmi.mean())

    @property
    def null_std(self) -> float:
        return float(self.null_nmi.std(ddof=1))

    @property
    def z(self) -> float:
        return z_score(self.nmi, self.null_nmi)


@dataclass
class DisentangleResult:
    run: str
    communities_run: str
    graph_runs: dict[str, str]
    model: str
    checkpoint: str
    analysis: Analysis
    kill: Any = None
    csv: Path | None = None
    pngs: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def align(graphs: Mapping[str, Any]) -> Alignment:
    """The task graphs (``tasks -> object with sorted .keys and CSR .matrix``) on the union of
    their nodes, with each node's task strengths (module docstring)."""
    import numpy as np
    from scipy import sparse

    tasks = tuple(graphs)
    keys = np.unique(np.concatenate([np.asarray(g.keys, dtype=str) for g in graphs.values()]))
    n = len(keys)
    union = sparse.csr_matrix((n, n))
    pattern = sparse.csr_matrix((n, n), dtype=bool)
    strength = np.zeros((n, len(tasks)))
    for t, g in enumerate(graphs.values()):
        idx = np.searchsorted(keys, np.asarray(g.keys, dtype=str))
        coo = sparse.coo_matrix(g.matrix)
        A = sparse.coo_matrix((coo.data, (idx[coo.row], idx[coo.col])), shape=(n, n)).tocsr()
        union = union + A
        pattern = pattern + (abs(A) > 0)
        strength[:, t] = np.asarray(abs(A).sum(axis=1)).ravel() + np.asarray(abs(A).sum(axis=0)).ravel()
    total = strength.sum(axis=1)
    dominant = strength.argmax(axis=1)
    dominance = np.divide(strength.max(axis=1), total, out=np.zeros(n), where=total > 0)
    outputs, is_output = {}, np.zeros(n, dtype=bool)
    for i, k in enumerate(keys.tolist()):
        label, parts = parse_key(k)
        if label is Label.OUTPUT:
            is_output[i] = True
            outputs[parts["task"]] = k
    return Alignment(tasks=tasks, keys=keys, union=union.tocsr(), pattern=pattern.tocsr(), strength=strength,
                     dominant=dominant, dominance=dominance, kept=~is_output & (total > 0), outputs=outputs)


def kept_subgraph(al: Alignment, selection: Selection) -> Subgraph:
    """The union graph restricted to the kept nodes, as a :class:`Subgraph` (keys stay sorted)."""
    idx = al.kept.nonzero()[0]
    matrix = al.union[idx][:, idx].tocsr()
    return Subgraph(selection=selection, keys=al.keys[idx], matrix=matrix, edges=int(matrix.nnz))


def analyse(graphs: Mapping[str, Any], community: CommunityConfig, *, null: Null = "permutation",
            draws: int | None = None, seed: int = 0, selection: Selection | None = None) -> Analysis:
    """Alignment, partition, NMI/ARI, purity and the null distribution (module docstring).
    Pure: no database."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    al = align(graphs)
    if al.kept.sum() < 2:
        raise ConfigError("fewer than two nodes with task strength: nothing to partition")
    selection = selection or Selection(model="-", checkpoint="-", tasks=al.tasks)
    sub = kept_subgraph(al, selection)
    part = partition(sub, community)
    labels = part.labels[0]
    dominant = al.dominant[al.kept]
    n_draws = draws if draws is not None else DEFAULT_DRAWS[null]
    if null == "permutation":
        nulls = permutation_null(labels, dominant, n_draws, seed)
    else:
        nulls = rewire_null(sub, dominant, community, n_draws, seed)
    return Analysis(alignment=al, keys=sub.keys, labels=labels, dominant=dominant, modularity=part.modularity[0],
                    nmi=float(normalized_mutual_info_score(dominant, labels)),
                    ari=float(adjusted_rand_score(dominant, labels)), null=null, null_nmi=nulls,
                    purity=purity(labels, al.strength[al.kept], dominant, al.tasks, sub.keys))


def purity(labels: Any, strength: Any, dominant: Any, tasks: tuple[str, ...], keys: Any) -> list[CommunityPurity]:
    """Per community (index order): task shares of its total strength, the dominant task by
    strength and its share, the majority task by members and the fraction it dominates."""
    import numpy as np

    out = []
    for c in range(int(labels.max()) + 1):
        members = labels == c
        per_task = strength[members].sum(axis=0)
        shares = per_task / per_task.sum() if per_task.sum() > 0 else np.zeros(len(tasks))
        counts = np.bincount(dominant[members], minlength=len(tasks))
        out.append(CommunityPurity(index=c, size=int(members.sum()), shares=[float(x) for x in shares],
                                   dominant_task=tasks[int(shares.argmax())], purity=float(shares.max()),
                                   majority_task=tasks[int(counts.argmax())],
                                   majority_fraction=float(counts.max() / members.sum()),
                                   members=keys[members].tolist()))
    return out


def permutation_null(labels: Any, dominant: Any, draws: int, seed: int) -> Any:
    """NMI of ``labels`` against ``draws`` permutations of ``dominant``."""
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(seed)
    return np.array([normalized_mutual_info_score(rng.permutation(dominant), labels) for _ in range(draws)])


def rewire(matrix: Any, rng: Any, swaps_per_edge: int = SWAPS_PER_EDGE) -> Any:
    """A directed double-edge-swap rewiring of ``matrix`` (module docstring): each edge keeps
    its source and weight, targets are exchanged; no self-loops, no duplicate edges."""
    from scipy import sparse

    coo = sparse.coo_matrix(matrix)
    src, dst, w = coo.row.tolist(), coo.col.tolist(), coo.data
    m = len(src)
    if m < 2:
        return matrix.copy()
    present = set(zip(src, dst, strict=True))
    for i, j in rng.integers(0, m, size=(swaps_per_edge * m, 2)).tolist():
        a, b, c, d = src[i], dst[i], src[j], dst[j]
        if i == j or a == d or c == b or (a, d) in present or (c, b) in present:
            continue
        present -= {(a, b), (c, d)}
        present |= {(a, d), (c, b)}
        dst[i], dst[j] = d, b
    return sparse.coo_matrix((w, (src, dst)), shape=matrix.shape).tocsr()


def rewire_null(sub: Subgraph, dominant: Any, community: CommunityConfig, draws: int, seed: int) -> Any:
    """NMI of the communities of ``draws`` rewired copies of ``sub`` against ``dominant``."""
    import numpy as np
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        shuffled = Subgraph(selection=sub.selection, keys=sub.keys, matrix=rewire(sub.matrix, rng), edges=sub.edges)
        out.append(normalized_mutual_info_score(dominant, partition(shuffled, community).labels[0]))
    return np.array(out)


def z_score(value: float, null: Any) -> float:
    """(value − mean) / std (ddof 1) of the null; ±inf when the null has no spread."""
    mean, std = float(null.mean()), float(null.std(ddof=1))
    if std > 0:
        return (value - mean) / std
    return 0.0 if value == mean else float("inf") if value > mean else float("-inf")


def graph_runs(db: Any, config: DisentangleConfig) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """(model label, checkpoint, task -> ingest run, the run configuration the model is rebuilt
    from): ``config.run`` for every task, or the newest ingest run of each task."""
    from ingest.pipeline import model_labels
    from ingest.zoo.specs import parse_model_spec

    label, checkpoint, _ = model_labels(parse_model_spec(config.model), "resid")
    if config.run is not None:
        cfg = ingest_run_config(db, config.run, config.tasks)
        if (cfg.get("model_label"), cfg.get("checkpoint")) != (label, checkpoint):
            raise ConfigError(f"run {config.run} is of {cfg.get('model_label')} @ {cfg.get('checkpoint')}, "
                              f"not {label} @ {checkpoint}")
        return label, checkpoint, {t: config.run for t in config.tasks}, cfg
    runs, configs = {}, []
    for task in config.tasks:
        rows = run_query(db, "latest_run", {"kind": "ingest", "model": label, "checkpoint": checkpoint, "task": task})
        if not rows:
            raise ConfigError(f"no ingested {task} graph of {label} @ {checkpoint}: run `mechgraph ingest` first")
        runs[task] = rows[0]["run"]
        configs.append(json.loads(rows[0]["config"]))
    if len({json.dumps(c["dicts"]) for c in configs}) > 1:
        raise ConfigError("the newest runs of these tasks use different dictionaries: name one run with --run")
    return label, checkpoint, runs, configs[0]


def pull_task_graphs(db: Any, model: str, checkpoint: str, runs: Mapping[str, str],
                     min_abs_weight: float = 0.0) -> dict[str, Subgraph]:
    """Each task's feature graph of its run, pulled on its own."""
    return {task: pull_subgraph(db, Selection(model=model, checkpoint=checkpoint, tasks=(task,), run=run,
                                              min_abs_weight=min_abs_weight)) for task, run in runs.items()}


def disentangle(db: Any, config: DisentangleConfig, *, out_root: Path, device: str = "cpu",
                progress: Progress | None = None) -> DisentangleResult:
    """Everything in the module docstring, from the stored graphs of ``config``."""
    config = replace(config, tasks=stored_tasks(db, config.tasks))  # jsonl:PATH or its stored name
    label, checkpoint, runs, run_cfg = graph_runs(db, config)
    graphs = pull_task_graphs(db, label, checkpoint, runs, config.min_abs_weight)
    return disentangle_graphs(db, graphs, config, model=label, checkpoint=checkpoint, runs=runs,
                              run_config=run_cfg, out_root=out_root, device=device, progress=progress)


def disentangle_graphs(db: Any, graphs: Mapping[str, Subgraph], config: DisentangleConfig, *, model: str,
                       checkpoint: str, runs: Mapping[str, str], run_config: dict[str, Any] | None,
                       out_root: Path, device: str = "cpu", progress: Progress | None = None) -> DisentangleResult:
    """:func:`disentangle` on graphs already pulled (``run_config`` rebuilds the model for the
    kill table; it may be None when ``config.kill`` is off)."""
    t0 = time.perf_counter()
    distinct = sorted(set(runs.values()))
    selection = Selection(model=model, checkpoint=checkpoint, tasks=tuple(graphs), run="+".join(distinct),
                          min_abs_weight=config.min_abs_weight)
    analysis = analyse(graphs, config.community, null=config.null, draws=config.n_draws, seed=config.seed,
                       selection=selection)
    sub = kept_subgraph(analysis.alignment, selection)
    communities_run = write_communities(db, sub, Partition(labels=[analysis.labels], modularity=[analysis.modularity]),
                                        config.community)
    # Rewriting the communities retired those no longer in the partition, and with them the
    # links of earlier disentangle runs sharing the communities run: link them again.
    db.write(cypher_template("relink_disentanglement"), {"run": communities_run})
    record = RunRecord(kind="disentangle", seed=config.seed,
                       config={**asdict(config), "graph_runs": dict(runs), "communities_run": communities_run})
    result = DisentangleResult(run=record.run_id, communities_run=communities_run, graph_runs=dict(runs),
                               model=model, checkpoint=checkpoint, analysis=analysis)
    out_dir = out_root / record.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.kill:
        if run_config is None:
            raise ConfigError("the kill table rebuilds the model from an ingest run's configuration: none given")
        from analysis.disentangle.kill import kill_table, plot_kill, write_kill_csv

        result.kill = kill_table(analysis, config, run_config, device=device, progress=progress)
        result.csv = write_kill_csv(result.kill, out_dir / "kill.csv")
        result.pngs = [plot_kill(result.kill, kind, out_dir / f"kill-{kind}.png",
                                 title=f"{model} @ {checkpoint}: communities ({config.community.method}) × tasks")
                       for kind in config.ablations]
    write_purity_csv(analysis, out_dir / "purity.csv")
    write_disentanglement(db, record, result)
    result.seconds = time.perf_counter() - t0
    return result


def write_purity_csv(analysis: Analysis, path: Path) -> Path:
    import csv

    tasks = analysis.alignment.tasks
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["community", "size", "dominant_task", "purity", "majority_task", "majority_fraction",
                    *[f"share:{t}" for t in tasks]])
        for p in analysis.purity:
            w.writerow([p.index, p.size, p.dominant_task, p.purity, p.majority_task, p.majority_fraction, *p.shares])
    return path


def write_disentanglement(db: Any, record: RunRecord, result: DisentangleResult) -> None:
    """The ``:Run`` and ``:Disentanglement`` nodes (module docstring); replaces a previous write
    of the same run once this one is complete (``graphdb/generations.py``)."""
    a = result.analysis
    writer = GraphWriter(db)
    gen = generations.begin(writer, record)
    tag = {"gen": gen}
    tasks = list(a.alignment.tasks)
    base = {"run": record.run_id, "communities_run": result.communities_run, "model": result.model,
            "checkpoint": result.checkpoint, "tasks": tasks}
    summary = {"key": node_key(Label.DISENTANGLEMENT, run=record.run_id, name="summary"), "name": "summary", **base,
               "nmi": a.nmi, "ari": a.ari, "z": a.z, "null": a.null, "draws": len(a.null_nmi),
               "null_mean": a.null_mean, "null_std": a.null_std, "modularity": a.modularity, "nodes": len(a.keys),
               "communities": len(a.purity), "excluded_outputs": a.alignment.excluded_outputs,
               "excluded_zero_strength": a.alignment.excluded_zero,
               "graph_runs": [result.graph_runs[t] for t in tasks],
               "csv": str(result.csv) if result.csv else "", "pngs": [str(p) for p in result.pngs]}
    rows, links = [summary], [{"src": summary["key"], "dst": node_key(Label.RUN, run=result.communities_run)}]
    kill = result.kill.by_community() if result.kill is not None else {}
    for p in a.purity:
        row = {"key": node_key(Label.DISENTANGLEMENT, run=record.run_id, name=f"community-{p.index}"),
               "name": f"community-{p.index}", **base, "index": p.index, "size": p.size, "shares": p.shares,
               "dominant_task": p.dominant_task, "purity": p.purity, "majority_task": p.majority_task,
               "majority_fraction": p.majority_fraction, **kill.get(p.index, {})}
        rows.append(row)
        links.append({"src": row["key"], "dst": node_key(Label.COMMUNITY, run=result.communities_run, level=0,
                                                         index=p.index)})
    writer.write_nodes(Label.DISENTANGLEMENT, rows, common=tag)
    writer.write_relationships(Rel.PRODUCED_BY, [{"src": r["key"], "dst": record.key} for r in rows],
                               src=Label.DISENTANGLEMENT, dst=Label.RUN, common=tag)
    writer.write_relationships(Rel.DESCRIBES, links[:1], src=Label.DISENTANGLEMENT, dst=Label.RUN, common=tag)
    writer.write_relationships(Rel.DESCRIBES, links[1:], src=Label.DISENTANGLEMENT, dst=Label.COMMUNITY, common=tag)
    generations.finish(db, record, gen, "finish_run_disentanglement")
