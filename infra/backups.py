"""The scheduled PostgreSQL backup service: `scripts/ops backup-schedule` in a container, so backups
run on the stack's own schedule without a cron on the Docker host.

Its image is built by the program from scripts/opscli/Dockerfile on top of the stack's PostgreSQL
image (pg_dump of exactly the server's version) with Python and the hash-locked minio SDK
installed at build time: the container sits on internal networks only and can download nothing.
It signs in to MinIO as the `backup-service` user (policy backup-service, created by
`scripts/ops bootstrap`) and to PostgreSQL as the database owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import Attachment, ContainerSpec, Healthcheck, Naming, service_container
from infra.identity import POSTGRES_DATABASE, POSTGRES_PORT, POSTGRES_USER
from infra.networks import Segments
from infra.rendering import RenderedFile, as_uploads
from infra.secrets import SecretValues
from infra.storage import API_PORT, node_name

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


def image_sources_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the files the backup image is built from (names and contents), in a stable order."""
    files = [root / name for name in IMAGE_SOURCES]
    files += sorted(path for path in (root / SOURCE_PACKAGE).rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


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
        "--no-progress",
    ]


def backup_environment(secrets: SecretValues) -> list[str]:
    """The service's connection settings, credentials included, as the lines of its settings file."""
    return [
        f"OPS_ENDPOINT=http://{node_name(1)}:{API_PORT}",
        f"OPS_ACCESS_KEY={BACKUP_SERVICE_USER}",
        f"OPS_SECRET_KEY={secrets.backup_service_secret_key}",
        f"PGPASSWORD={secrets.postgres_password}",
    ]


def backup_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    """The settings file, read through OPS_ENV_FILE: neither the command line nor `docker inspect` shows it."""
    if not config.backup.enabled:
        return []
    content = "\n".join(backup_environment(secrets)) + "\n"
    return [RenderedFile("backup/ops.env", SETTINGS_FILE, content, secret=True)]


class ScheduledBackup(pulumi.ComponentResource):
    containers: dict[str, docker.Container]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        naming: Naming,
        segments: Segments,
        secrets: pulumi.Output[SecretValues],
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("minio-platform:operations:ScheduledBackup", name, None, opts)
        sources = image_sources_digest()
        image = docker.RemoteImage(
            "backup-image",
            # a local tag named after the sources: new code, new tag, new image
            name=f"{naming.of('backup')}:{sources[:16]}",
            build=docker.RemoteImageBuildArgs(
                # relative to the project root, where Pulumi runs the program: state stays free of local paths
                context=".",
                dockerfile=DOCKERFILE,
                build_args={"POSTGRES_IMAGE": config.identity.postgres_image},
                labels=naming.labels("backup"),
            ),
            triggers={"sources": sources, "postgresImage": config.identity.postgres_image},
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        postgres_host = segments.database.address("postgres")
        spec = ContainerSpec(
            service="backup",
            name="backup",
            image=image,
            command=backup_command(config, postgres_host),
            envs=[f"OPS_ENV_FILE={SETTINGS_FILE}"],
            uploads=pulumi.Output.secret(secrets.apply(lambda plain: as_uploads(backup_files(config, plain)))),
            networks=[
                Attachment(segments.storage.network, aliases=["backup"], ipv4_address=segments.storage.address("backup")),
                Attachment(segments.database.network, aliases=["backup"], ipv4_address=segments.database.address("backup")),
            ],
            healthcheck=Healthcheck(
                [
                    "CMD-SHELL",
                    f'test $(( $(date +%s) - $(stat -c %Y {HEARTBEAT_FILE}) )) -lt {HEARTBEAT_MAX_AGE_SECONDS}',
                ],
                interval="30s",
                start_period="1m0s",
            ),
            memory_mb=config.backup.memory_mb,
        )
        self.containers = {"backup": service_container(spec, config, naming, self, depends_on)}
        self.register_outputs({"backup": self.containers["backup"].name})
