"""The Pulumi program: stack config in, components wired, outputs exported."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Pulumi runs this file by path; make the project importable without installing it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402
import pulumi_docker as docker  # noqa: E402

from infra.backups import ScheduledBackup  # noqa: E402
from infra.config import ConfigError, StackConfig, split_config  # noqa: E402
from infra.container import Naming  # noqa: E402
from infra.edge import EdgeProxy  # noqa: E402
from infra.identity import KEYCLOAK_ADMIN_USERNAME, Identity  # noqa: E402
from infra.monitoring import ALERTMANAGER_PORT, LOKI_PORT, PROMETHEUS_PORT, Monitoring  # noqa: E402
from infra.networks import Segments  # noqa: E402
from infra.runbook import runbook_url  # noqa: E402
from infra.secrets import SECRET_CONFIG_KEYS, PlatformSecrets  # noqa: E402
from infra.storage import API_PORT, MinioCluster  # noqa: E402


def load_config() -> tuple[StackConfig, set[str]]:
    """The validated stack config and the secret keys the operator supplied; fails before any resource."""
    from pulumi.runtime import config as runtime_config

    # the language host sets config in-process; older hosts pass it through PULUMI_CONFIG
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    encrypted = {key for key in values if runtime_config.is_config_secret(key)}
    encrypted |= set(runtime_config.get_config_secret_keys_env())
    config, supplied = split_config(pulumi.get_stack(), values, SECRET_CONFIG_KEYS, encrypted)
    missing = config.edge.missing_operator_inputs(config.environment, set(supplied))
    if missing:
        raise ConfigError(pulumi.get_stack(), missing)
    for warning in config.warnings():
        pulumi.log.warn(warning)
    return config, set(supplied)


def describe_containers(containers: Mapping[str, docker.Container]) -> dict[str, Any]:
    """Each container's Docker name and networks, by its name in the stack: what the smoke suite checks."""
    return {
        name: {
            "name": container.name,
            "networks": container.networks_advanced.apply(lambda attached: sorted(n.name for n in attached or [])),
        }
        for name, container in containers.items()
    }


def main() -> dict[str, Any]:
    try:
        config, supplied = load_config()
    except ConfigError as error:
        # raised before any resource is registered, so a bad stack creates nothing
        raise pulumi.RunError(str(error)) from None

    naming = Naming(config.name)
    secrets = PlatformSecrets("secrets", supplied)
    segments = Segments("segments", config, naming)
    identity = Identity("identity", config, naming, segments, secrets.values)
    # MinIO's IAM waits for the OIDC discovery document: start it once Keycloak is healthy
    storage = MinioCluster("storage", config, naming, segments, secrets.values, depends_on=[identity.keycloak])
    edge = EdgeProxy("edge", config, naming, segments, secrets.values)
    monitoring = Monitoring("monitoring", config, naming, segments, secrets.values)
    urls = config.edge.public_urls(config.environment)
    # dumps Keycloak's database into the catalogue's backup bucket on the stack's schedule
    backups = (
        ScheduledBackup("backup", config, naming, segments, secrets.values, depends_on=[identity.postgres, *storage.containers.values()])
        if config.backup.enabled
        else None
    )

    tiers: list[MinioCluster | Identity | EdgeProxy | Monitoring | ScheduledBackup] = [storage, identity, edge, monitoring]
    if backups is not None:
        tiers.append(backups)
    layout = config.storage.layout()
    outputs: dict[str, Any] = {
        "environment": config.environment,
        "name": config.name,
        "layout": layout.as_dict(),
        "containers": describe_containers(
            {name: container for tier in tiers for name, container in tier.containers.items()}
        ),
        "volumes": [volume.name for volume in [*storage.volumes, *identity.volumes, *monitoring.volumes]],
        "networks": {segment: s.network.name for segment, s in segments.by_name.items()},
        "endpoints": {
            "s3": urls.s3,
            "web": urls.web,
            "console": urls.console,
            "grafana": urls.grafana,
            "keycloak": urls.keycloak,
            "keycloakIssuer": f"{urls.keycloak}/realms/{config.identity.realm}",
            "minioInternal": f"http://minio1:{API_PORT}",
            "prometheusInternal": f"http://prometheus:{PROMETHEUS_PORT}",
            "alertmanagerInternal": f"http://alertmanager:{ALERTMANAGER_PORT}",
            "lokiInternal": f"http://loki:{LOKI_PORT}",
            "runbook": runbook_url(config),
        },
        "tlsCertificate": edge.certificate,
        "minioRootUser": secrets.outputs["minio_root_user"],
        "minioRootPassword": secrets.outputs["minio_root_password"],
        "postgresPassword": secrets.outputs["postgres_password"],
        "keycloakAdminUser": KEYCLOAK_ADMIN_USERNAME,
        "keycloakAdminPassword": secrets.outputs["keycloak_admin_password"],
        "minioConsoleClientSecret": secrets.outputs["minio_console_client_secret"],
        "grafanaAdminPassword": secrets.outputs["grafana_admin_password"],
        # `scripts/ops bootstrap` gives the backup-service MinIO user this secret
        "backupServiceSecretKey": secrets.outputs["backup_service_secret_key"],
    }
    if not config.is_prod:
        # the realm's bootstrap console user exists on dev and staging only
        outputs["keycloakBootstrapUser"] = config.identity.bootstrap_username
        outputs["keycloakBootstrapPassword"] = secrets.outputs["keycloak_bootstrap_password"]
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


if __name__ == "__main__":
    main()
