"""The stack CA's certificate for the services that talk TLS to another host (storage.hosts): Prometheus,
the blackbox exporter, the backup and the mirror to the nodes, the node hosts' log agents to the gateway.

On a one-host stack there is no CA and nothing here changes a file or an upload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.hosts import CA_FILE
from infra.rendering import RenderedFile, as_uploads
from infra.secrets import SecretValues
from infra.tier import Tier


def ca_certificate(config: StackConfig, secrets: SecretValues) -> str | None:
    """The CA certificate (PEM) of a multi-host stack; None on one host."""
    if not config.storage.multi_host:
        return None
    if secrets.cluster_tls is None:
        raise ValueError(
            f"stack {config.name!r} puts its nodes on hosts of their own (storage.hosts), but the secret values "
            "carry no cluster CA: render it with SecretValues.throwaway(nodes_on_hosts=...) or the deployed CA"
        )
    return secrets.cluster_tls.ca_certificate


def ca_files(service: str, certificate: str | None) -> list[RenderedFile]:
    """The CA certificate where `service`'s container receives it (CA_FILE); none on one host."""
    return [] if certificate is None else [RenderedFile(f"{service}/cluster-ca.crt", CA_FILE, certificate)]


def uploads_with_ca(
    tier: Tier, render: Callable[[str | None], Sequence[RenderedFile]]
) -> pulumi.Input[Sequence[pulumi.Input[docker.ContainerUploadArgs]]]:
    """Uploads of `render(certificate)`: plain on one host; on a multi-host stack they wait for the CA,
    which comes with the secret values (and so stays a secret Output, though a certificate is public)."""
    config = tier.config
    if not config.storage.multi_host:
        return as_uploads(render(None))
    return pulumi.Output.secret(tier.stack.secrets.apply(lambda plain: as_uploads(render(ca_certificate(config, plain)))))
