"""The blackbox exporter that Prometheus probes MinIO's cluster health endpoint through.

With OpenID configured, a MinIO node whose IAM has not loaded (Keycloak's discovery document does not
answer) refuses every key but root, the metrics reader's token included, so its metrics cannot tell.
Its `/minio/health/cluster` still answers, without credentials: 503 with `X-Minio-Server-Status:
iam-offline` (cmd/healthcheck-handler.go, `checkHealth`). The exporter probes that endpoint on every
node, on storage-net, and reports the header as `probe_failed_due_to_regex`, which MinIOIdentityOffline
(alerts/identity.rules.yml) reads.

With nodes on hosts of their own (storage.hosts) the nodes serve TLS: the probe trusts the stack's CA
and names them through `hosts` entries.
"""

from __future__ import annotations

from infra.cluster_ca import ca_files, uploads_with_ca
from infra.config import StackConfig
from infra.container import ContainerSpec, Healthcheck
from infra.hosts import CA_FILE, node_host_entries
from infra.rendering import RenderedFile, render_template
from infra.tier import Tier

SERVICE = "blackbox-exporter"
PORT = 9115
CONFIG = "/etc/blackbox_exporter/blackbox.yml"

# the Prometheus job that probes every node through the exporter, and the exporter's module it asks for
HEALTH_JOB = "minio-health"
HEALTH_MODULE = "minio_iam_online"
HEALTH_PATH = "/minio/health/cluster"
# the status checkHealth sets while IAM has not loaded (the others are "offline" and "bucket-metadata-offline")
IAM_OFFLINE_STATUS = "iam-offline"
PROBE_TIMEOUT = "5s"

# prom/blackbox-exporter has no USER: it would run as root, which an HTTP probe does not need
NOBODY = "65534:65534"


def blackbox_yml(config: StackConfig, ca_file: str = CA_FILE) -> str:
    """`ca_file`, read on a multi-host stack only, is where the exporter finds the stack's CA certificate."""
    return render_template(
        "blackbox/blackbox.yml.j2",
        stack=config.name,
        job=HEALTH_JOB,
        module=HEALTH_MODULE,
        iam_offline_status=IAM_OFFLINE_STATUS,
        timeout=PROBE_TIMEOUT,
        ca_file=ca_file if config.storage.multi_host else None,
    )


def blackbox_exporter_files(config: StackConfig, ca_certificate: str | None = None) -> list[RenderedFile]:
    """The exporter's configuration and, on a multi-host stack, the CA certificate it trusts."""
    return [RenderedFile("blackbox/blackbox.yml", CONFIG, blackbox_yml(config)), *ca_files("blackbox", ca_certificate)]


def add_blackbox_exporter(tier: Tier) -> None:
    settings = tier.config.monitoring
    tier.container(
        ContainerSpec(
            service=SERVICE,
            name=SERVICE,
            image=tier.image("blackbox-exporter-image", settings.blackbox_exporter_image),
            command=[f"--config.file={CONFIG}", f"--web.listen-address=:{PORT}"],
            uploads=uploads_with_ca(tier, lambda certificate: blackbox_exporter_files(tier.config, certificate)),
            # reaches every MinIO node, and is reached by Prometheus, on storage-net only
            networks=[tier.stack.segments.storage.attachment(SERVICE)],
            # nodes on other hosts, by their names (none on one host)
            hosts=node_host_entries(tier.config),
            # busybox wget, as in the Prometheus image
            healthcheck=Healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", f"http://localhost:{PORT}/-/healthy"]),
            memory_mb=settings.blackbox_exporter_memory_mb,
            user=NOBODY,
        )
    )
