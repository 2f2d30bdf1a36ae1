"""Write-backs that fail half-way keep the previous result (issue 14, A2).

Each analysis run (communities, ROIs, disentanglement, feature matches) is written once, then
written again with a different result through the real ``GraphWriter`` that raises after its
n-th committed batch of the result's rows. The first result must still be complete; a third,
uninterrupted write must leave exactly what one uninterrupted write of the new result leaves
on its own (checksums of every node, relationship and property of the run).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from graphdb.sample import SampleSpec, write_sample
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter

SPEC = SampleSpec()
CKPT = SPEC.checkpoints[-1]
#: Bookkeeping of a write, not part of a result: the write generation and the run's time stamps.
BOOKKEEPING = {"gen", "writing_gen", "created_at", "finished_at", "code_version"}


class Interrupted(Exception):
    """Raised by :class:`FailingWriter` in place of a crash."""


class FailingWriter(GraphWriter):
    """The real writer, raising after its ``nth`` committed batch of ``what`` rows (any rows if None)."""

    def __init__(self, db, *, nth: int, what: set | None = None, batch_size: int = 5) -> None:
        super().__init__(db, batch_size=batch_size, progress=self._tick)
        self.left, self.what, self.current = nth, what, None

    def write_nodes(self, label, rows, common=None):
        self.current = label
        return super().write_nodes(label, rows, common)

    def write_relationships(self, rel, rows, **kw):
        self.current = rel
        return super().write_relationships(rel, rows, **kw)

    def _tick(self, _rows: int) -> None:
        if self.what is None or self.current in self.what:
            self.left -= 1
            if self.left == 0:
                raise Interrupted(f"simulated failure after a batch of {self.current}")


def snapshot(db, run: str) -> dict[str, list]:
    """Every node whose ``run`` is ``run`` (the :Run node by its key only) and every relationship
    of the run or touching those nodes, with their properties less :data:`BOOKKEEPING`."""
    def clean(props: dict) -> dict:
        return {k: v for k, v in sorted(props.items()) if k not in BOOKKEEPING}

    nodes = db.read("MATCH (n) WHERE n.run = $run RETURN labels(n) AS labels, properties(n) AS p", {"run": run})
    rels = db.read("MATCH (a)-[r]->(b) WHERE r.run = $run OR a.run = $run OR b.run = $run "
                   "RETURN type(r) AS type, a.key AS a, b.key AS b, properties(r) AS p", {"run": run})
    def order(rows: list) -> list:
        return sorted(rows, key=lambda x: json.dumps(x, sort_keys=True, default=str))

    return {"nodes": order([sorted(n["labels"]), n["p"]["key"] if "Run" in n["labels"] else clean(n["p"])]
                           for n in nodes),
            "rels": order([r["type"], r["a"], r["b"], clean(r["p"])] for r in rels)}


def identities(snap: dict[str, list]) -> set:
    """What identifies the snapshot's nodes and relationships (keys; endpoints, type and run)."""
    return ({n[1] if isinstance(n[1], str) else n[1]["key"] for n in snap["nodes"]}
            | {(r[0], r[1], r[2], r[3].get("run"), r[3].get("method"), r[3].get("task")) for r in snap["rels"]})


def checksum(snap: dict[str, list]) -> str:
    return hashlib.sha256(json.dumps(snap, sort_keys=True, default=str).encode()).hexdigest()[:16]


def delete_run(db, run: str) -> None:
    db.write("MATCH ()-[r]->() WHERE r.run = $run DELETE r", {"run": run})
    db.write("MATCH (n) WHERE n.run = $run DETACH DELETE n", {"run": run})


# -- the four write-backs, each as (run id, write(variant)) on the sample graph ---------------

def _communities(db, monkeypatch):
    import analysis.communities.partition as module
    from analysis.communities.partition import CommunityConfig, Partition, partition, write_communities
    from analysis.subgraph import Selection, pull_subgraph

    sub = pull_subgraph(db, Selection(SPEC.model, CKPT, ("ioi",), run=SPEC.run().run_id))
    config = CommunityConfig(seed=0)
    good = partition(sub, config)
    other = Partition(labels=[np.arange(sub.n) % 4], modularity=[0.0])  # another result, the same run id

    def write(variant: int, writer=None):
        monkeypatch.setattr(module, "GraphWriter", writer or GraphWriter)
        return write_communities(db, sub, [good, other][variant], config)

    return write, {Label.COMMUNITY, Rel.PRODUCED_BY, Rel.IN_COMMUNITY}


