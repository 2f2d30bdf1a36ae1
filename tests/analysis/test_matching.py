"""Feature and community matching against known answers: a planted permutation of latents
(recovered exactly, degrading with noise), a planted graph where only graph matching finds the
truth, hand-built community chains, and MATCHES written to a real Neo4j idempotently."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.matching.core import (CommunityMatch, assign, coactivation_graph, correlation_similarity, cosine_similarity,
                               decoder_graph, dominant_task, emergence_chains, graph_refine, incident_weight,
                               jaccard_matrix, match_communities)
from graphdb.keys import node_key
from graphdb.schema import Label, Rel
from mechgraph.errors import ConfigError

N, D, T = 256, 64, 2000
#: Noise levels per method: none, small, large, larger. Activations carry 2000 tokens of
#: evidence per latent, so they need far more noise (relative to their std) to fail than 64-d
#: decoder rows (noise per entry, relative to entries of std 1). Measured accuracies (seed 0):
#: cosine 1.0, 0.945, 0.453, 0.098; activation 1.0, 0.992, 0.258, 0.090.
NOISE = {"cosine": (0.0, 2.0, 3.0, 5.0), "activation": (0.0, 10.0, 20.0, 30.0)}


def _planted(noise: float, seed: int = 0):
    """A dictionary (decoder rows, sparse activations) and a copy with its latents permuted and
    Gaussian noise added (decoder: per entry, relative to the rows' entries; activations: relative
    to their std). ``truth[i]`` is where latent i went in the copy."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(N, D))
    F = np.maximum(rng.normal(size=(T, N)) - 1.5, 0) * (rng.random((T, N)) < 0.3)
    perm = rng.permutation(N)          # copy's latent j is latent perm[j]
    W_b = (W + noise * rng.normal(size=W.shape))[perm]
    F_b = (F + noise * F.std() * rng.normal(size=F.shape))[:, perm]
    return W, F, W_b, F_b, np.argsort(perm)


@pytest.mark.parametrize("method", ["cosine", "activation"])
def test_a_permuted_copy_is_recovered(method):
    W, F, W_b, F_b, truth = _planted(0.0)
    S = cosine_similarity(W, W_b) if method == "cosine" else correlation_similarity(F, F_b)
    m = assign(S, min_score=0.5, method=method)
    assert m.accuracy(truth) >= 0.99
    assert len(m) == N and np.allclose(m.score, 1.0)
    assert m.summary(N, N)["frac>=0.9"] == 1.0


@pytest.mark.parametrize("method", ["cosine", "activation"])
def test_accuracy_degrades_gracefully_with_noise(method):
    acc = []
    for noise in NOISE[method]:
        W, F, W_b, F_b, truth = _planted(noise)
        S = cosine_similarity(W, W_b) if method == "cosine" else correlation_similarity(F, F_b)
        acc.append(assign(S, method=method).accuracy(truth))
    assert acc[0] == 1.0
    assert acc[1] >= 0.9
    assert acc[1] > acc[2] > acc[3], f"{method}: accuracy {acc} should fall as the noise grows"
    assert acc[3] < 0.5


def test_min_score_drops_weak_pairs_and_counts_them_wrong():
    W, _, W_b, _, truth = _planted(3.0)
    S = cosine_similarity(W, W_b)
    loose, strict = assign(S), assign(S, min_score=0.5)
    assert len(strict) < len(loose) == N
    assert (strict.score >= 0.5).all()
    assert strict.accuracy(truth) <= loose.accuracy(truth)


def test_graph_refinement_keeps_a_clean_permutation():
    W, F, W_b, F_b, truth = _planted(0.0)
    S = cosine_similarity(W, W_b)
    refined = graph_refine(S, decoder_graph(W), decoder_graph(W_b), assign(S), seed_score=0.99)
    assert refined.accuracy(truth) >= 0.99 and refined.method == "cosine+graph"
    S = correlation_similarity(F, F_b)
    refined = graph_refine(S, coactivation_graph(F), coactivation_graph(F_b), assign(S), seed_score=2.0)  # no seeds
    assert refined.accuracy(truth) >= 0.99


