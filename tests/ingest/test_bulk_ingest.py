"""``ingest --bulk``: the ingest's rows as shards, loaded by Neo4j's importer into a new store,
give the store the online ingest of the same run gives (checksums of every node and
relationship, graphdb/bulk/checksum.py). Two tasks and a module graph, so structural links
(features to heads, the run to its tasks) are written more than once, as MERGE merges them."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphdb.bulk.checksum import node_entities, relationship_entities, store_checksum
from graphdb.bulk.load import FRESH_SERVER_RETRY, load_shards
from graphdb.connection import connect
from graphdb.embedded import EmbeddedServer, free_port
from ingest.attribution.config import AttributionConfig
from ingest.bulk import bulk_ingest
from ingest.pipeline import IngestConfig, ingest
from mechgraph.errors import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.neo4j]
D = 16


def _created_at(db) -> list:  # noqa: ANN001
    """The :Run's creation time (the one property two runs of one configuration differ in), removed."""
    return [r["t"] for r in db.write("MATCH (r:Run) WITH r, r.created_at AS t REMOVE r.created_at RETURN t")]


def test_bulk_ingest_loads_into_the_store_the_online_ingest_writes(db, tiny_checkpoint, tmp_path: Path) -> None:
    model_dir = tiny_checkpoint(D, 32, 3)
    hooks = [f"blocks.{layer}.hook_{m}" for layer in range(2) for m in ("attn_out", "mlp_out")]
    config = IngestConfig(model=f"path:{model_dir}", tasks=("ioi", "sva"), dicts=tuple(f"identity:{D}/{h}" for h in hooks),
                          examples=4, batch_size=2, attribution=AttributionConfig(steps=2, threshold=1e-3))
    online = ingest(db, config, state_root=tmp_path / "online-runs")
    assert len(_created_at(db)) == 1
    want_nodes, want_rels, want = node_entities(db), relationship_entities(db), store_checksum(db)
    assert want.relationships > 100 and db.read("MATCH ()-[r:IN_HEAD]->() RETURN count(r) AS n")[0]["n"] > 0

    shards = tmp_path / "shards"
    result, manifest = bulk_ingest(config, shards, state_root=tmp_path / "bulk-runs")
    assert result.run == online.run and [t.edges for t in result.tasks] == [t.edges for t in online.tasks]
    assert (manifest["counts"]["nodes"], manifest["counts"]["relationships"]) == (want.nodes, want.relationships)
    with pytest.raises(ConfigError, match="not empty"):   # refused before any compute
        bulk_ingest(config, shards, state_root=tmp_path / "bulk-runs")

    server = EmbeddedServer(tmp_path / "data", heap="512m", page_cache="64m")
    try:
        load_shards(shards, tmp_path / "data", port=free_port(), server=server, timeout=600, heap="512m",
                    memory="256m")
        with connect(server.settings(), retry=FRESH_SERVER_RETRY) as bulk:
            assert len(_created_at(bulk)) == 1
            assert node_entities(bulk) == want_nodes
            assert relationship_entities(bulk) == want_rels
            assert store_checksum(bulk) == want
    finally:
        server.stop()
