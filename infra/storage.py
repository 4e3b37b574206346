"""The storage tier: MinIO server pools of N nodes with D drives each, one named volume per drive.

On one host the nodes publish no port. With `storage.hosts` each node runs on its own host (through
that host's provider, infra/hosts.py), publishes its API and console on its private address only,
names the other nodes and the stack's own host through `hosts` entries, and serves TLS with its
certificate from the stack's CA; the server command then names the nodes with https://.
"""

from __future__ import annotations

import functools

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.hosts import MINIO_CERTS_DIR, gateway_url, node_host_entries
from infra.identity import minio_openid
from infra.networks import host_address
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


# MinIO trusts the certificates under its certs directory's CAs/ as a client (cmd/server-main.go
# `serverHandleCmdArgs`: globalRootCAs is certs.GetRootCAs of that folder): the other nodes', and the
# gateway's for Keycloak's discovery document and the audit webhook
NODE_CA_FILE = f"{MINIO_CERTS_DIR}/CAs/cluster-ca.crt"


def pool_argument(pool: Pool, tls: bool = False) -> str:
    """MinIO's own notation for one pool: `{1...4}` expands to its nodes, `{1...D}` to every drive of each."""
    drives = pool.layout.drives_per_node
    drive_paths = f"{DATA_ROOT}{{1...{drives}}}" if drives > 1 else f"{DATA_ROOT}1"
    scheme = "https" if tls else "http"
    return f"{scheme}://minio{{{pool.nodes[0]}...{pool.nodes[-1]}}}:{API_PORT}{drive_paths}"


def server_command(layout: ClusterLayout, tls: bool = False) -> list[str]:
    """The same command on every node: one argument per pool, in the order the pools were added.

    With `tls` (nodes on hosts of their own) every node serves HTTPS with the certificate in its certs
    directory, and names the others with https://.
    """
    return [
        "server",
        *(["--certs-dir", MINIO_CERTS_DIR] if tls else []),
        "--address",
        f":{API_PORT}",
        "--console-address",
        f":{CONSOLE_PORT}",
        *(pool_argument(pool, tls) for pool in layout.pools),
    ]


def minio_scheme(config: StackConfig) -> str:
    """How every client speaks to the nodes: TLS once they run on hosts of their own."""
    return "https" if config.storage.multi_host else "http"


def node_url(config: StackConfig, index: int) -> str:
    """Node `index`'s S3 API by its name, as the stack's own services reach it."""
    return f"{minio_scheme(config)}://{node_name(index)}:{API_PORT}"


def stack_server_command(config: StackConfig) -> list[str]:
    return server_command(config.storage.layout(), tls=config.storage.multi_host)


def minio_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    content = render_template(
        "minio/config.env.j2",
        stack=config.name,
        root_user=secrets.minio_root_user,
        root_password=secrets.minio_root_password,
        prometheus_auth_type=config.storage.prometheus_auth_type,
        # from a node host, through the edge proxy's gateway listener on the stack's own host
        audit_webhook_endpoint=gateway_url(audit_sink.AUDIT_PATH) if config.storage.multi_host else audit_sink.MINIO_WEBHOOK_URL,
        audit_webhook_token=secrets.audit_webhook_token,
        parity=config.storage.parity,
        # console login and STS web identity through Keycloak; the console lives under the proxy's /minio-console
        openid=minio_openid(config, secrets),
        browser_redirect_url=config.edge.public_urls(config.environment).console,
        browser_session_duration=config.identity.console_session_duration,
        # MinIO's single-key KMS, only when some catalogue bucket encrypts (name:base64-of-32-bytes)
        kms_secret_key=f"{KMS_KEY_NAME}:{secrets.minio_kms_secret_key}" if config.needs_kms else None,
    )
    files = [RenderedFile("minio/config.env", CONFIG_ENV_FILE, content, secret=True)]
    if secrets.cluster_tls is not None:
        material = secrets.cluster_tls
        files.append(RenderedFile("minio/certs/CAs/cluster-ca.crt", NODE_CA_FILE, material.ca_certificate))
        for index, pair in material.nodes.items():
            files += [
                RenderedFile(f"minio/{node_name(index)}/certs/public.crt", f"{MINIO_CERTS_DIR}/public.crt", pair.certificate),
                RenderedFile(f"minio/{node_name(index)}/certs/private.key", f"{MINIO_CERTS_DIR}/private.key", pair.key, secret=True),
            ]
    return files


