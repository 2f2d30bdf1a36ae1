"""``mechgraph dict train`` / ``dict svd``: dictionaries for a user's model on the user's text,
loadable by ``path:DIR/<hook>`` and ``--dicts-all 'path:DIR/{hook}@...'``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from analysis.cli import app

WORDS = "the cat sat on mat dog ran big small".split()


def _text(tmp_path, n=40):
    g = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (6,), generator=g).tolist()) for _ in range(n)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dict_svd_fits_every_layer_and_loads_as_path_dictionaries(hf_checkpoint, tmp_path, monkeypatch):
    from ingest.dictionaries import load_dictionary
    from ingest.dictionaries.everywhere import expand_dicts_all
    from ingest.zoo.specs import load_model

    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    ckpt = hf_checkpoint("llama")
    rows = [{"clean": line} for line in _text(tmp_path).read_text().splitlines()]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "svd"
    res = CliRunner().invoke(app, ["dict", "svd", "-m", f"path:{ckpt}", "--text", f"jsonl:{jsonl}",
                                   "--hook", "resid_post", "--hook", "blocks.1.hook_mlp_out", "-o", str(out),
                                   "--context-size", "8", "--format", "json"])
    assert res.exit_code == 0, res.output
    table = json.loads(res.stdout)
    assert [r["hook"] for r in table] == ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    assert all(r["ev"] > 0.999 for r in table)  # full rank: exact reconstruction
    model = load_model(f"path:{ckpt}")
    specs = expand_dicts_all([f"path:{out}/{{hook}}@resid_post"], model, fit_tokens=None, fit_key={})
    dictionary = load_dictionary(specs[1])
    assert dictionary.hook_name == "blocks.1.hook_resid_post" and dictionary.d_dict == 32
    assert "JSONL prompts" in json.loads((out / "manifest.json").read_text())["text"]


def test_dict_train_records_the_real_text_source_and_prints_the_zoo_metrics(hf_checkpoint, tmp_path, monkeypatch):
    from ingest.dictionaries import load_dictionary

    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    ckpt = hf_checkpoint("llama")
    text = _text(tmp_path)
    out = tmp_path / "saes"
    res = CliRunner().invoke(app, ["dict", "train", "-m", f"path:{ckpt}", "--text", str(text), "--hook",
                                   "blocks.0.hook_resid_post", "-o", str(out), "--context-size", "8",
                                   "--expansion", "2", "--k", "4", "--tokens", "2048", "--batch-tokens", "128"])
    assert res.exit_code == 0, res.output
    for column in ("hook", "ev", "l0", "dead", "spec"):
        assert column in res.stdout
    cfg = json.loads((out / "blocks.0.hook_resid_post" / "cfg.json").read_text())
    assert str(text.resolve()) in json.dumps(cfg) and "mechgraph-task-prompts" not in json.dumps(cfg)
    sae = load_dictionary(f"path:{out}/blocks.0.hook_resid_post")
    assert sae.d_dict == 64 and sae.hook_name == "blocks.0.hook_resid_post"


def test_dict_svd_on_samples_drawn_from_the_model(hf_checkpoint, tmp_path):
    ckpt = hf_checkpoint("llama")
    res = CliRunner().invoke(app, ["dict", "svd", "-m", f"path:{ckpt}", "--sample", "12", "--hook",
                                   "blocks.0.hook_attn_out", "-o", str(tmp_path / "s"), "--context-size", "6",
                                   "--rank", "8", "--format", "csv"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert "sampled from the model" in manifest["text"] and manifest["train_rows"] + manifest["held_out_rows"] == 12


@pytest.mark.parametrize("args, message", [
    (["--hook", "resid_post"], "exactly one of --text"),
    (["--hook", "nowhere", "--sample", "4"], "neither a hook name"),
])
def test_dict_errors_are_one_line(hf_checkpoint, tmp_path, args, message):
    ckpt = hf_checkpoint("llama")
    res = CliRunner().invoke(app, ["dict", "svd", "-m", f"path:{ckpt}", "-o", str(tmp_path / "x"), *args])
    assert res.exit_code == 1 and message in res.output


def test_help_lists_dict_without_importing_torch():
    code = ("import sys; from typer.testing import CliRunner; from analysis.cli import app; "
            "r = CliRunner().invoke(app, ['dict', '--help']); assert 'train' in r.output and 'svd' in r.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
