"""The one identity function for every node mechgraph writes.

A key is ``<kind>|<part>|<part>|...`` with the parts named in :data:`KEY_PARTS`, in that
order. MERGE idempotency (writing a run twice) and cross-checkpoint matching (the same
latent at two checkpoints differs only in the ``checkpoint`` part) both rest on every
caller building keys here and nowhere else.

Examples::

    node_key(Label.FEATURE, model="mt-small", checkpoint="final",
             hook="blocks.0.hook_resid_post", dictionary="sae", index=17)
    == "feature|mt-small|final|blocks.0.hook_resid_post|sae|17"

Every node also carries ``nid = key_id(key)``, a stable integer derived from the key alone
(set by ``GraphWriter.write_nodes``): bulk reads move 8-byte integers instead of key strings,
without Neo4j's deprecated internal ``id()``.
"""

from __future__ import annotations

import hashlib

from graphdb.schema import Label
from mechgraph.errors import ConfigError

SEPARATOR = "|"

#: The ordered parts that identify a node of each label.
KEY_PARTS: dict[Label, tuple[str, ...]] = {
    Label.MODEL: ("model",),
    Label.CHECKPOINT: ("model", "checkpoint"),
    Label.TASK: ("task",),
    Label.RUN: ("run",),
    Label.DICTIONARY: ("model", "checkpoint", "hook", "dictionary"),
    Label.FEATURE: ("model", "checkpoint", "hook", "dictionary", "index"),
    # One error node per dictionary: what the dictionary fails to reconstruct at its hook.
    Label.ERROR: ("model", "checkpoint", "hook", "dictionary"),
    Label.HEAD: ("model", "checkpoint", "layer", "head"),
    # A layer's whole MLP (hook_mlp_out): a node of the component graph, beside heads.
    Label.MLP: ("model", "checkpoint", "layer"),
    # ROIs are blocks of one partition (named) of one dictionary's latents.
    Label.ROI: ("model", "checkpoint", "hook", "dictionary", "partition", "index"),
    # The output metric is task-specific (a logit difference needs the task's answers).
    Label.OUTPUT: ("model", "checkpoint", "task", "metric"),
    Label.INPUT: ("model", "checkpoint", "name"),
    Label.COMMUNITY: ("run", "level", "index"),
    Label.EVALUATION: ("run", "name"),
    Label.DISENTANGLEMENT: ("run", "name"),
    # A prompt's replacement graph: the prompt is a hash of run, tokens and targets; its nodes
    # are position-resolved (kind: feature, error, token or target; index: the feature, or the
    # target's number, else 0).
    Label.PROMPT: ("prompt",),
    Label.PROMPT_NODE: ("prompt", "kind", "layer", "position", "index"),
}

_KIND_OF: dict[str, Label] = {label.lower(): label for label in KEY_PARTS}


def node_key(label: Label, **parts: object) -> str:
    """Build the key of a node of ``label`` from exactly its named parts.

    Raises ``ConfigError`` on a missing or unexpected part, an empty part, or a part that
    contains the separator.
    """
    try:
        names = KEY_PARTS[Label(label)]
    except (KeyError, ValueError):
        raise ConfigError(f"nodes labelled {label!r} have no key; keyed labels: {sorted(KEY_PARTS)}") from None
    if set(parts) != set(names):
        missing = [n for n in names if n not in parts]
        extra = sorted(set(parts) - set(names))
        raise ConfigError(
            f"a {label} key needs exactly the parts {list(names)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    return SEPARATOR.join([label.lower(), *(check_part(name, parts[name], label) for name in names)])


def check_part(name: str, value: object, label: str = "node") -> str:
    """``value`` as a key part (a string), or ``ConfigError`` when it is empty or contains the
    separator. Callers that take names from users check them here before any work is done."""
    text = str(value)
    if not text or SEPARATOR in text:
        raise ConfigError(f"key part {name}={text!r} of a {label} must be non-empty and must not contain {SEPARATOR!r}")
    return text


def parse_key(key: str) -> tuple[Label, dict[str, str]]:
    """Invert :func:`node_key`: the label and the named parts (as strings)."""
    kind, *values = key.split(SEPARATOR)
    label = _KIND_OF.get(kind)
    if label is None or len(values) != len(KEY_PARTS[label]):
        raise ConfigError(f"{key!r} is not a mechgraph node key")
    return label, dict(zip(KEY_PARTS[label], values, strict=True))


#: nid is a non-negative signed 64-bit integer (Neo4j stores it as a long; -1 is free as a sentinel).
_NID_MASK = (1 << 63) - 1


def key_id(key: str) -> int:
    """The node's ``nid``: the first 8 bytes of BLAKE2b(key) as a 63-bit non-negative integer.

    Deterministic across processes and machines (unlike ``hash``). Two keys share an nid with
    probability ~ n^2 / 2^64 for n nodes (about 1e-9 for 200k nodes); readers that rely on nid
    check for it (``analysis.subgraph``).
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _NID_MASK
