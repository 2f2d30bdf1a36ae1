"""Regions of Interest: planted groups of correlated latents recovered, within-ROI statistics
against their random-partition baseline, and the whole run against a real Neo4j (ROIs, IN_ROI,
the contracted ROI-level graph, idempotent re-runs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from analysis.roi.fit import RoiConfig, block_stats, decoder_cosine, fit_rois, similarity_matrix
from analysis.roi.graph import contract_edges

SIZES = [20, 15, 15, 10]


def _planted(seed: int = 0, tokens: int = 600, noise: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Activations [tokens, latents] in which the latents of a group share a latent factor."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(SIZES)), SIZES)
    factors = rng.normal(size=(tokens, len(SIZES)))
    return factors[:, truth] + noise * rng.normal(size=(tokens, len(truth))), truth


@pytest.mark.parametrize("n_blocks", [4, None])
def test_fit_rois_recovers_planted_groups(n_blocks):
    f, truth = _planted()
    perm = np.random.default_rng(1).permutation(len(truth))  # the order of latents carries no hint
    S, _ = similarity_matrix(f[:, perm], f[:, perm], "activation", "correlation")
    labels = fit_rois(S, n_blocks=n_blocks, max_blocks=10, seed=0)
    assert adjusted_rand_score(truth[perm], labels) >= 0.9
    assert len(set(labels.tolist())) == 4
    assert np.bincount(labels).tolist() == sorted(np.bincount(labels).tolist(), reverse=True)  # 0 = largest


def test_both_signals_average_the_two_correlations():
    f, _ = _planted(0)
    a, _ = _planted(1)
    S, R = similarity_matrix(f, a, "both", "correlation")
    want = (np.corrcoef(f, rowvar=False) + np.corrcoef(a, rowvar=False)) / 2
    assert np.allclose(S, want) and np.allclose(S, R)
    S, _ = similarity_matrix(np.c_[f, np.ones(len(f))], a[:, :61], "activation")  # a constant latent: 0, not NaN
    assert np.isfinite(S).all() and S[-1, :-1].tolist() == [0.0] * 60


def test_decoder_cosine_of_planted_groups_beats_the_baseline():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(len(SIZES)), SIZES)
    directions = rng.normal(size=(len(SIZES), 32))
    W = directions[truth] + 0.01 * rng.normal(size=(len(truth), 32))  # near-identical rows per group
    stats = block_stats(decoder_cosine(W), truth, random_partitions=200, seed=0)
    C = decoder_cosine(W)
    for b, size in enumerate(SIZES):  # the observed means, by hand
        block = C[np.ix_(truth == b, truth == b)]
        assert stats.observed[b] == pytest.approx((block.sum() - np.trace(block)) / (size * (size - 1)))
        assert stats.observed[b] > 0.99
    assert np.all(stats.z > 10) and stats.overall_z > 10
    # A random pair of latents shares a planted group (cosine ~ 1) with probability sum s(s-1) / n(n-1).
    n = len(truth)
    same = sum(s * (s - 1) for s in SIZES) / (n * (n - 1))
    assert stats.overall_baseline == pytest.approx(same, abs=0.05)
    shuffled = block_stats(decoder_cosine(W), np.random.default_rng(3).permutation(truth), 200, 0)
    assert abs(shuffled.overall_z) < 3 and np.all(np.abs(shuffled.z) < 4)
    one = block_stats(decoder_cosine(W), np.r_[truth[:-1], 4], 10, 0)  # a block of one has no pairs
    assert np.isnan(one.observed[4]) and np.isnan(one.z[4])


def test_contract_edges_by_hand():
    rows = [{"source": "f1", "target": "f2", "weight": 1.0}, {"source": "f1", "target": "f3", "weight": 2.0},
            {"source": "f2", "target": "f3", "weight": -4.0}, {"source": "e", "target": "f3", "weight": 0.5},
            {"source": "f3", "target": "out", "weight": 3.0}]
    roi_of = {"f1": "A", "f2": "A", "f3": "B"}
    assert contract_edges(rows, roi_of, "sum") == [{"src": "A", "dst": "B", "weight": -2.0},
                                                   {"src": "B", "dst": "out", "weight": 3.0},
                                                   {"src": "e", "dst": "B", "weight": 0.5}]
    assert contract_edges(rows, roi_of, "mean")[0]["weight"] == -1.0
    assert contract_edges(rows, roi_of, "max")[0]["weight"] == -4.0


def test_config_is_checked():
    with pytest.raises(ValueError, match="exactly one"):
        RoiConfig(tasks=("ioi",))
    for bad in ({"signal": "x"}, {"similarity": "x"}, {"n_blocks": 0}, {"min_active": 1.0}, {"aggregate": "x"},
                {"random_partitions": 0}, {"tasks": ()}, {"tasks": ("ioi", "ioi")}, {"max_blocks": 0}):
        with pytest.raises(ValueError):
            RoiConfig(**{"tasks": ("ioi",), "run": "r", **bad})


# -- against Neo4j ----------------------------------------------------------------------------

D = 8
HOOKS = ("blocks.0.hook_attn_out", "blocks.1.hook_resid_post")


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 16, 7)


def _count(db, query: str, **params) -> int:
    return db.read(query, params)[0]["c"]


def test_rois_of_an_ingest_run(db, neo4j_settings, model_dir, tmp_path):
    from analysis.roi.fit import fit_run_rois
    from ingest.attribution.config import AttributionConfig
    from ingest.pipeline import IngestConfig, ingest

    graph = ingest(db, IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=4, batch_size=4,
                                    dicts=tuple(f"identity:{D}/{h}" for h in HOOKS),
                                    attribution=AttributionConfig(steps=1)), state_root=tmp_path / "state")
    config = RoiConfig(tasks=("ioi",), run=graph.run, n_blocks=3, examples=8, random_partitions=20)
    result = fit_run_rois(db, config, out_root=tmp_path / "rois")
    assert [d.hook for d in result.rois] == list(HOOKS)
    n_latents = sum(len(d.indices) for d in result.rois)
    assert n_latents == 2 * D  # identity latents are active on every token
    assert _count(db, "MATCH (r:ROI {run: $run}) RETURN count(r) AS c", run=result.run) == 2 * 3
    assert _count(db, "MATCH (:Feature)-[m:IN_ROI {run: $run}]->(:ROI {run: $run}) RETURN count(m) AS c",
                  run=result.run) == n_latents
    sizes = {r["key"]: r["size"] for r in db.read("MATCH (r:ROI {run: $run}) RETURN r.key AS key, r.size AS size",
                                                  {"run": result.run})}
    members = db.read("MATCH (f)-[:IN_ROI {run: $run}]->(r) RETURN r.key AS key, count(f) AS n", {"run": result.run})
    assert {m["key"]: m["n"] for m in members} == sizes

    # The ROI-level graph is the feature graph contracted by hand.
    roi_of = {r["f"]: r["r"] for r in db.read("MATCH (f)-[:IN_ROI {run: $run}]->(r) RETURN f.key AS f, r.key AS r",
                                              {"run": result.run})}
    want: dict[tuple[str, str], float] = {}
    for e in db.read("MATCH (a)-[e:ATTRIBUTES_TO {run: $run, granularity: 'feature'}]->(b) "
                     "RETURN a.key AS a, b.key AS b, e.weight AS w", {"run": graph.run}):
        a, b = roi_of.get(e["a"], e["a"]), roi_of.get(e["b"], e["b"])
        if a != b:
            want[(a, b)] = want.get((a, b), 0.0) + e["w"]
    got = {(e["a"], e["b"]): e["w"] for e in db.read(
        "MATCH (a)-[e:ATTRIBUTES_TO {run: $run, granularity: 'roi'}]->(b) RETURN a.key AS a, b.key AS b, e.weight AS w",
        {"run": result.run})}
    assert set(got) == {k for k, w in want.items() if w != 0} and len(got) == result.roi_edges["ioi"] > 0
    for k, w in got.items():
        assert w == pytest.approx(want[k], rel=1e-9, abs=1e-12)

    # Heads of the attention dictionary, and the files.
    attn = result.rois[0]
    assert attn.heads is not None and set(attn.heads.tolist()) <= {0, 1}
    names = {p.name for p in result.files}
    assert {"summary.csv", "heads_blocks.0.hook_attn_out.csv", "heads_blocks.0.hook_attn_out.png"} <= names
    assert all(p.stat().st_size > 0 for p in result.files)

    # The same configuration again replaces, and so does naming the ingest run through the model.
    counts = _count(db, "MATCH (n) RETURN count(n) AS c"), _count(db, "MATCH ()-[e]->() RETURN count(e) AS c")
    again = fit_run_rois(db, replace(config, run=None, model=f"path:{model_dir}"), out_root=tmp_path / "rois")
    assert again.run == result.run and again.ingest_run == graph.run
    assert (_count(db, "MATCH (n) RETURN count(n) AS c"), _count(db, "MATCH ()-[e]->() RETURN count(e) AS c")) == counts

    # The CLI: the same fit (same run, nothing added) and the list of its ROIs.
    from typer.testing import CliRunner

    from analysis.cli import app

    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    res = CliRunner().invoke(app, ["roi", "fit", "--run", graph.run, "--task", "ioi", "--blocks", "3", "-n", "8",
                                   "--partitions", "20", "--out", str(tmp_path / "cli"), "--format", "csv"], env=env)
    assert res.exit_code == 0, res.output
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(res.stdout)))  # csv: the table alone, its rows naming the runs
    assert {r["run"] for r in rows} == {result.run} and {r["ingest_run"] for r in rows} == {graph.run}
    assert "blocks.0.hook_attn_out" in {r["hook"] for r in rows} and f"run {result.run}" in res.stderr
    assert (_count(db, "MATCH (n) RETURN count(n) AS c"), _count(db, "MATCH ()-[e]->() RETURN count(e) AS c")) == counts
    res = CliRunner().invoke(app, ["roi", "show", result.run, "--format", "csv"], env=env)
    assert res.exit_code == 0 and len(res.stdout.strip().splitlines()) == 1 + 2 * 3
    res = CliRunner().invoke(app, ["roi", "fit", "--task", "ioi"], env=env)
    assert res.exit_code == 2 and "exactly one" in res.output  # a usage error, before any work

    # The ROI-level graph is evaluated as the sets of its features.
    from analysis.evaluate.selection import EdgeSelection
    from analysis.evaluate.sweep import EvaluateConfig, evaluate

    judged = evaluate(db, EvaluateConfig(task="ioi", run=result.run, examples=4, sweep=1, ablations=("edge",),
                                         selection=EdgeSelection(granularity="roi")), out_dir=tmp_path / "eval")
    assert judged.total_edges == result.roi_edges["ioi"] and judged.graph_run == result.run
    # Issue 15 item 10: evaluate's JSON is one document whose rows name the evaluation run and the graph's.
    import json
    res = CliRunner().invoke(app, ["evaluate", "-t", "ioi", "--run", result.run, "-n", "4", "--sweep", "1",
                                   "--ablation", "edge", "--granularity", "roi", "--out", str(tmp_path / "eval"),
                                   "--format", "json"], env=env)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["run"] for r in rows} == {judged.run} and {r["graph_run"] for r in rows} == {result.run}
    roi_nodes = {k for pair in got for k in pair}
    assert judged.points[0].nodes == len(roi_nodes)
    with pytest.raises(Exception, match="granularity roi"):
        evaluate(db, EvaluateConfig(task="ioi", run=result.run, examples=4), out_dir=tmp_path / "eval")


def test_unknown_run_or_hook(db):
    from analysis.roi.fit import fit_run_rois
    from mechgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="no ingest run"):
        fit_run_rois(db, RoiConfig(tasks=("ioi",), run="ingest-000000000000"), out_root=Path("/nonexistent"))
