import pytest

from graphdb.keys import KEY_PARTS, node_key, parse_key
from graphdb.schema import KEYED_LABELS, Label
from mechgraph.errors import ConfigError


def test_feature_key_is_stable_and_ordered():
    key = node_key(Label.FEATURE, index=17, dictionary="sae", hook="blocks.0.hook_resid_post",
                   checkpoint="final", model="mt-small")
    assert key == "feature|mt-small|final|blocks.0.hook_resid_post|sae|17"


@pytest.mark.parametrize("label", list(KEY_PARTS))
def test_every_key_round_trips(label):
    parts = {name: f"{name}-v" for name in KEY_PARTS[label]}
    assert parse_key(node_key(label, **parts)) == (label, parts)


def test_same_latent_at_two_checkpoints_differs_only_in_checkpoint():
    a = parse_key(node_key(Label.FEATURE, model="m", checkpoint="step-1", hook="h", dictionary="d", index=3))[1]
    b = parse_key(node_key(Label.FEATURE, model="m", checkpoint="final", hook="h", dictionary="d", index=3))[1]
    assert {k for k in a if a[k] != b[k]} == {"checkpoint"}


@pytest.mark.parametrize(
    "parts, message",
    [
        ({"model": "m"}, "missing"),
        ({"model": "m", "checkpoint": "c", "colour": "x"}, "unexpected"),
        ({"model": "m|x", "checkpoint": "c"}, "must not contain"),
        ({"model": "", "checkpoint": "c"}, "non-empty"),
    ],
)
def test_bad_parts_raise(parts, message):
    with pytest.raises(ConfigError, match=message):
        node_key(Label.CHECKPOINT, **parts)


def test_unkeyed_label_and_foreign_key_raise():
    with pytest.raises(ConfigError):
        node_key(Label.NODE, key="x")
    with pytest.raises(ConfigError):
        parse_key("feature|too|few")


def test_every_keyed_label_except_node_has_key_parts():
    assert set(KEYED_LABELS) - {Label.NODE} <= set(KEY_PARTS)


def test_key_id_is_a_stable_non_negative_int64():
    from graphdb.keys import key_id

    key = node_key(Label.FEATURE, model="mt-small", checkpoint="final", hook="blocks.0.hook_resid_post",
                   dictionary="sae", index=17)
    # pinned: a stored graph's nids must not change between versions, processes or machines
    assert key_id(key) == 6090243229036083507
    ids = {key_id(f"feature|m|c|h|d|{i}") for i in range(10_000)}
    assert len(ids) == 10_000 and all(0 <= i < 2**63 for i in ids)
