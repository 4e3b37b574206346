"""Where the log agent and the Docker API proxy it reads through run.

An agent reads the Docker API of its own host only, so besides the pair on the stack's own host
(monitoring-net), a stack with nodes on hosts of their own (storage.hosts) runs one pair on every node
host: created through that host's provider, on its network at the same fixed addresses, named apart
(`alloy-minio1`, `docker-api-proxy-minio1`) because container names are unique in the stack. Those
agents push through the edge proxy's gateway listener (log_agent.THROUGH_GATEWAY).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import Attachment
from infra.hosts import node_host_entries
from infra.networks import host_address
from infra.storage import node_name
from infra.tier import Tier


def placed_name(service: str, node: int | None) -> str:
    """`service`'s name in the stack: as it is on the stack's own host, suffixed with the node on a node host."""
    return service if node is None else f"{service}-{node_name(node)}"


@dataclass(frozen=True)
class AgentHost:
    """One Docker host a log agent runs on: the stack's own (`node` None) or one node's."""

    node: int | None
    network: docker.Network
    subnet: str
    provider: docker.Provider | None = None
    """None: the stack's own host (the default provider)."""
    hosts: Mapping[str, str] = field(default_factory=dict)
    """`hosts` entries its containers get: on a node host, the other nodes' and the gateway's (node_host_entries)."""
    socket_gid: int | None = None
    """The group owning the Docker socket there (monitoring.dockerSocketGid, or the node host's own)."""

    def name(self, service: str) -> str:
        return placed_name(service, self.node)

    def address(self, service: str) -> str:
        return host_address(self.subnet, service)

    def attachment(self, service: str) -> Attachment:
        """`service` at its fixed address on this host's network, reachable by its plain name there."""
        return Attachment(self.network, aliases=[service], ipv4_address=self.address(service))


def agent_hosts(tier: Tier) -> list[AgentHost]:
    """The stack's own host first, then every node host (none on a one-host stack)."""
    monitoring = tier.stack.segments.monitoring
    node_hosts = tier.stack.node_hosts.by_node.values() if tier.stack.node_hosts else ()
    return [
        AgentHost(None, monitoring.network, monitoring.subnet, socket_gid=socket_gid(tier.config, None)),
        *(
            AgentHost(
                host.node, host.network, host.subnet, host.provider, node_host_entries(tier.config, host.node),
                socket_gid=socket_gid(tier.config, host.node),
            )
            for host in node_hosts
        ),
    ]


def socket_gid(config: StackConfig, node: int | None) -> int | None:
    """The group owning the Docker socket on the stack's own host (`node` None) or on `node`'s host."""
    own = config.storage.node_host(node) if node is not None else None
    if own is not None and own.docker_socket_gid is not None:
        return own.docker_socket_gid
    return config.monitoring.docker_socket_gid
