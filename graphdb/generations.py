"""Write generations: an analysis run's result is replaced without ever being missing.

An analysis run (communities, ROIs, disentanglement, feature matches) has a stable id (the hash
of its configuration), so running it again rewrites the same run. Deleting the old result and
then writing the new one in separate transactions leaves nothing at all when the process dies in
between. Instead, every write of a run is one *generation*:

1. :func:`begin` writes the ``:Run`` row with ``writing_gen`` = a fresh generation id;
2. the writer MERGEs the new result in its usual batches, every node and relationship of the
   result tagged ``gen`` = that id (``common={"gen": gen}``). The old result's nodes and
   relationships are never deleted here: what the new result writes again is merged in place,
   the rest keeps its old tag;
3. :func:`finish` runs ONE transaction (a ``graphdb/cypher/finish_run_*.cypher`` template) that
   deletes what the run's earlier generations left and this one did not write again, sets the
   run's ``gen`` (the generation it holds) and removes ``writing_gen``.

So a crash at any point leaves the old result complete (plus whatever of the new one was
merged so far, identical where the inputs did not change), the ``:Run`` with ``writing_gen``
set says so, and running the same command again ends with exactly the result of one
uninterrupted write. ``finish`` refuses to retire anything when another write of the same run
began after this one (its ``writing_gen`` is not ours): the later write finishes the run.
"""

from __future__ import annotations

import uuid
from typing import Any

from graphdb.provenance import RunRecord
from graphdb.schema import Label
from graphdb.writer import GraphWriter, cypher_template
from mechgraph.errors import MechgraphError


class WriteOverlapError(MechgraphError):
    """Another write of the same run began before this one finished."""


def new_generation() -> str:
    return uuid.uuid4().hex[:16]


def begin(writer: GraphWriter, record: RunRecord, **extra: Any) -> str:
    """Write the ``:Run`` row (with ``extra`` properties) marked as being written; returns the
    new generation id to tag every row of the result with."""
    gen = new_generation()
    writer.write_nodes(Label.RUN, [{**record.row(), **extra, "writing_gen": gen}])
    return gen


def finish(db: Any, record: RunRecord, gen: str, template: str, **params: Any) -> dict[str, Any]:
    """Retire the run's earlier generations and mark it finished, in one transaction
    (``graphdb/cypher/<template>.cypher``, given ``$key``, ``$run``, ``$gen`` and ``params``).
    Returns the template's counts of what it deleted."""
    rows = db.write(cypher_template(template), {"key": record.key, "run": record.run_id, "gen": gen, **params})
    if not rows:
        raise WriteOverlapError(f"another write of run {record.run_id} began while this one was writing; it will "
                                "finish the run (nothing of the previous result was retired by this one)")
    return rows[0]
