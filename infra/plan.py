"""What a deploy of a stack would create, shown before anything is: `scripts/infra plan --stack dev`.

Every figure comes from the program itself, run offline under Pulumi's mocks (infra/inventory.py):
containers, images, networks, ports, volumes and memory from what it registers; the erasure layout,
the endpoints and the names of the credentials from what it exports. The host sizing applies the
preflight's own thresholds to those figures. Nothing here describes the stack a second time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import ConfigError, StackConfig
from infra.config.edge import EdgeSettings
from infra.config.storage import GATEWAY_PORT
from infra.deployed import compare_with_deployed
from infra.inventory import Inventory, OfflineRun, inventory_of, offline_run
from infra.preflight import DATA_HEADROOM_GIB, IMAGE_DISK_ALLOWANCE_GIB, MEMORY_WARNING_SHARE
from infra.storage import API_PORT, CONSOLE_PORT

# what a node on its own host publishes on its address, by container port
NODE_PORTS_SERVE = {
    API_PORT: "the node's S3 API, for the edge proxy and the other nodes",
    CONSOLE_PORT: "the node's console, for the edge proxy",
}


@dataclass(frozen=True)
class PortRoute:
    """One published port: where clients connect on the host, and what answers."""

    host_ip: str
    host_port: int
    container: str
    container_port: int
    protocol: str
    setting: str
    """The stack setting that chooses the host port ('edge.s3TlsPort'), or '' if none does."""
    serves: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": f"{self.host_ip}:{self.host_port}",
            "container": self.container,
            "containerPort": self.container_port,
            "protocol": self.protocol,
            "setting": self.setting,
            "serves": self.serves,
        }


@dataclass(frozen=True)
class Sizing:
    """What the Docker host needs for a stack, by the preflight's thresholds."""

    memory_mb: int
    """The containers' memory limits, added up."""
    disk_floor_gib: float
    """Images and the log rotation ceiling, before any data: below this the preflight stops the deploy."""

    @property
    def host_memory_gib(self) -> int:
        """The least host memory (whole GiB) that keeps the limits under the preflight's warning share."""
        return math.ceil(self.memory_mb / MEMORY_WARNING_SHARE / 1024)

    @property
    def disk_gib(self) -> float:
        """Free disk under Docker's data root that leaves the preflight's headroom for data."""
        return self.disk_floor_gib + DATA_HEADROOM_GIB

    def as_dict(self) -> dict[str, Any]:
        return {
            "memoryLimitsMb": self.memory_mb,
            "hostMemoryGib": self.host_memory_gib,
            "diskBeforeDataGib": round(self.disk_floor_gib, 1),
            "diskGib": round(self.disk_gib, 1),
        }


def _port_setting_descriptions() -> dict[str, str]:
    """Each published-port setting's description from the config model, up to its first parenthesis or ';'."""
    return {
        str(field.alias): (field.description or "").split(" (")[0].split(";")[0]
        for field in EdgeSettings.model_fields.values()
        if field.alias in EdgeSettings().published_ports()
    }


def port_routes(inventory: Inventory, config: StackConfig) -> tuple[PortRoute, ...]:
    settings = {port: key for key, port in config.edge.published_ports().items()}
    described = _port_setting_descriptions()
    node_keys = {host.docker_host: f"storage.hosts[{index}].address" for index, host in enumerate(config.storage.hosts or [])}
    routes = []
    for container in inventory.containers:
        for port in container.ports:
            if container.host is not None:
                # a node on its own host: its fixed ports, on the address the other hosts reach it at
                setting, serves = node_keys.get(container.host, ""), NODE_PORTS_SERVE.get(port.internal, "")
            elif port.host_ip == config.storage.main_host_address and port.external == GATEWAY_PORT:
                setting, serves = "storage.mainHostAddress", "the gateway the node hosts reach the stack's own host through"
            else:
                key = settings.get(port.external)
                setting, serves = (f"edge.{key}" if key else ""), described.get(key or "", "")
            routes.append(PortRoute(port.host_ip, port.external, container.name, port.internal, port.protocol, setting, serves))
    return tuple(sorted(routes, key=lambda route: route.host_port))