def _rois(db, monkeypatch):
    import analysis.roi.graph as module
    from analysis.roi.fit import DictionaryRois, RoiConfig, block_stats
    from analysis.roi.graph import write_rois
    from graphdb.keys import node_key
    from graphdb.provenance import RunRecord
    from ingest.graph_rows import GraphNames

    n, hook = SPEC.features_per_layer, SPEC.hook(1)
    record = RunRecord(kind="roi", seed=0, config={"sample": SPEC.run().run_id})
    names = GraphNames(model=SPEC.model, checkpoint=CKPT, slots=(), n_layers=SPEC.n_layers)
    config = RoiConfig(tasks=("ioi",), run=SPEC.run().run_id)

    def rois(labels):
        return DictionaryRois(hook=hook, layer=1, dictionary=SPEC.dictionary, n_latents=n, indices=np.arange(n),
                              dictionary_key=node_key(Label.DICTIONARY, model=SPEC.model, checkpoint=CKPT, hook=hook,
                                                      dictionary=SPEC.dictionary),
                              features=[SPEC.feature_key(CKPT, 1, i) for i in range(n)], labels=labels,
                              cosine=block_stats(np.eye(n), labels, 5), correlation=block_stats(np.eye(n), labels, 5))

    variants = [np.arange(n) % 3, np.arange(n) % 5]

    def write(variant: int, writer=None):
        monkeypatch.setattr(module, "GraphWriter", writer or GraphWriter)
        write_rois(db, record, names, [rois(variants[variant])], SPEC.run().run_id, config)
        return record.run_id

    return write, {Label.ROI, Rel.IN_ROI, Rel.PRODUCED_BY, Rel.AT_CHECKPOINT, Rel.ATTRIBUTES_TO}


def _disentanglement(db, monkeypatch, tmp_path):
    import dataclasses

    import analysis.disentangle.measure as module
    from analysis.disentangle.measure import DisentangleConfig, disentangle_graphs, pull_task_graphs, write_disentanglement
    from graphdb.provenance import RunRecord

    runs = {t: SPEC.run().run_id for t in SPEC.tasks}
    config = DisentangleConfig(model=SPEC.model, tasks=tuple(SPEC.tasks), kill=False, draws=10)
    result = disentangle_graphs(db, pull_task_graphs(db, SPEC.model, CKPT, runs), config, model=SPEC.model,
                                checkpoint=CKPT, runs=runs, run_config=None, out_root=tmp_path)
    record = RunRecord(kind="disentangle", seed=config.seed, config={
        **dataclasses.asdict(config), "graph_runs": dict(runs), "communities_run": result.communities_run})
    assert record.run_id == result.run
    # another result of the same run: other scores, fewer community rows
    other = dataclasses.replace(result, analysis=dataclasses.replace(
        result.analysis, nmi=0.5, purity=result.analysis.purity[:1]))

    def write(variant: int, writer=None):
        monkeypatch.setattr(module, "GraphWriter", writer or GraphWriter)
        write_disentanglement(db, record, [result, other][variant])
        return record.run_id

    return write, {Label.DISENTANGLEMENT, Rel.PRODUCED_BY, Rel.DESCRIBES}


def _matches(db, monkeypatch):
    import analysis.matching.features as module
    from analysis.matching.core import FeatureMatch
    from analysis.matching.features import FeatureMatchConfig, FeatureMatchResult, HookMatch, Side, write_feature_matches

    hook, width = SPEC.hook(0), 12
    config = FeatureMatchConfig(model="tiny", from_checkpoint="1", to_checkpoint="2", method="cosine")

    def result(shift: int) -> FeatureMatchResult:
        src = np.arange(width)
        match = FeatureMatch(src=src, dst=(src + shift) % width, score=np.full(width, 0.9 - 0.1 * shift),
                             method="cosine")
        return FeatureMatchResult(source=Side("tiny", "step-1", "path:a", {}), target=Side("tiny", "step-2", "path:b", {}),
                                  hooks=[HookMatch(hook=hook, n_from=width, n_to=width, kinds=("sae", "sae"),
                                                   matches={"cosine": match})], config=config)

    def write(variant: int, writer=None):
        monkeypatch.setattr(module, "GraphWriter", writer or GraphWriter)
        return write_feature_matches(db, result(variant))

    return write, {Rel.MATCHES}


