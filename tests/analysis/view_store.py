"""A small store for the explorer's tests: the sample graph, one prompt graph written with the
prompt-graph schema (``:Prompt``, position-resolved ``:PromptNode:Node``, ``IN_PROMPT``,
``ATTRIBUTES_TO {granularity: 'prompt'}``, as ``ingest/replacement/store.py`` writes it), a
communities run, MATCHES across the sample's two checkpoints, one evaluation and one
disentanglement. Everything beyond the sample graph is plain Cypher, so the expected counts
are the ones written here.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphdb.connection import Database
from graphdb.keys import key_id, node_key
from graphdb.sample import SampleSpec, write_sample
from graphdb.schema import Label
from graphdb.writer import GraphWriter

PROMPT = "p-viewtest000001"
TOKENS = ["<bos>", "When", "Mary", "and", "John", "went"]
MODEL, CKPT = "sample-tiny", "final"
COMMUNITY_RUN = "communities-viewtest"


@dataclass(frozen=True)
class ViewStore:
    prompt: str
    prompt_nodes: int
    prompt_edges: int
    feature: str          # a sample feature with a description, MATCHES and a community
    matched: str          # its counterpart at step-100
    community: str
    evaluation_run: str
    disentangle_run: str


def _feature(layer: int, index: int, ckpt: str = CKPT) -> str:
    return SampleSpec().feature_key(ckpt, layer, index)


def _prompt_node(kind: str, layer: int, position: int, index: int) -> str:
    # The key format of graphdb.keys for PromptNode (prompt, kind, layer, position, index), spelled
    # out because this branch's schema does not define the label yet.
    return "|".join(["promptnode", PROMPT, kind, str(layer), str(position), str(index)])


def write_view_store(db: Database) -> ViewStore:
    write_sample(GraphWriter(db), SampleSpec())
    n_layers = SampleSpec().n_layers
    nodes: list[dict] = []
    for pos, tok in enumerate(TOKENS):
        nodes.append({"kind": "token", "layer": -1, "position": pos, "index": 0, "text": tok, "token": pos,
                      "feature": node_key(Label.INPUT, model=MODEL, checkpoint=CKPT, name="embed")})
    feats = [(0, 2, 0), (0, 4, 2), (1, 2, 4), (1, 4, 6), (1, 5, 0), (2, 4, 8), (2, 5, 2), (2, 5, 10)]
    for rank, (layer, pos, index) in enumerate(feats):
        nodes.append({"kind": "feature", "layer": layer, "position": pos, "index": index,
                      "feature": _feature(layer, index), "activation": 1.5 + rank, "influence": 0.1 * (rank + 1)})
    for layer in range(n_layers):
        nodes.append({"kind": "error", "layer": layer, "position": 5, "index": 0, "influence": 0.95,
                      "feature": node_key(Label.ERROR, model=MODEL, checkpoint=CKPT, hook=f"blocks.{layer}.hook_resid_post",
                                          dictionary="sae")})
    nodes.append({"kind": "target", "layer": n_layers, "position": 5, "index": 0, "label": " Mary", "token": 7,
                  "weight": 1.0, "influence": 0.0,
                  "feature": node_key(Label.OUTPUT, model=MODEL, checkpoint=CKPT, task="ioi", metric="logit_diff")})
    for n in nodes:
        n["key"] = _prompt_node(n["kind"], n["layer"], n["position"], n["index"])
        n["nid"] = key_id(n["key"])
        n.update(prompt=PROMPT, model=MODEL, checkpoint=CKPT, task="ioi", run="trace-viewtest")
    by = {(n["kind"], n["layer"], n["position"], n["index"]): n["key"] for n in nodes}
    tok = lambda p: by[("token", -1, p, 0)]  # noqa: E731
    f = lambda l, p, i: by[("feature", l, p, i)]  # noqa: E731
    target = by[("target", n_layers, 5, 0)]
    edges = [(tok(2), f(0, 2, 0), 2.0), (tok(4), f(0, 4, 2), 1.5), (f(0, 2, 0), f(1, 2, 4), 1.2),
             (f(0, 4, 2), f(1, 4, 6), -0.8), (tok(5), f(1, 5, 0), 0.6), (f(1, 2, 4), f(2, 4, 8), 0.9),
             (f(1, 4, 6), f(2, 5, 2), -0.5), (f(1, 5, 0), f(2, 5, 10), 0.3), (f(2, 4, 8), target, 1.1),
             (f(2, 5, 2), target, -0.7), (f(2, 5, 10), target, 0.4), (by[("error", 0, 5, 0)], f(1, 5, 0), 0.05),
             (by[("error", 1, 5, 0)], f(2, 5, 10), -0.04), (by[("error", 2, 5, 0)], target, 0.2),
             (tok(1), f(0, 2, 0), 0.02)]
    db.write("""
        CREATE (p:Prompt {key: 'prompt|' + $prompt, prompt: $prompt, text: $text, tokens: range(0, size($tokens) - 1),
                          token_strs: $tokens, model: $model, checkpoint: $ckpt, task: 'ioi', run: 'trace-viewtest',
                          targets: [' Mary'], n_layers: $n_layers, pruned_nodes: $n_nodes, pruned_edges: $n_edges,
                          replacement_score: 0.81, completeness_score: 0.93})
        WITH p
        UNWIND $nodes AS row
        CREATE (n:PromptNode:Node) SET n = row
        CREATE (n)-[:IN_PROMPT]->(p)
    """, {"prompt": PROMPT, "text": " ".join(TOKENS[1:]), "tokens": TOKENS, "model": MODEL, "ckpt": CKPT,
          "n_layers": n_layers, "n_nodes": len(nodes), "n_edges": len(edges), "nodes": nodes})
    db.write("""
        UNWIND $edges AS e
        MATCH (a:Node {key: e[0]}), (b:Node {key: e[1]})
        CREATE (a)-[:ATTRIBUTES_TO {weight: e[2], abs_weight: abs(e[2]), granularity: 'prompt', run: 'trace-viewtest',
                                    task: 'ioi', model: $model, checkpoint: $ckpt}]->(b)
    """, {"edges": [[a, b, w] for a, b, w in edges], "model": MODEL, "ckpt": CKPT})

    # A communities run over some final-checkpoint features, a description, MATCHES, an evaluation.
    feature, matched = _feature(1, 2), _feature(1, 2, "step-100")
    community = node_key(Label.COMMUNITY, run=COMMUNITY_RUN, level=0, index=0)
    members = [_feature(layer, i) for layer in range(n_layers) for i in (0, 2, 4)]
    db.write("""
        CREATE (r:Run {key: 'run|' + $run, run: $run, kind: 'communities', created_at: 2.0e9})
        CREATE (c:Community {key: $community, run: $run, level: 0, index: 0, size: size($members), model: $model,
                             checkpoint: $ckpt})-[:PRODUCED_BY]->(r)
        WITH c UNWIND $members AS m
        MATCH (n:Node {key: m}) CREATE (n)-[:IN_COMMUNITY {run: $run}]->(c)
    """, {"run": COMMUNITY_RUN, "community": community, "members": members, "model": MODEL, "ckpt": CKPT})
    db.write("MATCH (f:Node {key: $f}) SET f.description = 'says which name comes second (view test)'",
             {"f": feature})
    db.write("""
        MATCH (a:Feature {key: $early}), (b:Feature {key: $late})
        CREATE (a)-[:MATCHES {score: 0.97, method: 'cosine', run: 'match-viewtest', hook: a.hook}]->(b)
    """, {"early": matched, "late": feature})
    db.write("""
        CREATE (r:Run {key: 'run|evaluate-viewtest', run: 'evaluate-viewtest', kind: 'evaluate', created_at: 2.0e9})
        WITH r UNWIND $points AS p
        CREATE (e:Evaluation {key: 'evaluation|evaluate-viewtest|' + p.name, run: 'evaluate-viewtest', name: p.name,
                              ablation: p.ablation, budget: p.budget, edges: p.edges, nodes: p.edges,
                              faithfulness: p.f, completeness: p.c, kl: 0.0, loss: 0.0, model: $model,
                              checkpoint: $ckpt, task: 'ioi', graph_run: 'sample'})-[:PRODUCED_BY]->(r)
        WITH r LIMIT 1
        UNWIND ['edge', 'node'] AS kind
        CREATE (s:Evaluation {key: 'evaluation|evaluate-viewtest|' + kind + '-summary', run: 'evaluate-viewtest',
                              name: kind + '-summary', ablation: kind, cpr: 0.5, cmd: 0.3, model: $model,
                              checkpoint: $ckpt, task: 'ioi', graph_run: 'sample', csv: '', png: ''})-[:PRODUCED_BY]->(r)
    """, {"model": MODEL, "ckpt": CKPT, "points": [
        {"name": f"{a}-{b}", "ablation": a, "budget": b, "edges": 2 ** b, "f": min(1.0, 0.1 * b + (0.2 if a == "node" else 0)),
         "c": max(0.0, 1 - 0.1 * b)} for a in ("edge", "node") for b in range(1, 8)]})
    db.write("""
        CREATE (s:Disentanglement {key: 'disentanglement|disentangle-viewtest|summary', run: 'disentangle-viewtest',
                                   name: 'summary', model: $model, checkpoint: $ckpt, tasks: ['ioi', 'induction'],
                                   nmi: 0.4, ari: 0.35, z: 12.0, communities: 1, pngs: []})
        CREATE (d:Disentanglement {key: 'disentanglement|disentangle-viewtest|community-0', run: 'disentangle-viewtest',
                                   name: 'community-0', index: 0, size: 9, tasks: ['ioi', 'induction'], shares: [0.7, 0.3],
                                   dominant_task: 'ioi', purity: 0.7, majority_task: 'ioi', majority_fraction: 0.8,
                                   kill_edge: [0.2, 0.9], keep_edge: [0.05, 0.01]})
        WITH d MATCH (c:Community {key: $community}) CREATE (d)-[:DESCRIBES]->(c)
    """, {"model": MODEL, "ckpt": CKPT, "community": community})
    return ViewStore(prompt=PROMPT, prompt_nodes=len(nodes), prompt_edges=len(edges), feature=feature, matched=matched,
                     community=community, evaluation_run="evaluate-viewtest", disentangle_run="disentangle-viewtest")
