"""The README's "Your own model and task" walk-through, run as written against a real Neo4j.

The section's ``cypher`` block is written to ``mine.cypher`` and its ``bash`` block is read
command by command, so the README and this test cannot drift: edit the block and this test runs
the new commands. Each line is ``mechgraph ARGS`` or ``NAME=$(mechgraph ARGS --format json | jq -r
'.[I].KEY')``; ``$NAME`` is replaced by the value that command printed. Every command runs through
the real CLI (typer's runner on ``analysis.cli.app``, in this process so torch is imported once)
in a directory holding what the block names: a tiny random Llama-architecture checkpoint saved
by transformers with its tokenizer (``my-llama``), a JSONL task, a text corpus and an edge list
taken from the stored graph. Each step's outcome is checked in the store or on disk.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app
from queries.loader import run_query

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Your own model and task"
_CAPTURE = re.compile(r"^(\w+)=\$\((mechgraph .*?)\s*\|\s*jq -r '\.\[(\d+)\]\.(\w+)'\)$")


def walkthrough() -> tuple[str, list[str]]:
    """The section's query file and its shell lines (continuations joined, comments dropped)."""
    text = README.read_text()
    body = text[text.index(SECTION) + len(SECTION):]
    body = body[:body.index("\n## ")]
    cypher = re.findall(r"```cypher\n(.*?)```", body, re.S)
    bash = re.findall(r"```bash\n(.*?)```", body, re.S)
    assert len(cypher) == 1 and len(bash) == 1, "the section should hold one cypher and one bash block"
    lines = [line.split(" #")[0].strip() for line in bash[0].replace("\\\n", " ").splitlines()]
    return cypher[0], [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def parse(line: str, names: dict[str, str]) -> tuple[list[str], tuple[str, int, str] | None]:
    """A line's mechgraph arguments with ``$NAME`` replaced, and what it captures, if anything."""
    capture = None
    if m := _CAPTURE.match(line):
        capture, line = (m.group(1), int(m.group(3)), m.group(4)), m.group(2)
    args = shlex.split(line)
    if args[0] != "mechgraph" or any(c in line for c in "|;&><`"):
        raise AssertionError(f"the walk-through runs mechgraph commands only; cannot run: {line}")

    def value(name: str) -> str:
        assert name in names, f"${name} is used before a command sets it"
        return names[name]

    return [re.sub(r"\$\{?(\w+)\}?", lambda v: value(v.group(1)), a) for a in args[1:]], capture


def _files(where: Path, cypher: str) -> None:
    """What the block names: the checkpoint, the task, the text and the query file."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ingest.tasks import get_task
    from ingest.zoo.tokenizer import build_tokenizer

    tok = build_tokenizer(where / "tokenizer-build")
    torch.manual_seed(0)
    # initializer_range 0.2 instead of 0.02: a random model whose logit differences are not all
    # under the edge threshold, so the graphs have edges to evaluate.
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.2, bos_token_id=tok.bos_token_id, eos_token_id=tok.bos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(where / "my-llama")
    tok.save_pretrained(str(where / "my-llama"))
    ioi = get_task("ioi")
    rows = ioi.examples(40, seed=1, split="train") + ioi.examples(20, seed=1, split="test")
    (where / "my_task.jsonl").write_text("".join(json.dumps({"clean": e.clean, "counterfactual": e.counterfactual,
                                                             "answer": e.answer, "cf_answer": e.cf_answer}) + "\n"
                                                 for e in rows))
    (where / "corpus.txt").write_text("\n".join(e.clean for e in ioi.examples(200, seed=2, split="train")) + "\n")
    (where / "mine.cypher").write_text(cypher)


def _edges_csv(db, run: str, path: Path) -> list[tuple[str, str]]:
    """Three stored edges of ``run`` that do not end at the output, as a user's edge list."""
    rows = [r for r in run_query(db, "run_edges", {"run": run, "task": "my_task"}) if "output" not in r["target"]][:3]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([("src", "dst"), *((r["source"], r["target"]) for r in rows)])
    return [(r["source"], r["target"]) for r in rows]


def _printed_run(stdout: str, kind: str) -> str:
    """The id of the run a command created, from its own human-readable output."""
    m = re.search(rf"\b({kind}-[0-9a-f]+)\b", stdout)
    assert m, f"no {kind} run id in:\n{stdout}"
    return m.group(1)


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(db, neo4j_settings, tmp_path, monkeypatch):
    cypher, lines = walkthrough()
    _files(tmp_path, cypher)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password, "NEO4J_DATABASE": None,
           "MECHGRAPH_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    names: dict[str, str] = {}
    seen: list[str] = []
    for line in lines:
        args, capture = parse(line, names)
        command = args[0] if args[0] not in ("model", "dict") else " ".join(args[:2])
        if command == "evaluate" and "--edges" in args:  # the user's edge list, from the stored graph
            _edges_csv(db, args[args.index("--run") + 1], tmp_path / args[args.index("--edges") + 1])
        res = runner.invoke(app, args, env=env)
        assert res.exit_code == 0, f"{line}\n{res.output}"
        if capture:
            name, index, key = capture
            names[name] = str(json.loads(res.stdout)[index][key])
        seen.append(command)
        check = CHECKS.get(command)
        if check:
            check(db, args, res, names, tmp_path)
    assert {"model check", "dict train", "dict svd", "ingest", "evaluate", "communities", "report"} <= set(seen)


# --- what each command must have done ------------------------------------------------------


def _model_check(db, args, res, names, where):
    row = next(line for line in res.stdout.splitlines() if "my_task" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert "accuracy" in res.stdout and "logit_diff" in res.stdout
    accuracy, logit_diff, n = float(cells[1]), float(cells[2]), int(cells[3])
    assert 0.0 <= accuracy <= 1.0 and n == 20  # every held-out row of the file


def _dict(db, args, res, names, where):
    out = where / args[args.index("-o") + 1]
    manifest = json.loads((out / "manifest.json").read_text())
    hooks = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert hooks and all(h.startswith("blocks.") for h in hooks)
    assert "corpus.txt" in json.dumps(manifest)
    if args[1] == "train":  # sae_lens' config records the text it was trained on
        cfg = json.loads((out / hooks[0] / "cfg.json").read_text())
        assert cfg["metadata"]["dataset_path"].endswith("corpus.txt")


def _ingest(db, args, res, names, where):
    rows = json.loads(res.stdout) if "--format" in args else None
    assert rows and rows[0]["status"] == "written" and rows[0]["edges"] > 0
    run = rows[0]["run"]
    stored = run_query(db, "run_edges", {"run": run, "task": "my_task"})
    assert len(stored) == rows[0]["edges"]
    dicts = json.loads(run_query(db, "run_config", {"run": run})[0]["config"])["dicts"]
    sites = {s.rsplit("hook_", 1)[-1] for s in dicts}
    if args.count("--dicts-all") == 2:  # residual and module graph in one run
        assert {"resid_post", "attn_out", "mlp_out"} <= sites
        assert rows[0]["head_edges"] > 0
    assert all("my-llama" not in s for s in dicts)  # dictionaries, not the model


def _table(stdout: str) -> list[dict[str, str]]:
    """The rows of the rich table a command printed, by column name."""
    head = next(line for line in stdout.splitlines() if line.startswith("┃"))
    columns = [c.strip() for c in head.strip("┃").split("┃")]
    return [dict(zip(columns, (c.strip() for c in line.strip("│").split("│")), strict=True))
            for line in stdout.splitlines() if line.startswith("│")]


def _evaluate(db, args, res, names, where):
    run = _printed_run(res.stdout.split(":Evaluation nodes of run")[-1], "evaluate")
    points = [r["e"] for r in db.read("MATCH (e:Evaluation {run: $run}) WHERE e.budget IS NOT NULL "
                                      "RETURN e {.*} AS e", {"run": run})]
    graph = args[args.index("--run") + 1] if "--run" in args else names["sae"]  # -m: the task's newest graph
    assert f"graph {graph}" in res.stdout and "counterfactual baseline" in res.stdout  # ingest's baseline
    assert points and {p["graph_run"] for p in points} == {graph}
    assert {p["ablation"] for p in points} == {"edge", "node"}
    printed = {(r["ablation"], int(r["edges"])): (float(r["faithfulness"]), r["baseline"]) for r in _table(res.stdout)}
    assert printed == {(p["ablation"], p["edges"]): (round(p["faithfulness"], 4), "counterfactual") for p in points}
    total = len(run_query(db, "run_edges", {"run": graph, "task": "my_task"}))
    if "--edges" in args:
        want = 3
    elif "--query" in args:
        params = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a in ("-p", "--param"))
        want = min(int(params.get("n", params.get("limit", total))), total)
    else:
        want = total
    assert f"({want} edges)" in res.stdout and max(p["edges"] for p in points) == want


def _communities(db, args, res, names, where):
    run = _printed_run(res.stdout.split("graph run")[-1], "communities")
    assert args[args.index("--run") + 1] in res.stdout  # the graph it was asked for
    members = db.read("MATCH (n)-[:IN_COMMUNITY {run: $run}]->(c:Community) RETURN count(n) AS n", {"run": run})
    assert members[0]["n"] > 0


def _report(db, args, res, names, where):
    html = (where / "home" / "report" / "index.html").read_text()
    assert "my-llama" in html and "my_task" in html and "counterfactual" in html


CHECKS = {"model check": _model_check, "dict train": _dict, "dict svd": _dict, "ingest": _ingest,
          "evaluate": _evaluate, "communities": _communities, "report": _report}
