"""The storage tier: MinIO server pools of N nodes with D drives each, one named volume per drive, no published port."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.identity import minio_openid
from infra.quorum import ClusterLayout, Pool
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


def pool_argument(pool: Pool) -> str:
    """MinIO's own notation for one pool: `{1...4}` expands to its nodes, `{1...D}` to every drive of each."""
    drives = pool.layout.drives_per_node
    drive_paths = f"{DATA_ROOT}{{1...{drives}}}" if drives > 1 else f"{DATA_ROOT}1"
    return f"http://minio{{{pool.nodes[0]}...{pool.nodes[-1]}}}:{API_PORT}{drive_paths}"


def server_command(layout: ClusterLayout) -> list[str]:
    """The same command on every node: one argument per pool, in the order the pools were added."""
    return [
        "server",
        "--address",
        f":{API_PORT}",
        "--console-address",
        f":{CONSOLE_PORT}",
        *(pool_argument(pool) for pool in layout.pools),
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
    """Every pool's nodes, numbered on across pools: minio1, minio2, ..., each with its pool's drives."""

    def __init__(self, name: str, args: MinioClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:storage:MinioCluster", name, args, opts)
        config, segments = self.config, self.stack.segments
        storage = config.storage
        image = self.image("minio-image", storage.image)
        uploads = self.secret_uploads(minio_files)
        layout = storage.layout()
        command = server_command(layout)
        # data outlives every update; on prod (or when asked) it also outlives a destroy
        for index, drive_count in layout.node_drives():
            node = node_name(index)
            drives = [
                docker.ContainerVolumeArgs(
                    volume_name=self.volume(
                        f"{node}-data{drive}", "minio", storage.drive_path(index, drive), node=node, drive=str(drive)
                    ).name,
                    container_path=f"{DATA_ROOT}{drive}",
                )
                for drive in range(1, drive_count + 1)
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
