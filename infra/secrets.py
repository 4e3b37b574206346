"""Every secret of the stack: supplied by the operator as a Pulumi secret, or generated once.

A few can only be supplied (kind "operator": the offsite mirror target's credentials); unset, they
are empty, and what needs them refuses to deploy without them.

`SecretValues` holds the plain values and exists only inside `Output.apply` (deploy) or with
throwaway values (offline `render`); anything rendered from it is itself a secret Output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import pulumi
import pulumi_random as random

from infra.config.edge import PROVIDED_TLS_KEYS
from infra.config.replication import TARGET_ACCESS_KEY_KEY, TARGET_SECRET_KEY_KEY
from infra.hosts import ClusterTls

# the MinIO user Prometheus's bearer token is signed for (policy metrics-reader: admin:Prometheus only);
# `scripts/ops bootstrap` creates it with metricsReaderSecretKey
METRICS_READER_USER = "metrics-reader"


@dataclass(frozen=True)
class SecretSpec:
    key: str
    """Pulumi config key an operator may set with `pulumi config set --secret` instead of generating."""
    purpose: str
    length: int = 40
    kind: Literal["password", "username", "key", "operator"] = "password"
    """password: mixed-case letters and digits; username: lower-case letters and digits;
    key: `length` random bytes, base64-encoded; operator: never generated, only supplied."""


def _secret(key: str, purpose: str, **options: Any) -> Any:
    return field(metadata={"spec": SecretSpec(key, purpose, **options)})


@dataclass(frozen=True)
class SecretValues:
    minio_root_user: str = _secret("minioRootUser", "MinIO root access key", length=20, kind="username")
    minio_root_password: str = _secret("minioRootPassword", "MinIO root secret key")
    grafana_admin_password: str = _secret("grafanaAdminPassword", "Grafana admin password (applied on its first start)")
    audit_webhook_token: str = _secret("auditWebhookToken", "token MinIO and Alertmanager present to the audit sink")
    minio_kms_secret_key: str = _secret(
        "minioKmsSecretKey", "MinIO single-key KMS master key (SSE-S3); losing it loses encrypted objects", length=32, kind="key"
    )
    backup_service_secret_key: str = _secret("backupServiceSecretKey", "secret key of the backup-service MinIO user")
    ops_admin_secret_key: str = _secret(
        "opsAdminSecretKey", "secret key of ops-admin, the MinIO user scripts/ops signs in as (admin policy; not root)"
    )
    metrics_reader_secret_key: str = _secret(
        "metricsReaderSecretKey", "secret key of metrics-reader, the MinIO user Prometheus's token is signed for"
    )
    mirror_service_secret_key: str = _secret(
        "mirrorServiceSecretKey", "secret key of mirror-service, the MinIO user the offsite mirror reads buckets as"
    )
    replication_target_access_key: str = _secret(
        TARGET_ACCESS_KEY_KEY, "access key on the offsite mirror's target (replication.target)", kind="operator"
    )
    replication_target_secret_key: str = _secret(
        TARGET_SECRET_KEY_KEY, "secret key on the offsite mirror's target (replication.target)", kind="operator"
    )
    postgres_password: str = _secret("postgresPassword", "PostgreSQL password of Keycloak's database user")
    keycloak_admin_password: str = _secret("keycloakAdminPassword", "Keycloak master-realm admin password (bootstrap admin)")
    minio_console_client_secret: str = _secret("minioConsoleClientSecret", "OIDC client secret of the minio-console client")
    keycloak_bootstrap_password: str = _secret(
        "keycloakBootstrapPassword", "password of the realm's bootstrap console user (dev and staging only)"
    )
    cluster_tls: ClusterTls | None = None
    """The CA and certificates of a multi-host stack (infra/hosts.py); generated, never configured."""

    @classmethod
    def throwaway(cls, nodes_on_hosts: int = 0) -> SecretValues:
        """Clearly marked stand-ins for offline rendering; never deployed."""
        values: dict[str, Any] = {}
        for name, spec in SECRET_SPECS.items():
            values[name] = "VEhST1dBV0FZLVRIUk9XQVdBWS1USFJPV0FXQVktMDE=" if spec.kind == "key" else f"throwaway-{spec.key}"
        return cls(**values, cluster_tls=ClusterTls.throwaway(nodes_on_hosts) if nodes_on_hosts else None)


SECRET_SPECS: dict[str, SecretSpec] = {
    item.name: item.metadata["spec"] for item in fields(SecretValues) if "spec" in item.metadata
}
# plus the secrets nothing can generate: the production TLS certificate and key
SECRET_CONFIG_KEYS: frozenset[str] = frozenset(spec.key for spec in SECRET_SPECS.values()) | frozenset(PROVIDED_TLS_KEYS)


def _generate(name: str, spec: SecretSpec, parent: pulumi.Resource) -> pulumi.Output[str]:
    opts = pulumi.ResourceOptions(parent=parent)
    if spec.kind == "key":
        return random.RandomBytes(name, length=spec.length, opts=opts).base64
    lower_only = spec.kind == "username"
    return random.RandomPassword(
        name, length=spec.length, special=False, upper=not lower_only, min_numeric=2, opts=opts
    ).result


class PlatformSecrets(pulumi.ComponentResource):
    """One secret Output per `SecretValues` field, and all of them together as `values`."""

    outputs: dict[str, pulumi.Output[str]]
    values: pulumi.Output[SecretValues]

    def __init__(
        self,
        name: str,
        supplied: set[str],
        cluster_tls: pulumi.Output[ClusterTls] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("minio-platform:index:PlatformSecrets", name, None, opts)
        config = pulumi.Config()
        self.outputs = {}
        for attribute, spec in SECRET_SPECS.items():
            if spec.key in supplied:
                value = config.require_secret(spec.key)
            else:
                value = pulumi.Output.from_input("") if spec.kind == "operator" else _generate(f"{name}-{spec.key}", spec, self)
            # random's own secret marking is applied by the engine; mark it here so every consumer sees it
            self.outputs[attribute] = pulumi.Output.secret(value)
        tls_material = cluster_tls if cluster_tls is not None else pulumi.Output.from_input(None)
        self.values = pulumi.Output.all(tls_material, pulumi.Output.all(**self.outputs)).apply(
            lambda parts: SecretValues(**parts[1], cluster_tls=parts[0])
        )
        self.register_outputs({})
