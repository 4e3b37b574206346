"""Checks the Docker host a deploy of a stack would target, before anything changes on it.

    python -m infra preflight --stack dev

What the stack needs comes from its inventory (infra/inventory.py: the program itself, run
offline); what the host has comes from the docker command line, pointed at the daemon the docker
provider would use (`docker_target`). A stack with storage.hosts has one daemon more per node: each
is checked on what the stack puts there only, and each finding then names its host. Every finding
is collected and reported at once, one sentence each: a problem stops the deploy (exit 1), a
warning is a risk (exit 0), info is for the record. Each docker call has a timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.config.storage import NodeHostSettings
from infra.container import STACK_LABEL
from infra.inventory import Inventory, PublishedPort
from infra.monitoring.docker_api_proxy import SERVICE as DOCKER_API_PROXY

Severity = Literal["problem", "warning", "info"]

# the first Docker Engine with cgroup v2 support (docker/docs b52599b), which every memory limit here needs on current distributions
MINIMUM_ENGINE = (20, 10)

# The provider builds with embedded buildx by default, which sends the context over a BuildKit
# session and works with the containerd image store; only its legacy builder (DOCKER_BUILDKIT=0)
# posts a tar context, which that store refused with a 403 before Engine 27.5.0 (moby#47717,
# fixed by moby#49178; terraform-provider-docker internal/provider/resource_docker_image_funcs.go).
# The one rule to change with the build path:
CONTAINERD_STORE_WITH_LEGACY_BUILD: Severity = "problem"
LEGACY_BUILD_FIXED_IN = (27, 5)
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"

# the containers' limits may add up to this share of the host's memory before it is a risk
MEMORY_WARNING_SHARE = 0.8

GIB = 1024**3
# a rough allowance for the dozen images the stack pulls and the one it builds, unpacked
IMAGE_DISK_ALLOWANCE_GIB = 4.0
# room for MinIO data, Prometheus and Loki beyond images and logs, below which disk is a risk
DATA_HEADROOM_GIB = 20.0

DEFAULT_TIMEOUT_SECONDS = 20.0
# the drive probe may pull the edge proxy's image first
DRIVE_PROBE_TIMEOUT_SECONDS = 180.0
# the daemon refuses a --mount bind whose source is missing (moby volume/mounts errBindSourceDoesNotExist)
MISSING_BIND_SOURCE = re.compile(r"bind source path does not exist: (\S+)")
# what the docker CLI and the docker provider use when nothing else is set
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    text: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.text}"


class DockerUnavailable(Exception):
    """The daemon (or the docker CLI) cannot answer; the message is the sentence to show."""


@dataclass(frozen=True)
class DockerTarget:
    endpoint: str
    """The daemon address, as people write it (unix:///var/run/docker.sock, ssh://ops@host)."""
    source: str
    """Where it came from: DOCKER_HOST, the stack's docker:host, or the docker context."""
    environment: Mapping[str, str | None] = field(default_factory=dict)
    """Environment changes for the docker CLI (None removes a variable), so it talks to the daemon the provider will."""
    unreachable: str = "start Docker Engine (or point DOCKER_HOST at one)"
    """What to do when the daemon does not answer."""


class DockerCli:
    """The docker command line, every call bounded by `timeout` seconds."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_SECONDS, target: DockerTarget | None = None) -> None:
        self.timeout = timeout
        changes = target.environment if target else {}
        self.environment = {k: v for k, v in {**os.environ, **changes}.items() if v is not None}
        self.executable = shutil.which("docker", path=self.environment.get("PATH"))
        self.endpoint = target.endpoint if target else self.environment.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
        self.unreachable = target.unreachable if target else DockerTarget.unreachable

    def run(self, *args: str) -> str:
        if self.executable is None:
            raise DockerUnavailable(
                "the docker command line is not installed here, and the preflight reads the Docker host through it; "
                "install the Docker CLI (https://docs.docker.com/engine/install/) and run the preflight again"
            )
        command = " ".join(["docker", *itertools.takewhile(lambda arg: not arg.startswith("-"), args)][:3])
        # its own process group, so a hung ssh helper of the CLI is stopped with it
        process = subprocess.Popen(
            [self.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environment,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise DockerUnavailable(
                f"the Docker daemon at {self.endpoint} did not answer `{command}` within {self.timeout:g} s; "
                "check that it is running and reachable (systemctl status docker, or start Docker Desktop), "
                "then run the preflight again"
            ) from None
        if process.returncode != 0:
            reason = next((line.strip() for line in err.splitlines() if line.strip()), f"exit code {process.returncode}")
            remedy = (
                "add your user to the docker group (or run as root)"
                if "permission denied" in reason.lower()
                else self.unreachable
            )
            raise DockerUnavailable(f"`{command}` failed against {self.endpoint} ({reason.rstrip('.')}); {remedy} and run the preflight again")
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args))


def _context_endpoint(cli: DockerCli, name: str | None = None) -> tuple[str, str]:
    """Name and daemon address of docker context `name`, or of the active one."""
    contexts = cli.json("context", "inspect", *([name] if name else []))
    context = contexts[0] if contexts else {}
    return str(context.get("Name", name or "default")), str(context.get("Endpoints", {}).get("docker", {}).get("Host") or DEFAULT_DOCKER_HOST)


def docker_target(stack_values: Mapping[str, Any], cli: DockerCli) -> DockerTarget:
    """The daemon `pulumi up` would use, in the docker provider's order: a named context (the stack's
    docker:context or DOCKER_CONTEXT, which overrides the host), the stack's docker:host or DOCKER_HOST,
    else the CLI's active context."""
    named = stack_values.get("docker:context") or os.environ.get("DOCKER_CONTEXT")
    if isinstance(named, str) and named:
        source = "docker:context in the stack file" if stack_values.get("docker:context") else "DOCKER_CONTEXT"
        try:
            name, host = _context_endpoint(cli, named)
        except (DockerUnavailable, json.JSONDecodeError):
            raise DockerUnavailable(
                f"the docker context {named!r} ({source}) cannot be read; list the contexts with `docker context ls` and fix the name"
            ) from None
        # the context itself, not just its address: it may carry TLS or ssh settings
        return DockerTarget(host, f"{source} {name!r}", {"DOCKER_CONTEXT": name, "DOCKER_HOST": None})
    configured = stack_values.get("docker:host")
    if isinstance(configured, str) and configured:
        return DockerTarget(configured, "docker:host in the stack file", {"DOCKER_HOST": configured, "DOCKER_CONTEXT": None})
    if os.environ.get("DOCKER_HOST"):
        return DockerTarget(os.environ["DOCKER_HOST"], "DOCKER_HOST")
    try:
        name, host = _context_endpoint(cli)
    except (DockerUnavailable, json.JSONDecodeError):
        return DockerTarget(DEFAULT_DOCKER_HOST, "the default socket")
    # scripts/deploy exports it as DOCKER_HOST: the docker provider does not read the CLI's active context
    return DockerTarget(host, f"docker context {name!r}")


