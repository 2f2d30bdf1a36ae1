"""Task specs and the names their graphs are stored under.

A graph is stored under its task's *name*: a registered task's name (``ioi``; parameters do
not change it: ``bias_in_bios:variant=anti`` is stored as ``bias_in_bios``), a JSONL file's
stem (``jsonl:data/my_task.jsonl`` -> ``my_task``), a Python function's name
(``py:pkg.mod:my_task`` -> ``my_task``). The ``:Task`` node records the spec it was ingested
from (:func:`canonical_spec`: a JSONL path made absolute), so a later command given only the
name can re-read its examples: the analysis layer reads the spec from the store and declares
it here with :func:`alias_task`, after which :func:`ingest.tasks.get_task` resolves the name.
"""

from __future__ import annotations

from pathlib import Path

_ALIASES: dict[str, str] = {}


def task_name(spec: str) -> str:
    """The name a task spec's graph is stored under (no I/O)."""
    if spec.startswith("jsonl:"):
        return Path(spec[len("jsonl:"):]).stem
    if spec.startswith("py:"):
        return spec.rsplit(":", 1)[-1]
    return spec.partition(":")[0]


def canonical_spec(spec: str) -> str:
    """The spec to record: a JSONL task's path absolute, anything else as given."""
    if spec.startswith("jsonl:"):
        return "jsonl:" + str(Path(spec[len("jsonl:"):]).expanduser().absolute())
    return spec


def alias_task(name: str, spec: str) -> None:
    """Let ``get_task(name)`` resolve to ``spec`` (a stored task's recorded spec)."""
    if spec != name:
        _ALIASES[name] = spec


def aliased(name: str) -> str | None:
    """The spec declared for ``name`` by :func:`alias_task`, if any."""
    return _ALIASES.get(name)
