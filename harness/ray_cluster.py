"""A real Ray cluster of several nodes on this machine, on the loopback address only, with token
authentication: what the cluster tests and benchmark run against (ray.cluster_utils).

Left to itself Ray gives a node the machine's network address even when told 127.0.0.1
(resolve_ip_for_localhost). RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is Ray's own switch to keep a
one-machine cluster on loopback, as it does on macOS; every process of the cluster and every
driver (the studio's worker) must see it, so it is set here before ray is imported and the
worker processes inherit it.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

LOOPBACK = "127.0.0.1"
ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass
class LocalCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    nodes: list[Any] = field(default_factory=list)  # the nodes added after the head

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, cpus: int = 1, **resources: float) -> Any:
        node = self.cluster.add_node(node_ip_address=LOOPBACK, num_cpus=cpus, resources=resources,
                                     include_dashboard=False)
        self.nodes.append(node)
        return node

    def remove_node(self, node: Any) -> None:
        """The node's processes killed outright, as when its machine goes away."""
        _kill_node(self.cluster, node)
        self.nodes.remove(node)

    def shutdown(self) -> None:
        """Every node killed, the head last: the whole cluster gone (again: nothing happens)."""
        for node in list(self.nodes):
            self.remove_node(node)
        if self.cluster.head_node is not None:
            _kill_node(self.cluster, self.cluster.head_node)


def _kill_node(cluster: Any, node: Any) -> None:
    """remove_node, and the agents its raylet started: with the cluster's GCS gone they wait for
    it forever instead of exiting with their raylet."""
    import psutil

    raylets = [info.process.pid for info in node.all_processes.get("raylet", [])]
    agents = [child for pid in raylets if psutil.pid_exists(pid) for child in psutil.Process(pid).children(True)]
    cluster.remove_node(node, allow_graceful=False)
    for agent in agents:
        try:
            agent.kill()
        except psutil.NoSuchProcess:
            pass


def prepare_environment() -> dict[str, str]:
    """Sets the variables every process of a loopback cluster needs (a fresh token unless one is
    set); returns them."""
    os.environ.update(ENV)
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
    return {k: os.environ[k] for k in (*ENV, "RAY_AUTH_TOKEN")}


@contextmanager
def local_cluster(nodes: int = 2, cpus: int = 1, **head_resources: float) -> Iterator[LocalCluster]:
    """A head and `nodes - 1` more nodes of `cpus` CPUs each, all on 127.0.0.1; stopped after."""
    prepare_environment()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, shutdown_at_exit=True, head_node_args={
        "node_ip_address": LOOPBACK, "num_cpus": cpus, "include_dashboard": False,
        "resources": head_resources})
    local = LocalCluster(cluster)
    try:
        for _ in range(nodes - 1):
            local.add_node(cpus)
        yield local
    finally:
        local.shutdown()
