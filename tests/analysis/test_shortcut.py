"""The showcase's exact claims on a tiny model: cutting only G -> profession changes the
profession output exactly as node-ablating G does (G sits in the slot the logits read position
by position), leaves the pronoun output and G's own values exactly clean, while node ablation
moves both."""

from __future__ import annotations

import pytest

from analysis.evaluate.shortcut import ShortcutConfig, run_shortcut

D = 8


def test_edge_ablation_cuts_only_the_profession_readout(tiny_checkpoint):
    model = tiny_checkpoint(D, 16, 11)
    result = run_shortcut(ShortcutConfig(
        model=f"path:{model}", dicts=(f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"),
        examples=16, reference=16, min_selectivity=0.5, min_pronoun_selectivity=0.5))
    assert result.hook == "blocks.1.hook_resid_post" and 0 < len(result.gender_features) < D
    clean, node, edge = result.rows
    assert clean.gender_features_active == pytest.approx(1.0)
    assert node.gender_features_active == pytest.approx(0.0, abs=1e-6)
    assert edge.gender_features_active == pytest.approx(1.0, abs=1e-6)
    assert edge.shortcut_gap == pytest.approx(node.shortcut_gap, abs=1e-4)
    assert edge.anti_accuracy == node.anti_accuracy
    assert edge.pronoun_logit_diff == pytest.approx(clean.pronoun_logit_diff, abs=1e-4)
    assert abs(node.pronoun_logit_diff - clean.pronoun_logit_diff) > 1e-3
    assert abs(node.shortcut_gap - clean.shortcut_gap) > 1e-3


def test_shortcut_config_is_checked():
    with pytest.raises(ValueError):
        ShortcutConfig(min_selectivity=0)
