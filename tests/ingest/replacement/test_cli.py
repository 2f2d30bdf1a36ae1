"""``mechgraph trace`` (the command function, in a bare typer app): counts, scores, run id."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from ingest.replacement.cli import trace_command
from tests.ingest.replacement.conftest import PROMPT


@pytest.mark.slow
def test_trace_prints_counts_scores_and_run(saved) -> None:
    model, tcs = saved
    app = typer.Typer()
    app.command("trace")(trace_command)
    app.command("other")(lambda: None)   # two commands, so "trace" is a subcommand as in mechgraph
    r = CliRunner().invoke(app, ["trace", "--model", model, "--transcoders", tcs, "--prompt", PROMPT, "--no-store",
                                 "--target", "Mary/John", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "trace-" in r.output and "pruned_nodes" in r.output and "completeness" in r.output
    assert "Mary - John" in r.output
    import json
    (summary,) = json.loads(r.stdout)  # one JSON document (issue 15 item 10): the run id and the targets
    assert summary["run"].startswith("trace-") and summary["targets"][0]["target"] == "Mary - John"
    bad = CliRunner().invoke(app, ["trace", "--model", model, "--transcoders", tcs, "--prompt", PROMPT,
                                   "--no-store", "--node-threshold", "2"])
    assert bad.exit_code != 0 and "node_threshold" in bad.output