@dataclass(frozen=True)
class HostFacts:
    """What the preflight reads from the daemon, each straight from a docker CLI answer."""

    version: str
    info: Mapping[str, Any]
    networks: Sequence[Mapping[str, Any]]
    containers: Sequence[Mapping[str, Any]]


def read_host(cli: DockerCli) -> HostFacts:
    version = str(cli.run("version", "--format", "{{.Server.Version}}").strip())
    info = cli.json("info", "--format", "{{json .}}")
    network_ids = cli.run("network", "ls", "--quiet", "--no-trunc").split()
    networks = cli.json("network", "inspect", *network_ids) if network_ids else []
    container_ids = cli.run("ps", "--all", "--quiet", "--no-trunc").split()
    containers = cli.json("inspect", "--type", "container", *container_ids) if container_ids else []
    return HostFacts(version, info, networks, containers)


# ---- the checks: each takes what the stack needs and what the host has ----------------------


def check_engine(version: str) -> list[Finding]:
    minimum = ".".join(map(str, MINIMUM_ENGINE))
    parts = version.split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return [Finding("warning", f"Docker Engine reports version {version!r}, which the preflight cannot compare; make sure it is {minimum} or newer")]
    if found < MINIMUM_ENGINE:
        return [
            Finding(
                "problem",
                f"Docker Engine {version} is older than {minimum}, the first release that applies memory limits on cgroup v2 hosts; "
                "upgrade Docker Engine (https://docs.docker.com/engine/install/) and run the preflight again",
            )
        ]
    return [Finding("info", f"Docker Engine {version} (the preflight asks for {minimum} or newer)")]


