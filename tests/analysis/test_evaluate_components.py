"""``evaluate --granularity component`` on the affine hand-built model of
``tests/ingest/test_components.py``, through the real Neo4j: the full component graph is
faithful (F = 1) under edge and node ablation, the empty graph has F = 0, and a hand-picked
circuit gets the value of an independent, by-hand forward pass of its definition (uniform
attention as a running mean, MLPs as affine maps): the exact patching ground truth."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
from typer.testing import CliRunner

from analysis.cli import app
from tests.ingest.test_components import linear_checkpoint

ORDER = ["embed", "L0.H0", "L0.H1", "L0.MLP", "L1.H0", "L1.H1", "L1.MLP", "output"]


def _stage(n: str) -> tuple[int, int]:
    """(layer, 0 = reads/writes as a head, 1 = as an MLP); the embedding writes first, the output reads last."""
    return {"embed": (-1, 1), "output": (2, 0)}.get(n) or (int(n[1]), 1 if n.endswith("MLP") else 0)


def _before(u: str, v: str) -> bool:
    """u writes the residual before v reads it."""
    (lu, su), (lv, sv) = _stage(u), _stage(v)
    return lu < lv or (lu == lv and su == 0 and sv == 1)


def by_hand(model, batch, edges: set[tuple[str, str]], kind: str) -> float:
    """Mean logit difference of the graph ``edges`` under ``kind`` ablation, computed from the
    weights: node ablation puts every component outside the graph at its baseline output;
    edge ablation gives each component the sum of its kept in-edges' outputs in this run and
    the other upstream components' baseline outputs. None (kind "empty") is the baseline run."""
    W_E, W_pos, W_U = model.W_E.detach(), model.W_pos.detach(), model.W_U.detach()
    T = batch.tokens.shape[1]
    valid = (torch.arange(T)[None] <= batch.last[:, None]) & (torch.arange(T)[None] >= 1)
    clean_x = W_E[batch.tokens] + W_pos[:T]
    base_x = torch.where(valid[..., None], W_E[batch.cf_tokens] + W_pos[:T], clean_x)
    counts = torch.arange(1, T + 1, dtype=clean_x.dtype)[None, :, None]

    def f(v: str, x: torch.Tensor) -> torch.Tensor:
        layer = int(v[1])
        blk = model.blocks[layer]
        if v.endswith("MLP"):
            return torch.relu(x @ blk.mlp.W_in.detach() + blk.mlp.b_in.detach()) @ blk.mlp.W_out.detach()
        h = int(v[-1])
        values = x @ blk.attn.W_V.detach()[h]
        return (values.cumsum(1) / counts) @ blk.attn.W_O.detach()[h]  # uniform causal attention

    def forward(embed: torch.Tensor, source) -> torch.Tensor:
        out = {"embed": embed}
        for v in ORDER[1:]:
            x = sum(source(u, v, out) for u in ORDER if u in out and _before(u, v))
            out[v] = x if v == "output" else f(v, x)
        logits = out["output"] @ W_U
        rows = torch.arange(len(batch))
        last = logits[rows, batch.last]
        return last[rows, batch.answer] - last[rows, batch.cf_answer]

    base: dict[str, torch.Tensor] = {}

    def plain(u, v, out):
        return out[u]

    forward(base_x, lambda u, v, out: base.setdefault(u, out[u]))  # the baseline outputs
    if kind == "empty":
        return float(forward(base_x, plain).mean())
    if kind == "edge":
        return float(forward(clean_x, lambda u, v, out: out[u] if (u, v) in edges else base[u]).mean())
    nodes = {n for e in edges for n in e} | {"output"}
    kept = {}

    def node_source(u, v, out):
        kept.setdefault(u, out[u] if u in nodes else base[u])
        return kept[u]

    return float(forward(clean_x if "embed" in nodes else base_x, node_source).mean())


@pytest.fixture()
def graph(db, tmp_path):
    from ingest.attribution.config import AttributionConfig
    from ingest.pipeline import IngestConfig, ingest, resolve

    ckpt = linear_checkpoint(tmp_path)
    config = IngestConfig(model=f"path:{ckpt}", tasks=("ioi",), graph="component", examples=6, batch_size=6,
                          attribution=AttributionConfig(steps=1, threshold=0.0))
    result = ingest(db, config, state_root=tmp_path / "state")
    resolved = resolve(config)
    return result.run, resolved.model, resolved.batches["ioi"]


