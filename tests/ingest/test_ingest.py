"""``mechgraph ingest`` against a real Neo4j: what is written, idempotence, resumption, bad input.

The model is a tiny random-weight transformer saved as a checkpoint directory (``path:DIR``)
with the zoo's word-level tokenizer; dictionaries are identity (neuron) dictionaries, so every
count below follows from the model's shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from graphdb.schema import Granularity
from graphdb.writer import GraphWriter
from ingest.attribution.aggregate import GraphAccumulator
from ingest.attribution.config import AttributionConfig
from ingest.attribution.engine import AttributionEngine
from ingest.errors import AttributionError, DictionaryError, TaskError
from ingest.pipeline import IngestConfig, ingest, resolve

D = 16


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 32, 3)


def _config(model_dir: Path, **kw: object) -> IngestConfig:
    base = dict(model=f"path:{model_dir}", tasks=("ioi", "sva"),
                dicts=(f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"),
                examples=6, batch_size=2, attribution=AttributionConfig(steps=2, threshold=1e-3))
    base.update(kw)
    return IngestConfig(**base)  # type: ignore[arg-type]


def _edges(db, run: str, granularity: str = "feature") -> dict[tuple[str, str, str], float]:
    rows = db.read("MATCH (a)-[r:ATTRIBUTES_TO {run: $run, granularity: $g}]->(b) "
                   "RETURN a.key AS a, b.key AS b, r.task AS task, r.weight AS w", {"run": run, "g": granularity})
    return {(r["a"], r["b"], r["task"]): r["w"] for r in rows}


def _counts(db) -> tuple[int, int]:
    return (db.read("MATCH (n) RETURN count(n) AS c")[0]["c"], db.read("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"])


def test_ingest_writes_task_labelled_graphs_equal_to_the_engine(db, model_dir, tmp_path):
    config = _config(model_dir)
    result = ingest(db, config, state_root=tmp_path)
    assert [t.task for t in result.tasks] == ["ioi", "sva"] and result.checkpoint == "path"
    stored = _edges(db, result.run)
    for t in result.tasks:
        assert t.edges == sum(1 for k in stored if k[2] == t.task) > 0
    # The same graph straight from the engine and accumulator, without Neo4j.
    resolved = resolve(config)
    batch = resolved.batches["ioi"]
    engine = AttributionEngine(resolved.model, resolved.slots, config.attribution)
    acc = GraphAccumulator(config.attribution.beta, [s.n_nodes for s in resolved.slots] + [1])
    for start in range(0, len(batch), config.batch_size):
        acc.add(engine.attribute(batch[start:start + config.batch_size]))
    kept = acc.result(config.attribution.threshold)
    assert sum(len(e) for e in kept.values()) == result.tasks[0].edges
    out = kept[(len(resolved.slots) - 1, len(resolved.slots))]  # last dictionary -> output
    weights = sorted((w for k, w in stored.items() if k[2] == "ioi" and k[1].startswith("output|")), key=abs)
    assert sorted(out.weight.tolist(), key=abs) == pytest.approx(weights, rel=1e-6)
    # Run provenance, task links, and the output node per task.
    run = db.read("MATCH (r:Run {run: $run})-[:FOR_TASK]->(t:Task) RETURN r.tasks_done AS done, collect(t.name) AS tasks",
                  {"run": result.run})[0]
    assert sorted(run["tasks"]) == sorted(run["done"]) == ["ioi", "sva"]
    assert db.read("MATCH (o:Output) RETURN count(o) AS c")[0]["c"] == 2
    # Node attributions are on the nodes.
    attr = db.read("MATCH (f:Feature) WHERE f.attribution_ioi IS NOT NULL RETURN count(f) AS c")[0]["c"]
    assert attr == result.tasks[0].features > 0


def test_rerunning_a_finished_run_changes_nothing(db, model_dir, tmp_path):
    config = _config(model_dir, tasks=("ioi",))
    first = ingest(db, config, state_root=tmp_path)
    before, edges = _counts(db), _edges(db, first.run)
    again = ingest(db, config, state_root=tmp_path)
    assert again.run == first.run and [t.skipped for t in again.tasks] == [True]
    assert _counts(db) == before and _edges(db, first.run) == edges


def test_interrupted_ingest_resumes_to_the_uninterrupted_graph(db, model_dir, tmp_path):
    config = _config(model_dir, tasks=("ioi", "sva"))
    partial = ingest(db, config, state_root=tmp_path / "a", stop_after_batches=4)  # ioi (3 batches) + 1 of sva
    assert [t.task for t in partial.tasks] == ["ioi"]
    assert list((tmp_path / "a" / partial.run).glob("*.pt")) != []
    resumed = ingest(db, config, state_root=tmp_path / "a")
    assert [t.skipped for t in resumed.tasks] == [True, False]
    interrupted = _edges(db, resumed.run)
    db.write("MATCH ()-[r:ATTRIBUTES_TO {run: $run}]->() DELETE r", {"run": resumed.run})
    db.write("MATCH (r:Run {run: $run}) REMOVE r.tasks_done", {"run": resumed.run})
    ingest(db, config, state_root=tmp_path / "b")
    assert _edges(db, resumed.run) == interrupted


def test_module_graph_has_heads_and_a_head_level_graph(db, model_dir, tmp_path):
    hooks = [f"blocks.{layer}.hook_{m}" for layer in range(2) for m in ("attn_out", "mlp_out")]
    config = _config(model_dir, tasks=("ioi",), dicts=tuple(f"identity:{D}/{h}" for h in hooks))
    result = ingest(db, config, state_root=tmp_path)
    shares = db.read("MATCH (f:Feature)-[s:IN_HEAD]->(h:Head) RETURN f.key AS f, sum(s.share) AS total, "
                     "max(s.share) AS top, f.head AS head, collect(h.head)[0] AS any")
    assert shares and all(r["total"] == pytest.approx(1.0, abs=1e-6) for r in shares)
    # identity dictionary on attn_out: latent i of the argmax head really is that head's largest share.
    top = db.read("MATCH (f:Feature)-[s:IN_HEAD]->(h:Head) WITH f, s, h ORDER BY s.share DESC "
                  "WITH f, collect(h.head)[0] AS best RETURN count(f) AS n, sum(CASE WHEN f.head = best THEN 1 ELSE 0 END) AS ok")[0]
    assert top["n"] == top["ok"] > 0
    coarse = _edges(db, result.run, str(Granularity.HEAD))
    assert result.tasks[0].head_edges == len(coarse) > 0
    assert any(k[0].startswith("head|") for k in coarse)


def test_bad_input_fails_before_anything_is_written(db, model_dir, tmp_path):
    cases = [
        (_config(model_dir, tasks=("no_such_task",)), TaskError),
        (_config(model_dir, dicts=(f"identity:{D + 1}/blocks.0.hook_resid_post",)), DictionaryError),
        (_config(model_dir, dicts=(f"identity:{D}/blocks.0.hook_nowhere",)), DictionaryError),
    ]
    for config, error in cases:
        with pytest.raises(error):
            ingest(db, config, state_root=tmp_path)
        assert _counts(db) == (0, 0)
    with pytest.raises(ValueError):
        _config(model_dir, tasks=())


def test_nan_activations_fail_before_anything_is_written(db, model_dir, tmp_path, monkeypatch):
    import ingest.pipeline as pipeline

    real = pipeline._check_finite

    def poisoned(model, slots, batch, batch_size, task):
        with torch.no_grad():
            model.blocks[1].mlp.W_out[0, 0] = float("nan")
        return real(model, slots, batch, batch_size, task)

    monkeypatch.setattr(pipeline, "_check_finite", poisoned)
    with pytest.raises(AttributionError, match="non-finite"):
        ingest(db, _config(model_dir), state_root=tmp_path, writer=GraphWriter(db))
    assert _counts(db) == (0, 0)


@pytest.fixture(scope="module")
def steep_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its MLP input weights x30: GELU becomes nearly a step function."""
    import shutil

    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("steep") / "ckpt"
    shutil.copytree(model_dir, out)
    weights = load_file(str(out / "model.safetensors"))
    save_file({k: v * 30 if k.endswith("mlp.W_in") else v for k, v in weights.items()}, str(out / "model.safetensors"))
    return out


