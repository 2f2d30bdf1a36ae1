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


@pytest.mark.slow
def test_ingest_transcoders_csv_names_the_run(saved, neo4j_settings, tmp_path) -> None:
    """Issue 15 item 10: ``ingest --graph transcoders --format csv`` rows carry the run id."""
    import csv
    import io

    from analysis.cli import app as mechgraph

    model, tcs = saved
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    r = CliRunner().invoke(mechgraph, ["--data-dir", str(tmp_path), "ingest", "-m", model, "-t", "ioi", "--graph",
                                       "transcoders", "-T", tcs, "-n", "2", "--format", "csv"], env=env)
    assert r.exit_code == 0, r.output
    (row,) = csv.DictReader(io.StringIO(r.stdout))
    assert row["run"].startswith("ingest-") and row["task"] == "ioi" and int(row["prompts"]) == 2
