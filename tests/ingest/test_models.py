"""``path:DIR`` models: Hugging Face checkpoints converted offline, and the tokenizers a user
can bring (HF files, a SentencePiece model, a plain vocabulary list)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ingest.errors import ModelUnavailableError
from ingest.zoo.specs import load_model


def _hf_logits(directory: Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(tokens).logits


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_hugging_face_checkpoint_converts_to_the_same_logits(hf_checkpoint, arch):
    directory = hf_checkpoint(arch, seed=1)
    model = load_model(f"path:{directory}")
    if arch == "llama":  # the tiny config has grouped-query attention and rotary positions
        assert model.cfg.n_key_value_heads == 2 and model.cfg.positional_embedding_type == "rotary"
    tokens = torch.randint(3, model.cfg.d_vocab, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens)
    assert (ours - _hf_logits(directory, tokens)).abs().max() < 1e-4
    # The tokenizer came from the directory: the ids are the word-level vocabulary's.
    assert model.tokenizer.encode(" Mary", add_special_tokens=False) == [model.tokenizer.convert_tokens_to_ids("Mary")]


def test_a_directory_named_like_an_architecture_is_read_by_its_config(hf_checkpoint, tmp_path):
    # TransformerLens picks a Llama branch from the word "llama" in a name; a GPT-2 checkpoint
    # in a directory called my-llama must still load as GPT-2.
    directory = hf_checkpoint("gpt2", seed=2)
    renamed = tmp_path / "my-llama"
    renamed.symlink_to(directory, target_is_directory=True)
    model = load_model(f"path:{renamed}")
    assert model.cfg.original_architecture == "GPT2LMHeadModel"


def test_a_vocabulary_list_gives_ids_equal_to_its_lines(hf_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    directory = hf_checkpoint("gpt2", seed=3, tokenizer="vocab")
    lines = (directory / "vocab.txt").read_text().split()
    model = load_model(f"path:{directory}")
    tok = model.tokenizer
    assert tok.encode("When Mary and John", add_special_tokens=False) == [lines.index(w) for w in ("When", "Mary", "and", "John")]
    assert (tok.pad_token, tok.bos_token, tok.unk_token) == ("<pad>", "<bos>", "<unk>")
    tokens = torch.tensor([tok.encode("When Mary and John went to the store", add_special_tokens=False)])
    with torch.no_grad():
        assert (model(tokens) - _hf_logits(directory, tokens)).abs().max() < 1e-4


def test_a_sentencepiece_model_tokenizes_as_sentencepiece(hf_checkpoint, monkeypatch, tmp_path):
    spm = pytest.importorskip("sentencepiece", reason="SentencePiece models need the sentencepiece package")
    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    from ingest.models.directory import find_tokenizer
    from ingest.tasks import get_task

    text = "\n".join(ex.clean for ex in get_task("ioi").examples(40, seed=0))
    (tmp_path / "corpus.txt").write_text(text)
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "sp"),
                                   vocab_size=60, model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=3,
                                   minloglevel=2)
    directory = tmp_path / "spm-model"
    directory.mkdir()
    (directory / "tokenizer.model").write_bytes((tmp_path / "sp.model").read_bytes())
    tok, where = find_tokenizer(directory)
    assert "SentencePiece" in where
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    for line in text.splitlines()[:10]:
        assert tok.encode(line, add_special_tokens=False) == processor.encode(line)
    assert (tok.unk_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 1, 3)


def test_a_directory_without_a_model_or_tokenizer_says_what_is_accepted(hf_checkpoint, tmp_path):
    with pytest.raises(ModelUnavailableError, match="tl_config.json nor config.json.*tokenizer"):
        load_model(f"path:{tmp_path}")
    directory = hf_checkpoint("gpt2", seed=4)
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bare / f).symlink_to(directory / f)
    with pytest.raises(ModelUnavailableError, match="no tokenizer.*vocab.txt"):
        load_model(f"path:{bare}")


def test_model_check_scores_a_users_task_on_a_model_without_the_builtin_words(tmp_path, monkeypatch):
    import json

    from transformers import GPT2Config, GPT2LMHeadModel
    from typer.testing import CliRunner

    from analysis.cli import app

    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    words = ["<pad>", "<bos>", "<unk>", "the", "cat", "dog", "sat", "ran", "on", "mat", "big", "small"]
    directory = tmp_path / "pets"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=16)).save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(words) + "\n")
    rows = [{"clean": f"the {a} {b} cat", "counterfactual": f"the {a} {b} dog", "answer": " sat", "cf_answer": " ran"}
            for a in ("big", "small", "cat", "dog", "mat") for b in ("on", "the", "big", "small", "mat", "sat")]
    task = tmp_path / "pets.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    res = runner.invoke(app, ["model", "check", f"path:{directory}"])
    assert res.exit_code == 1 and "no built-in task can be encoded" in res.output
    res = runner.invoke(app, ["model", "check", f"path:{directory}", "--task", f"jsonl:{task}", "-n", "16"])
    assert res.exit_code == 0, res.output
    assert "pets" in res.stdout and "accuracy" in res.stdout and "logit_diff" in res.stdout