def test_unconverged_paths_are_reported_and_steps_auto_converges(db, steep_model_dir, tmp_path):
    """Issue 15 item 8: K=2 on a step-like model reports a completeness residual above the
    tolerance (not converged) and stores it on the run's per-task record; --steps auto raises K
    until the residual is within it, and says which K it chose."""
    two = ingest(db, _config(steep_model_dir, tasks=("ioi",), attribution=AttributionConfig(steps=2, threshold=1e-3)),
                 state_root=tmp_path)
    t = two.tasks[0]
    assert t.steps == 2 and not t.converged and t.residual > 0.05
    assert set(t.residuals) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "output"}
    rec = db.read("MATCH (:Run {run: $run})-[f:FOR_TASK]->(:Task {name: 'ioi'}) RETURN f.ig_steps AS k, "
                  "f.residual AS r, f.residual_tolerance AS tol, f.residual_targets AS targets", {"run": two.run})[0]
    assert rec["k"] == 2 and rec["r"] == pytest.approx(t.residual) and rec["tol"] == 0.05
    assert len(rec["targets"]) == 3
    auto = ingest(db, _config(steep_model_dir, tasks=("ioi",),
                              attribution=AttributionConfig(steps="auto", threshold=1e-3)), state_root=tmp_path)
    a = auto.tasks[0]
    assert a.converged and a.residual <= 0.05 and a.steps in (16, 32, 64, 128)
    assert db.read("MATCH (:Run {run: $run})-[f:FOR_TASK]->() RETURN f.ig_steps AS k", {"run": auto.run})[0]["k"] == a.steps
