"""Task generators: determinism, split disjointness, answer correctness, user tasks."""

from __future__ import annotations

import json
import random
import re

import pytest

from ingest.errors import TaskError
from ingest.tasks import Example, builtin_task_names, get_task, register_task, split_of
from ingest.tasks.builtin import FEMALE, MALE, vocabulary

TASKS = builtin_task_names()


def test_six_builtin_tasks():
    assert TASKS == ["ioi", "induction", "greater_than", "sva", "bracket_depth", "bias_in_bios"]


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_and_seeded(task):
    t = get_task(task)
    assert t.examples(50, seed=3) == t.examples(50, seed=3)
    assert t.examples(50, seed=3) != t.examples(50, seed=4)
    assert t.examples(50, seed=3, split="test") != t.examples(50, seed=3, split="train")


@pytest.mark.parametrize("task", TASKS)
def test_splits_never_share_prompts(task):
    t = get_task(task)
    train = {ex.clean for ex in t.examples(3000, seed=0, split="train")}
    test = {ex.clean for ex in t.examples(600, seed=0, split="test")}
    assert train and test and not train & test
    assert all(split_of(p) == "train" for p in train) and all(split_of(p) == "test" for p in test)


@pytest.mark.parametrize("task", TASKS)
def test_words_in_vocabulary_and_aligned(task):
    vocab = set(vocabulary())
    for ex in get_task(task).examples(300, seed=1):
        for text in (ex.clean, ex.counterfactual, ex.answer, ex.cf_answer):
            assert set(text.split()) <= vocab, text
        assert len(ex.clean.split()) == len(ex.counterfactual.split())
        assert ex.answer.startswith(" ") and len(ex.answer.split()) == 1
        assert ex.answer != ex.cf_answer and ex.task == task


def _solve(task: str, prompt: str) -> str:
    """Independent solvers: the correct answer computed from the prompt text alone."""
    w = prompt.split()
    if task == "ioi":
        a, b = w[w.index("and") - 1], w[w.index("and") + 1]
        subject = w[-5]  # "<S> gave a <obj> to"
        return b if subject == a else a
    if task == "induction":
        last = w[-1]
        return w[w.index(last) + 1]
    if task == "greater_than":
        start, end = int(w[5]), int(w[10])
        return "after" if end > start else "before"
    if task == "sva":
        return "are" if w[2].endswith("s") else "is"
    if task == "bracket_depth":
        return str(w.count("(") - w.count(")"))
    raise AssertionError(task)


@pytest.mark.parametrize("task", ["ioi", "induction", "greater_than", "sva", "bracket_depth"])
def test_answers_are_correct_for_clean_and_counterfactual(task):
    for ex in get_task(task).examples(500, seed=2):
        assert ex.answer.strip() == _solve(task, ex.clean), ex
        assert ex.cf_answer.strip() == _solve(task, ex.counterfactual), ex


def test_bias_in_bios_labels_and_shortcut():
    t = get_task("bias_in_bios")
    exs = t.examples(2000, seed=0)
    for ex in exs:
        name, pronoun = ex.clean.split()[0], ex.clean.split()[-3]
        assert (name in FEMALE) == (pronoun == "she") == (ex.meta["gender"] == "f")
        assert ex.answer.strip() == ex.meta["profession"]
        if not ex.meta["neutral"]:
            cue = " ".join(ex.clean.split()[1:3])
            assert ("teaches" in cue or "writes" in cue or "grades" in cue or "lectures" in cue) == \
                (ex.meta["profession"] == "professor")
    # gender_bias=1.0 by default: gender always matches the stereotype in training data
    assert all(ex.meta["stereotypical"] for ex in exs)
    assert 0.15 < sum(ex.meta["neutral"] for ex in exs) / len(exs) < 0.35
    anti = get_task("bias_in_bios:variant=anti").examples(300, seed=0)
    assert not any(ex.meta["stereotypical"] or ex.meta["neutral"] for ex in anti)
    half = get_task("bias_in_bios:gender_bias=0.5").examples(2000, seed=0)
    assert 0.4 < sum(ex.meta["stereotypical"] for ex in half) / len(half) < 0.6
    assert {n for n in FEMALE + MALE} >= {ex.clean.split()[0] for ex in exs}


def test_jsonl_task(tmp_path):
    rows = [{"clean": f"the key {i} is", "counterfactual": f"the keys {i} are", "answer": " red",
             "cf_answer": " blue", "meta": {"i": i}} for i in range(200)]
    path = tmp_path / "colors.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    t = get_task(f"jsonl:{path}")
    assert t.name == "colors"
    train, test = t.examples(100, split="train"), t.examples(40, split="test")
    assert not {e.clean for e in train} & {e.clean for e in test}
    assert t.examples(100, split="train") == train
    assert train[0].meta["i"] == int(re.findall(r"\d+", train[0].clean)[0])


