"""The stack's network segments and the fixed address of every proxied service on them.

Open-source nginx before 1.27.3 resolves upstream names only when it loads its configuration,
so a recreated container must come back at the same address: every service that another
service connects to by address gets a fixed host number here, in one table.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import STACK_LABEL, Naming

SEGMENTS = ("storage", "monitoring", "database", "edge")

# host number within every segment's subnet; .1 is Docker's gateway
HOST_NUMBERS: dict[str, int] = {
    "edge-proxy": 2,
    "keycloak": 3,
    "grafana": 4,
    "prometheus": 5,
    "alertmanager": 6,
    "loki": 7,
    "audit-sink": 8,
    "postgres": 9,
    "minio": 10,  # minio1 is .10, minio2 .11, ... (up to 32 nodes)
    "backup": 50,
}


def host_address(subnet: str, service: str, index: int = 1) -> str:
    """The fixed IPv4 address of `service` (its `index`-th instance, 1-based) in `subnet`."""
    network = ipaddress.IPv4Network(subnet)
    return str(network.network_address + HOST_NUMBERS[service] + index - 1)


@dataclass(frozen=True)
class Segment:
    name: str
    subnet: str
    network: docker.Network

    def address(self, service: str, index: int = 1) -> str:
        return host_address(self.subnet, service, index)


class Segments(pulumi.ComponentResource):
    """storage-net, monitoring-net and database-net are internal (no route out); edge-net is not."""

    def __init__(self, name: str, config: StackConfig, naming: Naming, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:network:Segments", name, None, opts)
        self.by_name: dict[str, Segment] = {}
        for segment, settings in config.networks.segments().items():
            network_name = naming.of(f"{segment}-net")
            network = docker.Network(
                f"{segment}-net",
                name=network_name,
                driver="bridge",
                internal=segment != "edge",
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=settings.subnet)],
                labels=[docker.NetworkLabelArgs(label=STACK_LABEL, value=naming.prefix)],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.by_name[segment] = Segment(network_name, settings.subnet, network)
        self.register_outputs({segment: s.network.name for segment, s in self.by_name.items()})

    @property
    def storage(self) -> Segment:
        return self.by_name["storage"]

    @property
    def monitoring(self) -> Segment:
        return self.by_name["monitoring"]

    @property
    def database(self) -> Segment:
        return self.by_name["database"]

    @property
    def edge(self) -> Segment:
        return self.by_name["edge"]