def node_files(config: StackConfig, secrets: SecretValues, node: int) -> list[RenderedFile]:
    """What `node` receives: the shared settings and, on its own host, the CA and its own certificate."""
    own = f"minio/{node_name(node)}/"
    return [
        item
        for item in minio_files(config, secrets)
        if not item.path.startswith("minio/minio") or item.path.startswith(own)
    ]


class MinioClusterArgs(TierArgs):
    """The storage tier needs nothing beyond the stack context; it starts after what `opts` names."""


class MinioCluster(Tier):
    """Every pool's nodes, numbered on across pools: minio1, minio2, ..., each with its pool's drives."""

    def __init__(self, name: str, args: MinioClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:storage:MinioCluster", name, args, opts)
        config, segments = self.config, self.stack.segments
        storage = config.storage
        hosts = self.stack.node_hosts.by_node if self.stack.node_hosts else {}
        layout = storage.layout()
        # one image and one set of files on the stack's own host; on hosts of their own, each node's
        # image is pulled there and it receives its own certificate
        if hosts:
            images = {index: self.image(f"{node_name(index)}-image", storage.image, host.provider) for index, host in hosts.items()}
            files = {index: self.secret_uploads(functools.partial(node_files, node=index)) for index in hosts}
        else:
            shared_image, shared_files = self.image("minio-image", storage.image), self.secret_uploads(minio_files)
            images = {index: shared_image for index, _ in layout.node_drives()}
            files = {index: shared_files for index, _ in layout.node_drives()}
        command = server_command(layout, tls=bool(hosts))
        # data outlives every update; on prod (or when asked) it also outlives a destroy
        for index, drive_count in layout.node_drives():
            node = node_name(index)
            host = hosts.get(index)
            provider = host.provider if host else None
            drives = [
                docker.ContainerVolumeArgs(
                    volume_name=self.volume(
                        f"{node}-data{drive}",
                        "minio",
                        storage.drive_path(index, drive),
                        provider,
                        node=node,
                        drive=str(drive),
                    ).name,
                    container_path=f"{DATA_ROOT}{drive}",
                )
                for drive in range(1, drive_count + 1)
            ]
            if host is None:
                network = Attachment(segments.storage.network, aliases=[node], ipv4_address=segments.storage.address("minio", index))
                ports: list[docker.ContainerPortArgs] = []
                # liveness only: `mc ready` waits for write quorum and would mark every survivor unhealthy
                probe = ["CMD", "curl", "-fsS", f"http://localhost:{API_PORT}/minio/health/live"]
            else:
                network = Attachment(host.network, aliases=[node], ipv4_address=host_address(host.subnet, "minio", index))
                # the other hosts reach the node at its private address, and nowhere else
                ports = [
                    docker.ContainerPortArgs(internal=port, external=port, ip=host.address) for port in (API_PORT, CONSOLE_PORT)
                ]
                probe = ["CMD", "curl", "-fsS", "--cacert", NODE_CA_FILE, f"https://localhost:{API_PORT}/minio/health/live"]
            self.container(
                ContainerSpec(
                    service="minio",
                    name=node,
                    image=images[index],
                    command=command,
                    envs=[f"MINIO_CONFIG_ENV_FILE={CONFIG_ENV_FILE}"],
                    uploads=files[index],
                    volumes=drives,
                    networks=[network],
                    ports=ports,
                    hosts=node_host_entries(config, index) if host else {},
                    healthcheck=Healthcheck(probe),
                    memory_mb=storage.memory_mb,
                    labels={"node": node},
                ),
                provider=provider,
            )
        self.register_outputs({"nodes": [container.name for container in self.containers.values()]})