def test_graph_matching_finds_what_similarity_alone_cannot():
    """Two correlated graphs (1% of edges flipped) and a similarity whose signal (0.5 on the true
    pair) drowns in noise: the assignment gets few right, seeded graph matching nearly all."""
    rng = np.random.default_rng(1)
    n = 200
    A = (rng.random((n, n)) < 0.08) * rng.uniform(0.5, 1, (n, n))
    A = np.triu(A, 1)
    A = A + A.T
    perm = rng.permutation(n)
    flip = np.triu(rng.random((n, n)) < 0.01, 1)
    B = np.where(flip | flip.T, 1 - (A > 0), A)[perm][:, perm]
    truth = np.argsort(perm)
    S = np.zeros((n, n))
    S[np.arange(n), truth] = 0.5
    S += 0.2 * rng.normal(size=(n, n))
    start = assign(S)
    refined = graph_refine(S, A, B, start, seed_score=0.9, graph_weight=1.0)
    assert start.accuracy(truth) < 0.6
    assert refined.accuracy(truth) >= 0.95


def test_cosine_refuses_two_activation_spaces_and_correlation_needs_the_same_tokens():
    with pytest.raises(ConfigError, match="activation space"):
        cosine_similarity(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ConfigError, match="same tokens"):
        correlation_similarity(np.ones((10, 3)), np.ones((11, 3)))
    S = correlation_similarity(np.column_stack([np.arange(5.0), np.ones(5)]), np.column_stack([np.arange(5.0)]))
    assert S[0, 0] == pytest.approx(1.0) and S[1, 0] == 0.0  # a constant (dead) latent correlates 0


def test_rectangular_assignment_across_sizes():
    rng = np.random.default_rng(2)
    F = rng.normal(size=(500, 30))
    extra = rng.normal(size=(500, 20))
    order = rng.permutation(50)
    F_b = np.column_stack([F, extra])[:, order]       # the larger dictionary holds every latent of the smaller
    m = assign(correlation_similarity(F, F_b), min_score=0.9)
    assert m.accuracy(np.argsort(order)[:30]) == 1.0 and len(m) == 30


# -- communities ------------------------------------------------------------------------------

def test_jaccard_matrix_by_hand():
    J = jaccard_matrix([{"a", "b"}, set()], [{"b", "c"}, set()])
    assert J[0, 0] == pytest.approx(1 / 3) and J[0, 1] == 0 and J[1, 1] == 0


def test_community_matching_recovers_a_known_mapping():
    """Earlier communities e0..e3 become later l2, l0, l3, l1 (members renamed x -> X), with one
    member lost and one gained each; e4 dissolves into nothing."""
    rng = np.random.default_rng(3)
    earlier, later, truth = {}, {}, {"e0": "l2", "e1": "l0", "e2": "l3", "e3": "l1"}
    for c, (e, lat) in enumerate(truth.items()):
        members = [f"f{c}_{i}" for i in range(10)]
        earlier[e] = members
        later[lat] = [m.upper() for m in members[1:]] + [f"NEW{c}"]
    earlier["e4"] = [f"g{i}" for i in range(5)]
    shuffled = dict(sorted(later.items(), key=lambda _: rng.random()))
    got = match_communities(earlier, shuffled, {m: m.upper() for ms in earlier.values() for m in ms if m[0] == "f"},
                            min_jaccard=0.2)
    assert {m.earlier: m.later for m in got} == truth
    assert all(m.jaccard == pytest.approx(9 / 11) for m in got)


def test_unmatched_members_lower_the_overlap():
    got = match_communities({"e": ["a", "b", "c", "d"]}, {"l": ["A", "B"]}, {"a": "A", "b": "B"}, min_jaccard=0.0)
    assert got[0].jaccard == pytest.approx(2 / 4)   # {A, B, c, d} vs {A, B}
    assert match_communities({"e": ["a"]}, {"l": ["b"]}, {}, min_jaccard=0.0) == []  # no overlap: no match


