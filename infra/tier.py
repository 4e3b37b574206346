"""What every tier is built from, and the component base class that builds its containers.

A tier (`MinioCluster`, `Identity`, `EdgeProxy`, `Monitoring`, `ScheduledBackup`) is a Pulumi
component taking `(name, args, opts)`: its arguments carry the shared `StackContext` and whatever
is the tier's own; what it waits for comes through `opts.depends_on`, and every container of the
tier waits for the same (containers are what Docker orders, not components).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import ContainerSpec, Naming, data_volume, pinned_image, service_container
from infra.hosts import NodeHosts
from infra.networks import Segments
from infra.rendering import ROOT, FileOwner, RenderedFile, as_uploads
from infra.secrets import SecretValues


@dataclass(frozen=True)
class StackContext:
    """The validated config, the names, the network segments, the secret values and the node hosts of one stack."""

    config: StackConfig
    naming: Naming
    segments: Segments
    secrets: pulumi.Output[SecretValues]
    node_hosts: NodeHosts | None = None
    """The node hosts of a multi-host stack (storage.hosts); None when every node runs on the stack's own."""


@dataclass(frozen=True)
class TierArgs:
    stack: StackContext


def _resources(depends_on: object) -> list[pulumi.Resource]:
    if depends_on is None:
        return []
    if isinstance(depends_on, pulumi.Resource):
        return [depends_on]
    if isinstance(depends_on, Sequence):
        return [resource for resource in depends_on if isinstance(resource, pulumi.Resource)]
    raise TypeError("a tier's depends_on must be resources, not outputs")


class Tier(pulumi.ComponentResource):
    containers: dict[str, docker.Container]
    """By name in the stack: 'minio1', 'keycloak', ..."""
    volumes: list[docker.Volume]

    def __init__(self, type_token: str, name: str, args: TierArgs, opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(type_token, name, None, opts)
        self.stack = args.stack
        self.config = args.stack.config
        self.containers = {}
        self.volumes = []
        self._waits_for = _resources(opts.depends_on if opts else None)

    def image(self, resource_name: str, reference: str, provider: docker.Provider | None = None) -> docker.RemoteImage:
        return pinned_image(resource_name, reference, self, provider)

    def volume(
        self, name: str, service: str, device: str | None = None, provider: docker.Provider | None = None, **labels: str
    ) -> docker.Volume:
        created = data_volume(name, service, self.config, self.stack.naming, self, device, provider, **labels)
        self.volumes.append(created)
        return created

    def data_mount(self, service: str, container_path: str) -> docker.ContainerVolumeArgs:
        """The volume `<service>-data`, mounted at `container_path`."""
        created = self.volume(f"{service}-data", service)
        return docker.ContainerVolumeArgs(volume_name=created.name, container_path=container_path)

    def secret_uploads(
        self, render: Callable[[StackConfig, SecretValues], list[RenderedFile]], owner: FileOwner = ROOT
    ) -> pulumi.Output[list[docker.ContainerUploadArgs]]:
        """Files rendered with the secret values, the secret ones readable by `owner` only; uploads of a
        secret Output stay secret in the state."""
        config = self.config
        return pulumi.Output.secret(self.stack.secrets.apply(lambda plain: as_uploads(render(config, plain), owner)))

    def container(
        self, spec: ContainerSpec, depends_on: Sequence[pulumi.Resource] = (), provider: docker.Provider | None = None
    ) -> docker.Container:
        """`spec` on the stack's own host, or through `provider` on another."""
        created = service_container(
            spec, self.config, self.stack.naming, self, [*depends_on, *self._waits_for], provider
        )
        self.containers[spec.name] = created
        return created