def _write_rows(path, n, **extra):
    rows = [{"clean": f"the key {i} is", "counterfactual": f"the keys {i} are", "answer": " red",
             "cf_answer": " blue", **extra} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_rows_drawn_without_replacement(tmp_path):
    """Issue 15 item 7: 32 examples of a 400-row file are 32 distinct rows, never repeats."""
    t = get_task(f"jsonl:{_write_rows(tmp_path / 'many.jsonl', 400)}")
    for split in ("train", "test", "all"):
        exs = t.examples(32, seed=3, split=split)
        assert len({e.clean for e in exs}) == 32


def test_jsonl_rows_keep_their_own_split(tmp_path):
    """A row's "split" field wins over the prompt hash: every row of an all-test file is usable
    held out, and an all-train file has no held-out rows (said in one sentence)."""
    t = get_task(f"jsonl:{_write_rows(tmp_path / 'mine.jsonl', 50, split='test')}")
    assert t.available("test") == 50 and t.available("train") == 0
    assert len({e.clean for e in t.examples(50, split="test")}) == 50
    assert all(e.split == "test" for e in t.examples(5, split="test"))
    with pytest.raises(TaskError, match="no train examples .*split field"):
        t.examples(1, split="train")
    bad = _write_rows(tmp_path / "bad.jsonl", 2, split="dev")
    with pytest.raises(TaskError, match=r"bad.jsonl:1: .*train or test, not 'dev'"):
        get_task(f"jsonl:{bad}")


def test_split_all_takes_every_row_and_refuses_more(tmp_path):
    """--split all: a 1-row file gives its row; asking 4 of it is refused, not the row four times."""
    t = get_task(f"jsonl:{_write_rows(tmp_path / 'one.jsonl', 1)}")
    assert t.available("all") == 1
    assert [e.clean for e in t.examples(1, split="all")] == ["the key 0 is"]
    with pytest.raises(TaskError, match="cannot provide 4 all examples: its file has 1 distinct all rows of 1"):
        t.examples(4, split="all")
    with pytest.raises(TaskError, match="split by prompt hash; give rows a \"split\" field, or --split all"):
        t.examples(4, split=split_of("the key 0 is"))
    assert len(get_task("ioi").examples(3, split="all")) == 3  # a generated task takes any prompt


def test_ingest_config_accepts_split_all():
    from ingest.pipeline import IngestConfig
    assert IngestConfig(model="zoo:x", tasks=("ioi",), split="all").split == "all"
    with pytest.raises(ValueError, match="train, test or all"):
        IngestConfig(model="zoo:x", tasks=("ioi",), split="dev")  # type: ignore[arg-type]


def test_jsonl_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"clean": "a"}\n')
    with pytest.raises(TaskError, match="bad.jsonl:1"):
        get_task(f"jsonl:{bad}")
    with pytest.raises(TaskError, match="does not exist"):
        get_task(f"jsonl:{tmp_path / 'missing.jsonl'}")


def test_python_function_task():
    @register_task("parity_test")
    def parity(rng: random.Random, n: int = 3) -> Example:
        bits = [rng.choice("01") for _ in range(n)]
        flipped = ["1" if bits[0] == "0" else "0", *bits[1:]]
        odd = lambda b: b.count("1") % 2 == 1  # noqa: E731
        return Example(" ".join(bits), " ".join(flipped), " odd" if odd(bits) else " even",
                       " odd" if odd(flipped) else " even")

    t = get_task("parity_test:n=12")
    exs = t.examples(100, seed=0, split="test")
    assert all(len(e.clean.split()) == 12 and e.task == "parity_test" for e in exs)
    assert all(split_of(e.clean) == "test" for e in exs)


def test_python_task_by_module_path():
    t = get_task("py:tests.ingest.user_task:copy_first")
    ex = t.examples(1, seed=0)[0]
    assert ex.answer.strip() == ex.clean.split()[0]


def test_bad_specs():
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(TaskError, match="key=value"):
        get_task("ioi:oops")
    with pytest.raises(TaskError, match="bad parameters"):
        get_task("ioi:foo=1")
    with pytest.raises(TaskError, match="py:MODULE:FUNCTION"):
        get_task("py:onlymodule")
    with pytest.raises(TaskError, match="answer and counterfactual answer"):
        Example("a", "b", " x", " x")
