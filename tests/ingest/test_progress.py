"""Progress bars go to a terminal only: captured stderr holds messages and the error line."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from ingest.cli import Bars
bars = Bars()
advance = bars('a long stage', 3)
with bars.progress:
    for _ in range(3):
        advance(1)
import sys
print('mechgraph: error: the one line', file=sys.stderr)
"""


def test_no_bar_frames_in_captured_stderr() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "mechgraph: error: the one line\n"
