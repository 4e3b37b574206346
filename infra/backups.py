"""The scheduled operations services: `scripts/ops backup-schedule` (PostgreSQL dumps) and, with
`replication` set, `scripts/ops mirror-schedule` (offsite copies of buckets), each in a container,
so they run on the stack's own schedule without a cron on the Docker host.

Their image is built by the program from scripts/opscli/Dockerfile on top of the stack's PostgreSQL
image (pg_dump of exactly the server's version) with Python and the hash-locked minio SDK
installed at build time: the backup container sits on internal networks only and can download
nothing. It signs in to MinIO as the `backup-service` user (policy backup-service, created by
`scripts/ops bootstrap`) and to PostgreSQL as the database owner. The mirror signs in as
`mirror-service` (read-only on the mirrored buckets, also made by bootstrap) and needs a route out
to its target: storage-net is internal, so it also joins edge-net, the one segment with one.
Both talk to minio1, and to the next node that answers when minio1 does not (OPS_FALLBACK_ENDPOINTS).
Each serves the metrics of its runs on its storage-net address (`METRICS_PORT`), which Prometheus
scrapes as job `backup` or `mirror`: ScheduledJobFailed and ScheduledJobStale read them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi
import pulumi_docker as docker

from infra.cluster_ca import ca_certificate, ca_files
from infra.config import StackConfig
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.hosts import CA_FILE, node_host_entries
from infra.identity import POSTGRES_DATABASE, POSTGRES_PORT, POSTGRES_USER, postgres_user
from infra.networks import host_address
from infra.rendering import RenderedFile
from infra.secrets import SecretValues
from infra.storage import node_url
from infra.tier import Tier, TierArgs
from opscli.mirror import MIRROR_SERVICE_USER

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "scripts/opscli/Dockerfile"
# everything the Dockerfile copies: a change to any of them builds a new image
IMAGE_SOURCES = (".dockerignore", DOCKERFILE, "scripts/opscli/requirements.lock", "infra/__init__.py", "infra/cron.py")
SOURCE_PACKAGE = "scripts/opscli"
BACKUP_SERVICE_USER = "backup-service"
# in the postgres user's home, writable in both the Debian and the Alpine PostgreSQL images
HEARTBEAT_FILE = "/var/lib/postgresql/ops-backup-heartbeat"
# the scheduler touches its heartbeat at least every 30 s; three missed beats mean it is stuck
HEARTBEAT_MAX_AGE_SECONDS = 90
SETTINGS_FILE = "/etc/ops/ops.env"
MIRROR_HEARTBEAT_FILE = "/var/lib/postgresql/ops-mirror-heartbeat"
# each scheduled service serves the metrics of its runs here, on its storage-net address, where Prometheus reads them
METRICS_PORT = 9108
TARGET_CA_FILE = "/etc/ops/target-ca.pem"


def image_sources_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the files the backup image is built from (names and contents), in a stable order."""
    files = [root / name for name in IMAGE_SOURCES]
    files += sorted(path for path in (root / SOURCE_PACKAGE).rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def metrics_listen(config: StackConfig, service: str) -> str:
    """`service`'s metrics listener ('backup', 'mirror'): its fixed address on storage-net, so no other segment reaches it."""
    return f"{host_address(config.networks.storage.subnet, service)}:{METRICS_PORT}"


def backup_command(config: StackConfig, postgres_host: str) -> list[str]:
    return [
        "backup-schedule",
        "--schedule", config.backup.schedule,
        "--bucket", config.backup.bucket,
        "--database", POSTGRES_DATABASE,
        "--pg-host", postgres_host,
        "--pg-port", str(POSTGRES_PORT),
        "--pg-user", POSTGRES_USER,
        "--heartbeat", HEARTBEAT_FILE,
        "--metrics-listen", metrics_listen(config, "backup"),
        "--no-progress",
        *node_trust(config),
    ]


def node_trust(config: StackConfig) -> list[str]:
    """With nodes on hosts of their own, the option that trusts the stack's CA for the connection to minio1."""
    return ["--ca-file", CA_FILE] if config.storage.multi_host else []


def node_endpoint(config: StackConfig) -> str:
    """minio1's S3 API: over TLS when it runs on a host of its own."""
    return node_url(config, 1)


def fallback_endpoints(config: StackConfig) -> str:
    """The other nodes' S3 APIs, in order, for OPS_FALLBACK_ENDPOINTS: a run that cannot reach minio1
    goes to the first of them that answers, so a stopped node or a lost host stops no backup."""
    return ",".join(node_url(config, index) for index in range(2, config.storage.total_nodes + 1))


def backup_environment(config: StackConfig, secrets: SecretValues) -> list[str]:
    """The service's connection settings, credentials included, as the lines of its settings file."""
    return [
        f"OPS_ENDPOINT={node_endpoint(config)}",
        f"OPS_FALLBACK_ENDPOINTS={fallback_endpoints(config)}",
        f"OPS_ACCESS_KEY={BACKUP_SERVICE_USER}",
        f"OPS_SECRET_KEY={secrets.backup_service_secret_key}",
        f"PGPASSWORD={secrets.postgres_password}",
    ]


def backup_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    """The settings file, read through OPS_ENV_FILE: neither the command line nor `docker inspect` shows it."""
    if not config.backup.enabled:
        return []
    content = "\n".join(backup_environment(config, secrets)) + "\n"
    return [RenderedFile("backup/ops.env", SETTINGS_FILE, content, secret=True), *ca_files("backup", ca_certificate(config, secrets))]


def ops_image(tier: Tier, service: str) -> docker.RemoteImage:
    """The operations image, built from the project for `service` ('backup', 'mirror')."""
    config, naming = tier.config, tier.stack.naming
    sources = image_sources_digest()
    return docker.RemoteImage(
        f"{service}-image",
        # a local tag named after the sources: new code, new tag, new image
        name=f"{naming.of(service)}:{sources[:16]}",
        # The engine runs the program and the provider with the directory of `main` (infra/) as
        # working directory (pulumi/pulumi pkg/engine/project.go `getPwdMain`), and the provider
        # resolves the context with filepath.Abs: so the context is absolute. On the provider's
        # default buildx path the Dockerfile is relative to the context and labels go in `label`
        # (`labels` is read by the legacy builder only; terraform-provider-docker
        # internal/provider/resource_docker_image_funcs.go, docker_buildx_build.go).
        build=docker.RemoteImageBuildArgs(
            context=str(PROJECT_ROOT),
            dockerfile=DOCKERFILE,
            build_args={"POSTGRES_IMAGE": config.identity.postgres_image},
            label=naming.labels(service),
        ),
        triggers={"sources": sources, "postgresImage": config.identity.postgres_image},
        keep_locally=True,
        opts=pulumi.ResourceOptions(parent=tier),
    )


def heartbeat_check(path: str) -> Healthcheck:
    return Healthcheck(
        ["CMD-SHELL", f'test $(( $(date +%s) - $(stat -c %Y {path}) )) -lt {HEARTBEAT_MAX_AGE_SECONDS}'],
        interval="30s",
        start_period="1m0s",
    )


class ScheduledBackupArgs(TierArgs):
    """The backup service needs nothing beyond the stack context; it starts after PostgreSQL and MinIO (`opts`)."""


class ScheduledBackup(Tier):
    def __init__(self, name: str, args: ScheduledBackupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:operations:ScheduledBackup", name, args, opts)
        config, segments = self.config, self.stack.segments
        image = ops_image(self, "backup")
        postgres_host = segments.database.address("postgres")
        container = self.container(
            ContainerSpec(
                service="backup",
                name="backup",
                image=image,
                command=backup_command(config, postgres_host),
                envs=[f"OPS_ENV_FILE={SETTINGS_FILE}"],
                # the image runs as the postgres user of the PostgreSQL image it is built on
                uploads=self.secret_uploads(backup_files, postgres_user(config.identity.postgres_image)),
                networks=[
                    Attachment(segments.storage.network, aliases=["backup"], ipv4_address=segments.storage.address("backup")),
                    Attachment(segments.database.network, aliases=["backup"], ipv4_address=segments.database.address("backup")),
                ],
                healthcheck=heartbeat_check(HEARTBEAT_FILE),
                memory_mb=config.backup.memory_mb,
                hosts=node_host_entries(config),
            )
        )
        self.register_outputs({"backup": container.name})


def mirror_command(config: StackConfig) -> list[str]:
    replication = config.replication
    assert replication is not None
    command = [
        "mirror-schedule",
        "--schedule", replication.schedule,
        "--target-endpoint", replication.target,
        "--target-bucket-prefix", replication.bucket_prefix,
        "--part-size-mib", str(replication.part_size_mib),
        "--heartbeat", MIRROR_HEARTBEAT_FILE,
        "--metrics-listen", metrics_listen(config, "mirror"),
        "--no-progress",
        *node_trust(config),
    ]
    command += ["--delete"] if replication.deletes else []
    command += ["--all-versions"] if replication.all_versions else []
    command += ["--target-ca-file", TARGET_CA_FILE] if replication.ca_certificate else []
    return command + replication.bucket_names(config.buckets)


def mirror_environment(config: StackConfig, secrets: SecretValues) -> list[str]:
    """The mirror's credentials for both ends, as the lines of its settings file."""
    return [
        f"OPS_ENDPOINT={node_endpoint(config)}",
        f"OPS_FALLBACK_ENDPOINTS={fallback_endpoints(config)}",
        f"OPS_ACCESS_KEY={MIRROR_SERVICE_USER}",
        f"OPS_SECRET_KEY={secrets.mirror_service_secret_key}",
        f"OPS_TARGET_ACCESS_KEY={secrets.replication_target_access_key}",
        f"OPS_TARGET_SECRET_KEY={secrets.replication_target_secret_key}",
    ]


def mirror_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    """The settings file, read through OPS_ENV_FILE, and the target's CA certificate when one is given."""
    if config.replication is None:
        return []
    files = [RenderedFile("mirror/ops.env", SETTINGS_FILE, "\n".join(mirror_environment(config, secrets)) + "\n", secret=True)]
    files += ca_files("mirror", ca_certificate(config, secrets))
    if config.replication.ca_certificate:
        files.append(RenderedFile("mirror/target-ca.pem", TARGET_CA_FILE, config.replication.ca_certificate))
    return files


class ScheduledMirrorArgs(TierArgs):
    """The mirror needs nothing beyond the stack context; it starts after MinIO (`opts`)."""


class ScheduledMirror(Tier):
    def __init__(self, name: str, args: ScheduledMirrorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:operations:ScheduledMirror", name, args, opts)
        config, segments, replication = self.config, self.stack.segments, self.config.replication
        assert replication is not None, "the program adds the mirror only when replication is set"
        image = ops_image(self, "mirror")
        container = self.container(
            ContainerSpec(
                service="mirror",
                name="mirror",
                image=image,
                command=mirror_command(config),
                envs=[f"OPS_ENV_FILE={SETTINGS_FILE}"],
                uploads=self.secret_uploads(mirror_files, postgres_user(config.identity.postgres_image)),
                # storage-net has no route out; edge-net does, and nothing there can connect to the mirror.
                # On storage-net, Prometheus reads its metrics at its fixed address.
                networks=[segments.storage.attachment("mirror"), Attachment(segments.edge.network)],
                healthcheck=heartbeat_check(MIRROR_HEARTBEAT_FILE),
                memory_mb=replication.memory_mb,
                hosts=node_host_entries(config),
            )
        )
        self.register_outputs({"mirror": container.name})
