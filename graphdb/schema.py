"""The graph data model: labels, relationship types, constraints and indexes.

This module is the only source of label and relationship-type names. Cypher that needs a
label or type it cannot write literally (the writer's templates) takes it from these enums,
never from user input.

Model (one Neo4j database holds many models, checkpoints, tasks and runs side by side):

    (:Model)<-[:OF_MODEL]-(:Checkpoint)<-[:AT_CHECKPOINT]-(:Dictionary)<-[:OF_DICTIONARY]-(:Feature:Node)
                                  ^                          ^-[:OF_DICTIONARY]-(:ErrorNode:Node)
                                  +-[:AT_CHECKPOINT]-(:Head:Node) / (:MLP:Node) / (:Output:Node) / (:Input:Node) / (:ROI:Node)
    (:Node)-[:ATTRIBUTES_TO {weight, abs_weight, model, checkpoint, task, run, granularity}]->(:Node)
    (:Feature)-[:IN_HEAD {share}]->(:Head)      (:Feature)-[:IN_ROI]->(:ROI)
    (:Node)-[:IN_COMMUNITY]->(:Community)-[:PRODUCED_BY]->(:Run)
    (:Feature)-[:MATCHES {score, method}]->(:Feature)        (across checkpoints / sizes)
    (:Evaluation)-[:PRODUCED_BY]->(:Run)        (:Run)-[:FOR_TASK]->(:Task)
    (:Disentanglement)-[:PRODUCED_BY]->(:Run)   (:Disentanglement)-[:DESCRIBES]->(:Community) / (:Run)
    (:PromptNode:Node)-[:IN_PROMPT]->(:Prompt)-[:PRODUCED_BY]->(:Run)   (a prompt's replacement graph,
        position-resolved; its ATTRIBUTES_TO edges have granularity 'prompt')

Every node that can be an endpoint of ``ATTRIBUTES_TO`` also carries the ``:Node`` label, so
one uniqueness constraint (``Node.key``) serves every edge-endpoint lookup in the writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from graphdb.errors import QueryError


class Label(StrEnum):
    """Node labels. ``NODE`` is the super-label of every computational-graph node."""

    MODEL = "Model"
    CHECKPOINT = "Checkpoint"
    TASK = "Task"
    DICTIONARY = "Dictionary"
    FEATURE = "Feature"
    ERROR = "ErrorNode"
    HEAD = "Head"
    MLP = "MLP"  # a layer's whole MLP, a node of the component graph
    ROI = "ROI"
    OUTPUT = "Output"
    INPUT = "Input"
    RUN = "Run"
    COMMUNITY = "Community"
    EVALUATION = "Evaluation"
    DISENTANGLEMENT = "Disentanglement"
    PROMPT = "Prompt"
    PROMPT_NODE = "PromptNode"
    NODE = "Node"


#: Labels whose nodes are vertices of the computational graph (endpoints of ATTRIBUTES_TO).
GRAPH_NODE_LABELS: frozenset[Label] = frozenset(
    {Label.FEATURE, Label.ERROR, Label.HEAD, Label.MLP, Label.ROI, Label.OUTPUT, Label.INPUT, Label.PROMPT_NODE}
)


class Rel(StrEnum):
    """Relationship types."""

    ATTRIBUTES_TO = "ATTRIBUTES_TO"
    IN_ROI = "IN_ROI"
    IN_HEAD = "IN_HEAD"
    IN_COMMUNITY = "IN_COMMUNITY"
    MATCHES = "MATCHES"
    OF_MODEL = "OF_MODEL"
    AT_CHECKPOINT = "AT_CHECKPOINT"
    OF_DICTIONARY = "OF_DICTIONARY"
    PRODUCED_BY = "PRODUCED_BY"
    FOR_TASK = "FOR_TASK"
    EVALUATES = "EVALUATES"
    DESCRIBES = "DESCRIBES"
    IN_PROMPT = "IN_PROMPT"


class Granularity(StrEnum):
    """The node granularity an ATTRIBUTES_TO edge belongs to (``r.granularity``)."""

    FEATURE = "feature"
    HEAD = "head"
    ROI = "roi"
    PROMPT = "prompt"   # a prompt's position-resolved replacement graph (transcoder features)
    COMPONENT = "component"  # whole components: embedding, heads, MLPs, output (ingest --graph component)


#: Relationship properties that, with the two endpoints, identify one relationship. The
#: writer MERGEs on them, which is what makes writing the same run twice idempotent:
#: one edge u->v per (run, task, granularity), so many runs and tasks coexist between the
#: same nodes, and a coarse graph (heads, ROIs) may join two nodes the feature graph joins too.
REL_IDENTITY: dict[Rel, tuple[str, ...]] = {
    Rel.ATTRIBUTES_TO: ("run", "task", "granularity"),
    Rel.IN_HEAD: ("run",),
    Rel.MATCHES: ("method", "run"),
    Rel.IN_COMMUNITY: ("run",),
    Rel.IN_ROI: ("run",),
}

#: Labels with a uniqueness constraint on ``key``. Graph nodes are constrained through
#: ``Node`` only: a second index per sub-label would cost every write and serve no lookup.
KEYED_LABELS: tuple[Label, ...] = (
    Label.MODEL,
    Label.CHECKPOINT,
    Label.TASK,
    Label.DICTIONARY,
    Label.RUN,
    Label.COMMUNITY,
    Label.EVALUATION,
    Label.DISENTANGLEMENT,
    Label.PROMPT,
    Label.NODE,
)

#: (index name, Cypher target, properties). Chosen for the queries analysts run most:
#: a task's subgraph at one checkpoint above a weight (the composite relationship index,
#: equality on the prefix and a range seek on abs_weight), the nodes of one checkpoint
#: or layer, and nodes by nid.
#:
#: Deliberately NO relationship index led by an identity property (``run`` or ``task``
#: alone): the writer's ``MERGE (a)-[r:ATTRIBUTES_TO {run, task}]->(b)`` must expand between
#: the two bound endpoints, but on a store whose statistics are young the planner prefers
#: such an index seek, which reads every edge of the run for every row: writes become
#: quadratic (measured: 200 edges/s instead of tens of thousands). A run's edges are reached
#: through its (model, checkpoint, task) prefix instead.
INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("attr_task_ckpt_weight", f"()-[r:{Rel.ATTRIBUTES_TO}]-()", ("model", "checkpoint", "task", "abs_weight")),
    ("node_checkpoint_layer", f"(n:{Label.NODE})", ("model", "checkpoint", "layer")),
    ("feature_dictionary_index", f"(n:{Label.FEATURE})", ("dictionary", "index")),
    ("community_run", f"(n:{Label.COMMUNITY})", ("run",)),
    # The integer id (keys.key_id) a bulk subgraph pull looks its nodes' keys up by. A plain
    # range index, not a uniqueness constraint: a 64-bit collision should not fail an ingest;
    # the pull detects it instead.
    ("node_nid", f"(n:{Label.NODE})", ("nid",)),
    # A position-free feature's occurrences across prompt graphs (recurring features, edges
    # of a feature across prompts).
    ("prompt_node_feature", f"(n:{Label.PROMPT_NODE})", ("feature",)),
    ("prompt_task", f"(n:{Label.PROMPT})", ("model", "checkpoint", "task")),
)


def constraint_statements() -> list[str]:
    """``CREATE CONSTRAINT ... IF NOT EXISTS`` for every keyed label (idempotent)."""
    return [
        f"CREATE CONSTRAINT {label.lower()}_key IF NOT EXISTS "
        f"FOR (n:{label}) REQUIRE n.key IS UNIQUE"
        for label in KEYED_LABELS
    ]


def index_statements() -> list[str]:
    """``CREATE INDEX ... IF NOT EXISTS`` for every range index (idempotent)."""
    out = []
    for name, target, props in INDEXES:
        var = "r" if target.startswith("()") else "n"
        cols = ", ".join(f"{var}.{p}" for p in props)
        out.append(f"CREATE INDEX {name} IF NOT EXISTS FOR {target} ON ({cols})")
    return out


class SupportsWrite(Protocol):
    """What :func:`init_schema` needs of a :class:`graphdb.connection.Database`."""

    def write(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...


#: What ``CREATE ... IF NOT EXISTS`` still fails with when another process runs the same
#: statement at the same moment (two ingests on a fresh store): both transactions checked,
#: neither saw the other's rule, and the second to commit is refused. Run again, the statement
#: finds the rule and does nothing.
CONCURRENT_CREATE = "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists"


def init_schema(db: SupportsWrite, *, timeout_s: int = 300, await_indexes: bool = True) -> None:
    """Create every constraint and index and wait until they are online. Idempotent, and
    safe while other processes initialise the same database.

    ``await_indexes=False`` waits for the constraints only (the writer's MERGE relies on them)
    and leaves the range indexes populating in the background: on a bulk-loaded store of
    millions of relationships that takes as long as the import, and queries answer meanwhile
    (without the index; ``CALL db.awaitIndexes`` waits for them)."""
    for statement in constraint_statements():
        _create(db, statement)
    if not await_indexes:
        db.write("CALL db.awaitIndexes($t)", {"t": timeout_s})   # the constraints, before the indexes start
    for statement in index_statements():
        _create(db, statement)
    if await_indexes:
        db.write("CALL db.awaitIndexes($t)", {"t": timeout_s})


def _create(db: SupportsWrite, statement: str, *, attempts: int = 3) -> None:
    for attempt in range(1, attempts + 1):
        try:
            db.write(statement)
            return
        except QueryError as e:
            if e.code != CONCURRENT_CREATE or attempt == attempts:
                raise
