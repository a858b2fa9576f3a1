"""A real Ray cluster of several nodes on this machine (127.0.0.1 only), for the tests of ``batch`` and ``serve --ray``.

Use it from a test module (the fixture is module-scoped: the cluster starts once
per module, ~20 s on a loaded machine)::

    from tests.ray_cluster import ray_cluster  # noqa: F401  (the fixture)

    def test_x(ray_cluster):
        address = ray_cluster.address  # HOST:PORT to pass to ray.init / --ray

or :func:`local_cluster` directly. Tests skip, saying why, when Ray is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before ray is imported anywhere: loopback only

NODES = 2
CPUS_PER_NODE = 1


def require_ray():
    """The ray module, or a skip naming the extra to install."""
    return pytest.importorskip("ray", reason="Ray is not installed (pip install 'maskwatch[cluster]')")


@contextmanager
def local_cluster(nodes: int = NODES, cpus_per_node: int = CPUS_PER_NODE, resources: dict | None = None) -> Iterator:
    """``nodes`` Ray nodes on 127.0.0.1 (the head first), each ``cpus_per_node`` CPUs and ``resources``; shut down after.

    The test process does not join it: a command (``maskwatch batch --ray ADDRESS``)
    or ``ray.init(address=cluster.address)`` does.
    """
    require_ray()
    from ray.cluster_utils import Cluster

    node_args = {"num_cpus": cpus_per_node, "resources": dict(resources or {}), "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator:
    """A 2-node local cluster (1 CPU each), started once for the module."""
    with local_cluster() as cluster:
        yield cluster
