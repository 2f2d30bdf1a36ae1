"""Session-wide fixtures: one real Neo4j server for the whole test session.

By default the suite starts the embedded server (the same launcher `mechgraph db start`
uses) in a temporary data directory on a free loopback port, and stops it at the end. To run
against another server instead set MECHGRAPH_TEST_NEO4J_URI / _USER / _PASSWORD: a separate
variable from NEO4J_URI on purpose, because the tests wipe the database they use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from graphdb.connection import Database, connect
from graphdb.embedded import EmbeddedServer, free_port
from graphdb.settings import Neo4jSettings


@pytest.fixture(scope="session")
def test_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer | None]:
    """The embedded server of this session, or None when MECHGRAPH_TEST_NEO4J_URI is set."""
    if os.environ.get("MECHGRAPH_TEST_NEO4J_URI"):
        yield None
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("mechgraph-data"), heap="1g", page_cache="128m")
    server.start(port=free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_settings(test_server: EmbeddedServer | None) -> Neo4jSettings:
    if test_server is not None:
        return test_server.settings()
    return Neo4jSettings(uri=os.environ["MECHGRAPH_TEST_NEO4J_URI"],
                         user=os.environ.get("MECHGRAPH_TEST_NEO4J_USER", "neo4j"),
                         password=os.environ["MECHGRAPH_TEST_NEO4J_PASSWORD"])


@pytest.fixture(scope="session")
def embedded_server(test_server: EmbeddedServer | None) -> EmbeddedServer:
    if test_server is None:
        pytest.skip("the suite runs against MECHGRAPH_TEST_NEO4J_URI, not an embedded server")
    return test_server


@pytest.fixture()
def db(neo4j_settings: Neo4jSettings) -> Iterator[Database]:
    """A connection to an empty database (constraints and indexes may remain)."""
    with connect(neo4j_settings) as database:
        database.write("MATCH (n) DETACH DELETE n")
        yield database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"db", "neo4j_settings", "test_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.neo4j)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a factory
    """``make(d_model, d_mlp, seed) -> Path``: a 2-layer random-weight toy model saved as a
    checkpoint directory (``path:DIR``) with the zoo's word-level tokenizer inside it."""
    from ingest.zoo.store import save_checkpoint
    from ingest.zoo.tokenizer import build_tokenizer
    from ingest.zoo.train import ToyModelConfig, build_model

    def make(d_model: int, d_mlp: int, seed: int):  # noqa: ANN202 - Path
        root = tmp_path_factory.mktemp("tiny")
        tok = build_tokenizer(root / "ckpt" / "tokenizer")
        cfg = ToyModelConfig(name="tiny", n_layers=2, d_model=d_model, n_heads=2, d_mlp=d_mlp, steps=100, seed=seed)
        save_checkpoint(build_model(cfg, tok), root / "ckpt")
        return root / "ckpt"

    return make


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a factory
    """``make(arch, seed=0, tokenizer="hf") -> Path``: a tiny randomly initialised transformers
    model (``"llama"``: RMSNorm, rotary, grouped-query attention; ``"gpt2"``: LayerNorm, learned
    positions) saved with ``save_pretrained`` into a Hugging Face checkpoint directory, with the
    zoo's word-level vocabulary as its tokenizer: ``"hf"`` saves tokenizer files beside the
    weights, ``"vocab"`` writes a plain ``vocab.txt`` instead."""
    import torch

    from ingest.zoo.tokenizer import build_tokenizer

    def make(arch: str, seed: int = 0, tokenizer: str = "hf", n_layers: int = 2):  # noqa: ANN202 - Path
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        root = tmp_path_factory.mktemp(f"hf-{arch}")
        tok = build_tokenizer(root / "tokenizer")
        ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(seed)
        if arch == "llama":
            model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=n_layers, num_attention_heads=4,
                                                 num_key_value_heads=2, max_position_embeddings=64, **ids))
        else:
            model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=n_layers, n_head=4,
                                               n_positions=64, **ids))
        out = root / f"tiny-{arch}"
        model.save_pretrained(out)
        if tokenizer == "hf":
            tok.save_pretrained(str(out))
        else:
            (out / "vocab.txt").write_text("\n".join(tok.convert_ids_to_tokens(list(range(len(tok))))) + "\n")
        return out

    return make
