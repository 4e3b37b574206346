"""The stack's network segments and the fixed address of every proxied service on them.

Open-source nginx before 1.27.3 resolves upstream names only when it loads its configuration,
so a recreated container must come back at the same address: every service that another
service connects to by address gets a fixed host number here, in one table.

Docker hands a container without a fixed address the first free address of the subnet, which
would be one of these, and whichever container starts second then fails with "Address already
in use". So every network confines dynamic addresses to its own range, above the fixed block:
the first FIXED_BLOCK addresses are the gateway and the fixed ones, the next FIXED_BLOCK are
Docker's to hand out. libnetwork's allocator (ipam/allocator.go `getAddress`) places a requested
address anywhere in the subnet but a dynamic one only inside the range, and takes the gateway
from the range too unless it is given, so the gateway is given.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import STACK_LABEL, Attachment, Naming

SEGMENTS = ("storage", "monitoring", "database", "edge")

# host number within every segment's subnet; .1 is the gateway
GATEWAY_HOST_NUMBER = 1
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
    "docker-api-proxy": 51,
    # the Docker API proxy admits its caller by address; one per agent, since a changed logAgent
    # creates the new agent before the old one is deleted
    "alloy": 52,
    "promtail": 53,
    "blackbox-exporter": 54,
    "mirror": 55,
}
# fixed host numbers stay below this; the block after it is the dynamic range
FIXED_BLOCK = 64
DYNAMIC_RANGE_PREFIX = 26  # a block of FIXED_BLOCK addresses


def host_address(subnet: str, service: str, index: int = 1) -> str:
    """The fixed IPv4 address of `service` (its `index`-th instance, 1-based) in `subnet`."""
    host_number = HOST_NUMBERS[service] + index - 1
    if host_number >= FIXED_BLOCK:
        raise ValueError(f"{service} {index} would have host number {host_number}, outside the fixed block of {FIXED_BLOCK}")
    return str(ipaddress.IPv4Network(subnet).network_address + host_number)


def gateway_address(subnet: str) -> str:
    return str(ipaddress.IPv4Network(subnet).network_address + GATEWAY_HOST_NUMBER)


def dynamic_range(subnet: str) -> str:
    """The block Docker hands dynamic addresses from: right after the fixed block, never overlapping it."""
    start = ipaddress.IPv4Network(subnet).network_address + FIXED_BLOCK
    return str(ipaddress.IPv4Network(f"{start}/{DYNAMIC_RANGE_PREFIX}"))


@dataclass(frozen=True)
class Segment:
    name: str
    subnet: str
    network: docker.Network

    def address(self, service: str, index: int = 1) -> str:
        return host_address(self.subnet, service, index)

    def attachment(self, service: str) -> Attachment:
        """`service` on this segment at its fixed address, reachable by its name."""
        return Attachment(self.network, aliases=[service], ipv4_address=self.address(service))


class Segments(pulumi.ComponentResource):
    """storage-net, monitoring-net and database-net are internal (no route out); edge-net is not.

    With nodes on hosts of their own, storage-net is not internal either: the services that talk to
    the nodes (Prometheus, the blackbox exporter, the backup) reach the nodes' private addresses
    through the host's routing, which an internal network has none of.
    """

    def __init__(self, name: str, config: StackConfig, naming: Naming, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:network:Segments", name, None, opts)
        self.by_name: dict[str, Segment] = {}
        for segment, settings in config.networks.segments().items():
            network_name = naming.of(f"{segment}-net")
            network = docker.Network(
                f"{segment}-net",
                name=network_name,
                driver="bridge",
                internal=segment != "edge" and not (segment == "storage" and config.storage.multi_host),
                ipam_configs=[
                    docker.NetworkIpamConfigArgs(
                        subnet=settings.subnet,
                        gateway=gateway_address(settings.subnet),
                        ip_range=dynamic_range(settings.subnet),
                    )
                ],
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
