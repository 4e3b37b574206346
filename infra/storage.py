"""The storage tier: N MinIO nodes with D drives each, one named volume per drive, no published port."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.identity import minio_openid
from infra.rendering import RenderedFile, render_template
from infra.secrets import SecretValues
from infra.services import audit_sink
from infra.tier import Tier, TierArgs

API_PORT = 9000
CONSOLE_PORT = 9001
DATA_ROOT = "/data"
CONFIG_ENV_FILE = "/etc/minio/config.env"
# the key name is recorded in every encrypted object: renaming it makes them unreadable
KMS_KEY_NAME = "minio-platform-kms"


def node_name(index: int) -> str:
    return f"minio{index}"


def server_command(nodes: int, drives_per_node: int) -> list[str]:
    """MinIO's own notation: `{1...N}` expands to every node, `{1...D}` to every drive of each."""
    drives = f"{DATA_ROOT}{{1...{drives_per_node}}}" if drives_per_node > 1 else f"{DATA_ROOT}1"
    return [
        "server",
        "--address",
        f":{API_PORT}",
        "--console-address",
        f":{CONSOLE_PORT}",
        f"http://minio{{1...{nodes}}}:{API_PORT}{drives}",
    ]


def minio_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    content = render_template(
        "minio/config.env.j2",
        stack=config.name,
        root_user=secrets.minio_root_user,
        root_password=secrets.minio_root_password,
        prometheus_auth_type=config.storage.prometheus_auth_type,
        audit_webhook_endpoint=audit_sink.MINIO_WEBHOOK_URL,
        audit_webhook_token=secrets.audit_webhook_token,
        parity=config.storage.parity,
        # console login and STS web identity through Keycloak; the console lives under the proxy's /minio-console
        openid=minio_openid(config, secrets),
        browser_redirect_url=config.edge.public_urls(config.environment).console,
        browser_session_duration=config.identity.console_session_duration,
        # MinIO's single-key KMS, only when some catalogue bucket encrypts (name:base64-of-32-bytes)
        kms_secret_key=f"{KMS_KEY_NAME}:{secrets.minio_kms_secret_key}" if config.needs_kms else None,
    )
    return [RenderedFile("minio/config.env", CONFIG_ENV_FILE, content, secret=True)]


class MinioClusterArgs(TierArgs):
    """The storage tier needs nothing beyond the stack context; it starts after what `opts` names."""


class MinioCluster(Tier):
    """N MinIO nodes of D drives each, by node name: minio1, minio2, ..."""

    def __init__(self, name: str, args: MinioClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:storage:MinioCluster", name, args, opts)
        config, segments = self.config, self.stack.segments
        storage = config.storage
        image = self.image("minio-image", storage.image)
        uploads = self.secret_uploads(minio_files)
        command = server_command(storage.nodes, storage.drives_per_node)
        # data outlives every update; on prod (or when asked) it also outlives a destroy
        for index in range(1, storage.nodes + 1):
            node = node_name(index)
            drives = [
                docker.ContainerVolumeArgs(
                    volume_name=self.volume(f"{node}-data{drive}", "minio", node=node, drive=str(drive)).name,
                    container_path=f"{DATA_ROOT}{drive}",
                )
                for drive in range(1, storage.drives_per_node + 1)
            ]
            self.container(
                ContainerSpec(
                    service="minio",
                    name=node,
                    image=image,
                    command=command,
                    envs=[f"MINIO_CONFIG_ENV_FILE={CONFIG_ENV_FILE}"],
                    uploads=uploads,
                    volumes=drives,
                    networks=[
                        Attachment(segments.storage.network, aliases=[node], ipv4_address=segments.storage.address("minio", index))
                    ],
                    # liveness only: `mc ready` waits for write quorum and would mark every survivor unhealthy
                    healthcheck=Healthcheck(["CMD", "curl", "-fsS", f"http://localhost:{API_PORT}/minio/health/live"]),
                    memory_mb=storage.memory_mb,
                    labels={"node": node},
                )
            )
        self.register_outputs({"nodes": [container.name for container in self.containers.values()]})
