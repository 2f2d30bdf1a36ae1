"""Influence pruning and scores on a hand-built graph whose result is computed by hand.

Nodes: 0 = f0, 1 = f1 (features), 2 = e0 (error), 3 = t0 (token), 4 = y (target, weight 1).
Edges (row = target, column = source): y <- f0 6, y <- f1 -1, y <- e0 1, y <- t0 2;
f0 <- e0 1, f0 <- t0 3; f1 <- t0 1.

Normalised rows: y = (.6, .1, .1, .2), f0 = (e0 .25, t0 .75), f1 = (t0 1).
Influence I = wM + wM^2 = (.6, .1, .1, .2, 0) + (0, 0, .15, .55, 0) = (.6, .1, .25, .75, 0), total 1.7.
Node threshold 0.8: sorted (.75, .6, .25, .1, 0), cumulative / 1.7 = (.44, .79, .94, 1, 1): the
first >= .8 is .25, so f0, e0, t0 stay and f1 goes (tokens and targets always stay).
Pruned rows: y = (f0 6/9, e0 1/9, t0 2/9), f0 unchanged; influence (2/3, 0, 5/18, 13/18, 0).
Edge scores Â[t, s] (I_t + w_t): y<-f0 2/3, y<-e0 1/9, y<-t0 2/9, f0<-e0 1/6, f0<-t0 1/2; total 5/3.
Sorted cumulative / total: (.4, .7, .833, .933, 1). Edge threshold .9 keeps all but y <- e0;
.98 keeps all five; .35 keeps y <- f0 alone, after which f0 has no in-edge and goes, then e0
has no out-edge and goes.
"""

from __future__ import annotations

import pytest
import torch

from ingest.replacement.prune import Layout, influence, masked, normalise, prune, scores

LAYOUT = Layout(n_features=2, n_errors=1, n_tokens=1, n_targets=1)
W = torch.tensor([1.0])


def hand_graph() -> torch.Tensor:
    A = torch.zeros(5, 5, dtype=torch.float64)
    A[4, 0], A[4, 1], A[4, 2], A[4, 3] = 6, -1, 1, 2
    A[0, 2], A[0, 3] = 1, 3
    A[1, 3] = 1
    return A


def edges_of(mask: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(x) for x in mask.nonzero().tolist()}


def test_influence_by_hand() -> None:
    w = torch.tensor([0, 0, 0, 0, 1.0], dtype=torch.float64)
    I = influence(normalise(hand_graph()), w)
    assert torch.allclose(I, torch.tensor([.6, .1, .25, .75, 0], dtype=torch.float64))


def test_prune_by_hand_edge_threshold_09() -> None:
    p = prune(hand_graph(), LAYOUT, W, node_threshold=0.8, edge_threshold=0.9)
    assert p.node_mask.tolist() == [True, False, True, True, True]
    assert edges_of(p.edge_mask) == {(4, 0), (4, 3), (0, 2), (0, 3)}
    assert torch.allclose(p.cumulative, torch.tensor([.79411, 1.0, .94118, .44118, 1.0], dtype=torch.float64),
                          atol=1e-4)


def test_prune_by_hand_edge_threshold_098_keeps_every_surviving_edge() -> None:
    p = prune(hand_graph(), LAYOUT, W, node_threshold=0.8, edge_threshold=0.98)
    assert edges_of(p.edge_mask) == {(4, 0), (4, 2), (4, 3), (0, 2), (0, 3)}


def test_prune_removes_dangling_nodes_until_nothing_changes() -> None:
    p = prune(hand_graph(), LAYOUT, W, node_threshold=0.8, edge_threshold=0.35)
    assert p.node_mask.tolist() == [False, False, False, True, True]
    assert not p.edge_mask.any()


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="node_threshold"):
        prune(hand_graph(), LAYOUT, W, node_threshold=1.5)


def test_scores_by_hand() -> None:
    # Replacement: tokens .75, errors .25 -> .75. Completeness: non-error shares (f0 .75, f1 1,
    # e0 1, t0 1, y .9) weighted by I + w = (.6, .1, .25, .75, 1), over 2.7.
    s = scores(hand_graph(), LAYOUT, W)
    assert s.replacement == pytest.approx(0.75)
    assert s.completeness == pytest.approx((.75 * .6 + .1 + .25 + .75 + .9) / 2.7)


def test_scores_at_their_bounds() -> None:
    A = hand_graph()
    A[:, 2] = 0                                   # error node empty: the graph is complete
    s = scores(A, LAYOUT, W)
    assert s.replacement == 1.0 and s.completeness == pytest.approx(1.0)
    B = torch.zeros(5, 5, dtype=torch.float64)
    B[4, 2] = 3.0                                 # only the error node feeds the target
    s = scores(B, LAYOUT, W)
    assert s.replacement == 0.0
    # The target's input is all error (share 0, weight 1); the error node itself has no inputs
    # (share 1, weight I = 1): completeness counts it as explained, hence 1/2, not 0.
    assert s.completeness == pytest.approx(0.5)


def test_scores_of_a_traced_graph_reach_1_without_error_nodes(tiny_model) -> None:
    from ingest.replacement.attribute import trace_prompt
    from ingest.replacement.config import TraceConfig
    from tests.ingest.replacement.conftest import PROMPT, make_set

    g = trace_prompt(tiny_model, make_set("skip"), tiny_model.to_tokens(PROMPT)[0], TraceConfig())
    layout = Layout(g.n_features, g.n_errors, g.n_pos, g.n_targets)
    full = scores(g.adjacency, layout, g.target_weights)
    assert 0 < full.replacement < 1 and 0 < full.completeness < 1
    A = g.adjacency.clone()
    A[:, g.error_start:g.token_start] = 0
    s = scores(A, layout, g.target_weights)
    assert s.replacement == pytest.approx(1.0) and s.completeness == pytest.approx(1.0)
    p = prune(g.adjacency, layout, g.target_weights)
    assert p.node_mask[g.token_start:].all()
    P = masked(g.adjacency, p)
    assert P.count_nonzero() == p.edge_mask.sum()
