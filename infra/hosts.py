"""Nodes on hosts of their own (`storage.hosts`): a Docker provider and a network per node host, and
the private CA that makes the traffic between hosts TLS.

Each node host runs one MinIO node (and its log agent), created through a `docker.Provider` for that
host's endpoint; the rest of the stack stays on the stack's own host (the default provider). A node
keeps its host name `minioN`: the other hosts reach it through `hosts` entries naming its private
address, where it publishes its ports and nowhere else. MinIO decides which endpoints of the server
command are its own by resolving their names and comparing with its interfaces and port
(cmd/net.go `isLocalHost`), so a node's own name must stay its container's address (the entry Docker
writes for the container's host name) and only the other nodes get `hosts` entries.

Every certificate is signed by the stack's own CA (pulumi-tls, kept in the state as a secret):
- each node's names its host name, `CLUSTER_TLS_NAME` (the one name the proxy verifies, since one
  nginx upstream group can check only one), localhost (the node's own healthcheck and console) and
  its private address;
- the gateway's names `GATEWAY_NAME` and the stack's own host's private address: the edge proxy's
  listener there carries what the node hosts send to the stack's own host (Keycloak's discovery
  document and keys, the audit log, the log agents' pushes).
Leaf certificates are renewed by the `pulumi up` that runs within `RENEW_BEFORE_DAYS` of their end.
A node receives its certificate as a file upload, so renewing it replaces that node's container: each
node's certificate lasts `RENEWAL_STAGGER_DAYS` longer than the one before (`leaf_validity_days`), so
their renewal windows never overlap and no one update replaces two nodes for a renewal. A renewed
certificate starts a full term from the day it is renewed, so the windows stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from infra.config import StackConfig
from infra.config.storage import GATEWAY_PORT
from infra.container import STACK_LABEL, Naming
from infra.networks import dynamic_range, gateway_address

# every node's certificate holds this name beside its own: nginx checks one name per upstream group
CLUSTER_TLS_NAME = "minio-cluster"
# how the node hosts name the stack's own host, and the port of the edge proxy's gateway listener there
GATEWAY_NAME = "cluster-gateway"
# where every client of the nodes and every node receives the CA certificate
CA_FILE = "/etc/minio-platform/cluster-ca.crt"
# MinIO's --certs-dir: public.crt and private.key, and CAs/ with the certificates it trusts as a client
MINIO_CERTS_DIR = "/etc/minio/certs"

CA_VALIDITY_DAYS = 3650
LEAF_VALIDITY_DAYS = 730
RENEW_BEFORE_DAYS = 30
# longer than RENEW_BEFORE_DAYS: one node's renewal window closes before the next one's opens
RENEWAL_STAGGER_DAYS = 45
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]


@dataclass(frozen=True)
class CertifiedKey:
    certificate: str
    key: str


@dataclass(frozen=True)
class ClusterTls:
    """The PEM material of a multi-host stack: the CA, each node's pair (by node number) and the gateway's."""

    ca_certificate: str
    nodes: dict[int, CertifiedKey]
    gateway: CertifiedKey

    @classmethod
    def throwaway(cls, nodes: int) -> ClusterTls:
        """Clearly marked stand-ins for offline rendering; never deployed."""
        pair = CertifiedKey("THROWAWAY CERTIFICATE\n", "THROWAWAY KEY\n")
        return cls("THROWAWAY CA CERTIFICATE\n", {index: pair for index in range(1, nodes + 1)}, pair)


def gateway_url(path: str) -> str:
    """Where a node host reaches `path` on the stack's own host: the edge proxy's gateway listener."""
    return f"https://{GATEWAY_NAME}:{GATEWAY_PORT}{path}"


def node_certificate_names(node: int) -> list[str]:
    return [f"minio{node}", CLUSTER_TLS_NAME, "localhost"]


def node_certificate_addresses(address: str) -> list[str]:
    return [address, "127.0.0.1"]


def node_addresses(config: StackConfig) -> dict[int, str]:
    """The private address of every node, by node number ({} on a one-host stack)."""
    return {index: host.address for index, host in enumerate(config.storage.hosts or [], start=1)}


def node_host_entries(config: StackConfig, node: int | None = None) -> dict[str, str]:
    """`hosts` entries naming every node's address but `node`'s own, and, on a node, the gateway's."""
    entries = {f"minio{index}": address for index, address in node_addresses(config).items() if index != node}
    if node is not None and config.storage.main_host_address:
        entries[GATEWAY_NAME] = config.storage.main_host_address
    return entries


def node_hosts_output(config: StackConfig) -> dict[str, dict[str, str] | None]:
    """Where each node runs, by node name: its dockerHost and address, or None on the stack's own host.

    The next update compares with it (infra/deployed.py): a node that changes host leaves its data behind.
    """
    return {
        f"minio{index}": (
            {"dockerHost": host.docker_host, "address": host.address} if (host := config.storage.node_host(index)) else None
        )
        for index in range(1, config.storage.total_nodes + 1)
    }


