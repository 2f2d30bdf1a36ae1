"""Task disentanglement: planted task-specific communities (pure numpy/scipy inputs), the same
graph with its edges' tasks shuffled, and the whole job on a tiny two-task model in a real Neo4j."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from analysis.communities.partition import CommunityConfig
from analysis.disentangle.measure import (DisentangleConfig, align, analyse, purity, rewire, z_score)
from graphdb.keys import node_key
from graphdb.schema import Label

TASKS = ("a", "b", "c")
BLOCK = 40


@dataclass
class Graph:
    keys: Any
    matrix: Any


def _key(i: int) -> str:
    return node_key(Label.FEATURE, model="m", checkpoint="k", hook="blocks.0.hook_resid_post", dictionary="d", index=i)


def _out(task: str) -> str:
    return node_key(Label.OUTPUT, model="m", checkpoint="k", task=task, metric="logit_diff")


def planted(seed: int = 0, p_in: float = 0.3, p_out: float = 0.02) -> tuple[Any, Any, Any, Any]:
    """3 tasks × 40 nodes: dense edges inside block t carry task t, sparse cross edges carry a
    random task. Returns (src, dst, weight, task of each edge)."""
    rng = np.random.default_rng(seed)
    n = BLOCK * len(TASKS)
    block = np.arange(n) // BLOCK
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    same = block[src] == block[dst]
    keep = rng.random(len(src)) < np.where(same, p_in, p_out)
    src, dst, same = src[keep], dst[keep], same[keep]
    task = np.where(same, block[src], rng.integers(0, len(TASKS), len(src)))
    return src, dst, rng.uniform(0.5, 2.0, len(src)) * rng.choice([-1, 1], len(src)), task


def graphs_of(src, dst, w, task, *, outputs: bool = False) -> dict[str, Graph]:
    """Per task: its edges (plus, with ``outputs``, every node of the task's block into the task's
    output) on its own sorted node index, as ``pull_subgraph`` returns them."""
    out = {}
    for t, name in enumerate(TASKS):
        sel = task == t
        s, d = [_key(i) for i in src[sel]], [_key(i) for i in dst[sel]]
        ws = list(w[sel])
        if outputs:
            members = range(t * BLOCK, (t + 1) * BLOCK)
            s += [_key(i) for i in members]
            d += [_out(name)] * BLOCK
            ws += [1.0] * BLOCK
        keys, inv = np.unique(np.array(s + d), return_inverse=True)
        m = len(ws)
        out[name] = Graph(keys, sparse.coo_matrix((ws, (inv[:m], inv[m:])), shape=(len(keys),) * 2).tocsr())
    return out


def _truth(keys) -> Any:
    return np.array([int(k.rsplit("|", 1)[1]) // BLOCK for k in keys])


def test_alignment_strength_and_dominance_by_hand():
    k0, k1, k2 = _key(0), _key(1), _key(2)
    ga = Graph(np.array(sorted([k0, k1])), None)
    ga.matrix = sparse.csr_matrix(np.array([[0.0, 2.0], [0.0, 0.0]]) if ga.keys[0] == k0 else [[0, 0], [2.0, 0]])
    gb = Graph(np.array(sorted([k1, k2, _out("b")])), None)
    idx = {k: i for i, k in enumerate(gb.keys)}
    M = np.zeros((3, 3))
    M[idx[k1], idx[k2]] = -3.0
    M[idx[k2], idx[_out("b")]] = 1.0
    gb.matrix = sparse.csr_matrix(M)
    al = align({"a": ga, "b": gb})
    assert list(al.keys) == sorted([k0, k1, k2, _out("b")])
    s = {k: al.strength[i] for i, k in enumerate(al.keys)}
    assert s[k0].tolist() == [2.0, 0.0] and s[k1].tolist() == [2.0, 3.0] and s[k2].tolist() == [0.0, 4.0]
    dom = {k: (al.tasks[al.dominant[i]], al.dominance[i]) for i, k in enumerate(al.keys)}
    assert dom[k1] == ("b", pytest.approx(0.6)) and dom[k0] == ("a", 1.0)
    assert al.kept.tolist() == [k != _out("b") for k in al.keys] and al.outputs == {"b": _out("b")}
    assert al.union.sum() == pytest.approx(2.0 - 3.0 + 1.0)


def test_planted_task_communities_are_found_far_above_the_null():
    graphs = graphs_of(*planted(), outputs=True)
    an = analyse(graphs, CommunityConfig(seed=0), null="permutation", draws=200, seed=0)
    assert len(an.keys) == 3 * BLOCK  # the three outputs left out
    assert (an.dominant == _truth(an.keys)).all()
    assert an.nmi >= 0.9 and an.ari >= 0.9
    assert an.null_mean < 0.1 and an.z > 10
    for p in an.purity[:3]:
        assert p.size == BLOCK and p.purity > 0.8 and p.majority_fraction == 1.0
    assert sorted(p.dominant_task for p in an.purity[:3]) == list(TASKS)


def test_shuffled_edge_tasks_leave_nmi_at_chance():
    src, dst, w, task = planted()
    shuffled = np.random.default_rng(1).permutation(task)
    an = analyse(graphs_of(src, dst, w, shuffled), CommunityConfig(seed=0), draws=200, seed=0)
    assert abs(an.z) < 3 and an.nmi < 0.1
    # the communities are still the planted blocks: only the task labels lost their meaning
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(_truth(an.keys), an.labels) >= 0.9


def test_rewiring_preserves_degrees_and_weights_and_destroys_blocks():
    src, dst, w, task = planted()
    n = 3 * BLOCK
    A = sparse.coo_matrix((w, (src, dst)), shape=(n, n)).tocsr()
    R = rewire(A, np.random.default_rng(0))
    assert R.nnz == A.nnz and R.diagonal().sum() == 0
    for axis in (0, 1):
        assert ((abs(R) > 0).sum(axis=axis) == (abs(A) > 0).sum(axis=axis)).all()
    assert np.allclose(np.asarray(R.sum(axis=1)).ravel(), np.asarray(A.sum(axis=1)).ravel())  # out-strength
    assert sorted(R.data.tolist()) == pytest.approx(sorted(A.data.tolist()))
    block = np.arange(n) // BLOCK
    inside = lambda M: (block[M.tocoo().row] == block[M.tocoo().col]).mean()  # noqa: E731
    assert inside(A) > 0.8 and inside(R) < 0.5


def test_rewire_null_sits_below_the_planted_nmi():
    an = analyse(graphs_of(*planted()), CommunityConfig(seed=0), null="rewire", draws=4, seed=0)
    assert an.nmi >= 0.9 and an.null_nmi.max() < 0.5 and an.z > 10


def test_purity_by_hand_and_z_score_edges():
    labels = np.array([0, 0, 0, 1])
    strength = np.array([[3.0, 1.0], [0.0, 2.0], [1.0, 0.0], [0.0, 5.0]])
    dominant = strength.argmax(axis=1)
    p = purity(labels, strength, dominant, ("x", "y"), np.array(list("pqrs")))
    assert p[0].shares == pytest.approx([4 / 7, 3 / 7]) and p[0].dominant_task == "x"
    assert p[0].majority_task == "x" and p[0].majority_fraction == pytest.approx(2 / 3)
    assert p[1].members == ["s"] and p[1].purity == 1.0
    assert z_score(0.5, np.array([0.1, 0.1])) == float("inf") and z_score(0.1, np.array([0.1, 0.1])) == 0.0
    assert z_score(0.4, np.array([0.0, 0.2])) == pytest.approx((0.4 - 0.1) / np.std([0, 0.2], ddof=1))


def test_config_rejects_what_cannot_be_run():
    with pytest.raises(ValueError, match="two tasks"):
        DisentangleConfig(model="zoo:x", tasks=("ioi",))
    with pytest.raises(ValueError, match="null"):
        DisentangleConfig(model="zoo:x", tasks=("ioi", "induction"), null="shuffle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ablations"):
        DisentangleConfig(model="zoo:x", tasks=("ioi", "induction"), ablations=("path",))  # type: ignore[arg-type]
    assert DisentangleConfig(model="zoo:x", tasks=("a", "b"), null="rewire").n_draws == 20


# ---- the whole job against a real Neo4j --------------------------------------------------

D = 8


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint):
    return tiny_checkpoint(D, 16, 5)


def test_disentangle_a_tiny_two_task_graph(db, neo4j_settings, model_dir, tmp_path):
    """The complete residual graphs of ioi and induction of a tiny model (identity dictionaries,
    threshold 0): shapes, write-back, the boundary values of the kill table, idempotence."""
    import json
    from dataclasses import replace

    from analysis.disentangle.kill import KillRunner
    from analysis.disentangle.measure import disentangle
    from ingest.attribution.config import AttributionConfig
    from ingest.pipeline import IngestConfig, ingest
    from queries.loader import run_query

    graph = ingest(db, IngestConfig(
        model=f"path:{model_dir}", tasks=("ioi", "induction"), examples=4, batch_size=4,
        dicts=(f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"),
        attribution=AttributionConfig(steps=1, threshold=0.0)), state_root=tmp_path / "state")
    config = DisentangleConfig(model=f"path:{model_dir}", tasks=("ioi", "induction"), run=graph.run,
                               draws=20, examples=4, batch_size=4, top_k=3)
    result = disentangle(db, config, out_root=tmp_path / "out")
    an, table = result.analysis, result.kill
    assert an.alignment.excluded_outputs == 2 and len(an.keys) == len(an.alignment.keys) - 2
    assert 0.0 <= an.nmi <= 1.0 and len(an.null_nmi) == 20
    k = min(3, len(an.purity))
    for key in (("edge", "kill"), ("edge", "keep"), ("node", "kill"), ("node", "keep")):
        assert table.values[key].shape == (k, 2)
    assert result.csv.read_text().count("\n") == 1 + 2 * k
    assert all(p.stat().st_size > 0 for p in result.pngs) and len(result.pngs) == 2
    assert result.csv.parent.name == result.run

    # Boundaries: kill nothing / keep everything is the model; kill everything / keep nothing is ∅.
    run_config = json.loads(run_query(db, "run_config", {"run": graph.run})[0]["config"])
    runner = KillRunner(an.alignment, config.tasks, run_config, examples=4, split="test", seed=0, baseline="mean")
    everything = an.keys.tolist()
    for task in config.tasks:
        sweep = runner.sweep(task, 4)
        for kind in ("edge", "node"):
            kill_none, keep_none = runner.scores(sweep, [], task, kind)
            kill_all, keep_all = runner.scores(sweep, everything, task, kind)
            assert kill_none == pytest.approx(1.0, abs=1e-4) and keep_all == pytest.approx(1.0, abs=1e-4)
            assert kill_all == pytest.approx(0.0, abs=1e-5) and keep_none == pytest.approx(0.0, abs=1e-5)

    summary = run_query(db, "disentanglement", {"run": result.run})
    assert len(summary) == len(an.purity)
    assert summary[0]["nmi"] == pytest.approx(an.nmi) and summary[0]["size"] == an.purity[0].size

    def counts():
        return db.read("MATCH (d:Disentanglement {run: $run}) OPTIONAL MATCH (d)-[r]->() "
                       "RETURN count(DISTINCT d) AS d, count(r) AS r", {"run": result.run})[0]

    first = counts()
    assert first["d"] == 1 + len(an.purity) and first["r"] == 2 * first["d"]
    again = disentangle(db, replace(config, kill=False), out_root=tmp_path / "out")
    assert again.run != result.run and again.communities_run == result.communities_run
    assert counts() == first  # the shared communities were rewritten; the first run's links are back
    assert len(run_query(db, "disentanglement", {"run": result.run})) == len(an.purity)
    assert disentangle(db, config, out_root=tmp_path / "out").run == result.run
    assert counts() == first
    assert db.read("MATCH (r:Run {kind: 'disentangle'}) RETURN count(r) AS c")[0]["c"] == 2

    # Issue 15 item 10: the CLI's JSON is one document whose rows name the runs it created.
    from typer.testing import CliRunner

    from analysis.cli import app
    from tests.analysis.test_cli import env_for
    res = CliRunner().invoke(app, ["disentangle", "-m", f"path:{model_dir}", "-t", "ioi", "-t", "induction", "--run",
                                   graph.run, "--draws", "20", "--no-kill", "--format", "json",
                                   "--out", str(tmp_path / "cli")], env=env_for(neo4j_settings))
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    (made,) = {r["run"] for r in rows}
    assert made.startswith("disentangle-") and f"run {made}" in res.stderr
    assert db.read("MATCH (r:Run {run: $run, kind: 'disentangle'}) RETURN count(r) AS c", {"run": made})[0]["c"] == 1
    (communities_run,) = {r["communities_run"] for r in rows}
    assert db.read("MATCH (r:Run {run: $run, kind: 'communities'}) RETURN count(r) AS c",
                   {"run": communities_run})[0]["c"] == 1

