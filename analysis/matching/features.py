"""Match the latents of a zoo model's dictionaries between two checkpoints (or two models), and
write the matches as ``(:Feature)-[:MATCHES {score, method, run}]->(:Feature)``.

For each hook with a dictionary on both sides: decoder cosine (one model only), activation
correlation on a shared set of task prompts (:mod:`ingest.latents`; works across sizes), or
both; optionally refined by seeded graph matching on the latents' decoder (cosine) or
co-activation (activation) graphs. The math is in :mod:`analysis.matching.core`.

Write-back: both ends MERGE as ``:Feature`` nodes by their key (:func:`graphdb.keys.node_key`,
the same key ingest writes, so matches join the attribution graphs), the earlier checkpoint's
feature is the source; every MATCHES carries its run, whose ``:Run`` (kind ``match``) is keyed
by the hash of the configuration; running the same configuration again writes a new generation
of the run's matches and retires the old ones only once it is complete
(``graphdb/generations.py``), so it replaces rather than duplicates, and an interrupted re-run
keeps the old matches.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from analysis.matching.core import (FeatureMatch, PromptSample, assign, coactivation_graph, correlation_similarity, cosine_similarity,
                               decoder_graph, graph_refine)
from graphdb.keys import node_key
from graphdb.provenance import RunRecord
from graphdb.schema import Label, Rel
from graphdb import generations
from graphdb.writer import GraphWriter
from mechgraph.errors import ConfigError

Method = Literal["cosine", "activation", "both"]
#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]
_LAYER = re.compile(r"blocks\.(\d+)\.")


@dataclass(frozen=True)
class FeatureMatchConfig(PromptSample):
    """Which two dictionaries per hook, how they are matched, on which prompts.

    ``model`` and ``to_model`` are zoo names (``mt-small`` or ``zoo:mt-small``); checkpoints
    are steps (``1466``, ``step-1466``) or ``final``. ``to_model`` None: the same model.
    """

    model: str
    from_checkpoint: str
    to_checkpoint: str
    to_model: str | None = None
    hooks: tuple[str, ...] = ()
    method: Method = "cosine"
    graph_match: bool = False
    graph_weight: float = 0.2
    seed_score: float = 0.9
    min_score: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in ("cosine", "activation", "both"):
            raise ValueError(f"method must be cosine, activation or both, got {self.method!r}")
        if self.to_model is not None and _zoo_name(self.to_model) != _zoo_name(self.model) and self.method != "activation":
            raise ValueError("decoder cosine compares directions in one model's activation space; across two models "
                             "use --method activation")
        if self.to_model is None and _step_text(self.from_checkpoint) == _step_text(self.to_checkpoint):
            raise ValueError(f"--from and --to name the same checkpoint ({self.from_checkpoint})")
        if len(set(self.hooks)) != len(self.hooks):
            raise ValueError(f"a hook is named twice: {list(self.hooks)}")
        if not -1.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score is a similarity in [-1, 1], got {self.min_score}")
        if not self.graph_weight > 0:
            raise ValueError(f"graph_weight must be > 0, got {self.graph_weight}")

    @property
    def methods(self) -> tuple[str, ...]:
        return ("cosine", "activation") if self.method == "both" else (self.method,)


def _zoo_name(model: str) -> str:
    return model.removeprefix("zoo:").partition("@")[0]


def _step_text(ckpt: str) -> str:
    return str(ckpt).removeprefix("step-")


@dataclass(frozen=True)
class Side:
    """One end of a matching: stored model name, checkpoint label (``step-N``), the spec that
    loads the model, and the dictionary spec per hook."""

    model: str
    checkpoint: str
    spec: str
    dicts: dict[str, str]


def resolve_side(model: str, checkpoint: str) -> Side:
    """The zoo checkpoint ``model @ checkpoint`` and its SAEs (every hook)."""
    from ingest.pipeline import GRAPH_HOOKS, model_labels
    from ingest.zoo.specs import parse_model_spec

    spec = parse_model_spec(f"zoo:{_zoo_name(model)}@{_step_text(checkpoint)}")
    dicts: dict[str, str] = {}
    for graph in GRAPH_HOOKS:
        label, ckpt, specs = model_labels(spec, graph)
        dicts |= {s.rpartition("/")[2]: s for s in specs}
    return Side(model=label, checkpoint=ckpt, spec=f"zoo:{label}@{ckpt.removeprefix('step-')}", dicts=dicts)


@dataclass
class HookMatch:
    """The matches of one hook, per method (``cosine``, ``activation``, ``cosine+graph``, ...).
    ``kinds`` are the two dictionaries' kinds (the ``dictionary`` part of feature keys)."""

    hook: str
    n_from: int
    n_to: int
    kinds: tuple[str, str]
    matches: dict[str, FeatureMatch] = field(default_factory=dict)