def host_loss(config: StackConfig) -> dict[str, Any]:
    """What losing whole Docker hosts costs: the `layout` output's `hosts` and `hostLoss`.

    On one host, that host's loss is every node's. With one node per host, losing k hosts is losing k
    nodes: the node-loss table of each pool, read in hosts (the first pool's here; every pool's is in `pools`).
    """
    storage = config.storage
    if not storage.multi_host:
        return {"hosts": 1, "hostLoss": [{"hostsDown": 0, "reads": True, "writes": True}, {"hostsDown": 1, "reads": False, "writes": False}]}
    rows = storage.layout().first.node_loss_table()
    return {
        "hosts": storage.total_nodes,
        "hostLoss": [{"hostsDown": row.nodes_down, "reads": row.reads, "writes": row.writes} for row in rows],
    }


def leaf_validity_days(node: int | None) -> int:
    """How long `node`'s certificate lasts (the gateway's, `node` None, as minio1's): later nodes longer."""
    return LEAF_VALIDITY_DAYS + (0 if node is None else (node - 1) * RENEWAL_STAGGER_DAYS)


class ClusterCertificates(pulumi.ComponentResource):
    """The stack's CA and the certificates it signs; `material` holds their PEM text, as a secret."""

    material: pulumi.Output[ClusterTls]

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:hosts:ClusterCertificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        organization = f"minio-platform {config.name}"
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{organization} cluster CA", organization=organization),
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_DAYS * 24,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=child,
        )

        def signed(
            leaf: str, common_name: str, dns_names: list[str], ip_addresses: list[str], validity_days: int
        ) -> pulumi.Output[CertifiedKey]:
            key = tls.PrivateKey(f"{name}-{leaf}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            request = tls.CertRequest(
                f"{name}-{leaf}-request",
                private_key_pem=key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=organization),
                dns_names=dns_names,
                ip_addresses=ip_addresses,
                opts=child,
            )
            certificate = tls.LocallySignedCert(
                f"{name}-{leaf}",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca.cert_pem,
                validity_period_hours=validity_days * 24,
                early_renewal_hours=RENEW_BEFORE_DAYS * 24,
                allowed_uses=SERVER_USES,
                opts=child,
            )
            return pulumi.Output.all(certificate.cert_pem, key.private_key_pem).apply(lambda pem: CertifiedKey(*pem))

        nodes = {
            index: signed(
                f"minio{index}", f"minio{index}", node_certificate_names(index), node_certificate_addresses(address),
                leaf_validity_days(index),
            )
            for index, address in node_addresses(config).items()
        }
        # the gateway's renewal replaces the edge proxy, not a node
        gateway = signed(GATEWAY_NAME, GATEWAY_NAME, [GATEWAY_NAME], [str(config.storage.main_host_address)], leaf_validity_days(None))
        self.material = pulumi.Output.secret(
            pulumi.Output.all(ca.cert_pem, gateway, *nodes.values()).apply(
                lambda parts: ClusterTls(parts[0], dict(zip(nodes, parts[2:], strict=True)), parts[1])
            )
        )
        self.register_outputs({})


@dataclass(frozen=True)
class NodeHost:
    """One node's host: the provider every resource there is created through, and the node's network."""

    node: int
    docker_host: str
    address: str
    provider: docker.Provider
    network: docker.Network
    subnet: str


class NodeHosts(pulumi.ComponentResource):
    """A Docker provider and a bridge network on every node host, by node number.

    The network is not internal: a node reaches the other hosts and the stack's own host through its
    host's routing, and Docker publishes no port of an internal network. It takes the storage
    segment's subnet and fixed addresses, so a node keeps the address it has on a one-host stack.
    """

    def __init__(self, name: str, config: StackConfig, naming: Naming, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:hosts:NodeHosts", name, None, opts)
        subnet = config.networks.storage.subnet
        self.by_node: dict[int, NodeHost] = {}
        for index, host in enumerate(config.storage.hosts or [], start=1):
            provider = docker.Provider(f"minio{index}-host", host=host.docker_host, opts=pulumi.ResourceOptions(parent=self))
            network = docker.Network(
                f"minio{index}-net",
                name=naming.of(f"minio{index}-net"),
                driver="bridge",
                ipam_configs=[
                    docker.NetworkIpamConfigArgs(subnet=subnet, gateway=gateway_address(subnet), ip_range=dynamic_range(subnet))
                ],
                labels=[docker.NetworkLabelArgs(label=STACK_LABEL, value=naming.prefix)],
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )
            self.by_node[index] = NodeHost(index, host.docker_host, host.address, provider, network, subnet)
        self.register_outputs({})