def uses_containerd_store(info: Mapping[str, Any]) -> bool:
    return ["driver-type", CONTAINERD_SNAPSHOTTER] in [list(pair) for pair in info.get("DriverStatus") or []]


def check_image_store(info: Mapping[str, Any], inventory: Inventory, environ: Mapping[str, str] = os.environ) -> list[Finding]:
    built = [image.reference for image in inventory.images if image.built]
    if not uses_containerd_store(info):
        return [Finding("info", f"image store: classic ({info.get('Driver', 'unknown driver')})")]
    if not built:
        return [Finding("info", "image store: containerd; the stack builds no image on the host, so nothing depends on it")]
    legacy = environ.get("DOCKER_BUILDKIT") == "0"
    version = _engine_version(str(info.get("ServerVersion", "")))
    if legacy and (version is None or version < LEGACY_BUILD_FIXED_IN):
        return [
            Finding(
                CONTAINERD_STORE_WITH_LEGACY_BUILD,
                f"DOCKER_BUILDKIT=0 makes the docker provider build {', '.join(built)} with the legacy builder, which the "
                f"containerd image store of Docker Engine {info.get('ServerVersion', '?')} refuses (moby#47717, fixed in 27.5.0); "
                "unset DOCKER_BUILDKIT, or upgrade Docker Engine",
            )
        ]
    return [Finding("info", f"image store: containerd; {', '.join(built)} is built with buildx, which works with it")]


def _engine_version(version: str) -> tuple[int, int] | None:
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _foreign(labels: Mapping[str, str] | None, prefix: str) -> bool:
    return (labels or {}).get(STACK_LABEL) != prefix