@dataclass
class FeatureMatchResult:
    source: Side
    target: Side
    hooks: list[HookMatch]
    config: FeatureMatchConfig
    run: str | None = None
    seconds: float = 0.0

    def summary(self) -> list[dict[str, Any]]:
        """Per hook and method: matched, mean score, fraction above 0.5/0.7/0.9; with both methods,
        on the activation row, ``agreement``: of the latents both kept (score >= min_score), the
        fraction whose partner is the same by cosine and by activation."""
        rows = []
        for h in self.hooks:
            for m in h.matches.values():
                row = {"hook": h.hook, **m.summary(h.n_from, h.n_to)}
                if m.method == "activation" and "cosine" in h.matches:
                    a, b = h.matches["cosine"].mapping(), m.mapping()
                    shared = [i for i in b if i in a]
                    row["agreement"] = sum(a[i] == b[i] for i in shared) / len(shared) if shared else float("nan")
                rows.append(row)
        return rows


def match_features(config: FeatureMatchConfig, *, device: str = "cpu",
                   progress: Progress | None = None) -> FeatureMatchResult:
    """Load both sides' dictionaries (and models, for activations) and match them, hook by hook."""
    from ingest.dictionaries import load_dictionary

    t0 = time.perf_counter()
    source = resolve_side(config.model, config.from_checkpoint)
    target = resolve_side(config.to_model or config.model, config.to_checkpoint)
    common = [h for h in source.dicts if h in target.dicts]
    hooks = list(config.hooks) or common
    missing = [h for h in hooks if h not in common]
    if missing:
        raise ConfigError(f"no dictionary on {', '.join(missing)} at both {source.spec} and {target.spec}; "
                          f"both have {', '.join(common) or 'none'}")
    if not hooks:
        raise ConfigError(f"{source.spec} and {target.spec} have no dictionary hook in common")
    d_src = [load_dictionary(source.dicts[h], device=device) for h in hooks]
    d_dst = [load_dictionary(target.dicts[h], device=device) for h in hooks]
    acts = _activations(config, source, target, d_src, d_dst, device, progress) \
        if "activation" in config.methods else None
    out = []
    for n, (hook, a, b) in enumerate(zip(hooks, d_src, d_dst, strict=True)):
        if progress:
            progress("matching", n, len(hooks))
        out.append(match_hook(config, hook, a, b, acts))
    if progress:
        progress("matching", len(hooks), len(hooks))
    return FeatureMatchResult(source=source, target=target, hooks=out, config=config,
                              seconds=time.perf_counter() - t0)


