"""The task registry: named generators of (clean, counterfactual, answer, cf answer) examples.

A task is a function ``rng -> Example`` plus a name. The registry turns it into
deterministic, split-disjoint example sets:

- **Determinism.** ``task.examples(n, seed=s, split=x)`` seeds a ``random.Random`` with the
  string ``"<task>|<seed>|<split>"`` (CPython hashes str seeds with SHA-512, stable across
  runs and machines), so the same call always returns the same examples.
- **Disjoint splits.** A clean prompt belongs to the held-out split iff a SHA-256 of it
  falls in the held-out bucket (``HELD_OUT_FRACTION``); a generator's draws that land in
  the other split are rejected. No coordination between generators is needed, so a user's
  function gets the same guarantee, and a train prompt can never appear held out. A user's
  own split wins: an example whose ``split`` is set (a JSONL row's ``"split"`` field) is in
  that split, and ``split="all"`` takes every example regardless.
- **Bounded, no repeats.** A call asks for at most what the task can provide: a JSONL task's
  distinct rows in the split (drawn without replacement), a generated task
  :data:`MAX_GENERATED_EXAMPLES` (drawing is by rejection, and past a few thousand draws a generator mostly repeats prompts). A larger request is refused before
  anything is generated.

Built-in tasks live in :mod:`ingest.tasks.builtin`; users add tasks with
:func:`register_task` (a Python function) or a JSONL file (``jsonl:PATH``), and any task
spec string goes through :func:`get_task`.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest.errors import TaskError

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")
#: What a caller may ask for: one split, or every example (``all``: the user's data is theirs to split).
SplitChoice = Literal["train", "test", "all"]
SPLIT_CHOICES: tuple[SplitChoice, ...] = ("train", "test", "all")
HELD_OUT_FRACTION = 0.2
_MAX_REJECTIONS = 1000
#: The most examples one call may ask of a generated task (per task and split). Generation is
#: rejection sampling (a held-out prompt costs about five draws), so 10,000 take seconds, and a
#: generator's distinct prompts run out well before that for some tasks (greater_than has about
#: 1,900 held-out prompts, ioi about 24,000); the zoo's largest pool is 8,000 training prompts.
MAX_GENERATED_EXAMPLES = 10_000


@dataclass(frozen=True)
class Example:
    """One task instance. Answers carry the leading space a BPE tokenizer expects (" Mary").

    ``counterfactual`` is the patching baseline: same length in tokens as ``clean`` for the
    built-in tasks, with ``cf_answer`` its correct answer, so the logit difference
    ``logit[answer] - logit[cf_answer]`` flips sign between the two.
    """

    clean: str
    counterfactual: str
    answer: str
    cf_answer: str
    task: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: the user's own split (a JSONL row's ``"split"``); ``None``: split by prompt hash.
    split: Split | None = None

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in SPLITS:
            raise TaskError(f"task example split must be train or test, not {self.split!r}")
        for name in ("clean", "counterfactual", "answer", "cf_answer"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise TaskError(f"task example field {name!r} must be a non-empty string")
        if self.answer == self.cf_answer:
            raise TaskError(f"task {self.task!r}: answer and counterfactual answer are both "
                            f"{self.answer!r}; a logit difference needs two different tokens")


def split_of(prompt: str, held_out_fraction: float = HELD_OUT_FRACTION) -> Split:
    """The split a clean prompt belongs to, from a hash of its text (whitespace-normalised)."""
    digest = hashlib.sha256(" ".join(prompt.split()).encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if bucket < held_out_fraction else "train"


def example_split(ex: Example) -> Split:
    """The split an example belongs to: its own ``split`` if set, else :func:`split_of` its prompt."""
    return ex.split if ex.split is not None else split_of(ex.clean)


def in_split(ex: Example, split: SplitChoice) -> bool:
    return split == "all" or example_split(ex) == split


Generator = Callable[[random.Random], Example]


@dataclass(frozen=True)
class Task:
    """A named example generator. ``vocabulary`` lists every word its prompts and answers
    use (built-in tasks declare it so the toy models' word-level tokenizer covers them)."""

    name: str
    generate: Generator | None = None
    description: str = ""
    vocabulary: tuple[str, ...] = ()
    rows: tuple[Example, ...] = ()  # fixed examples (JSONL tasks) instead of a generator
    params: tuple[tuple[str, Any], ...] = ()

    def available(self, split: SplitChoice) -> int:
        """How many examples of ``split`` one call may ask for: a JSONL task's rows in the
        split, a generated task :data:`MAX_GENERATED_EXAMPLES`."""
        if split not in SPLIT_CHOICES:
            raise TaskError(f"split must be one of {', '.join(SPLIT_CHOICES)}, not {split!r}")
        if self.rows:
            return sum(in_split(ex, split) for ex in self.rows)
        return MAX_GENERATED_EXAMPLES

    def _split_source(self) -> str:
        own = sum(ex.split is not None for ex in self.rows)
        if own == len(self.rows):
            return "by the rows' split field"
        return ("by prompt hash; give rows a \"split\" field, or --split all, to choose yourself" if not own
                else f"{own} rows by their split field, the rest by prompt hash")

    def check_count(self, n: int, split: SplitChoice) -> None:
        """Raise :class:`TaskError` unless ``n`` examples of ``split`` can be provided."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TaskError(f"number of examples must be an integer, got {n!r}")
        if n < 0:
            raise TaskError(f"number of examples must be >= 0, got {n}")
        most = self.available(split)
        if self.rows and most == 0:
            raise TaskError(f"task {self.name!r} has no {split} examples "
                            f"({len(self.rows)} rows in all, split {self._split_source()})")
        if n > most:
            where = (f"its file has {most} distinct {split} rows of {len(self.rows)}"
                     + ("" if split == "all" else f" (split {self._split_source()})") if self.rows
                     else f"a generated task gives at most {most:,} per task and split")
            raise TaskError(f"task {self.name!r} cannot provide {n:,} {split} examples: {where}")

    def examples(self, n: int, *, seed: int = 0, split: SplitChoice = "train") -> list[Example]:
        """``n`` examples of ``split``, the same ones for the same (task, seed, split).

        A JSONL task gives ``n`` distinct rows of the split (sampled without replacement).
        Asking for more than :meth:`available` is a :class:`TaskError`, raised before anything
        is generated."""
        self.check_count(n, split)
        rng = random.Random(f"{self.name}|{seed}|{split}")
        if self.rows:
            return rng.sample([ex for ex in self.rows if in_split(ex, split)], n)
        generate = self.generate
        if generate is None:
            raise TaskError(f"task {self.name!r} has neither a generator nor fixed rows")
        out = []
        for _ in range(n):
            for _attempt in range(_MAX_REJECTIONS):
                ex = _draw(self.name, generate, rng)
                if in_split(ex, split):
                    break
            else:
                raise TaskError(f"task {self.name!r} produced no {split} prompt in "
                                f"{_MAX_REJECTIONS} draws; is its prompt space too small?")
            out.append(ex if ex.task == self.name else _with_task(ex, self.name))
        return out


def _draw(name: str, generate: Generator, rng: random.Random) -> Example:
    """One example from a generator (a user's function too): its failures, and anything it
    returns that is not an :class:`Example`, become one :class:`TaskError` sentence."""
    try:
        ex = generate(rng)
    except TaskError:
        raise
    except Exception as e:  # the generator's own error (a parameter value it refuses, a bug): cause chained
        raise TaskError(f"task {name!r} could not generate an example: {type(e).__name__}: {e}") from e
    if not isinstance(ex, Example):
        raise TaskError(f"task {name!r} returned a {type(ex).__name__}, not an Example "
                        "(a task function is fn(rng: random.Random, **params) -> Example)")
    return ex


def _with_task(ex: Example, name: str) -> Example:
    return Example(ex.clean, ex.counterfactual, ex.answer, ex.cf_answer, name, ex.meta, ex.split)


_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str, fn: Callable[..., Example] | None = None, *, description: str = "",
                  vocabulary: Iterable[str] = ()) -> Any:
    """Register ``fn(rng, **params) -> Example`` as task ``name``; usable as a decorator.

    Keyword parameters of ``fn`` become task parameters: ``get_task("name:k=v")``.
    """
    if not name or any(c in name for c in ":,= "):
        raise TaskError(f"task name {name!r} must be non-empty without ':', ',', '=' or spaces")

    def deco(f: Callable[..., Example]) -> Callable[..., Example]:
        vocab = tuple(vocabulary)

        def factory(**params: Any) -> Task:
            inspect.signature(f).bind(None, **params)  # TypeError on unknown parameters, now

            def gen(rng: random.Random) -> Example:
                return f(rng, **params)
            return Task(name=name, generate=gen, description=description or (f.__doc__ or "").strip(),
                        vocabulary=vocab, params=tuple(sorted(params.items())))
        _REGISTRY[name] = factory
        return f

    return deco(fn) if fn is not None else deco


def list_tasks() -> list[str]:
    """Names of registered tasks (built-ins included: ``ingest.tasks`` registers them on import)."""
    return sorted(_REGISTRY)


def get_task(spec: str | Task) -> Task:
    """Resolve a task spec.

    - ``NAME`` or ``NAME:k=v,k=v`` — a registered task with parameters (e.g.
      ``bias_in_bios:variant=anti``); values parse as JSON when they can, else as strings;
    - ``jsonl:PATH`` — rows ``{"clean", "counterfactual", "answer", "cf_answer"}`` (optional
      ``"meta"``, and ``"split"``: ``train`` or ``test``), split by prompt hash like every
      other task unless a row names its split;
    - ``py:MODULE:FUNCTION`` — a function ``rng -> Example`` in an importable module,
      registered under FUNCTION's name.
    """
    if isinstance(spec, Task):
        return spec
    if spec.startswith("jsonl:"):
        return load_jsonl_task(Path(spec[len("jsonl:"):]))
    if spec.startswith("py:"):
        return _load_python_task(spec[len("py:"):])
    name, _, rest = spec.partition(":")
    if name not in _REGISTRY and not rest:
        from ingest.tasks.names import aliased
        if (stored := aliased(name)) is not None:  # a stored task's name: re-read it from its spec
            return get_task(stored)
    if name not in _REGISTRY:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))} "
                        "(or jsonl:PATH, py:MODULE:FUNCTION)")
    params = _parse_params(rest, spec)
    try:
        task = _REGISTRY[name](**params)
    except TypeError as e:
        raise TaskError(f"bad parameters for task {name!r}: {e}") from e
    if params:
        _probe(task, spec)
    return task


def _probe(task: Task, spec: str) -> None:
    """Draw one example now, so that a parameter value the generator refuses (or a function
    that is not a task) fails when the spec is read, before any model is loaded."""
    if task.generate is not None:
        try:
            _draw(task.name, task.generate, random.Random(f"{task.name}|probe"))
        except TaskError as e:
            raise TaskError(f"task spec {spec!r}: {e}") from e


def _parse_params(text: str, spec: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise TaskError(f"task spec {spec!r}: parameters are written key=value,key=value")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def load_jsonl_task(path: Path, name: str | None = None) -> Task:
    """A task from a JSONL file of examples; the task name defaults to the file stem."""
    try:
        is_file = path.is_file()
    except OSError:  # a name too long for the file system
        is_file = False
    if not is_file:
        raise TaskError(f"task file {str(path)[:200]} does not exist")
    task_name = name or path.stem
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TaskError(f"cannot read task file {path}: {type(e).__name__}: {e}") from e
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            meta = obj.get("meta")
            if meta is not None and not isinstance(meta, dict):
                raise TaskError(f"meta must be a JSON object, got a {type(meta).__name__}")
            rows.append(Example(clean=obj["clean"], counterfactual=obj["counterfactual"],
                                answer=obj["answer"], cf_answer=obj["cf_answer"],
                                task=task_name, meta=dict(meta or {}), split=obj.get("split")))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise TaskError(f"{path}:{lineno}: expected a JSON object with clean, "
                            f"counterfactual, answer, cf_answer ({type(e).__name__}: {e})") from e
        except TaskError as e:  # a field of the right name but the wrong kind
            raise TaskError(f"{path}:{lineno}: {e}") from e
    if not rows:
        raise TaskError(f"task file {path} has no examples")
    return Task(name=task_name, rows=tuple(rows), description=f"examples from {path}")


def _load_python_task(target: str) -> Task:
    module_name, _, fn_name = target.partition(":")
    if not module_name or not fn_name:
        raise TaskError(f"python task spec must be py:MODULE:FUNCTION, got py:{target}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TaskError(f"cannot import task module {module_name!r}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise TaskError(f"module {module_name!r} has no function {fn_name!r}")
    spec = f"py:{target}"
    try:
        inspect.signature(fn).bind(None)
    except (TypeError, ValueError) as e:  # ValueError: a builtin without a signature
        raise TaskError(f"{spec}: {module_name}.{fn_name} does not have a task's signature "
                        f"fn(rng: random.Random, **params) -> Example ({e})") from e
    registered_here = fn_name not in _REGISTRY
    if registered_here:
        register_task(fn_name, fn)
    task = _REGISTRY[fn_name]()
    try:
        _probe(task, spec)
    except TaskError:
        if registered_here:  # a function that is not a task does not stay registered
            del _REGISTRY[fn_name]
        raise
    return task
