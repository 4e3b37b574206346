"""The MinIO storage tier's settings."""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from infra.config.base import PRIVATE_IPV4, ImageRef, MemoryMb, Settings
from infra.config.images import MINIO
from infra.quorum import ClusterLayout, ErasureLayout, LayoutError, choose_set_size

# the Silo fork: a maintained server whose embedded console keeps "Login with SSO" (see README, "The MinIO image")
DEFAULT_MINIO_IMAGE = MINIO.reference
# fixed addresses on the storage network (infra/networks.py), shared by every pool
MAX_NODES = 32


class PoolSettings(Settings):
    """A server pool added after the first: its nodes are numbered on from the previous pool's."""

    nodes: int = Field(ge=2, description="MinIO nodes of this pool")
    drives_per_node: int = Field(ge=1, description="volumes (drives) per node of this pool")


def _private_address(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address like '10.0.0.11'") from None
    if not any(address in block for block in PRIVATE_IPV4):
        raise ValueError(
            f"{value} is not a private address (10/8, 172.16/12, 192.168/16): nodes talk to each other "
            "on a private network, never on a public or loopback address"
        )
    return value


DOCKER_HOST_SCHEMES = ("ssh", "tcp")
# the edge proxy's gateway listener on the stack's own host (infra/hosts.py), apart from the edge
# ports' defaults (9000, 9443, 80, 443, 9444) and their dev and staging offsets
GATEWAY_PORT = 7443


class NodeHostSettings(Settings):
    """The Docker host one MinIO node runs on, and the private address the other hosts reach it at."""

    docker_host: str = Field(description="Docker endpoint of the node's host: ssh://user@host or tcp://host:2376")
    address: str = Field(description="the host's private address; the node's API and console are published there only")
    docker_socket_gid: int | None = Field(
        None,
        ge=0,
        description="group owning monitoring.dockerSocket on this host (`stat -c %g /var/run/docker.sock`), where it "
        "differs from monitoring.dockerSocketGid; unset, that one",
    )

    @field_validator("docker_host")
    @classmethod
    def _docker_endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in DOCKER_HOST_SCHEMES or not parts.hostname:
            raise ValueError(f"{value!r} is not a Docker endpoint: write ssh://user@host or tcp://host:2376")
        return value

    @field_validator("address")
    @classmethod
    def _address_is_private(cls, value: str) -> str:
        return _private_address(value)


class StorageSettings(Settings):
    nodes: int = Field(
        4, ge=2, le=32, description="MinIO node containers (distributed mode needs 2 or more; 32 fixed addresses)"
    )
    drives_per_node: int = Field(2, ge=1, description="volumes (drives) per node")
    parity: int | None = Field(None, description="storage-class parity EC:N; MinIO's default for the set size when unset")
    image: ImageRef = DEFAULT_MINIO_IMAGE
    memory_mb: MemoryMb = 2048
    prometheus_auth_type: Literal["jwt", "public"] = "jwt"
    keep_data_on_destroy: bool | None = Field(
        None, description="protect and retain data volumes; default: true on prod, false elsewhere"
    )
    pools: list[PoolSettings] = Field(
        default_factory=list, description="server pools added after the first (nodes, drivesPerNode): how capacity grows"
    )
    allow_layout_change: bool = Field(
        False,
        description="deploy even though a deployed pool changes or goes (only after a finished decommission, or onto wiped volumes)",
    )
    drive_paths: list[str] | None = Field(
        None,
        description="host directories, one per drive in node-major order (minio1's drives, then minio2's...), each where its disk is mounted",
    )

    main_host_address: str | None = Field(
        None,
        description="with hosts: the private address of the stack's own host, where the nodes reach Keycloak, the audit sink and Loki",
    )
    hosts: list[NodeHostSettings] | None = Field(
        None,
        validate_default=True,
        description="one Docker host per node (dockerHost, address), minio1's first; absent, every node runs on the stack's own host",
    )

    # field validators (not a model validator) so that a bad layout is reported beside every other error
    @field_validator("drives_per_node")
    @classmethod
    def _drives_form_erasure_sets(cls, drives: int, info: ValidationInfo) -> int:
        nodes = info.data.get("nodes")
        if nodes is not None:
            try:
                choose_set_size(nodes, drives)
            except LayoutError as error:
                raise ValueError(str(error)) from None
        return drives

    @field_validator("parity")
    @classmethod
    def _parity_fits_the_set(cls, parity: int | None, info: ValidationInfo) -> int | None:
        nodes, drives = info.data.get("nodes"), info.data.get("drives_per_node")
        if parity is not None and nodes is not None and drives is not None:
            try:
                ErasureLayout.plan(nodes, drives, parity)
            except LayoutError as error:
                raise ValueError(str(error)) from None
        return parity

    @field_validator("pools")
    @classmethod
    def _pools_fit_the_cluster(cls, pools: list[PoolSettings], info: ValidationInfo) -> list[PoolSettings]:
        nodes, drives = info.data.get("nodes"), info.data.get("drives_per_node")
        if nodes is None or drives is None or "parity" not in info.data:
            return pools  # the first pool is invalid and already reported
        total = nodes + sum(pool.nodes for pool in pools)
        if total > MAX_NODES:
            raise ValueError(f"{total} nodes in all pools: the storage network has fixed addresses for {MAX_NODES}")
        try:
            ClusterLayout.plan(pool_shapes(nodes, drives, pools), info.data["parity"])
        except LayoutError as error:
            raise ValueError(str(error)) from None
        return pools

    @field_validator("drive_paths")
    @classmethod
    def _one_directory_per_drive(cls, paths: list[str] | None, info: ValidationInfo) -> list[str] | None:
        nodes, drives, pools = info.data.get("nodes"), info.data.get("drives_per_node"), info.data.get("pools")
        if paths is None or nodes is None or drives is None or pools is None:
            return paths
        needed = nodes * drives + sum(pool.nodes * pool.drives_per_node for pool in pools)
        if len(paths) != needed:
            raise ValueError(f"{len(paths)} paths for {needed} drives: give one host directory per drive, minio1's first")
        relative = [path for path in paths if not PurePosixPath(path).is_absolute()]
        if relative:
            raise ValueError(f"{relative[0]!r} is not an absolute path: give each drive's directory from the host's root")
        normal = [PurePosixPath(path) for path in paths]
        for index, path in enumerate(normal):
            clash = next((other for other in normal[:index] if other == path or other in path.parents or path in other.parents), None)
            if clash is not None:
                raise ValueError(f"{paths[index]!r} and {str(clash)!r} overlap: every drive needs a directory of its own, neither inside the other")
        return paths

    @field_validator("hosts")
    @classmethod
    def _one_host_per_node(cls, hosts: list[NodeHostSettings] | None, info: ValidationInfo) -> list[NodeHostSettings] | None:
        nodes, pools, main = info.data.get("nodes"), info.data.get("pools"), info.data.get("main_host_address")
        if hosts is None:
            if main is not None:
                raise ValueError("storage.mainHostAddress is only read with storage.hosts: drop it, or give every node its host")
            return hosts
        if "main_host_address" not in info.data:
            return hosts  # reported already
        if main is None:
            raise ValueError("need storage.mainHostAddress too: the private address the nodes reach the stack's own host at")
        if main in {host.address for host in hosts}:
            raise ValueError(f"{main} is both a node's address and storage.mainHostAddress: the stack's own host needs its own")
        if nodes is None or pools is None:
            return hosts
        needed = nodes + sum(pool.nodes for pool in pools)
        if len(hosts) != needed:
            raise ValueError(f"{len(hosts)} hosts for {needed} nodes: give one host per node, minio1's first")
        for key, values in (("address", [host.address for host in hosts]), ("dockerHost", [host.docker_host for host in hosts])):
            repeated = next((value for index, value in enumerate(values) if value in values[:index]), None)
            if repeated is not None:
                raise ValueError(f"{key} {repeated} is given for two nodes: every node needs a host of its own")
        return hosts

    @field_validator("main_host_address")
    @classmethod
    def _main_host_is_private(cls, value: str | None) -> str | None:
        return value if value is None else _private_address(value)

    def drive_path(self, node: int, drive: int) -> str | None:
        """The host directory of `node`'s `drive` (both 1-based), None for a volume Docker keeps."""
        if self.drive_paths is None:
            return None
        # node-major: every drive of the nodes before this one comes first
        before = sum(count for index, count in self.layout().node_drives() if index < node)
        return self.drive_paths[before + drive - 1]

    @property
    def multi_host(self) -> bool:
        """Every node on a Docker host of its own (storage.hosts), the rest of the stack on the stack's own."""
        return self.hosts is not None

    def node_host(self, node: int) -> NodeHostSettings | None:
        """The host of `node` (1-based), None when it runs on the stack's own host."""
        return self.hosts[node - 1] if self.hosts is not None else None

    @property
    def total_nodes(self) -> int:
        """Nodes of every pool: minio1 to minio<total_nodes>."""
        return self.nodes + sum(pool.nodes for pool in self.pools)

    def layout(self) -> ClusterLayout:
        return ClusterLayout.plan(pool_shapes(self.nodes, self.drives_per_node, self.pools), self.parity)


def pool_shapes(nodes: int, drives_per_node: int, pools: list[PoolSettings]) -> list[tuple[int, int]]:
    return [(nodes, drives_per_node), *((pool.nodes, pool.drives_per_node) for pool in pools)]