def test_emergence_of_a_toy_chain():
    """Steps 10, 20, 40, 80. Final F1 is matched back to a40 and a20, and a20 to nothing at 10:
    it emerged at 20. F2's c40 has no predecessor at 20 (the 10 -> 20 links go elsewhere): its
    chain starts at 40. F3 only exists at 80."""
    steps = [10, 20, 40, 80]
    links = [
        [CommunityMatch("x10", "x20", 0.5), CommunityMatch("b10", "b20", 0.4)],
        [CommunityMatch("a20", "a40", 0.6)],
        [CommunityMatch("a40", "F1", 0.7), CommunityMatch("c40", "F2", 0.3)],
    ]
    chains = emergence_chains(steps, links, ["F1", "F2", "F3"])
    assert chains["F1"].emergence == 20 and chains["F1"].communities == ["a20", "a40", "F1"]
    assert chains["F1"].jaccard == [0.6, 0.7]
    assert chains["F2"].emergence == 40 and chains["F2"].steps == [40, 80]
    assert chains["F3"].emergence == 80 and chains["F3"].jaccard == []
    with pytest.raises(ConfigError):
        emergence_chains(steps, links[:2], ["F1"])


def test_task_dominance_from_incident_edges():
    from scipy import sparse

    # 0 -> 1 (w 2), 1 -> 2 (w -3), 3 -> 0 (w 1); members {0, 1}: every edge touches them except none
    A = sparse.csr_matrix(([2.0, -3.0, 1.0], ([0, 1, 3], [1, 2, 0])), shape=(4, 4))
    index = {"n0": 0, "n1": 1, "n2": 2, "n3": 3}
    assert incident_weight(A, index, ["n0", "n1"]) == pytest.approx(6.0)
    assert incident_weight(A, index, ["n2"]) == pytest.approx(3.0)
    assert incident_weight(A, index, ["absent"]) == 0.0
    assert dominant_task({"ioi": 6.0, "sva": 2.0}) == ("ioi", pytest.approx(0.75))
    assert dominant_task({"ioi": 0.0}) == (None, 0.0)


# -- write-back and the timeline, on a real Neo4j ----------------------------------------------

HOOK = "blocks.0.hook_resid_post"
WIDTH = 24


def _permuted_basis(perm):
    """A dictionary whose latent j is coordinate perm[j] of the residual stream."""
    import torch

    from ingest.dictionaries.base import Dictionary

    class PermutedBasis(Dictionary):
        kind = "permuted"

        def __init__(self) -> None:
            super().__init__(len(perm), len(perm), hook_name=HOOK)
            self.perm = torch.as_tensor(perm)

        def _encode(self, x):
            return x[..., self.perm]

        def _decode(self, f):
            out = torch.zeros_like(f)
            out[..., self.perm] = f
            return out

        @property
        def W_dec(self):
            return torch.eye(self.d_in)[self.perm]

    return PermutedBasis()


@pytest.fixture()
def tiny_matches(db, tiny_checkpoint):
    """The residual basis of a tiny model at "step-1" matched to a permuted copy at "step-2"."""
    from analysis.matching.features import FeatureMatchConfig, FeatureMatchResult, Side, match_hook
    from ingest.dictionaries import IdentityDictionary
    from ingest.latents import collect_latents, shared_prompts
    from ingest.zoo.specs import load_model

    model = load_model(f"path:{tiny_checkpoint(WIDTH, 48, 1)}")
    perm = np.random.default_rng(0).permutation(WIDTH)
    a, b = IdentityDictionary(WIDTH, HOOK), _permuted_basis(perm)
    batch = shared_prompts(model.tokenizer, ("ioi", "sva"), 8)
    acts = (collect_latents(model, [a], batch, batch_size=4), collect_latents(model, [b], batch))
    assert acts[0][HOOK].shape == (int(batch.last.sum()), WIDTH)   # every position but BOS, up to the last
    config = FeatureMatchConfig(model="tiny", from_checkpoint="1", to_checkpoint="2", method="both", min_score=0.5)
    hm = match_hook(config, HOOK, a, b, acts)
    result = FeatureMatchResult(source=Side("tiny", "step-1", "path:a", {}), target=Side("tiny", "step-2", "path:b", {}),
                                hooks=[hm], config=config)
    return db, result, np.argsort(perm)


