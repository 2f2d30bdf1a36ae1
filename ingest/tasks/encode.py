"""Examples -> token tensors, and the two task metrics (accuracy, logit difference).

Works with any Hugging Face tokenizer (the toy word-level one, SmolLM2's BPE): prompts are
right-padded, so with causal attention the logits at each prompt's last token are exactly
those of the unpadded prompt, and ``last`` indexes them. (Bidirectional attention would read
the padding: the attribution engine runs such a model's batch as :meth:`TaskBatch.unpadded`
groups.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.errors import TaskError
from ingest.tasks.registry import Example

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class TaskBatch:
    """Tokenized examples. Shapes: ``tokens``/``cf_tokens`` [batch, pos] (right-padded with
    ``pad_id``); ``last``/``cf_last`` [batch] index of each prompt's final token;
    ``answer``/``cf_answer`` [batch] token ids; ``tasks`` the task name per row."""

    tokens: Tensor
    cf_tokens: Tensor
    last: Tensor
    cf_last: Tensor
    answer: Tensor
    cf_answer: Tensor
    tasks: tuple[str, ...]
    pad_id: int

    def to(self, device: Any) -> TaskBatch:
        return TaskBatch(self.tokens.to(device), self.cf_tokens.to(device), self.last.to(device),
                         self.cf_last.to(device), self.answer.to(device),
                         self.cf_answer.to(device), self.tasks, self.pad_id)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, rows: slice) -> TaskBatch:
        return TaskBatch(self.tokens[rows], self.cf_tokens[rows], self.last[rows], self.cf_last[rows],
                         self.answer[rows], self.cf_answer[rows], self.tasks[rows], self.pad_id)

    def unpadded(self) -> list[tuple[Tensor, TaskBatch]]:
        """The rows grouped by (clean, counterfactual) length, each group cut to its own width:
        ``[(row indices, sub-batch)]`` with no padding left. A model whose attention is not
        causal attends to right-padding too, so its padded batch is run as these groups."""
        import torch

        key = (self.last * (self.tokens.shape[1] + 1) + self.cf_last).cpu()
        groups = []
        for k in torch.unique(key):
            idx = (key == k).nonzero(as_tuple=True)[0]
            width = int(max(self.last[idx[0]], self.cf_last[idx[0]])) + 1
            i = idx.to(self.tokens.device)
            groups.append((idx, TaskBatch(self.tokens[i, :width], self.cf_tokens[i, :width], self.last[i],
                                          self.cf_last[i], self.answer[i], self.cf_answer[i],
                                          tuple(self.tasks[j] for j in idx.tolist()), self.pad_id)))
        return groups


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def answer_id(tokenizer: Any, answer: str, task: str = "") -> int:
    """The single token id of an answer string; a TaskError if it is not one known token."""
    ids = _ids(tokenizer, answer)
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(ids) != 1 or (unk is not None and ids[0] == unk):
        raise TaskError(f"task {task!r}: answer {answer!r} is not a single known token for this "
                        f"tokenizer (got ids {ids}); logit differences need one-token answers")
    return ids[0]


def _answer_ids(tokenizer: Any, examples: Sequence[Example]) -> dict[tuple[str, str], int]:
    keys = {(ex.task, a) for ex in examples for a in (ex.answer, ex.cf_answer)}
    return {(task, a): answer_id(tokenizer, a, task) for task, a in keys}


def encode_examples(tokenizer: Any, examples: Sequence[Example], *, prepend_bos: bool = True,
                    require_aligned: bool = True, n_ctx: int | None = None) -> TaskBatch:
    """Tokenize examples. ``require_aligned``: clean and counterfactual prompts must have the
    same length, so per-position patching and baselines line up. ``n_ctx``: the model's
    context length; a longer prompt (BOS included) is a :class:`TaskError`, not a shape error
    deep inside the forward pass."""
    import torch

    if not examples:
        raise TaskError("no examples to encode")
    bos = getattr(tokenizer, "bos_token_id", None) if prepend_bos else None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    unk = getattr(tokenizer, "unk_token_id", None)
    rows, cf_rows = [], []
    clean_ids = tokenizer([ex.clean for ex in examples], add_special_tokens=False)["input_ids"]
    cf_ids = tokenizer([ex.counterfactual for ex in examples], add_special_tokens=False)["input_ids"]
    answers = _answer_ids(tokenizer, examples)
    for ex, clean, cf in zip(examples, clean_ids, cf_ids, strict=True):
        if unk is not None and (unk in clean or unk in cf):
            raise TaskError(f"task {ex.task!r}: prompt {ex.clean!r} has words outside this "
                            "tokenizer's vocabulary")
        if require_aligned and len(clean) != len(cf):
            raise TaskError(f"task {ex.task!r}: clean and counterfactual prompts tokenize to "
                            f"{len(clean)} and {len(cf)} tokens; they must align position by "
                            f"position ({ex.clean!r} vs {ex.counterfactual!r})")
        prefix = [bos] if bos is not None else []
        longest = len(prefix) + max(len(clean), len(cf))
        if n_ctx is not None and longest > n_ctx:
            shown = ex.clean if len(ex.clean) <= 60 else ex.clean[:57] + "..."
            raise TaskError(f"task {ex.task!r}: prompt {shown!r} is {longest} tokens"
                            f"{' with BOS' if prefix else ''}, longer than the model's context of {n_ctx} tokens")
        rows.append(prefix + clean)
        cf_rows.append(prefix + cf)
    width = max(max(map(len, rows)), max(map(len, cf_rows)))

    def pad_to(seqs: list[list[int]]) -> Tensor:
        return torch.tensor([s + [pad] * (width - len(s)) for s in seqs], dtype=torch.long)

    return TaskBatch(
        tokens=pad_to(rows), cf_tokens=pad_to(cf_rows),
        last=torch.tensor([len(r) - 1 for r in rows]), cf_last=torch.tensor([len(r) - 1 for r in cf_rows]),
        answer=torch.tensor([answers[ex.task, ex.answer] for ex in examples]),
        cf_answer=torch.tensor([answers[ex.task, ex.cf_answer] for ex in examples]),
        tasks=tuple(ex.task for ex in examples), pad_id=pad)


def final_logits(logits: Tensor, last: Tensor) -> Tensor:
    """[batch, pos, d_vocab] -> [batch, d_vocab] at each prompt's last token."""
    return logits[range(len(last)), last]