@pytest.mark.parametrize("kind", ["communities", "rois", "disentanglement", "matches"])
def test_an_interrupted_rewrite_keeps_the_old_result_and_a_rerun_completes_it(db, monkeypatch, tmp_path, kind):
    write_sample(GraphWriter(db), SPEC)
    if kind == "disentanglement":
        write, what = _disentanglement(db, monkeypatch, tmp_path)
    else:
        write, what = {"communities": _communities, "rois": _rois, "matches": _matches}[kind](db, monkeypatch)
    run = write(0)
    old = snapshot(db, run)
    assert old["rels"], "the first write wrote nothing"

    with pytest.raises(Interrupted):
        write(1, lambda db_, **kw: FailingWriter(db_, nth=2, what=what))
    after = snapshot(db, run)
    lost = identities(old) - identities(after)
    assert not lost, f"{kind}: the interrupted rewrite lost {len(lost)} of the old result's nodes/relationships"

    assert write(1) == run
    rerun = snapshot(db, run)
    delete_run(db, run)
    write(1)
    alone = snapshot(db, run)
    assert checksum(rerun) == checksum(alone) and rerun == alone


def test_an_interrupted_identical_rewrite_leaves_the_old_result_exactly(db, monkeypatch):
    """The same result written again and interrupted: the run reads exactly as before."""
    write_sample(GraphWriter(db), SPEC)
    write, what = _communities(db, monkeypatch)
    run = write(0)
    old = snapshot(db, run)
    with pytest.raises(Interrupted):
        write(0, lambda db_, **kw: FailingWriter(db_, nth=3, what=what))
    assert snapshot(db, run) == old
    write(0)
    assert snapshot(db, run) == old


# -- a real process killed with SIGKILL during write-back -------------------------------------

BIG = SampleSpec(model="big", checkpoints=("final",), n_layers=3, features_per_layer=8_000, tasks=("ioi", "induction"),
                 fan_in=2, n_heads=1)


def _cli(settings, *args: str) -> list[str]:
    return [sys.executable, "-c", "from analysis.cli import main; main()", *args]


def _env(settings) -> dict[str, str]:
    env = dict(os.environ, NEO4J_URI=settings.uri, NEO4J_USER=settings.user, NEO4J_PASSWORD=settings.password)
    env.pop("NEO4J_DATABASE", None)
    return env


@pytest.fixture()
def big_db(db):
    """The ``BIG`` sample graph; deleted afterwards in batches (one transaction for all of it
    exceeds a small server's transaction memory, and the next test's wipe is one transaction)."""
    write_sample(GraphWriter(db), BIG)
    yield db
    with db.driver.session(database=db.database) as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()


@pytest.mark.slow
def test_kill_9_during_communities_write_back_keeps_the_old_result(big_db, neo4j_settings, tmp_path):
    db = big_db
    args = _cli(neo4j_settings, "--data-dir", str(tmp_path), "communities", "--model", BIG.model,
                "--checkpoint", "final", "--task", "ioi", "--task", "induction", "--run", BIG.run().run_id)
    first = subprocess.run(args, env=_env(neo4j_settings), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    run = re.search(r"^run (\S+);", first.stdout, re.M).group(1)
    old = snapshot(db, run)
    counts = (len(old["nodes"]), len(old["rels"]))

    proc = subprocess.Popen(args, env=_env(neo4j_settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    poll = ("MATCH (r:Run {run: $run}) "
            "OPTIONAL MATCH (c:Community {run: $run}) WHERE r.writing_gen IS NOT NULL AND c.gen = r.writing_gen "
            "WITH r, count(c) AS new "
            "OPTIONAL MATCH (k:Community {run: $run}) "
            "RETURN new, count(k) AS communities")
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        row = db.read(poll, {"run": run})[0]
        # new writes started: communities of the new generation, or (without generations) the
        # old communities deleted
        if row["new"] > 0 or row["communities"] != sum(1 for n in old["nodes"] if "Community" in n[0]):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the write-back ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    unfinished = db.read("MATCH (r:Run {run: $run}) RETURN r.writing_gen AS w", {"run": run})
    killed = snapshot(db, run)
    assert (len(killed["nodes"]), len(killed["rels"])) == counts
    assert killed == old, "the old result changed"
    assert unfinished and unfinished[0]["w"] is not None, "the kill came after the write-back finished"

    again = subprocess.run(args, env=_env(neo4j_settings), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert checksum(snapshot(db, run)) == checksum(old)
    assert db.read("MATCH (r:Run {run: $run}) RETURN r.writing_gen AS w", {"run": run})[0]["w"] is None
