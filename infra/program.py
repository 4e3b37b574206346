"""The Pulumi program: stack config in, components wired, outputs exported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_docker as docker

from infra.backups import ScheduledBackup, ScheduledBackupArgs, ScheduledMirror, ScheduledMirrorArgs
from infra.config import ConfigError, StackConfig, split_config
from infra.container import Naming
from infra.deployed import compare_with_deployed, drive_placement, previous_outputs
from infra.edge import EdgeProxy, EdgeProxyArgs
from infra.hosts import ClusterCertificates, NodeHosts, host_loss, node_hosts_output
from infra.identity import KEYCLOAK_ADMIN_USERNAME, Identity, IdentityArgs
from infra.monitoring import Monitoring, MonitoringArgs
from infra.monitoring.logs import LOKI_PORT
from infra.monitoring.metrics import ALERTMANAGER_PORT, PROMETHEUS_PORT
from infra.networks import Segments
from infra.runbook import runbook_url
from infra.secrets import SECRET_CONFIG_KEYS, PlatformSecrets
from infra.storage import MinioCluster, MinioClusterArgs, node_url, stack_server_command
from infra.tier import StackContext, Tier


def load_config() -> tuple[StackConfig, set[str]]:
    """The validated stack config and the secret keys the operator supplied; fails before any resource."""
    from pulumi.runtime import config as runtime_config

    # the language host sets config in-process; older hosts pass it through PULUMI_CONFIG
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    encrypted = {key for key in values if runtime_config.is_config_secret(key)}
    encrypted |= set(runtime_config.get_config_secret_keys_env())
    config, supplied = split_config(pulumi.get_stack(), values, SECRET_CONFIG_KEYS, encrypted)
    missing = config.missing_operator_inputs(set(supplied))
    missing += config.identity.bootstrap_password_problems(config.environment, supplied)
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
    # a deployed pool never changes shape, and an update that replaces every node says so first
    deployed = compare_with_deployed(config, previous_outputs())
    if deployed.refusals:
        raise pulumi.RunError(str(ConfigError(pulumi.get_stack(), deployed.refusals)))
    for notice in deployed.notices:
        pulumi.log.warn(notice)

    naming = Naming(config.name)
    # nodes on hosts of their own: a provider and a network on each, and the CA their TLS rests on
    multi_host = config.storage.multi_host
    certificates = ClusterCertificates("cluster-tls", config) if multi_host else None
    secrets = PlatformSecrets("secrets", supplied, certificates.material if certificates else None)
    node_hosts = NodeHosts("node-hosts", config, naming) if multi_host else None
    stack = StackContext(config, naming, Segments("segments", config, naming), secrets.values, node_hosts)
    identity = Identity("identity", IdentityArgs(stack))
    # MinIO's IAM waits for the OIDC discovery document: start it once Keycloak is healthy
    storage = MinioCluster("storage", MinioClusterArgs(stack), pulumi.ResourceOptions(depends_on=[identity.keycloak]))
    edge = EdgeProxy("edge", EdgeProxyArgs(stack))
    monitoring = Monitoring("monitoring", MonitoringArgs(stack))
    tiers: list[Tier] = [storage, identity, edge, monitoring]
    if config.backup.enabled:
        # dumps Keycloak's database into the catalogue's backup bucket on the stack's schedule
        waits_for = [identity.postgres, *storage.containers.values()]
        tiers.append(ScheduledBackup("backup", ScheduledBackupArgs(stack), pulumi.ResourceOptions(depends_on=waits_for)))
    if config.replication is not None:
        # copies the mirrored buckets to the offsite target on the stack's schedule
        after_storage = pulumi.ResourceOptions(depends_on=list(storage.containers.values()))
        tiers.append(ScheduledMirror("mirror", ScheduledMirrorArgs(stack), after_storage))
    urls = config.edge.public_urls(config.environment)

    layout = config.storage.layout()
    outputs: dict[str, Any] = {
        "environment": config.environment,
        "name": config.name,
        # what node, host and drive losses the cluster survives (the README's table)
        "layout": {**layout.as_dict(), **host_loss(config)},
        # what the next update compares with (infra/deployed.py)
        "minioImage": config.storage.image,
        "minioCommand": stack_server_command(config),
        "drivePaths": drive_placement(config),
        "nodeHosts": node_hosts_output(config),
        "containers": describe_containers(
            {name: container for tier in tiers for name, container in tier.containers.items()}
        ),
        "volumes": [volume.name for tier in tiers for volume in tier.volumes],
        "networks": {segment: s.network.name for segment, s in stack.segments.by_name.items()},
        "endpoints": {
            "s3": urls.s3,
            # the whole S3 API, admin included, on the Docker host's loopback: what scripts/ops uses
            "minioAdmin": config.edge.admin_url(config.environment),
            "web": urls.web,
            "console": urls.console,
            "grafana": urls.grafana,
            "keycloak": urls.keycloak,
            "keycloakIssuer": f"{urls.keycloak}/realms/{config.identity.realm}",
            "minioInternal": node_url(config, 1),
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
        # scripts/ops signs in as ops-admin with this; bootstrap creates ops-admin (the one step that needs root)
        "opsAdminSecretKey": secrets.outputs["ops_admin_secret_key"],
        # bootstrap creates metrics-reader with this: the secret Prometheus's token is signed with
        "metricsReaderSecretKey": secrets.outputs["metrics_reader_secret_key"],
        # bootstrap creates mirror-service with this when the stack mirrors offsite (replication)
        "mirrorServiceSecretKey": secrets.outputs["mirror_service_secret_key"],
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
