"""The seed's showcase: a gender shortcut removed by edge ablation, not by node ablation.

On ``bias_in_bios`` ("Mary gives injections every day . she is a -> nurse") a zoo model trained
with gender a perfect predictor of the profession answers from gender. The graph has two
outputs that read the same dictionary (the readout slot: the last one, which the logits read
position by position):

* **profession**, the logit difference nurse − professor at the last position;
* **pronoun**, the logit difference she − he at the ``.`` before the pronoun (the model's own
  next-token prediction; run as the prompt cut after ``.``, which a causal model reads the same).

**Gender features** G are the readout slot's latents whose gender selectivity
``d' = |mean_f − mean_m| / sqrt((var_f + var_m) / 2)`` over balanced bios is at least
``min_selectivity`` at the profession position or ``min_pronoun_selectivity`` at the pronoun
position. Then:

* **node ablation of G**: G at baseline in an ordinary forward pass, so gender is gone from the
  slot for every reader, the pronoun included;
* **edge ablation of G → profession**: only the profession output's in-edges from G are cut;
  the pronoun output keeps all its in-edges, and G keeps its values.

Measured per condition: the **shortcut gap** (mean profession logit difference on female bios
minus male bios: how much gender moves the profession), accuracy on anti-stereotypical bios
(gender opposite to the profession cue), the pronoun's accuracy and logit difference, and the
fraction of G's gender difference still present at the slot ("G active").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mechgraph.errors import ConfigError


@dataclass(frozen=True)
class ShortcutConfig:
    model: str = "zoo:mt-small@final"
    graph: str = "resid"
    dicts: tuple[str, ...] = ()
    examples: int = 128
    reference: int = 256
    min_selectivity: float = 3.0
    min_pronoun_selectivity: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        if self.examples < 4 or self.reference < 1:
            raise ValueError("examples must be at least 4 and reference at least 1")
        if self.min_selectivity <= 0 or self.min_pronoun_selectivity <= 0:
            raise ValueError("selectivity thresholds must be positive")


@dataclass
class ShortcutRow:
    condition: str
    shortcut_gap: float
    anti_accuracy: float
    pronoun_accuracy: float
    pronoun_logit_diff: float
    gender_features_active: float


@dataclass
class ShortcutResult:
    model: str
    hook: str
    gender_features: list[int]
    rows: list[ShortcutRow]

    def table(self) -> list[dict[str, Any]]:
        return [{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()} for r in self.rows]

    def write_csv(self, path: Any) -> Any:
        import csv

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(asdict(self.rows[0])))
            w.writeheader()
            w.writerows(asdict(r) for r in self.rows)
        return path


def _pronoun_examples(examples: list[Any]) -> list[Any]:
    """The bios cut after the ``.``: the next token is the pronoun."""
    from ingest.tasks.registry import Example

    def cut(text: str) -> str:
        return text[:text.index(" .") + 2]

    out = []
    for ex in examples:
        she = ex.meta["gender"] == "f"
        out.append(Example(cut(ex.clean), cut(ex.counterfactual), " she" if she else " he", " he" if she else " she",
                           task="pronoun"))
    return out


def selectivity(f: Any, female: Any) -> Any:
    """Gender selectivity d' per latent of activations ``f`` [n, d] (``female`` bool [n])."""
    a, b = f[female], f[~female]
    return (a.mean(0) - b.mean(0)).abs() / (((a.var(0) + b.var(0)) / 2).sqrt() + 1e-6)


