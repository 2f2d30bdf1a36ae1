"""``ingest --format csv/json``: machine-readable output carries the run id it created."""

from __future__ import annotations

import csv
import io

from typer.testing import CliRunner

from analysis.cli import app


def test_ingest_csv_names_the_run_it_wrote(neo4j_settings, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    ckpt = tiny_checkpoint(8, 16, 5)
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    res = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "home"), "ingest", "-m", f"path:{ckpt}", "-t", "ioi",
                                   "-n", "2", "--batch-size", "2", "-k", "1", "--dicts-all", "identity@resid_post",
                                   "--format", "csv"], env=env)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout.split("\n\n")[0])))
    assert rows[0]["run"].startswith("ingest-") and rows[0]["task"] == "ioi"
