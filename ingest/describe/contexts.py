"""Top-activating contexts of dictionary latents, an automatic label, and their write-back.

For a model and its dictionaries, one batch of prompts (task prompts, or the zoo's offline text
corpus) runs through the model; every dictionary's latents are read at every valid position
(``ingest.latents.collect_latents``: each prompt up to its last token, without BOS). For each
latent, the ``top_k`` positions with the highest activation (> 0) are its **top contexts**: the
``window`` tokens up to and including the activating one, that token in ``[[ ]]``.

The **label** is a rule on those contexts, weighted by activation (no model of language in the
loop, so it is reproducible and free): the activating token when one token carries at least half
of the weight (``"Mary"``); else the token before it when one does (``after "to"``); else the
three heaviest activating tokens (``"a" / "the" / "an"``). A latent with no positive activation
on the prompts is labelled ``inactive on N prompts``.

Transcoder sets are described too (``transcoders``; a zoo model's default: its checkpoint's
per-layer set and, where built, its CLT): each layer's latents on the MLP's input (read by a
forward hook on ``blocks.L.mlp``, as the zoo's transcoders were trained), keyed as the prompt
graphs key their features (``GraphLabels.position_free``: ``blocks.L.mlp.hook_in``, the set's
kind, the index), so a traced or imported prompt graph's features show these labels. Each set
is read in its own forward pass (a per-layer set and a CLT read the same hooks).

Written on ``(:Feature {key})`` (MERGEd: the key is the one the ingest writes, so a latent the
ingest never wrote becomes a Feature too): ``description``, ``top_contexts`` (strings),
``top_activations``, ``description_run`` (the ``:Run`` of kind ``describe``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mechgraph.errors import ConfigError, require_positive

DEFAULT_TASKS = ("ioi", "induction", "greater_than")
#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DescribeConfig:
    """What to describe: a model (spec), its dictionaries (specs; empty: the zoo model's SAEs),
    and the prompts (task names, or ``corpus`` for the zoo's offline text corpus)."""

    model: str
    dicts: tuple[str, ...] = ()
    #: transcoder set specs (``zoo:NAME@CKPT[/clt]``, ``path:DIR``, ...); a zoo model without
    #: ``dicts`` or ``transcoders`` gets its checkpoint's zoo sets
    transcoders: tuple[str, ...] = ()
    tasks: tuple[str, ...] = DEFAULT_TASKS
    examples: int = 32
    top_k: int = 8
    window: int = 6
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(examples=self.examples, top_k=self.top_k, window=self.window, batch_size=self.batch_size)
        if not self.tasks:
            raise ValueError("name at least one task (or 'corpus') whose prompts are run")


@dataclass(frozen=True)
class Context:
    prompt: int          # row of the batch
    position: int        # token position in that row
    activation: float
    token: str
    previous: str
    text: str            # the window, the activating token in [[ ]]


def positions(batch: Any, skip_bos: bool) -> list[tuple[int, int]]:
    """(row, position) of each row ``collect_latents`` returns, in its order."""
    from ingest.latents import valid_positions

    return [tuple(x) for x in valid_positions(batch, skip_bos).nonzero().tolist()]


def top_contexts(acts: Any, where: list[tuple[int, int]], tokens: list[list[str]], *, top_k: int,
                 window: int) -> list[list[Context]]:
    """Per latent (column of ``acts`` [n_positions d_dict]), its ``top_k`` positive activations
    as contexts, highest first (ties: the earlier position)."""
    import numpy as np

    out = []
    for j in range(acts.shape[1]):
        col = acts[:, j]
        order = np.lexsort((np.arange(len(col)), -col))[:top_k]
        ctxs = []
        for t in order.tolist():
            if col[t] <= 0:
                break
            row, pos = where[t]
            words = tokens[row]
            text = "".join(words[max(0, pos - window + 1):pos]) + "[[" + words[pos] + "]]"
            ctxs.append(Context(row, pos, float(col[t]), words[pos], words[pos - 1] if pos else "", text))
        out.append(ctxs)
    return out


def label(contexts: Sequence[Context], n_prompts: int) -> str:
    """The automatic label (module docstring)."""
    if not contexts:
        return f"inactive on {n_prompts} prompts"
    total = sum(c.activation for c in contexts)

    def heaviest(attr: str) -> list[tuple[str, float]]:
        weight: Counter[str] = Counter()
        for c in contexts:
            weight[getattr(c, attr).strip() or getattr(c, attr)] += c.activation
        return sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))

    tokens, before = heaviest("token"), heaviest("previous")
    if tokens[0][1] >= total / 2:
        return f'"{tokens[0][0]}"'
    if before[0][0] and before[0][1] >= total / 2:
        return f'after "{before[0][0]}"'
    return " / ".join(f'"{t}"' for t, _ in tokens[:3])