def run_shortcut(config: ShortcutConfig, *, device: str = "cpu") -> ShortcutResult:
    """The showcase table (module docstring)."""
    import torch

    from ingest.ablation import GraphMask, edge_ablation, node_ablation, positionwise_readout
    from ingest.attribution.config import AttributionConfig
    from ingest.attribution.engine import AttributionEngine
    from ingest.pipeline import IngestConfig, resolve
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples

    resolved = resolve(IngestConfig(model=config.model, tasks=("bias_in_bios",), graph=config.graph, examples=4,
                                    dicts=config.dicts,
                                    attribution=AttributionConfig(baseline="mean")), device=device)
    tok, S = resolved.model.tokenizer, len(resolved.slots)
    readout = resolved.slots[-1]
    if readout.dictionary is None or not positionwise_readout(resolved.model, readout.hook):
        raise ConfigError(f"the last dictionary of {config.model} ({readout.hook}) is not read position by position "
                          "by the logits; the showcase needs the readout slot (resid_post or mlp_out of the last layer)")
    engine = AttributionEngine(resolved.model, resolved.slots, AttributionConfig(baseline="mean"))
    engine.mean = engine.mean_baseline(encode_examples(
        tok, get_task("bias_in_bios:variant=balanced").examples(config.reference, seed=config.seed + 1, split="train")))

    def data(spec: str) -> tuple[list[Any], Any]:
        ex = get_task(spec).examples(config.examples, seed=config.seed, split="test")
        return ex, encode_examples(tok, ex).to(device)

    balanced_ex, balanced = data("bias_in_bios:variant=balanced")
    _, anti = data("bias_in_bios:variant=anti")
    pronoun = encode_examples(tok, _pronoun_examples(balanced_ex)).to(device)
    female = torch.tensor([ex.meta["gender"] == "f" for ex in balanced_ex], device=device)
    rows = torch.arange(len(balanced), device=device)
    _, values = engine.run_cached(balanced.tokens)
    with torch.no_grad():
        f = readout.dictionary.encode(values[-1])
    d_prof = selectivity(f[rows, balanced.last], female)
    d_pron = selectivity(f[rows, pronoun.last], female)
    gender = ((d_prof >= config.min_selectivity) | (d_pron >= config.min_pronoun_selectivity)).nonzero().flatten()
    if len(gender) == 0:
        raise ConfigError("no latent of the readout slot passes the selectivity thresholds; lower them")

    def gender_gap(latents: Any) -> Any:
        at = latents[rows, balanced.last][:, gender]
        return (at[female].mean(0) - at[~female].mean(0)).abs().sum()

    every = {s: torch.ones(sl.n_nodes, dtype=torch.bool) for s, sl in enumerate(resolved.slots)}
    complete = GraphMask.complete(engine, every)
    without = {s: k.clone() for s, k in every.items()}
    without[S - 1][gender] = False
    node_mask = GraphMask.complete(engine, without)
    cut = dict(complete.edges)
    cut[S - 1, S] = cut[S - 1, S].clone()
    cut[S - 1, S][0, gender.cpu()] = False
    edge_mask = GraphMask(nodes=every, edges=cut)

    def measure(name: str, run: Any, prof_mask: Any, pron_mask: Any) -> ShortcutRow:
        seen: dict[int, Any] = {}
        lg = run(engine, balanced, prof_mask, latents=seen)
        ld = lg[rows, balanced.answer] - lg[rows, balanced.cf_answer]
        nurse = torch.where(torch.tensor([ex.answer == " nurse" for ex in balanced_ex], device=device), ld, -ld)
        la = run(engine, anti, prof_mask)
        ra = torch.arange(len(anti), device=device)
        lp = run(engine, pronoun, pron_mask)
        rp = torch.arange(len(pronoun), device=device)
        dp = lp[rp, pronoun.answer] - lp[rp, pronoun.cf_answer]
        return ShortcutRow(condition=name, shortcut_gap=float(nurse[female].mean() - nurse[~female].mean()),
                           anti_accuracy=float(((la[ra, anti.answer] - la[ra, anti.cf_answer]) > 0).float().mean()),
                           pronoun_accuracy=float((dp > 0).float().mean()), pronoun_logit_diff=float(dp.mean()),
                           gender_features_active=float(gender_gap(seen[S - 1]) / gender_gap(f)))

    out = [measure("clean", node_ablation, complete, complete),
           measure("node ablation of G", node_ablation, node_mask, node_mask),
           measure("edge ablation of G -> profession", edge_ablation, edge_mask, complete)]
    return ShortcutResult(model=config.model, hook=readout.hook, gender_features=gender.tolist(), rows=out)

