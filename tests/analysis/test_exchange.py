"""Neuronpedia graph JSON out and in (analysis/exchange), against the session's real Neo4j."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from analysis.cli import app
from analysis.exchange.export import export_community, export_prompt, export_query, export_task, write_json
from analysis.exchange.load import ImportConfig, _edge_rows, import_file
from analysis.exchange.neuronpedia import FormatError
from analysis.exchange.stream import LinkArray, links_start
from graphdb.keys import node_key
from graphdb.provenance import RunRecord
from graphdb.schema import Label, Rel
from graphdb.writer import GraphWriter
from ingest.replacement.graph import PromptGraph
from ingest.replacement.prune import Pruned, Scores
from ingest.replacement.store import GraphLabels, write_prompt_graph
from ingest.replacement.targets import Target

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "circuit_tracer_graph.json"
runner = CliRunner()


def _hand_built(db) -> str:
    """A 2-layer, 2-token prompt graph written through the trace's own write path.

    Nodes (graph order): features f0 = (layer 0, pos 1, #3), f1 = (layer 1, pos 1, #4); error
    nodes e(l, p) at 2 + 2l + p; tokens t0 = 6 (id 5), t1 = 7 (id 7); the target 8 (token 9,
    "cat", p = 0.6). Kept: both features, e(0, 1) = 3, both tokens, the target."""
    n = 9
    A = torch.zeros(n, n, dtype=torch.float64)
    A[0, 7] = 0.5        # t1 -> f0
    A[1, 0] = 0.25       # f0 -> f1
    A[1, 3] = -0.125     # e(0,1) -> f1
    A[8, 1] = 2.0        # f1 -> target
    A[8, 6] = 0.75       # t0 -> target
    target = Target(label="cat", token=9, counter_token=None, weight=0.6, direction=torch.zeros(4), bias=0.0)
    g = PromptGraph(prompt="a b", tokens=torch.tensor([5, 7]), token_strs=["a", "b"], n_layers=2,
                    active_features=torch.tensor([[0, 1, 3], [1, 1, 4]]), activation_values=torch.tensor([1.5, 2.0]),
                    selected_features=torch.tensor([0, 1]), targets=[target], adjacency=A,
                    fixed=torch.zeros(n, dtype=torch.float64), value=torch.zeros(n, dtype=torch.float64))
    keep = torch.tensor([True, True, False, True, False, False, True, True, True])
    cumulative = torch.tensor([0.5, 0.25, 0, 0.75, 0, 0, 0.875, 0.9375, 1.0], dtype=torch.float64)
    pruned = Pruned(node_mask=keep, edge_mask=torch.ones(n, n, dtype=torch.bool), cumulative=cumulative)
    labels = GraphLabels(model="toy", checkpoint="final", dictionary="tc", task="t")
    run = RunRecord(kind="trace", seed=0, config={"test": "exchange"})
    writer = GraphWriter(db)
    stored = write_prompt_graph(writer, g, pruned, labels, run, transcoders="path:tc", full=Scores(1.0, 1.0),
                                pruned_scores=Scores(1.0, 1.0))
    # f0's feature has a description; both features are in community 0 of a communities run r1.
    fkey = labels.position_free({"kind": "feature", "layer": 0, "feature": 3})
    writer.write_nodes(Label.FEATURE, [{"key": fkey, "description": "dogs", "layer": 0, "index": 3}])
    ckey = node_key(Label.COMMUNITY, run="r1", level=0, index=0)
    writer.write_nodes(Label.COMMUNITY, [{"key": ckey, "run": "r1", "level": 0, "index": 0, "size": 2}])
    members = [r["key"] for r in db.read("MATCH (n:PromptNode {prompt: $p, kind: 'feature'}) RETURN n.key AS key",
                                         {"p": stored.prompt})]
    writer.write_relationships(Rel.IN_COMMUNITY, [{"src": k, "dst": ckey, "run": "r1"} for k in members],
                               src=Label.NODE, dst=Label.COMMUNITY)
    # f0's feature is in ROI 2 of an ROI run: the prompt graph's occurrence of it is in that supernode.
    rkey = node_key(Label.ROI, model="toy", checkpoint="final", hook="blocks.0.mlp.hook_in", dictionary="tc",
                    partition="roi-run", index=2)
    writer.write_nodes(Label.ROI, [{"key": rkey, "index": 2, "hook": "blocks.0.mlp.hook_in", "dictionary": "tc", "size": 1}])
    writer.write_relationships(Rel.IN_ROI, [{"src": fkey, "dst": rkey, "run": "roi-run"}])
    return stored.prompt


def test_export_of_a_hand_built_prompt_graph_has_the_formats_ids_and_values(db):
    doc = export_prompt(db, _hand_built(db))
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert list(nodes) == ["0_3_1", "1_4_1", "0_-1_1", "E_5_0", "E_7_1", "3_9_1"]
    f0, f1, err, t0, t1, logit = nodes.values()
    # features: feature = cantor(layer, index): cantor(0, 3) = 9, cantor(1, 4) = 19
    assert (f0["feature"], f0["layer"], f0["ctx_idx"], f0["feature_type"], f0["jsNodeId"]) == \
        (9, "0", 1, "cross layer transcoder", "0_3-0")
    assert (f0["clerp"], f0["activation"], f0["influence"]) == ("dogs", 1.5, 0.5)
    assert (f1["feature"], f1["layer"], f1["clerp"], f1["activation"]) == (19, "1", "", 2.0)
    assert (err["feature"], err["layer"], err["ctx_idx"], err["feature_type"], err["jsNodeId"], err["influence"]) == \
        (-1, "0", 1, "mlp reconstruction error", "0_1-0", 0.75)
    assert (t0["feature"], t0["layer"], t0["ctx_idx"], t0["feature_type"], t0["jsNodeId"]) == (0, "E", 0, "embedding", "E_5-0")
    assert (t1["feature"], t1["jsNodeId"]) == (1, "E_7-1")
    # the logit: layer n_layers + 1 = 3, feature = its token
    assert (logit["feature"], logit["layer"], logit["ctx_idx"], logit["feature_type"], logit["jsNodeId"]) == \
        (9, "3", 1, "logit", "L_9-1")
    assert (logit["token_prob"], logit["is_target_logit"], logit["clerp"]) == (0.6, True, 'Output "cat" (p=0.600)')
    links = {(link["source"], link["target"]): link["weight"] for link in doc["links"]}
    assert links == {("E_7_1", "0_3_1"): 0.5, ("0_3_1", "1_4_1"): 0.25, ("0_-1_1", "1_4_1"): -0.125,
                     ("1_4_1", "3_9_1"): 2.0, ("E_5_0", "3_9_1"): 0.75}
    assert doc["qParams"]["supernodes"] == [["community 0 (level 0, 2 nodes, run r1)", "0_3_1", "1_4_1"],
                                            ["ROI 2 of tc at blocks.0.mlp.hook_in (1 latents)", "0_3_1"]]
    assert doc["metadata"]["info"]["generator"]["name"] == "mechgraph"
    assert (doc["metadata"]["prompt"], doc["metadata"]["prompt_tokens"], doc["metadata"]["scan"]) == ("a b", ["a", "b"], "toy")
    # a threshold on |weight| drops exactly the two weakest links
    cut = export_prompt(db, _hand_built(db), min_abs_weight=0.3)
    assert {(x["source"], x["target"]) for x in cut["links"]} == {("E_7_1", "0_3_1"), ("1_4_1", "3_9_1"), ("E_5_0", "3_9_1")}


def _same(a: dict, b: dict) -> None:
    """Same nodes (every field; floats to float32), links (weights to float32) and supernodes."""
    def f32(x):
        return None if x is None else float(np.float32(x)) if isinstance(x, float) else x

    def nodes(d):
        return {n["node_id"]: {k: f32(v) for k, v in n.items()} for n in d["nodes"]}

    def links(d):
        return {(x["source"], x["target"]): float(np.float32(x["weight"])) for x in d["links"]}

    assert nodes(a) == nodes(b)
    assert [n["node_id"] for n in a["nodes"]] == [n["node_id"] for n in b["nodes"]]
    assert links(a) == links(b) and len(a["links"]) == len(b["links"])
    assert a["qParams"]["supernodes"] == b["qParams"]["supernodes"]
    for k in ("slug", "scan", "prompt", "prompt_tokens", "transcoder_list"):
        assert a["metadata"][k] == b["metadata"][k]


def test_round_trip_of_a_prompt_graph_with_supernodes(db, tmp_path):
    first = export_prompt(db, _hand_built(db))
    first["qParams"]["supernodes"].append(["errors and tokens", "0_-1_1", "E_5_0", "not-a-node"])
    first["qParams"]["pinnedIds"] = ["0_3_1"]
    write_json(first, tmp_path / "a.json")
    db.write("MATCH (n) DETACH DELETE n")
    r = import_file(db, tmp_path / "a.json", ImportConfig(model="toy2"))
    assert (r.nodes, r.links, r.supernodes, r.skipped) == (6, 5, 3, False)
    again = export_prompt(db, r.prompt)
    _same(first, again)
    assert again["qParams"]["pinnedIds"] == ["0_3_1"]
    # importing it again changes nothing
    assert import_file(db, tmp_path / "a.json", ImportConfig(model="toy2")).skipped
    assert db.read("MATCH (n:PromptNode) RETURN count(n) AS n")[0]["n"] == 6


def test_prompt_export_takes_communities_through_its_nodes_features(db, tmp_path):
    """As `mechgraph view` groups a prompt graph: each prompt node's feature (its task-graph node)
    -> that node's community; the newest run covering the features by default, or the one named."""
    from analysis.exchange.export import ExportError

    prompt = _hand_built(db)
    db.write("MATCH (c:Community {run: 'r1'}) DETACH DELETE c")       # only the task-graph runs below
    db.write("MATCH (r:ROI) DETACH DELETE r")
    labels = GraphLabels(model="toy", checkpoint="final", dictionary="tc", task="t")
    f0 = labels.position_free({"kind": "feature", "layer": 0, "feature": 3})
    f1 = labels.position_free({"kind": "feature", "layer": 1, "feature": 4})
    e01 = labels.position_free({"kind": "error", "layer": 0})
    writer = GraphWriter(db)
    writer.write_nodes(Label.FEATURE, [{"key": f1, "layer": 1, "index": 4}])
    writer.write_nodes(Label.ERROR, [{"key": e01, "layer": 0}])
    for run, created, groups in (("communities-old", 1.0, [[f0, f1, e01]]), ("communities-new", 2.0, [[f0], [f1, e01]])):
        writer.write_nodes(Label.RUN, [{"key": node_key(Label.RUN, run=run), "run": run, "kind": "communities",
                                        "created_at": created}])
        for i, members in enumerate(groups):
            ckey = node_key(Label.COMMUNITY, run=run, level=0, index=i)
            writer.write_nodes(Label.COMMUNITY, [{"key": ckey, "run": run, "level": 0, "index": i, "size": 10 + i}])
            writer.write_relationships(Rel.IN_COMMUNITY, [{"src": k, "dst": ckey, "run": run} for k in members],
                                       src=Label.NODE, dst=Label.COMMUNITY)
    doc = export_prompt(db, prompt)
    assert doc["metadata"]["info"]["communities_run"] == "communities-new"
    # members by influence: f1 (0.25) before e(0, 1) (0.75); labels name the layers and a description
    assert doc["qParams"]["supernodes"] == [["community 0 (1 nodes L0): dogs", "0_3_1"],
                                            ["community 1 (2 nodes L0-L1)", "1_4_1", "0_-1_1"]]
    old = export_prompt(db, prompt, communities="communities-old")
    assert old["qParams"]["supernodes"] == [["community 0 (3 nodes L0-L1): dogs", "1_4_1", "0_3_1", "0_-1_1"]]
    assert export_prompt(db, prompt, communities="none")["qParams"]["supernodes"] == []
    with pytest.raises(ExportError, match="communities-new"):
        export_prompt(db, prompt, communities="communities-gone")
    # round trip: the imported prompt's supernodes are the file's, and no run is added to them
    write_json(doc, tmp_path / "c.json")
    db.write("MATCH (n) DETACH DELETE n")
    again = export_prompt(db, import_file(db, tmp_path / "c.json", ImportConfig(model="toy2")).prompt)
    _same(doc, again)


def test_round_trip_of_a_file_circuit_tracer_wrote(db, tmp_path):
    original = json.loads(FIXTURE.read_text())
    r = import_file(db, FIXTURE)
    assert (r.nodes, r.links) == (len(original["nodes"]), len(original["links"]))
    _same(original, export_prompt(db, r.prompt))
    # the imported graph is a prompt graph like a traced one: kinds, layers, positions
    rows = db.read("MATCH (n:PromptNode {prompt: $p}) RETURN n.kind AS kind, count(*) AS n ORDER BY kind", {"p": r.prompt})
    count = {x["kind"]: x["n"] for x in rows}
    types = [n["feature_type"] for n in original["nodes"]]
    assert count == {"feature": types.count("cross layer transcoder"), "error": types.count("mlp reconstruction error"),
                     "token": types.count("embedding"), "target": types.count("logit")}
    err = next(n for n in original["nodes"] if n["feature_type"] == "mlp reconstruction error")
    stored = db.read("MATCH (n:PromptNode {prompt: $p, np_node_id: $id}) RETURN n.layer AS layer, n.position AS pos",
                     {"p": r.prompt, "id": err["node_id"]})[0]
    assert (stored["layer"], stored["pos"]) == (int(err["layer"]), err["ctx_idx"])
    # its edges carry what the writer's MERGE sets on a traced graph's edges
    props = db.read("MATCH (:PromptNode {prompt: $p})-[r:ATTRIBUTES_TO]->() RETURN r {.*} AS r", {"p": r.prompt})
    assert len(props) == len(original["links"])
    assert all(x["r"]["abs_weight"] == abs(x["r"]["weight"]) and
               {k: x["r"][k] for k in ("granularity", "model", "checkpoint", "task")} ==
               {"granularity": "prompt", "model": original["metadata"]["scan"], "checkpoint": "final", "task": "neuronpedia"}
               and x["r"]["run"].startswith("import-") for x in props)


def test_library_queries_across_imported_prompts(db, tmp_path):
    from queries.loader import run_query

    doc = json.loads(FIXTURE.read_text())
    feature = next(n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    for i in range(2):
        d = dict(doc, metadata=dict(doc["metadata"], slug=f"copy-{i}", prompt=doc["metadata"]["prompt"] + f" {i}"))
        write_json(d, tmp_path / f"g{i}.json")
        import_file(db, tmp_path / f"g{i}.json", ImportConfig(model="bench"))
    layer, index = int(feature["layer"]), int(feature["node_id"].split("_")[1])
    rows = run_query(db, "imported_recurring_features", {"model": "bench", "min_prompts": 2})
    hit = [r for r in rows if r["layer"] == layer and r["index"] == index]
    assert hit and hit[0]["prompts"] == 2 and set(hit[0]["slugs"]) == {"copy-0", "copy-1"}
    out = run_query(db, "imported_feature_neighbourhood", {"model": "bench", "layer": layer, "index": index})
    want = sum(x["weight"] for x in doc["links"] if x["source"] == feature["node_id"]) * 2
    got = sum(r["total_weight"] for r in out if r["direction"] == "out")
    assert got == pytest.approx(want, rel=1e-5)


def _synthetic(path: Path, n_links: int, n_nodes: int = 400) -> None:
    nodes = [{"node_id": f"{i % 4}_{i}_{i % 7}", "feature": i, "layer": str(i % 4), "ctx_idx": i % 7,
              "feature_type": "cross layer transcoder", "jsNodeId": f"{i % 4}_{i}-0", "clerp": ""}
             for i in range(n_nodes)]
    with path.open("w") as f:
        f.write('{"metadata": {"slug": "synthetic", "scan": "syn", "prompt": "x", "prompt_tokens": []}, '
                '"qParams": {"pinnedIds": [], "supernodes": []}, "nodes": ')
        json.dump(nodes, f)
        f.write(', "links": [')
        for k in range(n_links):
            s, t = divmod(k, n_nodes)
            f.write(("," if k else "") + json.dumps({"source": nodes[s % n_nodes]["node_id"],
                                                      "target": nodes[t]["node_id"], "weight": k * 1e-3}))
        f.write("]}")


def test_import_parses_the_links_incrementally(tmp_path):
    path = tmp_path / "big.json"
    _synthetic(path, 300_000, n_nodes=600)
    size = path.stat().st_size
    assert size > 18_000_000
    tracemalloc.start()
    try:
        with path.open("rb") as f:
            array = LinkArray(f, links_start(f), block=1 << 18)
            total = sum(1 for _ in _edge_rows(iter(array), {n: n for n in (f"{i % 4}_{i}_{i % 7}" for i in range(600))}, [0]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 300_000
    # Held whole, 300k links are ~100 MB of dicts; read in blocks, the peak is a block and its links.
    assert peak < size / 4, f"peak {peak} bytes parsing a {size}-byte file"


@pytest.mark.parametrize("order", ["metadata qParams nodes links", "links nodes metadata qParams",
                                   "metadata nodes links qParams"])
def test_any_key_order_imports_the_same_graph(db, tmp_path, order):
    """The links array is decoded in blocks between a header before it and keys after it, or
    first of all (then it is read twice); every order gives the same stored graph."""
    exported = export_prompt(db, _hand_built(db))
    exported["qParams"]["supernodes"] = [["pair", "0_3_1", "1_4_1"]]
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(exported[k], indent=1)}" for k in order.split()) + "}"
    (tmp_path / "g.json").write_text(text)
    db.write("MATCH (n) DETACH DELETE n")
    result = import_file(db, tmp_path / "g.json", ImportConfig(task="orders"))
    assert (result.links, result.supernodes) == (len(exported["links"]), 1)
    _same(exported, export_prompt(db, result.prompt))


def test_link_blocks_decode_exactly_whatever_the_block_size(tmp_path):
    """Nested link fields, braces and quotes inside strings, indentation, blocks smaller than a
    link: the block decoder yields exactly json.loads' links, and bad arrays fail in one line."""
    links = [{"source": f"a{i}", "target": 'b}],"{', "weight": i / 3, "x": {"y": [1, {"z": "}],"}]}}
             if i % 7 == 0 else {"source": f"a{i}", "target": "b", "weight": -i} for i in range(300)]
    for doc in ({"metadata": {"links": "x", "n": '"links": ['}, "links": links, "q": 1},
                {"links": links, "metadata": {}}):
        for indent in (None, 2):
            text = json.dumps(doc, indent=indent).encode()
            for block in (5, 64, 1 << 20):
                f = io.BytesIO(text)
                start = links_start(f, block=16)
                array = LinkArray(f, start, block=block)
                assert list(array) == links
                assert text[array.end - 1:array.end] == b"]"
    for bad, message in [(b'{"links": [{"source": 1},', "ends inside 'links'"),
                         (b'{"links": [{"a": 1} {"b": 2}]}', "after link 0"),
                         (b'{"links": [1, 2]}', "link 0 is not an object")]:
        f = io.BytesIO(bad)
        with pytest.raises(FormatError, match=message):
            list(LinkArray(f, links_start(f), block=8))
    for unplaced in (b'{"metadata": {"links": [1]}}', b"[1, 2]", b'{"links": 3}'):
        assert links_start(io.BytesIO(unplaced)) is None


def test_repeated_pairs_and_half_written_imports(db, tmp_path):
    """Edges are CREATEd, so a file that repeats a (source, target) pair is refused (nothing
    stays), and a prompt an earlier import left half-written is deleted first, not doubled."""
    _synthetic(tmp_path / "ok.json", 2000)
    doc = json.loads((tmp_path / "ok.json").read_text())
    doc["links"].append(dict(doc["links"][700], weight=9.0))
    (tmp_path / "dup.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match="link 2000 repeats the source and target of link 700"):
        import_file(db, tmp_path / "dup.json", ImportConfig(batch_size=300))
    assert db.read("MATCH (n) WHERE n:Prompt OR n:PromptNode RETURN count(n) AS n")[0]["n"] == 0
    assert db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN count(r) AS n")[0]["n"] == 0
    first = import_file(db, tmp_path / "ok.json", ImportConfig(batch_size=300))
    db.write("MATCH (p:Prompt {prompt: $p}) SET p.complete = false", {"p": first.prompt})   # as if killed
    again = import_file(db, tmp_path / "ok.json", ImportConfig(batch_size=300))
    assert not again.skipped and again.links == 2000
    assert db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN count(r) AS n")[0]["n"] == 2000


def test_bad_files_fail_with_one_line_and_leave_nothing(db, tmp_path, neo4j_settings):
    _synthetic(tmp_path / "ok.json", 5000)
    text = (tmp_path / "ok.json").read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) - 5000])                  # truncated inside the links
    with pytest.raises(FormatError, match="not valid JSON"):
        import_file(db, cut, ImportConfig(batch_size=500))    # several batches were written before the cut
    assert db.read("MATCH (n) WHERE n:Prompt OR n:PromptNode OR n:Community RETURN count(n) AS n")[0]["n"] == 0
    assert db.read("MATCH ()-[r:ATTRIBUTES_TO]->() RETURN count(r) AS n")[0]["n"] == 0
    bad = json.loads(text)
    del bad["links"][3000]["weight"]
    (tmp_path / "noweight.json").write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="link 3000 has no 'weight'"):
        import_file(db, tmp_path / "noweight.json", ImportConfig(batch_size=500))
    bad = json.loads(text)
    bad["links"][10]["target"] = "9_9_9"
    (tmp_path / "unknown.json").write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="link 10 names node '9_9_9'"):
        import_file(db, tmp_path / "unknown.json")
    bad = json.loads(text)
    del bad["nodes"][2]["ctx_idx"]
    (tmp_path / "noctx.json").write_text(json.dumps(bad))
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    res = runner.invoke(app, ["import", "neuronpedia", str(tmp_path / "noctx.json")], env=env)
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [f"mechgraph: error: {tmp_path / 'noctx.json'}: node '2_2_2' has no 'ctx_idx'"]
    assert db.read("MATCH (n) WHERE n:Prompt OR n:PromptNode RETURN count(n) AS n")[0]["n"] == 0


