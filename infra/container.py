"""The conventions every container of the stack follows, written once.

Pinned image pulled as a `RemoteImage` and referenced by id, labels naming stack and service,
json-file log rotation, restart policy, memory limit without swap, no-new-privileges, every
capability dropped but those the image's start-up needs, a healthcheck, and only the networks
it is given. (No pids limit: the provider's container schema has no PidsLimit, and an nproc
ulimit counts the user's processes across the whole host.) Root filesystems stay writable: the daemon refuses uploads into a
read-only one outside volumes (moby daemon/archive.go `containerExtractToDir`), and uploads are
how configuration reaches a container on a remote host. Named containers are replaced delete-first, and a changed
healthcheck forces replacement because Docker cannot change it on a running container.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig

LABEL_PREFIX = "io.minio-platform"
STACK_LABEL = f"{LABEL_PREFIX}.stack"
SERVICE_LABEL = f"{LABEL_PREFIX}.service"


@dataclass(frozen=True)
class Naming:
    """Names and labels of one stack's Docker objects; the prefix keeps stacks apart on one host."""

    prefix: str

    def of(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def labels(self, service: str, **extra: str) -> dict[str, str]:
        return {STACK_LABEL: self.prefix, SERVICE_LABEL: service} | {f"{LABEL_PREFIX}.{k}": v for k, v in extra.items()}


@dataclass(frozen=True)
class Healthcheck:
    test: Sequence[str]
    # durations written the way Docker (Go) prints them, so a refresh shows no phantom diff
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 5
    start_period: str = "30s"

    def args(self) -> docker.ContainerHealthcheckArgs:
        return docker.ContainerHealthcheckArgs(
            tests=list(self.test),
            interval=self.interval,
            timeout=self.timeout,
            retries=self.retries,
            start_period=self.start_period,
        )


@dataclass(frozen=True)
class Attachment:
    """A container's place on one network: its DNS aliases and, for proxied services, a fixed address."""

    network: docker.Network
    aliases: Sequence[str] = ()
    ipv4_address: str | None = None

    def args(self) -> docker.ContainerNetworksAdvancedArgs:
        return docker.ContainerNetworksAdvancedArgs(
            name=self.network.name,
            aliases=list(self.aliases) or None,
            ipv4_address=self.ipv4_address,
        )


@dataclass(frozen=True)
class ContainerSpec:
    service: str
    """What the container is ('minio', 'nginx'); its `service` label."""
    name: str
    """Its name within the stack ('minio1'); also its host name."""
    image: docker.RemoteImage
    healthcheck: Healthcheck
    networks: Sequence[Attachment]
    memory_mb: int
    command: Sequence[str] | None = None
    envs: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    uploads: pulumi.Input[Sequence[pulumi.Input[docker.ContainerUploadArgs]]] | None = None
    volumes: Sequence[docker.ContainerVolumeArgs] = ()
    ports: Sequence[docker.ContainerPortArgs] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    capabilities: Sequence[str] = ()
    """Added back after every capability is dropped: only what the image's own start-up needs."""
    stop_grace_seconds: int = 30
    wait_until_healthy: bool = True
    hosts: Mapping[str, str] = field(default_factory=dict)
    """Extra `hosts` entries, name to address: how a container on one host names a node on another."""


def pinned_image(
    resource_name: str, reference: str, parent: pulumi.Resource, provider: docker.Provider | None = None
) -> docker.RemoteImage:
    """Pull an already validated, pinned image reference; kept locally so a destroy does not delete it.

    `provider` is the Docker host to pull on (another node's host); None is the stack's own.
    """
    return docker.RemoteImage(
        resource_name, name=reference, keep_locally=True, opts=pulumi.ResourceOptions(parent=parent, provider=provider)
    )


def data_volume(
    name: str,
    service: str,
    config: StackConfig,
    naming: Naming,
    parent: pulumi.Resource,
    device: str | None = None,
    provider: docker.Provider | None = None,
    **labels: str,
) -> docker.Volume:
    """A named volume for data that outlives every update: its name depends only on the stack and `name`.

    With `keepDataOnDestroy` (prod by default) it is also protected and left on the host by a destroy.
    With a `device` (a host directory), the local driver bind-mounts that directory instead of keeping
    the data under Docker's data root (`type=none,o=bind`: the directory must exist when a container
    mounts the volume, and removing the volume leaves its files in place).
    """
    keep = config.keep_data_on_destroy
    return docker.Volume(
        name,
        name=naming.of(name),
        labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in naming.labels(service, **labels).items()],
        driver="local" if device else None,
        driver_opts={"type": "none", "o": "bind", "device": device} if device else None,
        opts=pulumi.ResourceOptions(parent=parent, protect=keep, retain_on_delete=keep, provider=provider),
    )


def service_container(
    spec: ContainerSpec,
    config: StackConfig,
    naming: Naming,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    provider: docker.Provider | None = None,
) -> docker.Container:
    runtime = config.containers
    return docker.Container(
        spec.name,
        name=naming.of(spec.name),
        hostname=spec.name,
        # the image id, not the tag: the tag would show a permanent diff (pulumi-docker #325)
        image=spec.image.image_id,
        command=list(spec.command) if spec.command is not None else None,
        envs=spec.envs,
        uploads=spec.uploads,
        volumes=list(spec.volumes) or None,
        ports=list(spec.ports) or None,
        networks_advanced=[attachment.args() for attachment in spec.networks],
        hosts=[docker.ContainerHostArgs(host=name, ip=address) for name, address in spec.hosts.items()] or None,
        labels=[
            docker.ContainerLabelArgs(label=key, value=value)
            for key, value in naming.labels(spec.service, **spec.labels).items()
        ],
        healthcheck=spec.healthcheck.args(),
        restart=runtime.restart,
        memory=spec.memory_mb,
        # Unset, the daemon stores twice the memory (daemon/daemon_unix.go `adaptContainerSettings`)
        # and the provider reads it back, so every later `up` would show an update. Equal to the
        # memory limit means no swap: a storage node that swaps is slower than one that restarts.
        memory_swap=spec.memory_mb,
        security_opts=["no-new-privileges:true"],
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=list(spec.capabilities) or None),
        log_driver="json-file",
        log_opts={"max-size": runtime.log_max_size, "max-file": str(runtime.log_max_files)},
        user=spec.user,
        destroy_grace_seconds=spec.stop_grace_seconds,
        must_run=True,
        wait=spec.wait_until_healthy,
        wait_timeout=300,
        opts=pulumi.ResourceOptions(
            parent=parent,
            provider=provider,
            depends_on=list(depends_on),
            delete_before_replace=True,
            replace_on_changes=["healthcheck"],
            # a host without swap accounting stores -1 whatever is asked (`verifyPlatformContainerResources`)
            ignore_changes=["memorySwap"],
        ),
    )