def test_full_empty_and_a_hand_picked_component_graph(db, graph, tmp_path):
    from analysis.evaluate.components import ComponentSweep
    from analysis.evaluate.selection import EdgeSelection
    from analysis.evaluate.sweep import CurvePoint, EvaluateConfig, evaluate
    from ingest.component_ablation import ComponentMask

    run, model, batch = graph
    m_empty = by_hand(model, batch, set(), "empty")
    everything = {(u, v) for u in ORDER for v in ORDER if _before(u, v)}
    m_full = by_hand(model, batch, everything, "edge")
    base = dict(task="ioi", run=run, examples=6, sweep=1,
                selection=EdgeSelection(granularity="component"))
    full = evaluate(db, EvaluateConfig(**base), out_dir=tmp_path / "eval")
    assert full.baseline == "counterfactual"  # the graph's own
    assert full.clean_logit_diff == pytest.approx(m_full, abs=1e-4)
    assert full.ablated_logit_diff == pytest.approx(m_empty, abs=1e-4)
    for p in full.points:  # the stored graph lacks only edges that carry nothing (into head 1.1 from layer 0)
        assert p.faithfulness == pytest.approx(1.0, abs=1e-4), p.ablation
        assert p.completeness == pytest.approx(0.0, abs=1e-4), p.ablation

    sweep = ComponentSweep(model, batch, 6, "counterfactual", point=CurvePoint)
    empty = ComponentMask.from_edges(set())
    for kind in ("edge", "node"):
        assert sweep.measure(kind, empty)["logit_diff"] == pytest.approx(m_empty, abs=1e-4)
        assert sweep.measure(kind, ComponentMask.complete(ORDER, set(ORDER)))["logit_diff"] == pytest.approx(m_full, abs=1e-4)

    circuit = {("embed", "L0.H0"), ("L0.H0", "L1.MLP"), ("L1.MLP", "output"), ("embed", "output"),
               ("L0.MLP", "output")}
    path = tmp_path / "circuit.csv"
    path.write_text("src,dst\n" + "".join(f"{_key(u)},{_key(v)}\n" for u, v in sorted(circuit)))
    picked = evaluate(db, EvaluateConfig(**{**base, "selection": EdgeSelection(granularity="component",
                                                                                edges=str(path))}),
                      out_dir=tmp_path / "eval")
    for p in picked.points:
        want = (by_hand(model, batch, circuit, p.ablation) - m_empty) / (m_full - m_empty)
        assert p.faithfulness == pytest.approx(want, abs=1e-4), p.ablation
        assert p.nodes == 5 and p.edges == 5
    edge, node = (next(p for p in picked.points if p.ablation == k) for k in ("edge", "node"))
    assert abs(edge.faithfulness - node.faithfulness) > 1e-3  # node ablation keeps more than the 5 edges


def _key(n: str) -> str:
    from ingest.component_graph import component_key
    return component_key(n, model="ckpt", checkpoint="path", task="ioi")


def test_component_graph_at_the_cli(neo4j_settings, db, tmp_path):
    """``ingest --graph component`` and ``evaluate --granularity component`` as a user runs them."""
    ckpt = linear_checkpoint(tmp_path)
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    home = ["--data-dir", str(tmp_path / "home")]
    res = CliRunner().invoke(app, [*home, "ingest", "-m", f"path:{ckpt}", "-t", "ioi", "-n", "4", "--graph",
                                   "component", "-k", "auto", "--threshold", "0", "--format", "csv"], env=env)
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader(io.StringIO(res.stdout.split("\n\n")[0])))
    assert row["steps"] == "8" and float(row["residual"]) < 1e-4  # affine: the first K of auto converges
    res = CliRunner().invoke(app, [*home, "evaluate", "-t", "ioi", "--run", row["run"], "-n", "4", "--sweep", "2",
                                   "--granularity", "component", "--format", "json"], env=env)
    assert res.exit_code == 0, res.output
    points = json.loads(res.stdout)
    assert {p["graph_run"] for p in points} == {row["run"]}
    assert max(p["faithfulness"] for p in points) == pytest.approx(1.0, abs=1e-3)
    res = CliRunner().invoke(app, [*home, "ingest", "-m", f"path:{ckpt}", "-t", "ioi", "--graph", "component",
                                   "--dicts", "identity:6/blocks.0.hook_resid_post"], env=env)
    assert res.exit_code != 0 and "uses no dictionaries" in re.sub(r"[\s│]+", " ", res.output)


def test_the_full_component_graph_of_a_llama_model_reproduces_it(db, hf_checkpoint, tmp_path):
    """Rotary, RMSNorm, grouped-query attention (each query head gets its own key/value input):
    the whole graph (no threshold, no noise floor) is faithful under both ablations, with the
    mean baseline the graph was ingested with."""
    from analysis.evaluate.selection import EdgeSelection
    from analysis.evaluate.sweep import EvaluateConfig, evaluate
    from ingest.attribution.config import AttributionConfig
    from ingest.pipeline import IngestConfig, ingest

    ckpt = hf_checkpoint("llama", seed=3)
    config = IngestConfig(model=f"path:{ckpt}", tasks=("ioi",), graph="component", examples=4, batch_size=4,
                          attribution=AttributionConfig(steps=16, threshold=0.0, noise_rel=0.0, baseline="mean"))
    result = ingest(db, config, state_root=tmp_path / "state")
    # every pair of 2 layers x (4 heads + MLP): embed 11, layer-0 heads 4 x 7, MLP 0 6, layer-1 heads 4 x 2, MLP 1 1
    assert result.tasks[0].edges == 11 + 28 + 6 + 8 + 1
    assert result.tasks[0].residual < 0.05
    judged = evaluate(db, EvaluateConfig(task="ioi", run=result.run, examples=4, sweep=1,
                                         selection=EdgeSelection(granularity="component")), out_dir=tmp_path / "eval")
    assert judged.baseline == "mean"
    for p in judged.points:
        assert p.faithfulness == pytest.approx(1.0, abs=1e-4) and p.completeness == pytest.approx(0.0, abs=1e-4)
