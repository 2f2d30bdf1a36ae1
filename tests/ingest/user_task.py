"""A user task in an importable module, for ``py:MODULE:FUNCTION`` specs."""

import random

from ingest.tasks import Example


def copy_first(rng: random.Random) -> Example:
    a, b, c = rng.sample(["ka", "ki", "ku", "ke", "ko"], 3)
    return Example(f"{a} {c} {a} {c} {a} {c}", f"{b} {c} {b} {c} {b} {c}", f" {a}", f" {b}")