def prompts(model: Any, config: DescribeConfig) -> Any:
    """The batch the latents are read on: task prompts, or the zoo's text corpus."""
    from ingest.latents import shared_prompts

    if tuple(config.tasks) == ("corpus",):
        import torch

        from ingest.zoo.corpus import tokenized_corpus

        seqs = tokenized_corpus(model.tokenizer, min(model.cfg.n_ctx, 32), config.examples, seed=config.seed)
        toks = torch.tensor(seqs["input_ids"], dtype=torch.long)
        n, length = toks.shape
        last = torch.full((n,), length - 1, dtype=torch.long)
        return _PlainBatch(toks, last)
    return shared_prompts(model.tokenizer, config.tasks, config.examples, seed=config.seed, n_ctx=model.cfg.n_ctx)


@dataclass
class _PlainBatch:
    """A batch of plain token rows (the corpus): what ``collect_latents`` reads of a TaskBatch."""

    tokens: Any
    last: Any

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __getitem__(self, s: slice) -> _PlainBatch:
        return _PlainBatch(self.tokens[s], self.last[s])

    def to(self, device: Any) -> _PlainBatch:
        return _PlainBatch(self.tokens.to(device), self.last.to(device))


def describe_dictionaries(model: Any, dictionaries: Sequence[Any], config: DescribeConfig, *,
                          progress: Progress | None = None) -> dict[str, list[tuple[str, list[Context]]]]:
    """``{hook: [(label, contexts) per latent]}`` of every dictionary on the config's prompts."""
    from ingest.latents import collect_latents

    batch = prompts(model, config)
    skip_bos = getattr(model.tokenizer, "bos_token_id", None) is not None
    where = positions(batch, skip_bos)
    words = [[model.tokenizer.decode([t]) for t in row] for row in batch.tokens.tolist()]
    hooks = [d.hook_name for d in dictionaries]
    if len(set(hooks)) != len(hooks):
        raise ConfigError(f"two dictionaries read the same hook ({', '.join(h for h in hooks if hooks.count(h) > 1)}): "
                          "describe them in separate runs")
    # One forward pass per batch reads every dictionary.
    collect = collect_transcoder_latents if all(isinstance(d, TranscoderLayer) for d in dictionaries) else collect_latents
    acts = collect(model, dictionaries, batch, batch_size=config.batch_size,
                   progress=(lambda n, total: progress("forward", n, total)) if progress else None)
    out = {}
    for d in dictionaries:
        ctxs = top_contexts(acts[d.hook_name], where, words, top_k=config.top_k, window=config.window)
        out[d.hook_name] = [(label(c, len(batch)), c) for c in ctxs]
    return out


@dataclass(frozen=True)
class TranscoderLayer:
    """One layer of a transcoder set as ``collect_latents`` reads a dictionary."""

    transcoders: Any     # ingest.dictionaries.transcoder_set.Transcoders
    layer: int

    @property
    def hook_name(self) -> str:
        from ingest.dictionaries.transcoder import in_hook

        return in_hook(self.layer)

    @property
    def kind(self) -> str:
        return self.transcoders.kind

    def encode(self, x: Any) -> Any:
        return self.transcoders.encode(self.layer, x)