def test_matches_are_written_once_and_recover_the_permutation(tiny_matches):
    from analysis.matching.features import write_feature_matches
    from analysis.matching.timeline import translation

    db, result, truth = tiny_matches
    assert result.hooks[0].matches["cosine"].accuracy(truth) == 1.0
    assert result.hooks[0].matches["activation"].accuracy(truth) == 1.0
    assert result.summary()[-1]["agreement"] == 1.0

    def counts():
        return db.read("MATCH (a:Feature)-[m:MATCHES]->(b:Feature) RETURN m.method AS method, count(*) AS n, "
                       "min(m.score) AS low, collect(DISTINCT a.checkpoint + '>' + b.checkpoint) AS dirs "
                       "ORDER BY method")

    run = write_feature_matches(db, result)
    first = counts()
    assert [(r["method"], r["n"], r["dirs"]) for r in first] == [("activation", WIDTH, ["step-1>step-2"]),
                                                                  ("cosine", WIDTH, ["step-1>step-2"])]
    assert all(r["low"] >= 0.5 for r in first)
    assert write_feature_matches(db, result) == run
    assert counts() == first
    assert db.read("MATCH (f:Feature) RETURN count(f) AS n")[0]["n"] == 2 * WIDTH
    assert db.read("MATCH (r:Run {run: $run}) RETURN r.kind AS kind", {"run": run})[0]["kind"] == "match"
    want = {node_key(Label.FEATURE, model="tiny", checkpoint="step-1", hook=HOOK, dictionary="identity", index=i):
            node_key(Label.FEATURE, model="tiny", checkpoint="step-2", hook=HOOK, dictionary="permuted", index=int(j))
            for i, j in enumerate(truth)}
    assert translation(db, "tiny", "step-1", "step-2") == want


def test_timeline_on_stored_communities(tiny_matches):
    """Communities i % 3 at step-1 and the same sets (relabelled c -> (c + 1) % 3) at step-2: every
    final community emerged at step 1 with Jaccard 1. Alignment by hand from step-2 edges:
    community 1 has ioi |w| 2 + 1 and sva 1 inside it (ioi, 0.75), community 2 sva only."""
    from analysis.communities.partition import CommunityConfig, Partition, write_communities
    from analysis.matching.features import write_feature_matches
    from analysis.matching.timeline import TimelineConfig, build_timeline
    from analysis.subgraph import Selection, Subgraph
    from graphdb.writer import GraphWriter

    db, result, truth = tiny_matches
    write_feature_matches(db, result)
    perm = np.argsort(truth)
    keys = {ck: [node_key(Label.FEATURE, model="tiny", checkpoint=ck, hook=HOOK, dictionary=d, index=i)
                 for i in range(WIDTH)] for ck, d in (("step-1", "identity"), ("step-2", "permuted"))}
    labels = {"step-1": np.arange(WIDTH) % 3, "step-2": (perm % 3 + 1) % 3}
    runs = {}
    for ck in keys:
        sub = Subgraph(selection=Selection("tiny", ck, ("ioi", "sva")), keys=np.array(keys[ck]), matrix=None, edges=0)
        runs[ck] = write_communities(db, sub, Partition(labels=[labels[ck]], modularity=[0.0]), CommunityConfig())
    members = {c: [k for k, lab in zip(keys["step-2"], labels["step-2"]) if lab == c] for c in range(3)}
    edges = [("ioi", members[1][0], members[1][1], 2.0), ("ioi", members[1][1], members[1][2], -1.0),
             ("sva", members[1][2], members[1][0], 1.0), ("sva", members[2][0], members[2][1], 2.0)]
    writer = GraphWriter(db)
    for task in ("ioi", "sva"):
        writer.write_relationships(Rel.ATTRIBUTES_TO, [{"src": s, "dst": d, "weight": w} for t, s, d, w in edges
                                                       if t == task],
                                   common={"model": "tiny", "checkpoint": "step-2", "task": task, "run": "ingest-x"})
    t = build_timeline(db, TimelineConfig(model="tiny", min_jaccard=0.5))
    assert [r.step for r in t.runs] == [1, 2]
    comm = {ck: [node_key(Label.COMMUNITY, run=runs[ck], level=0, index=c) for c in range(3)] for ck in runs}
    assert {m.earlier: m.later for m in t.links[0]} == {comm["step-1"][c]: comm["step-2"][(c + 1) % 3] for c in range(3)}
    assert all(m.jaccard == 1.0 for m in t.links[0])
    assert {k: c.emergence for k, c in t.chains.items()} == {k: 1 for k in comm["step-2"]}
    assert t.alignment[comm["step-2"][1]] == ("ioi", pytest.approx(0.75))
    assert t.alignment[comm["step-2"][2]] == ("sva", pytest.approx(1.0))
    assert t.alignment[comm["step-2"][0]] == (None, 0.0) and t.alignment[comm["step-1"][0]] == (None, 0.0)
    assert len(t.rows) == 6


