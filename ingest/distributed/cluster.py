"""Joining (or starting) the Ray cluster, and the options every unit runs with.

``address`` is a running cluster's ``HOST:PORT`` (``ray start --head`` prints it) or ``auto``;
``local`` (the default of a bare ``--ray``) starts a private single-node cluster for this
process, bound to loopback: its node address is 127.0.0.1 and every server of it (GCS, raylet,
object manager, workers, runtime-env agent) listens on 127.0.0.1 only; it has no dashboard; its
size comes from ``MECHGRAPH_RAY_CPUS`` (default: every core) and
``MECHGRAPH_RAY_OBJECT_STORE_MB`` (default 200; units return small partial results, not
activations).

Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the machine's routable address on Linux
(``services.resolve_ip_for_localhost``) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, its
switch for single-machine clusters; with it the node address stays 127.0.0.1 and Ray's gRPC
servers bind there instead of on every interface. It is read when ray is imported, so it is
set before the import, for the local cluster only (a multi-node cluster needs routable addresses).

``MECHGRAPH_RAY_UNIT_CPUS`` (default 1): CPU cores each unit reserves on a cluster without GPUs
(Ray sets the worker's OMP_NUM_THREADS to it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from mechgraph.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL = "local"
#: A worker that dies (killed, out of memory, its node lost) is restarted this many times per unit.
MAX_RETRIES = 3


@dataclass(frozen=True)
class Cluster:
    """The cluster units run on: whether they get a GPU each, and the device they compute on."""

    address: str
    gpus: bool

    @property
    def device(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES to the unit's own GPU, so it is always cuda:0 there.
        return "cuda" if self.gpus else "cpu"

    def options(self) -> dict[str, Any]:
        """``.options(...)`` of every unit: one GPU where the cluster has GPUs, else one CPU;
        retried when its worker dies, and on exceptions a retry can cure (out of memory, I/O)."""
        import torch
        cpus = 1 if self.gpus else int(os.environ.get("MECHGRAPH_RAY_UNIT_CPUS", "1"))
        return {"num_gpus": 1 if self.gpus else 0, "num_cpus": cpus, "max_retries": MAX_RETRIES,
                "retry_exceptions": [torch.OutOfMemoryError, MemoryError, OSError]}


def check_address(address: str) -> str:
    """``local``, ``auto`` or ``HOST:PORT``; a ValueError in one sentence otherwise."""
    address = address.strip()
    if address in (LOCAL, "auto") or address.startswith("ray://"):
        return address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray takes a cluster address HOST:PORT (the head node's, e.g. 10.0.0.1:6379), auto, "
                         f"or local for a private cluster on this machine; got {address!r}")
    return address


def connect(address: str = LOCAL) -> Cluster:
    """Join the cluster at ``address`` (or start the local one) once per process."""
    if address == LOCAL:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only (module docstring)
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'mechgraph[ray]'") from None
    if not ray.is_initialized():
        common: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
        if address == LOCAL:
            cpus = int(os.environ.get("MECHGRAPH_RAY_CPUS", "0")) or os.cpu_count() or 1
            store = int(os.environ.get("MECHGRAPH_RAY_OBJECT_STORE_MB", "200")) * 1024 * 1024
            ray.init(num_cpus=cpus, object_store_memory=store, _node_ip_address="127.0.0.1",
                     dashboard_host="127.0.0.1", **common)
        else:
            try:
                ray.init(address=address, **common)
            except ConnectionError as e:
                raise ConfigError(f"cannot join the Ray cluster at {address}: {e}") from None
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    log.info("Ray cluster %s: %s", address, ray.cluster_resources())
    return Cluster(address=address, gpus=gpus)