def collect_transcoder_latents(model: Any, layers: Sequence[TranscoderLayer], batch: Any, *, batch_size: int = 16,
                               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``collect_latents`` for transcoder layers: ``{hook: float64 array [n_tokens d_dict]}``, the
    set's activations of each layer's MLP input over the valid positions of ``batch``."""
    import numpy as np
    import torch

    from ingest.latents import valid_positions

    device = next(model.parameters()).device
    skip_bos = getattr(model.tokenizer, "bos_token_id", None) is not None
    out: dict[str, list[Any]] = {t.hook_name: [] for t in layers}
    valid: dict[str, Any] = {}

    def keep(t: TranscoderLayer, x: Any) -> None:     # returns None: the MLP's output is unchanged
        out[t.hook_name].append(t.encode(x[valid["now"]]).double().cpu().numpy())

    handles = [model.blocks[t.layer].mlp.register_forward_hook(lambda mod, args, o, t=t: keep(t, args[0]))
               for t in layers]
    starts = list(range(0, len(batch), batch_size))
    try:
        with torch.no_grad():
            for n, start in enumerate(starts):
                part = batch[start:start + batch_size].to(device)
                valid["now"] = valid_positions(part, skip_bos)
                model(part.tokens)
                if progress:
                    progress(n + 1, len(starts))
    finally:
        for h in handles:
            h.remove()
    return {h: np.concatenate(v) for h, v in out.items()}


def zoo_transcoder_specs(spec: Any) -> list[str]:
    """The zoo transcoder sets of a zoo model spec's checkpoint (per-layer, then CLT), or []."""
    if spec.kind != "zoo":
        return []
    from ingest.zoo.specs import zoo_manifest, zoo_model_dir
    from ingest.zoo.store import resolve_checkpoint
    from ingest.zoo.transcoder_build import read_transcoder_manifest

    model_dir = zoo_model_dir(spec.name)
    step = resolve_checkpoint(zoo_manifest(model_dir, spec.name), spec.checkpoint)["step"]
    sets = (read_transcoder_manifest(model_dir) or {}).get("sets", [])
    return [f"zoo:{spec.name}@{step}" + ("/clt" if s["kind"] == "clt" else "")
            for s in sorted(sets, key=lambda s: s["kind"] == "clt") if s["step"] == step]


@dataclass(frozen=True)
class Described:
    model: str
    checkpoint: str
    hook: str
    dictionary: str
    latents: int
    active: int
    run: str


def describe(db: Any, config: DescribeConfig, *, device: str = "cpu",
             progress: Progress | None = None) -> list[Described]:
    """Describe the config's dictionaries and write the descriptions (module docstring)."""
    from graphdb.provenance import RunRecord
    from graphdb.schema import Label
    from graphdb.writer import GraphWriter
    from ingest.dictionaries import load_dictionary
    from ingest.dictionaries.transcoder_set import load_transcoders
    from ingest.pipeline import model_labels
    from ingest.zoo.specs import load_model, parse_model_spec

    spec = parse_model_spec(config.model)
    model_label, checkpoint, resid = model_labels(spec, "resid")
    explicit = bool(config.dicts or config.transcoders)
    specs = list(config.dicts) or ([] if explicit else list(dict.fromkeys(resid + model_labels(spec, "module")[2])))
    tc_specs = list(config.transcoders) or ([] if explicit else zoo_transcoder_specs(spec))
    if not specs and not tc_specs:
        from ingest.errors import SpecError

        raise SpecError(f"{config.model} has no zoo SAEs or transcoders; name dictionaries with --dict or --transcoders")
    model = load_model(spec, device=device)
    # One forward pass for the SAEs, one for each transcoder set.
    groups: list[list[Any]] = [[load_dictionary(s, device=device) for s in specs]] if specs else []
    for t in tc_specs:
        tcs = load_transcoders(t, device=device)
        groups.append([TranscoderLayer(tcs, layer) for layer in range(tcs.n_layers)])
    record = RunRecord(kind="describe", seed=config.seed,
                       config={**{k: v for k, v in config.__dict__.items() if k != "seed"}, "dicts": specs,
                               "transcoders": tc_specs})
    writer = GraphWriter(db)
    writer.write_nodes(Label.RUN, [record.row()])
    out = []
    for group in groups:
        out += _describe_group(writer, model, group, config, record, model_label, checkpoint, progress)
    return out


def _describe_group(writer: Any, model: Any, dictionaries: list[Any], config: DescribeConfig, record: Any,
                    model_label: str, checkpoint: str, progress: Progress | None) -> list[Described]:
    """Describe dictionaries that read distinct hooks (one forward pass) and write them."""
    from graphdb.keys import node_key
    from graphdb.schema import Label

    results = describe_dictionaries(model, dictionaries, config, progress=progress)
    out = []
    for d in dictionaries:
        rows = []
        for i, (text, ctxs) in enumerate(results[d.hook_name]):
            key = node_key(Label.FEATURE, model=model_label, checkpoint=checkpoint, hook=d.hook_name,
                           dictionary=d.kind, index=i)
            rows.append({"key": key, "description": text, "top_contexts": [c.text for c in ctxs],
                         "top_activations": [c.activation for c in ctxs], "description_run": record.run_id})
        writer.write_nodes(Label.FEATURE, rows, common={"model": model_label, "checkpoint": checkpoint,
                                                        "hook": d.hook_name})
        out.append(Described(model_label, checkpoint, d.hook_name, d.kind, len(rows),
                             sum(1 for _, c in results[d.hook_name] if c), record.run_id))
    return out


def zoo_model_specs() -> list[str]:
    """``zoo:NAME@STEP`` for every checkpoint of every built zoo model, and SmolLM2 if its SAEs exist."""
    from ingest.zoo.store import list_models, zoo_root

    specs = []
    for name, manifest in list_models(zoo_root()).items():
        ckpts = manifest.get("checkpoints") or []
        if ckpts:
            specs += [f"zoo:{name}@{c['step']}" for c in ckpts if c.get("saes")]
        elif manifest.get("saes"):
            specs.append(name)
    return specs
