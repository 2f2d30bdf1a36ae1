"""Tasks: deterministic, split-disjoint generators of clean/counterfactual prompt pairs.

``get_task("ioi").examples(64, seed=0, split="test")``; see :mod:`ingest.tasks.registry`
for specs (``NAME:k=v``, ``jsonl:PATH``, ``py:MODULE:FUNCTION``) and
:mod:`ingest.tasks.builtin` for the six built-in tasks.
"""

from ingest.tasks.registry import (
    HELD_OUT_FRACTION,
    SPLIT_CHOICES,
    SPLITS,
    Example,
    Task,
    get_task,
    list_tasks,
    load_jsonl_task,
    register_task,
    split_of,
)

# Imported after the registry: defining the built-in tasks registers them, so any import of
# ``ingest.tasks`` (or a module inside it) sees them.
from ingest.tasks.builtin import builtin_task_names  # noqa: E402

__all__ = ["HELD_OUT_FRACTION", "SPLIT_CHOICES", "SPLITS", "Example", "Task", "builtin_task_names", "get_task",
           "list_tasks", "load_jsonl_task", "register_task", "split_of"]