def check_subnets(networks: Sequence[Mapping[str, Any]], inventory: Inventory) -> list[Finding]:
    findings = []
    for theirs in networks:
        if not _foreign(theirs.get("Labels"), inventory.prefix):
            continue
        for config in (theirs.get("IPAM") or {}).get("Config") or []:
            try:
                their_subnet = ipaddress.ip_network(config.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            for ours in inventory.networks:
                subnet = ipaddress.IPv4Network(ours.subnet)
                if their_subnet.version == 4 and subnet.overlaps(their_subnet):
                    findings.append(
                        Finding(
                            "problem",
                            f"subnet {ours.subnet} of {ours.name} overlaps {config.get('Subnet')} of network {theirs.get('Name')!r}, "
                            f"which is not this stack's, and Docker refuses overlapping networks; set networks.{ours.segment}.subnet "
                            f"in Pulumi.{inventory.stack}.yaml to a free range, or remove that network",
                        )
                    )
    return findings


def _bindings(container: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(host ip, host port, protocol) of every port a running container holds."""
    ports = (container.get("NetworkSettings") or {}).get("Ports") or {}
    held = []
    for key, bindings in ports.items():
        _, _, protocol = str(key).partition("/")
        for binding in bindings or []:
            if str(binding.get("HostPort", "")).isdigit():
                held.append((str(binding.get("HostIp") or "0.0.0.0"), int(binding["HostPort"]), protocol or "tcp"))
    return held


def _same_socket(ours: PublishedPort, host_ip: str, port: int, protocol: str) -> bool:
    if (ours.external, ours.protocol) != (port, protocol):
        return False
    try:
        mine, theirs = ipaddress.ip_address(ours.host_ip), ipaddress.ip_address(host_ip)
    except ValueError:
        return False
    return mine.version == theirs.version and (mine == theirs or mine.is_unspecified or theirs.is_unspecified)


def check_ports(
    containers: Sequence[Mapping[str, Any]], inventory: Inventory, port_keys: Mapping[int, str], address_key: str | None = None
) -> list[Finding]:
    """`address_key`: on a node's host, the setting of the address its fixed ports are published on."""
    findings = []
    for theirs in containers:
        if not (theirs.get("State") or {}).get("Running") or not _foreign((theirs.get("Config") or {}).get("Labels"), inventory.prefix):
            continue
        name = str(theirs.get("Name", "")).lstrip("/")
        for ours in inventory.containers:
            for port in ours.ports:
                clash = next((b for b in _bindings(theirs) if _same_socket(port, *b)), None)
                if clash:
                    key = port_keys.get(port.external)
                    if address_key:
                        change = f"set {address_key} to another address of that host"
                    else:
                        change = f"set {key} (or edge.bindAddress)" if key else "change that port"
                    findings.append(
                        Finding(
                            "problem",
                            f"port {port.host_ip}:{port.external}/{port.protocol} that {ours.name} publishes is held by container "
                            f"{name!r} ({clash[0]}:{clash[1]}), which is not this stack's; stop that container, "
                            f"or {change} in Pulumi.{inventory.stack}.yaml",
                        )
                    )
    return findings


def check_container_names(containers: Sequence[Mapping[str, Any]], inventory: Inventory) -> list[Finding]:
    ours = {container.name for container in inventory.containers}
    return [
        Finding(
            "problem",
            f"the container name {name} is taken by a container that is not this stack's (no {STACK_LABEL}={inventory.prefix} label), "
            f"and Docker names are unique; remove or rename it (docker rm -f {name}), or give the stack another name",
        )
        for theirs in containers
        if (name := str(theirs.get("Name", "")).lstrip("/")) in ours
        and _foreign((theirs.get("Config") or {}).get("Labels"), inventory.prefix)
    ]


def check_memory(info: Mapping[str, Any], inventory: Inventory) -> list[Finding]:
    total_mib = int(info.get("MemTotal") or 0) // (1024 * 1024)
    need = inventory.memory_mb
    if total_mib <= 0:
        return [Finding("warning", f"the host does not report its memory (MemTotal), so the stack's {need} MiB of container limits cannot be compared; check it has more")]
    where = f"Pulumi.{inventory.stack}.yaml"
    if need > total_mib:
        return [
            Finding(
                "problem",
                f"the stack's container memory limits add up to {need} MiB, more than the host's {total_mib} MiB (MemTotal); "
                f"lower storage.memoryMb and the other memoryMb settings in {where}, or deploy to a host with more memory",
            )
        ]
    if need > MEMORY_WARNING_SHARE * total_mib:
        return [
            Finding(
                "warning",
                f"the stack's container memory limits add up to {need} MiB, {need / total_mib:.0%} of the host's {total_mib} MiB, "
                f"leaving little for the host and other containers; lower the memoryMb settings in {where} or add memory",
            )
        ]
    return [Finding("info", f"memory: the stack's limits add up to {need} MiB of the host's {total_mib} MiB")]


def is_local_daemon(target: DockerTarget, info: Mapping[str, Any]) -> bool:
    """The daemon runs on this machine (not on another host, nor in Docker Desktop's or Colima's VM)."""
    root = str(info.get("DockerRootDir") or "")
    return target.endpoint.startswith("unix://") and info.get("Name") == socket.gethostname() and os.path.isdir(root)


def check_disk(
    info: Mapping[str, Any], inventory: Inventory, target: DockerTarget, free_bytes: Callable[[str], int]
) -> list[Finding]:
    root = str(info.get("DockerRootDir") or "/var/lib/docker")
    logs_gib = sum(container.log_ceiling_mb for container in inventory.containers) / 1024
    need = IMAGE_DISK_ALLOWANCE_GIB + logs_gib
    needs = f"about {need:.1f} GiB for images and logs"
    if not is_local_daemon(target, info):
        return [
            Finding(
                "info",
                f"free disk under {root} on {target.endpoint} cannot be measured from here; check it on that host "
                f"(df -h {root}): the stack's {len(inventory.volumes)} volumes go there, and it needs {needs} plus room for data",
            )
        ]
    try:
        free = free_bytes(root) / GIB
    except OSError as error:
        return [Finding("warning", f"free disk under {root} cannot be measured ({error.strerror}); check it with df -h {root}: the stack needs {needs} plus room for data")]
    if free < need:
        return [
            Finding(
                "problem",
                f"only {free:.1f} GiB is free under {root}, where the stack's {len(inventory.volumes)} volumes go, and it needs {needs}; "
                "free space there, or move Docker's data-root to a larger disk",
            )
        ]
    if free < need + DATA_HEADROOM_GIB:
        return [
            Finding(
                "warning",
                f"{free:.1f} GiB is free under {root}, which leaves less than {DATA_HEADROOM_GIB:.0f} GiB for MinIO data once {needs} "
                "are taken; free space there, or move Docker's data-root to a larger disk",
            )
        ]
    return [Finding("info", f"disk: {free:.1f} GiB free under {root}, where the stack's {len(inventory.volumes)} volumes go")]


def drive_directories(inventory: Inventory) -> list[str]:
    """The host directories the stack's volumes bind (storage.drivePaths), in the order of the volumes."""
    return [volume.device for volume in inventory.volumes if volume.device]


def probe_image(inventory: Inventory) -> str:
    """An image the stack pulls anyway and that has a `stat` (busybox): the edge proxy's nginx on Alpine."""
    return next(c.image for c in inventory.containers if c.service == "nginx")


def check_drive_directories(cli: DockerCli, inventory: Inventory, image: str | None = None) -> list[Finding]:
    """Each drive directory exists on the Docker host, and no two are on one filesystem.

    One throwaway container (no network, every directory mounted read-only with --mount, which never
    creates a missing source as -v would) of `image` (default `probe_image`) prints each directory's
    device number.
    """
    paths = drive_directories(inventory)
    if not paths:
        return []
    mounts = [arg for index, path in enumerate(paths) for arg in ("--mount", f"type=bind,source={path},target=/drives/{index},readonly")]
    targets = [f"/drives/{index}" for index in range(len(paths))]
    image = image or probe_image(inventory)
    try:
        out = cli.run("run", "--rm", "--network", "none", *mounts, "--entrypoint", "stat", image, "-c", "%d %n", *targets)
    except DockerUnavailable as error:
        missing = MISSING_BIND_SOURCE.search(str(error))
        if missing:
            path = missing.group(1).rstrip(".;,)")
            return [
                Finding(
                    "problem",
                    f"storage.drivePaths: {path} does not exist on the Docker host ({cli.endpoint}); mount the drive's disk there "
                    "and create the directory (the drives after it are checked once it exists)",
                )
            ]
        return [Finding("warning", f"storage.drivePaths could not be checked on the Docker host: {error}")]
    devices: dict[str, list[str]] = {}
    for line in out.splitlines():
        device, _, target = line.partition(" ")
        if target in targets:
            devices.setdefault(device, []).append(paths[targets.index(target)])
    shared = [group for group in devices.values() if len(group) > 1]
    if shared:
        return [
            Finding(
                "warning",
                f"storage.drivePaths: {', '.join(group)} are on one filesystem: losing that disk loses all of those drives at once, "
                "so this layout survives no disk loss; give each drive a directory on a disk of its own",
            )
            for group in shared
        ]
    return [Finding("info", f"storage.drivePaths: the {len(paths)} drive directories exist, each on a filesystem of its own")]


def check_docker_socket(cli: DockerCli, inventory: Inventory, gid_key: str, image: str | None = None) -> list[Finding]:
    """The group that owns the Docker socket on the host is the one the Docker API proxy there runs in.

    The proxy mounts the socket and runs as nobody in the group `gid_key` names (or as root when it is
    unset); in any other group it cannot connect, and the log agent behind it ships nothing. One
    throwaway container (no network, the socket mounted read-only) of `image` (default
    `probe_image`) prints the socket's group.
    """
    proxy = next((c for c in inventory.containers if c.service == DOCKER_API_PROXY), None)
    if proxy is None or not proxy.host_paths:
        return []
    socket_path, (_, _, group) = proxy.host_paths[0], proxy.user.partition(":")
    if proxy.user in ("", "0:0") or not group.isdigit():
        return [Finding("info", f"docker socket: the Docker API proxy reads {socket_path} as root ({gid_key} unset)")]
    mount = f"type=bind,source={socket_path},target=/probe/docker.sock,readonly"
    try:
        out = cli.run("run", "--rm", "--network", "none", "--mount", mount, "--entrypoint", "stat", image or probe_image(inventory),
                      "-c", "%g %n", "/probe/docker.sock")
    except DockerUnavailable as error:
        if MISSING_BIND_SOURCE.search(str(error)):
            return [Finding("problem", f"monitoring.dockerSocket: {socket_path} does not exist on the Docker host ({cli.endpoint}); "
                                       "give the path of its Docker API socket")]
        return [Finding("warning", f"the Docker socket's group could not be checked on the Docker host: {error}")]
    owner = out.split()[0] if out.split() else ""
    if owner != group:
        return [
            Finding(
                "problem",
                f"{socket_path} on the Docker host ({cli.endpoint}) belongs to group {owner or '(unknown)'}, but the Docker API proxy "
                f"there runs in group {group}: it could not connect, and the log agent behind it would ship nothing; "
                f"set {gid_key} to {owner or 'that group'}",
            )
        ]
    return [Finding("info", f"docker socket: {socket_path} belongs to group {group}, which the Docker API proxy runs in")]


@dataclass
class Report:
    target: DockerTarget
    """The stack's own host."""
    findings: list[Finding]
    node_hosts: tuple[DockerTarget, ...] = ()
    """Each node's own host, minio1's first, on a multi-host stack (storage.hosts)."""

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "problem"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def _disk_free(path: str) -> int:
    return shutil.disk_usage(path).free


def _checked_daemon(
    target: DockerTarget,
    inventory: Inventory,
    port_keys: Mapping[int, str],
    timeout: float,
    free_bytes: Callable[[str], int],
    probe: str | None,
    address_key: str | None = None,
    gid_key: str = "monitoring.dockerSocketGid",
) -> list[Finding]:
    """Every check of one daemon against what the stack puts on it; a silent daemon is one problem."""
    cli = DockerCli(timeout, target)
    try:
        host = read_host(cli)
    except DockerUnavailable as error:
        return [Finding("problem", str(error))]
    except json.JSONDecodeError as error:
        return [Finding("problem", f"the docker CLI answered with something that is not JSON ({error}); run `docker info` by hand to see why")]
    findings = check_engine(host.version)
    findings += check_image_store(host.info, inventory)
    findings += check_subnets(host.networks, inventory)
    findings += check_ports(host.containers, inventory, port_keys, address_key)
    findings += check_container_names(host.containers, inventory)
    findings += check_memory(host.info, inventory)
    findings += check_disk(host.info, inventory, target, free_bytes)
    probing = DockerCli(max(timeout, DRIVE_PROBE_TIMEOUT_SECONDS), target)
    findings += check_drive_directories(probing, inventory, probe)
    findings += check_docker_socket(probing, inventory, gid_key, probe)
    return findings


def node_target(index: int, host: NodeHostSettings) -> DockerTarget:
    """The daemon of node `index`'s host (1-based), as the program's provider for it reaches it."""
    key = f"storage.hosts[{index - 1}].dockerHost"
    return DockerTarget(
        host.docker_host,
        key,
        {"DOCKER_HOST": host.docker_host, "DOCKER_CONTEXT": None},
        f"check that Docker Engine runs on that host and that this machine reaches it, or correct {key}",
    )


def _about(host: str, findings: list[Finding]) -> list[Finding]:
    return [Finding(finding.severity, f"{host}: {finding.text}") for finding in findings]


def check_host(
    inventory: Inventory,
    port_keys: Mapping[int, str],
    stack_values: Mapping[str, Any],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    free_bytes: Callable[[str], int] = _disk_free,
    hosts: Sequence[NodeHostSettings] = (),
) -> Report:
    """Every check against the host the stack would be deployed on, and against each node's own host
    (`hosts`, storage.hosts): each judged on what the stack puts there, each finding naming its host."""
    findings: list[Finding] = []
    if inventory.assumed:
        findings.append(
            Finding(
                "info",
                f"Pulumi.{inventory.stack}.yaml does not set {', '.join(inventory.assumed)} yet; "
                "the preflight assumed throwaway values (no figure it checks depends on them), the deploy will ask for them",
            )
        )
    # the probes of drive directories and the Docker socket run the edge proxy's image on every host, the one with a `stat` for sure
    probe = probe_image(inventory)
    try:
        target = docker_target(stack_values, DockerCli(timeout))
    except DockerUnavailable as error:
        target = DockerTarget("(unknown)", "a docker context")
        own = [Finding("problem", str(error))]
    else:
        own = _checked_daemon(target, inventory.on_host(None), port_keys, timeout, free_bytes, probe)
    if not hosts:
        return Report(target, [*findings, *own])
    findings += _about(f"the stack's own host {target.endpoint}", own)
    nodes = tuple(node_target(index, host) for index, host in enumerate(hosts, start=1))
    for index, node in enumerate(nodes, start=1):
        checked = _checked_daemon(
            node, inventory.on_host(node.endpoint), {}, timeout, free_bytes, probe,
            address_key=f"storage.hosts[{index - 1}].address", gid_key=f"storage.hosts[{index - 1}].dockerSocketGid",
        )
        findings += _about(f"minio{index}'s host {node.endpoint} (storage.hosts[{index - 1}])", checked)
    return Report(target, findings, nodes)
