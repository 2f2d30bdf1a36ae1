"""Tasks as the analysis commands take them: the spec given to ``ingest`` or the stored name.

``--task jsonl:data/my_task.jsonl`` and ``--task my_task`` name the same stored graph (its name
is the file's stem, :func:`ingest.tasks.names.task_name`). :func:`stored_tasks` turns either into
the stored name and makes sure the task's examples can be re-read under that name: a spec given
here is declared for it directly; for a bare name, the spec recorded on the ``:Task`` node at
ingest is (``ingest.tasks.names.alias_task``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from queries.loader import run_query


def stored_tasks(db: Any, texts: Iterable[str]) -> tuple[str, ...]:
    """The stored names of ``texts`` (task specs or names), each re-readable by ``get_task``."""
    from ingest.tasks.names import alias_task, canonical_spec, task_name

    names = []
    for text in texts:
        name = task_name(text)
        if text != name:
            alias_task(name, canonical_spec(text))
        else:
            rows = run_query(db, "task_spec", {"task": name})
            if rows and rows[0]["spec"]:
                alias_task(name, rows[0]["spec"])
        names.append(name)
    return tuple(names)
