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


def test_ingest_warns_of_an_unconverged_path_and_steps_auto_says_its_k(neo4j_settings, tiny_checkpoint, tmp_path,
                                                                       monkeypatch):
    """Issue 15 item 8 at the CLI: MLP input weights x30 (GELU nearly a step) at K=2 print one
    warning line naming the residual; --steps auto prints the K it chose, and the residual column
    of its CSV is within the tolerance."""
    import shutil

    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "steep"
    shutil.copytree(tiny_checkpoint(16, 32, 3), ckpt)
    weights = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v * 30 if k.endswith("mlp.W_in") else v for k, v in weights.items()}, str(ckpt / "model.safetensors"))
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None}
    args = ["--data-dir", str(tmp_path / "home"), "ingest", "-m", f"path:{ckpt}", "-t", "ioi", "-n", "4",
            "--batch-size", "2", "--dicts-all", "identity@resid_post", "--format", "csv"]
    res = CliRunner().invoke(app, [*args, "-k", "2"], env=env)
    assert res.exit_code == 0, res.output
    assert "warning: ioi: the integrated-gradients path has not converged at K=2" in res.stderr
    row = next(csv.DictReader(io.StringIO(res.stdout.split("\n\n")[0])))
    assert row["steps"] == "2" and float(row["residual"]) > 0.05
    res = CliRunner().invoke(app, [*args, "--steps", "auto"], env=env)
    assert res.exit_code == 0, res.output
    assert "ioi: --steps auto chose K=" in res.stderr and "not converged" not in res.stderr
    row = next(csv.DictReader(io.StringIO(res.stdout.split("\n\n")[0])))
    assert int(row["steps"]) in (8, 16, 32, 64, 128) and float(row["residual"]) <= 0.05