def test_timeline_files(tmp_path):
    from analysis.matching.core import Chain
    from analysis.matching.timeline import CommunityRun, Timeline, save_timeline, timeline_rows

    finals = [node_key(Label.COMMUNITY, run="r2", level=0, index=c) for c in range(2)]
    chains = {finals[0]: Chain(finals[0], [10, 100], ["x", finals[0]], [0.8]),
              finals[1]: Chain(finals[1], [100], [finals[1]], [])}
    runs = [CommunityRun("r1", "step-10", 10, ("ioi",), {}, {"x": ["a"]}),
            CommunityRun("r2", "step-100", 100, ("ioi",), {}, {finals[0]: ["a", "b"], finals[1]: ["c"]})]
    t = Timeline(model="toy", runs=runs, links=[], chains=chains, alignment={"x": ("ioi", 0.4), finals[0]: ("ioi", 0.9)})
    t.rows = timeline_rows(t)
    save_timeline(t, tmp_path)
    assert t.png.stat().st_size > 1000
    lines = t.csv.read_text().splitlines()
    assert lines[0].startswith("final,emergence_step,step") and len(lines) == 4


def test_community_similarity_across_sizes_by_hand():
    """Large-model community d0 holds exactly the latents of small c1: similarity 1. d1 holds c0's
    first latent and an unrelated one, c0 a second unrelated one: the best matches average to ~½."""
    from analysis.matching.core import standardise
    from analysis.matching.sizes import community_similarity

    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 6))
    Z_small = {HOOK: standardise(X[:, :4])}
    Z_large = {HOOK: standardise(np.column_stack([X[:, 2], X[:, 3], X[:, 0], X[:, 5]]))}

    def keys(ck, idx):
        return [node_key(Label.FEATURE, model="m", checkpoint=ck, hook=HOOK, dictionary="sae", index=i) for i in idx]

    small = {"c0": keys("s", [0, 1]) + ["errornode|m|s|h|sae"], "c1": keys("s", [2, 3])}
    large = {"d0": keys("l", [0, 1]), "d1": keys("l", [2, 3])}
    sim = community_similarity(Z_small, Z_large, small, large)
    assert sim[1, 0] == pytest.approx(1.0)
    assert sim[0, 1] == pytest.approx(0.5, abs=0.05)
    assert abs(sim[0, 0]) < 0.1 and abs(sim[1, 1]) < 0.1
    assert community_similarity(Z_small, Z_large, {"e": ["errornode|m|s|h|sae"]}, large).tolist() == [[0.0, 0.0]]
