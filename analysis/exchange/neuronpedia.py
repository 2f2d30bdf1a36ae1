"""The Neuronpedia graph JSON format (schema v1), as circuit-tracer and Neuronpedia write it.

A file is ``{"metadata": {...}, "qParams": {"pinnedIds", "supernodes", "linkType",
"clickedId", "sg_pos"}, "nodes": [...], "links": [{"source", "target", "weight"}]}``. A node
has ``node_id``, ``feature``, ``layer`` (a string), ``ctx_idx`` (the token position),
``feature_type``, ``jsNodeId``, ``clerp`` (its label), ``influence``, ``activation``,
``token_prob``, ``is_target_logit``, ``run_idx``, ``reverse_ctx_idx``. For a model of ``L``
layers (circuit-tracer 0.5.0's ``frontend/graph_models.py``):

============  ===========================  ======================  =========  ===================
kind          node_id                      feature                 layer      jsNodeId
============  ===========================  ======================  =========  ===================
feature       ``{layer}_{index}_{pos}``    cantor(layer, index)    ``layer``  ``{layer}_{index}-0``
error         ``{layer}_-1_{pos}``         -1                      ``layer``  ``{layer}_{pos}-0``
embedding     ``E_{token}_{pos}``          pos                     ``E``      ``E_{token}-{pos}``
logit         ``{L+1}_{token}_{pos}``      token                   ``L+1``    ``L_{token}-{pos}``
============  ===========================  ======================  =========  ===================

The error id is the current form (``{layer}_-1_{pos}``, feature -1 in the id as in the
``feature`` field); circuit-tracer 0.5.0 still writes ``0_{layer}_{pos}``. Reading, the kind
comes from ``feature_type`` and the layer and position from ``layer`` and ``ctx_idx``, so both
forms load; the id a file gave a node is kept and written back on export.
"""

from __future__ import annotations

from typing import Any

from mechgraph.errors import MechgraphError

SCHEMA_VERSION = 1
FEATURE = "cross layer transcoder"
ERROR = "mlp reconstruction error"
EMBEDDING = "embedding"
LOGIT = "logit"
#: feature_type -> mechgraph's prompt-node kind
KINDS = {FEATURE: "feature", ERROR: "error", EMBEDDING: "token", LOGIT: "target"}
#: Other transcoder feature types Neuronpedia shows; read as features.
FEATURE_ALIASES = ("transcoder", "per layer transcoder", "plt", "clt")
QPARAM_DEFAULTS: dict[str, Any] = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}


class FormatError(MechgraphError):
    """A file is not a Neuronpedia graph JSON mechgraph can read (says where and why)."""


def cantor(x: int, y: int) -> int:
    """Cantor's pairing of two non-negative integers (circuit-tracer's feature number)."""
    return (x + y) * (x + y + 1) // 2 + y


def kind_of(feature_type: str) -> str | None:
    if feature_type in KINDS:
        return KINDS[feature_type]
    return "feature" if feature_type.lower() in FEATURE_ALIASES else None


def feature_node(layer: int, index: int, pos: int) -> dict[str, Any]:
    return {"node_id": f"{layer}_{index}_{pos}", "feature": cantor(layer, index), "layer": str(layer),
            "ctx_idx": pos, "feature_type": FEATURE, "jsNodeId": f"{layer}_{index}-0"}


def error_node(layer: int, pos: int) -> dict[str, Any]:
    return {"node_id": f"{layer}_-1_{pos}", "feature": -1, "layer": str(layer), "ctx_idx": pos,
            "feature_type": ERROR, "jsNodeId": f"{layer}_{pos}-0"}


def embedding_node(token: int, pos: int) -> dict[str, Any]:
    return {"node_id": f"E_{token}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos,
            "feature_type": EMBEDDING, "jsNodeId": f"E_{token}-{pos}"}


def logit_node(token: int, pos: int, n_layers: int) -> dict[str, Any]:
    layer = n_layers + 1
    return {"node_id": f"{layer}_{token}_{pos}", "feature": token, "layer": str(layer), "ctx_idx": pos,
            "feature_type": LOGIT, "jsNodeId": f"L_{token}-{pos}"}


def logit_clerp(text: str, prob: float) -> str:
    return f'Output "{text}" (p={prob:.3f})'


def full_node(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with every field of the schema, defaults where it has none, in schema order."""
    return {"node_id": node["node_id"], "feature": node["feature"], "layer": node["layer"],
            "ctx_idx": node["ctx_idx"], "feature_type": node["feature_type"],
            "token_prob": node.get("token_prob", 0.0), "is_target_logit": node.get("is_target_logit", False),
            "run_idx": node.get("run_idx", 0), "reverse_ctx_idx": node.get("reverse_ctx_idx", 0),
            "jsNodeId": node.get("jsNodeId", node["node_id"]), "clerp": node.get("clerp", ""),
            "influence": node.get("influence"), "activation": node.get("activation")}