def _activations(config: FeatureMatchConfig, source: Side, target: Side, d_src: list[Any], d_dst: list[Any],
                 device: str, progress: Progress | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Latents of both sides on the same prompts (the token ids must agree position by position)."""
    from ingest.latents import collect_latents, shared_prompts
    from ingest.zoo.specs import load_model

    m_src, m_dst = load_model(source.spec, device=device), load_model(target.spec, device=device)
    tasks = config.tasks or default_tasks(source.model)
    batch = shared_prompts(m_src.tokenizer, tasks, config.examples, seed=config.seed, split=config.split,
                           n_ctx=m_src.cfg.n_ctx)
    other = shared_prompts(m_dst.tokenizer, tasks, config.examples, seed=config.seed, split=config.split,
                           n_ctx=m_dst.cfg.n_ctx)
    if other.tokens.shape != batch.tokens.shape or bool((other.tokens != batch.tokens).any()):
        raise ConfigError(f"{source.spec} and {target.spec} tokenize the prompts differently; activation "
                          "correlation needs the same tokens through both")

    def bar(stage: str) -> Any:
        return (lambda done, total: progress(stage, done, total)) if progress else None

    f_src = collect_latents(m_src, d_src, batch, batch_size=config.batch_size, progress=bar(f"{source.spec} latents"))
    f_dst = collect_latents(m_dst, d_dst, batch, batch_size=config.batch_size, progress=bar(f"{target.spec} latents"))
    return f_src, f_dst


def default_tasks(model: str) -> tuple[str, ...]:
    """The tasks a zoo model was trained on (its manifest), the default prompts for activations."""
    from ingest.zoo.specs import zoo_model_dir
    from ingest.zoo.store import read_manifest

    manifest = read_manifest(zoo_model_dir(_zoo_name(model))) or {}
    tasks = tuple(manifest.get("config", {}).get("tasks", ()))
    if not tasks:
        raise ConfigError(f"zoo model {model!r} names no training tasks; pass the prompts' tasks with --task")
    return tasks


def match_hook(config: FeatureMatchConfig, hook: str, a: Any, b: Any,
               acts: tuple[dict[str, Any], dict[str, Any]] | None) -> HookMatch:
    """Match dictionary ``a`` to ``b`` on ``hook`` by each of the config's methods (``acts``: both
    sides' latents per hook on the same tokens, needed for activation)."""
    out = HookMatch(hook=hook, n_from=a.d_dict, n_to=b.d_dict, kinds=(a.kind, b.kind))
    for method in config.methods:
        if method == "cosine":
            W_a, W_b = a.W_dec.detach().double().cpu().numpy(), b.W_dec.detach().double().cpu().numpy()
            S = cosine_similarity(W_a, W_b)
            graphs = (decoder_graph(W_a), decoder_graph(W_b)) if config.graph_match else None
        else:
            if acts is None:
                raise ConfigError("activation matching needs the latents of both sides")
            F_a, F_b = acts[0][hook], acts[1][hook]
            S = correlation_similarity(F_a, F_b)
            graphs = (coactivation_graph(F_a), coactivation_graph(F_b)) if config.graph_match else None
        full = assign(S, method=method)
        out.matches[method] = assign(S, min_score=config.min_score, method=method)
        if graphs is not None:
            refined = graph_refine(S, *graphs, full, seed_score=config.seed_score, graph_weight=config.graph_weight,
                                   min_score=config.min_score, seed=config.seed)
            out.matches[refined.method] = refined
    return out


def feature_key(side: Side, hook: str, kind: str, index: int) -> str:
    return node_key(Label.FEATURE, model=side.model, checkpoint=side.checkpoint, hook=hook, dictionary=kind,
                    index=index)


def _feature_row(side: Side, hook: str, kind: str, index: int) -> dict[str, Any]:
    layer = _LAYER.match(hook)
    return {"key": feature_key(side, hook, kind, index), "model": side.model, "checkpoint": side.checkpoint,
            "hook": hook, "layer": int(layer.group(1)) if layer else -1, "index": index, "kind": kind,
            "dictionary": node_key(Label.DICTIONARY, model=side.model, checkpoint=side.checkpoint, hook=hook,
                                   dictionary=kind)}


def match_record(result: FeatureMatchResult) -> RunRecord:
    return RunRecord(kind="match", seed=result.config.seed, config={
        **asdict(result.config), "from": result.source.spec, "to": result.target.spec,
        "hooks": [h.hook for h in result.hooks]})


def write_feature_matches(db: Any, result: FeatureMatchResult, *, writer: GraphWriter | None = None) -> str:
    """Write the matches (module docstring); returns the run id and sets ``result.run``."""
    record = match_record(result)
    writer = writer or GraphWriter(db)
    gen = generations.begin(writer, record)
    nodes: dict[str, dict[str, Any]] = {}
    rels = []
    for h in result.hooks:
        for method, m in h.matches.items():
            for i, j, s in zip(m.src.tolist(), m.dst.tolist(), m.score.tolist(), strict=True):
                src = _feature_row(result.source, h.hook, h.kinds[0], i)
                dst = _feature_row(result.target, h.hook, h.kinds[1], j)
                nodes.setdefault(src["key"], src)
                nodes.setdefault(dst["key"], dst)
                rels.append({"src": src["key"], "dst": dst["key"], "score": float(s), "method": method,
                             "run": record.run_id, "hook": h.hook})
    writer.write_nodes(Label.FEATURE, nodes.values())
    writer.write_relationships(Rel.MATCHES, rels, src=Label.NODE, dst=Label.NODE, common={"gen": gen})
    generations.finish(db, record, gen, "finish_run_matches")
    result.run = record.run_id
    return record.run_id