@dataclass(frozen=True)
class TaskScores:
    """Per-example outcomes: ``correct`` [batch] bool (argmax is the answer) and
    ``logit_diff`` [batch] = logit[answer] - logit[cf_answer] on the clean prompt."""

    correct: Tensor
    logit_diff: Tensor


def score(logits_last: Tensor, batch: TaskBatch) -> TaskScores:
    rows = range(len(batch))
    return TaskScores(correct=logits_last.argmax(-1) == batch.answer,
                      logit_diff=logits_last[rows, batch.answer] - logits_last[rows, batch.cf_answer])


def evaluate(forward: Callable[[Tensor], Tensor], batch: TaskBatch, *,
             batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Accuracy and mean logit difference per task, from ``forward(tokens) -> logits``."""
    import torch

    correct, diffs = [], []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            part = batch[start:start + batch_size]
            s = score(final_logits(forward(part.tokens), part.last), part)
            correct.append(s.correct.float().cpu())
            diffs.append(s.logit_diff.float().cpu())
    c, d = torch.cat(correct), torch.cat(diffs)
    out: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(batch.tasks):
        mask = torch.tensor([t == task for t in batch.tasks])
        out[task] = {"accuracy": float(c[mask].mean()), "logit_diff": float(d[mask].mean()),
                     "n": int(mask.sum())}
    return out
