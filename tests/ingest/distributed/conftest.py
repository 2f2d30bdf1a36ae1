"""One local Ray cluster for the session, bound to loopback and kept small (2 CPUs, a 200 MB
object store, no dashboard), shared by the tests here and by the drivers they start."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.ingest.replacement.conftest import saved, tiny_model  # noqa: F401 - fixtures used here too


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address (127.0.0.1:PORT) of the session's Ray cluster; the test process is its first driver.
    Loopback only: see ingest/distributed/cluster.py for RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    (inherited by the drivers the tests start)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]'; make test does)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ctx = ray.init(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False,
                   _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1", configure_logging=False,
                   log_to_driver=False)
    assert ctx.address_info["node_ip_address"] == "127.0.0.1", "ray was imported before the loopback switch was set"
    yield ctx.address_info["gcs_address"]
    ray.shutdown()
