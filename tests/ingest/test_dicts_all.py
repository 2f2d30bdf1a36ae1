"""``--dicts-all``: one dictionary kind on sites of every layer, expanded, fitted and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.attribution.config import AttributionConfig
from ingest.dictionaries.everywhere import parse_dicts_all
from ingest.errors import SpecError
from ingest.pipeline import IngestConfig, ingest, resolve

D = 8


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(D, 16, 21)


def test_parsing_sources_and_sites():
    assert parse_dicts_all("identity@resid_post").sites == ("resid_post",)
    assert parse_dicts_all("svd@attn_out,hook_mlp_out").sites == ("attn_out", "mlp_out")
    assert parse_dicts_all("identity").sites == ("resid_post",)
    z = parse_dicts_all("zoo:mt-small@final/{hook}@mlp_out")
    assert (z.source, z.sites) == ("zoo:mt-small@final/{hook}", ("mlp_out",))
    for bad in ("identity@resid", "path:saes/blocks.0.hook_resid_post", "release:x/y"):
        with pytest.raises(SpecError):
            parse_dicts_all(bad)
    with pytest.raises(ValueError):  # checked when the config is built, before anything loads
        IngestConfig(model="path:x", tasks=("ioi",), dicts_all=("svd@everything",))


def test_identity_and_placeholders_expand_to_every_layer(model_dir, tmp_path):
    resolved = resolve(IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=2,
                                    dicts_all=("identity@resid_post",)))
    assert resolved.dict_specs == [f"identity:{D}/blocks.0.hook_resid_post", f"identity:{D}/blocks.1.hook_resid_post"]
    from ingest.dictionaries.svd import SVDDictionary
    import torch
    for L in range(2):  # a user's directory per hook, named by the placeholder
        SVDDictionary.fit(torch.randn(50, D), hook_name=f"blocks.{L}.hook_mlp_out").save(tmp_path / f"blocks.{L}.hook_mlp_out")
    resolved = resolve(IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=2,
                                    dicts_all=(f"path:{tmp_path}/{{hook}}@mlp_out", "identity@attn_out")))
    assert [s.hook for s in resolved.slots[1:]] == ["blocks.0.hook_attn_out", "blocks.0.hook_mlp_out",
                                                    "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out"]


def test_an_svd_module_graph_is_measured_and_evaluated_with_the_same_bases(db, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MECHGRAPH_CACHE", str(tmp_path / "cache"))
    from analysis.evaluate.sweep import EvaluateConfig, evaluate

    graph = ingest(db, IngestConfig(model=f"path:{model_dir}", tasks=("ioi",), examples=4, batch_size=4,
                                    dicts_all=("svd@attn_out,mlp_out",),
                                    attribution=AttributionConfig(steps=1, threshold=0.0)),
                   state_root=tmp_path / "state")
    specs = graph.dictionaries
    assert len(specs) == 4 and all(s.startswith(f"path:{tmp_path / 'cache'}/dictionaries/svd-") for s in specs)
    assert graph.tasks[0].head_edges > 0  # attention dictionaries: the head-level graph too
    result = evaluate(db, EvaluateConfig(task="ioi", run=graph.run, examples=4, sweep=1), out_dir=tmp_path / "out")
    for p in result.points:  # the complete graph in the recorded bases is the model
        assert p.faithfulness == pytest.approx(1.0, abs=1e-4)