def test_cli_import_then_export(db, tmp_path, neo4j_settings):
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "g.json").write_text(FIXTURE.read_text())
    (tmp_path / "in" / "graph-metadata.json").write_text('{"graphs": []}')
    res = runner.invoke(app, ["import", "neuronpedia", str(tmp_path / "in"), "--format", "json"], env=env)
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    res = runner.invoke(app, ["export", "neuronpedia", "--prompt", row["prompt"], "-o", str(tmp_path / "out.json")], env=env)
    assert res.exit_code == 0, res.output
    _same(json.loads(FIXTURE.read_text()), json.loads((tmp_path / "out.json").read_text()))


def test_task_graph_community_and_query_exports_with_descriptions_as_clerps(db):
    w = GraphWriter(db)
    base = {"model": "m", "checkpoint": "final"}
    f = [node_key(Label.FEATURE, **base, hook=f"blocks.{i}.hook_resid_post", dictionary="sae", index=7 + i) for i in range(2)]
    out = node_key(Label.OUTPUT, **base, task="ioi", metric="logit_diff")
    w.write_nodes(Label.FEATURE, [{"key": f[0], "hook": "blocks.0.hook_resid_post", "layer": 0, "index": 7,
                                   "dictionary": "d0", "description": '"Mary"'},
                                  {"key": f[1], "hook": "blocks.1.hook_resid_post", "layer": 1, "index": 8,
                                   "dictionary": "d1"}])
    w.write_nodes(Label.OUTPUT, [{"key": out, "task": "ioi", "metric": "logit_diff", "layer": 2}])
    w.write_relationships(Rel.ATTRIBUTES_TO, [{"src": f[0], "dst": f[1], "weight": 0.5}, {"src": f[1], "dst": out, "weight": -2.0}],
                          common={**base, "task": "ioi", "run": "r", "granularity": "feature"})
    doc = export_task(db, model="m", checkpoint="final", task="ioi", run="r")
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert set(nodes) == {"0_7_0", "1_8_0", "3_0_0"}
    assert (nodes["0_7_0"]["clerp"], nodes["1_8_0"]["clerp"], nodes["3_0_0"]["feature_type"]) == ('"Mary"', "", "logit")
    assert {(x["source"], x["target"], x["weight"]) for x in doc["links"]} == {("0_7_0", "1_8_0", 0.5), ("1_8_0", "3_0_0", -2.0)}
    # the same graph through a library query, and one community of it (its members' edges only)
    q = export_query(db, "task_subgraph", {"model": "m", "checkpoint": "final", "task": "ioi", "run": "r"})
    assert q["links"] == doc["links"] and q["nodes"] == doc["nodes"]
    ckey = node_key(Label.COMMUNITY, run="c", level=0, index=0)
    w.write_nodes(Label.COMMUNITY, [{"key": ckey, "run": "c", "level": 0, "index": 0, "size": 2, "graph_run": "r",
                                     "granularity": "feature", "tasks": ["ioi"], "min_abs_weight": 0.0}])
    w.write_relationships(Rel.IN_COMMUNITY, [{"src": k, "dst": ckey, "run": "c"} for k in f], src=Label.NODE,
                          dst=Label.COMMUNITY)
    c = export_community(db, ckey)
    assert [(x["source"], x["target"], x["weight"]) for x in c["links"]] == [("0_7_0", "1_8_0", 0.5)]
    assert c["qParams"]["supernodes"] == [["community 0 (level 0, 2 nodes, run c)", "0_7_0", "1_8_0"]]
