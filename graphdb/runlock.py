"""One writer per run: an OS file lock under the data directory's ``runs/`` state folder.

A run's id is the hash of its configuration (``graphdb.provenance``), so two processes started
with the same configuration compute and write the same run. ``run_lock`` makes the second one
wait until the first has finished (then it finds the run up to date and skips it) instead of
computing everything a second time. The lock is ``fcntl.flock`` on ``<runs>/<run id>.lock``:
the kernel releases it when the holder exits, however it exits (``kill -9`` included), so a
crashed run never leaves a stale lock behind. The file itself stays (deleting a lock file
races with a process about to take it); it holds the pid of the current holder, for the
message the waiting process prints.

The lock is per data directory (per machine): processes on two machines writing the same run
into one external Neo4j are not serialised by it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mechgraph.errors import MechgraphError

log = logging.getLogger(__name__)


class RunLockedError(MechgraphError):
    """Another process holds the run's lock and the caller chose not to wait."""


@contextmanager
def run_lock(state_root: Path, run_id: str, *, wait: bool = True) -> Iterator[None]:
    """Hold the lock of ``run_id`` under ``state_root`` for the body. Waits (with a warning that
    says who holds it) when another process holds it, or raises ``RunLockedError`` when ``wait``
    is false."""
    import fcntl

    state_root.mkdir(parents=True, exist_ok=True)
    path = state_root / f"{run_id}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if not wait:
                raise RunLockedError(f"run {run_id} is in progress ({holder}); try again when it has finished") from None
            log.warning("run %s is in progress (%s): waiting for it to finish", run_id, holder)
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
