"""The small TopK transcoder trainer: it learns (explained variance well above 0), and what it
saves is a ``path:DIR`` set the replacement model traces exactly."""

from __future__ import annotations

import pytest
import torch

from ingest.dictionaries.transcoder_set import load_transcoders
from ingest.replacement.attribute import trace_prompt
from ingest.replacement.config import TraceConfig
from ingest.zoo.transcoders import TranscoderTrainConfig, train_transcoder_set
from tests.ingest.replacement.conftest import PROMPT


@pytest.mark.slow
def test_trained_topk_transcoders_learn_and_load(tiny_model, tmp_path) -> None:
    from ingest.tasks import get_task
    from ingest.tasks.encode import encode_examples
    from ingest.zoo.saes import token_mask

    batch = encode_examples(tiny_model.tokenizer, get_task("ioi").examples(64, seed=0, split="train"))
    mask = token_mask(batch.tokens, [batch.pad_id, tiny_model.tokenizer.bos_token_id])
    evs = train_transcoder_set(tiny_model, batch.tokens, mask, tmp_path / "tc",
                               TranscoderTrainConfig(k=6, steps=150, skip=True))
    assert all(ev > 0.5 for ev in evs.values()), evs
    tcs = load_transcoders(f"path:{tmp_path / 'tc'}")
    assert tcs.kind == "plt:transcoder/topk_transcoder_skip" and tcs.has_skip
    g = trace_prompt(tiny_model, tcs, tiny_model.to_tokens(PROMPT)[0], TraceConfig())
    rows = torch.cat([torch.arange(g.n_features), torch.arange(g.target_start, g.n_nodes)])
    assert torch.allclose(g.adjacency[rows].sum(1) + g.fixed[rows], g.value[rows], rtol=1e-4, atol=1e-5)