@dataclass(frozen=True)
class NodeHostRow:
    """One node's own Docker host (storage.hosts) and what the stack puts there."""

    node: str
    docker_host: str
    address: str
    drives: tuple[str | None, ...]
    """Each drive's host directory (storage.drivePaths), None for a volume Docker keeps."""
    containers: int
    memory_mb: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "dockerHost": self.docker_host,
            "address": self.address,
            "drives": list(self.drives),
            "containers": self.containers,
            "memoryMb": self.memory_mb,
        }


def node_host_rows(inventory: Inventory, config: StackConfig) -> tuple[NodeHostRow, ...]:
    storage = config.storage
    drives = dict(storage.layout().node_drives())
    rows = []
    for index, host in enumerate(storage.hosts or [], start=1):
        there = inventory.on_host(host.docker_host)
        rows.append(
            NodeHostRow(
                f"minio{index}", host.docker_host, host.address,
                tuple(storage.drive_path(index, drive) for drive in range(1, drives[index] + 1)),
                len(there.containers), there.memory_mb,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class Plan:
    stack: str
    environment: str
    inventory: Inventory
    ports: tuple[PortRoute, ...]
    layout: dict[str, Any]
    """The program's `layout` output (infra/quorum.py's as_dict)."""
    endpoints: dict[str, str]
    """The program's `endpoints` output."""
    credentials: tuple[str, ...]
    """Names of the outputs the program marks secret: what `pulumi stack output --show-secrets NAME` shows after a deploy."""
    notices: tuple[str, ...] = ()
    """What an update from the deployed stack would do to the MinIO nodes (empty without its outputs)."""
    node_hosts: tuple[NodeHostRow, ...] = ()
    """Each node's own Docker host (storage.hosts); empty when every node runs on the stack's own."""

    @property
    def sizing(self) -> Sizing:
        """The stack's own host: on a multi-host stack the nodes' containers are on their hosts instead."""
        own = self.inventory.on_host(None)
        return Sizing(own.memory_mb, IMAGE_DISK_ALLOWANCE_GIB + own.log_ceiling_mb / 1024)

    def as_dict(self) -> dict[str, Any]:
        inventory = self.inventory
        mounted_by = {volume: c.name for c in inventory.containers for volume in c.volumes}
        return {
            "stack": self.stack,
            "name": inventory.prefix,
            "environment": self.environment,
            "assumed": list(inventory.assumed),
            "containers": [
                {
                    "name": c.name,
                    "service": c.service,
                    "image": c.image,
                    "memoryMb": c.memory_mb,
                    "networks": [{"network": a.network, "address": a.ipv4_address} for a in c.networks],
                    "ports": [f"{p.host_ip}:{p.external}->{p.internal}/{p.protocol}" for p in c.ports],
                    "volumes": list(c.volumes),
                    "hostPaths": list(c.host_paths),
                    "logCeilingMb": c.log_ceiling_mb,
                }
                for c in inventory.containers
            ],
            "ports": [route.as_dict() for route in self.ports],
            "networks": [{"name": n.name, "segment": n.segment, "subnet": n.subnet} for n in inventory.networks],
            "volumes": [
                {"name": v.name, "mountedBy": mounted_by.get(v.name), "survivesDestroy": v.retained} for v in inventory.volumes
            ],
            "images": [{"reference": i.reference, "built": i.built} for i in inventory.images],
            "memoryMb": inventory.memory_mb,
            "sizing": self.sizing.as_dict(),
            "layout": self.layout,
            "endpoints": self.endpoints,
            "credentials": list(self.credentials),
            "notices": list(self.notices),
            "nodeHosts": [row.as_dict() for row in self.node_hosts],
        }

    def lines(self) -> list[str]:
        """The plan for people: one section per kind of thing, figures first."""
        inventory, sizing, layout = self.inventory, self.sizing, self.layout
        lines = [
            f"plan of stack {self.stack!r} ({inventory.prefix}, environment {self.environment}): "
            f"{len(inventory.containers)} containers, {len(inventory.networks)} networks, {len(inventory.volumes)} volumes, "
            f"{len(inventory.images)} images"
            + (f" on {len(self.node_hosts) + 1} Docker hosts" if self.node_hosts else "")
            + "; nothing is created",
        ]
        if inventory.assumed:
            lines.append(
                f"assumed: Pulumi.{self.stack}.yaml does not set {', '.join(inventory.assumed)} yet; this plan uses throwaway "
                "values for them (no figure below depends on them), and validate and the deploy ask for them"
            )
        width = max(len(c.name) for c in inventory.containers)
        image_width = max(len(c.image) for c in inventory.containers)
        lines += ["", "containers:"]
        for c in inventory.containers:
            attached = [f"{a.network} {a.ipv4_address or '(dynamic address)'}" for a in c.networks] or ["(no network)"]
            lines.append(f"  {c.name:<{width}}  {c.image:<{image_width}}  {c.memory_mb:>6} MiB  {attached[0]}")
            lines += [f"  {'':<{width}}  {'':<{image_width}}  {'':>10}  {more}" for more in attached[1:]]
        lines += ["", "published ports (host address:port -> container:port), the only way into the stack:"]
        hosts = [f"{r.host_ip}:{r.host_port}" for r in self.ports]
        targets = [f"{r.container}:{r.container_port}/{r.protocol}" for r in self.ports]
        host_width, target_width = max(map(len, hosts), default=0), max(map(len, targets), default=0)
        lines += [
            f"  {host:<{host_width}} -> {target:<{target_width}}" + (f"  {r.setting}: {r.serves}" if r.setting else "")
            for host, target, r in zip(hosts, targets, self.ports, strict=True)
        ]
        kept = [v for v in inventory.volumes if v.retained]
        mounted_by = {volume: c.name for c in inventory.containers for volume in c.volumes}
        volume_width = max((len(v.name) for v in inventory.volumes), default=0)
        lines += ["", f"volumes ({len(kept)} of {len(inventory.volumes)} survive `pulumi destroy`: protected and left on the host):"]
        lines += [
            f"  {v.name:<{volume_width}}  {mounted_by.get(v.name, '(not mounted)'):<{width}}  "
            + ("survives destroy" if v.retained else "deleted by destroy")
            for v in inventory.volumes
        ]
        host_paths = [(path, c.name) for c in inventory.containers for path in c.host_paths]
        if host_paths:
            lines.append("host paths mounted (never touched by a destroy): " + ", ".join(f"{p} -> {n}" for p, n in host_paths))
        lines += ["", f"networks: " + ", ".join(f"{n.name} {n.subnet}" for n in inventory.networks)]
        built = [i.reference for i in inventory.images if i.built]
        lines.append(
            f"images: {len(inventory.images) - len(built)} pulled" + (f", built on the Docker host: {', '.join(built)}" if built else "")
        )
        own_host = " of the stack's own host" if self.node_hosts else ""
        lines += [
            "",
            f"memory{own_host}: the limits add up to {sizing.memory_mb} MiB; a host with {sizing.host_memory_gib} GiB or more keeps them "
            f"under {MEMORY_WARNING_SHARE:.0%} of its memory (the preflight warns above)",
            f"disk under Docker's data root{own_host}: {sizing.disk_floor_gib:.1f} GiB for images and logs before any data "
            f"(the preflight stops below it); {sizing.disk_gib:.1f} GiB leaves {DATA_HEADROOM_GIB:.0f} GiB for data",
            "",
        ]
        lines += self.host_lines()
        lines += pool_lines(layout["pools"])
        lines += ["", "update from the deployed stack:"]
        lines += [f"  {notice}" for notice in self.notices] or [
            "  (compared only with --deployed): a change of storage.image or of the pools replaces every MinIO node "
            "at once (README, 'Upgrades'); a deployed pool never changes"
        ]
        key_width = max(len(key) for key in self.endpoints)
        lines += ["", "endpoints:"]
        lines += [f"  {key:<{key_width}}  {url}" for key, url in self.endpoints.items()]
        lines += [
            "",
            "credentials, generated at deploy time (after it: pulumi stack output --show-secrets NAME --stack "
            f"{self.stack}): {', '.join(self.credentials)}",
        ]
        return lines


    def host_lines(self) -> list[str]:
        """Which Docker host each node runs on, and so what losing a host loses."""
        if not self.node_hosts:
            return [
                "hosts: every node runs on the stack's own Docker host, so losing that host loses the whole cluster, "
                "whatever the node counts below; storage.hosts gives each node a host of its own",
                "",
            ]
        rows = self.node_hosts
        drives = [
            f"{len(row.drives)}" + (f": {', '.join(str(path) for path in row.drives)}" if any(row.drives) else " (Docker volumes)")
            for row in rows
        ]
        width = [max(len(text) for text in column) for column in (
            ["node", *(r.node for r in rows)], ["dockerHost", *(r.docker_host for r in rows)], ["address", *(r.address for r in rows)]
        )]
        header = ("node", "dockerHost", "address")
        lines = [f"hosts (storage.hosts): one MinIO node per Docker host, the rest of the stack on its own host:"]
        lines.append("  " + "  ".join(f"{h:<{w}}" for h, w in zip(header, width, strict=True)) + "  containers  memory    drives")
        lines += [
            "  " + "  ".join(f"{text:<{w}}" for text, w in zip((r.node, r.docker_host, r.address), width, strict=True))
            + f"  {r.containers:>10}  {r.memory_mb:>6} MiB  {drive}"
            for r, drive in zip(rows, drives, strict=True)
        ]
        lines += [
            "  with one node per host, losing a host is losing its node: the node counts below are host counts",
            "",
        ]
        return lines


def pool_lines(pools: list[dict[str, Any]]) -> list[str]:
    """Each server pool's erasure layout and its quorum table: a pool is readable while its own sets keep quorum."""
    yes_no = {True: "yes", False: "no"}
    lines = []
    for index, pool in enumerate(pools, start=1):
        lines += [
            f"erasure layout of pool {index} (minio{pool['firstNode']}..{pool['lastNode']}): {pool['nodes']} nodes x "
            f"{pool['drivesPerNode']} drives = {pool['totalDrives']} drives in {pool['setCount']} set(s) of {pool['setSize']}, "
            f"parity EC:{pool['parity']}, read quorum {pool['readQuorum']}, write quorum {pool['writeQuorum']}, "
            f"usable {pool['usableFraction']:.0%} of raw capacity",
            f"  nodes of pool {index} down  reads  writes",
        ]
        lines += [f"  {row['nodesDown']:>18}  {yes_no[row['reads']]:<5}  {yes_no[row['writes']]}" for row in pool["nodeLoss"]]
    if len(pools) > 1:
        lines.append("  a pool that loses quorum takes its objects with it, and writes stop until it is back: every pool must keep quorum")
    return lines


def plan_of(stack: str, offline: OfflineRun, notices: tuple[str, ...] = ()) -> Plan:
    outputs = offline.run.outputs
    inventory = inventory_of(stack, offline.run.registrations, offline.assumed)
    return Plan(
        stack=stack,
        environment=offline.config.environment,
        inventory=inventory,
        ports=port_routes(inventory, offline.config),
        layout=dict(outputs["layout"]),
        endpoints={str(key): str(url) for key, url in outputs["endpoints"].items()},
        credentials=tuple(sorted(offline.run.secret_outputs)),
        notices=notices,
        node_hosts=node_host_rows(inventory, offline.config),
    )


def plan(stack: str, config_file: Path | None = None, previous: dict[str, Any] | None = None) -> Plan:
    """The plan of `stack`, from its program run offline; raises ConfigError for a bad stack.

    `previous` are the deployed stack's outputs (`pulumi stack output --json`): the plan then refuses
    what the deploy would refuse, and says what the update does to the MinIO nodes.
    """
    offline = offline_run(stack, config_file)
    deployed = compare_with_deployed(offline.config, previous)
    if deployed.refusals:
        raise ConfigError(stack, deployed.refusals)
    return plan_of(stack, offline, tuple(deployed.notices))


SIZING_HEADER = (
    "| stack | containers | memory limits | host memory | disk before data | disk with room for data |",
    "|---|---|---|---|---|---|",
)


def sizing_table(plans: list[Plan]) -> list[str]:
    """The README's host sizing table, one row per stack."""
    rows = [
        f"| {p.stack} | {len(p.inventory.containers)} | {p.sizing.memory_mb} MiB | {p.sizing.host_memory_gib} GiB | "
        f"{p.sizing.disk_floor_gib:.1f} GiB | {p.sizing.disk_gib:.1f} GiB |"
        for p in plans
    ]
    return [*SIZING_HEADER, *rows]
