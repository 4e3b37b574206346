"""Every default image pin, in one table.

The `DEFAULT_*_IMAGE` constants of the tier settings point here. Renovate's regex manager
(`renovate.json`) reads each `reference="..."` below, the README's "Image pins" table repeats the
table, and tests/unit/test_image_pins.py holds both to it. A pin names the release it was checked
against; when the reference moves, that line moves with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImagePin:
    reference: str
    what: str
    checked_against: str
    setting: str | None = None
    status: str | None = None


MINIO = ImagePin(
    reference="docker.io/pgsty/silo:RELEASE.2026-09-16T00-00-00Z",
    what="MinIO server: the Silo fork, full embedded console with SSO",
    checked_against="pgsty/silo release RELEASE.2026-09-16T00-00-00Z (silo.pgsty.com release notes, 2026-09-16)",
    setting="storage.image",
)
NGINX = ImagePin(
    reference="nginx:1.30.4-alpine",
    what="NGINX edge proxy (stable line)",
    checked_against="nginx 1.30.4, tag release-1.30.4 (docker-library/official-images library/nginx)",
    setting="edge.image",
)
KEYCLOAK = ImagePin(
    reference="quay.io/keycloak/keycloak:26.7.3",
    what="Keycloak",
    checked_against="Keycloak 26.7.3, newest with org.keycloak:keycloak-quarkus-dist on Maven Central (26.7.4 is not)",
    setting="identity.keycloakImage",
)
POSTGRES = ImagePin(
    reference="postgres:16.15-alpine",
    what="PostgreSQL for Keycloak (and the backup image's base)",
    checked_against="PostgreSQL 16.15 (docker-library/official-images library/postgres)",
    setting="identity.postgresImage",
)
PROMETHEUS = ImagePin(
    reference="prom/prometheus:v3.16.0",
    what="Prometheus",
    checked_against="Prometheus v3.16.0 (Go module github.com/prometheus/prometheus v0.316.0, 2026-11-05)",
    setting="monitoring.prometheusImage",
)
ALERTMANAGER = ImagePin(
    reference="prom/alertmanager:v0.35.0",
    what="Alertmanager",
    checked_against="Alertmanager v0.35.0 (Go module github.com/prometheus/alertmanager v0.35.0, 2026-11-09)",
    setting="monitoring.alertmanagerImage",
)
LOKI = ImagePin(
    reference="grafana/loki:3.7.8",
    what="Loki",
    checked_against="Loki 3.7.8 (Go module github.com/grafana/loki/v3 v3.7.8, 2026-09-17)",
    setting="monitoring.lokiImage",
)
PROMTAIL = ImagePin(
    reference="grafana/promtail:3.6.11",
    what="Promtail log agent, opt-in with monitoring.logAgent",
    checked_against="grafana/promtail 3.6.11, its last image (Promtail end of life 2026-03-02)",
    setting="monitoring.promtailImage",
    status="end of life",
)
GRAFANA = ImagePin(
    reference="grafana/grafana:13.2.3",
    what="Grafana",
    checked_against="Grafana 13.2.3 (grafana/grafana releases)",
    setting="monitoring.grafanaImage",
)
AUDIT_SINK = ImagePin(
    reference="python:3.11.16-slim-bookworm",
    what="Python runtime of the audit sink (standard library only)",
    checked_against="Python 3.11.16 (docker-library/official-images library/python)",
    setting="monitoring.auditSinkImage",
)
NGINX_EXPORTER = ImagePin(
    reference="nginx/nginx-prometheus-exporter:1.5.3",
    what="NGINX Prometheus exporter: the edge proxy's stub_status as metrics",
    checked_against="nginx-prometheus-exporter 1.5.3, tag v1.5.3 (nginx/nginx-prometheus-exporter, 2026-08-14; 1.5.2 is retracted)",
    setting="monitoring.nginxExporterImage",
)
ALLOY = ImagePin(
    reference="grafana/alloy:v1.21.2",
    what="Grafana Alloy log agent, Promtail's successor",
    checked_against="Grafana Alloy v1.21.2 (grafana/alloy releases, 2026-10-22)",
    setting="monitoring.alloyImage",
)
BLACKBOX_EXPORTER = ImagePin(
    reference="prom/blackbox-exporter:v0.28.0",
    what="Blackbox exporter: probes each MinIO node's /minio/health/cluster for MinIOIdentityOffline",
    checked_against="blackbox_exporter v0.28.0, tag v0.28.0 (prometheus/blackbox_exporter, Go module proxy 2025-12-04)",
    setting="monitoring.blackboxExporterImage",
)
DOCKER_API_PROXY = ImagePin(
    reference="wollomatic/socket-proxy:1.13.1",
    what="Docker API proxy: the only holder of the Docker socket, read calls only for the log agent",
    checked_against="wollomatic/socket-proxy 1.13.1 (wollomatic/socket-proxy releases, 2026-08-15)",
    setting="monitoring.dockerApiProxyImage",
)

IMAGE_PINS: tuple[ImagePin, ...] = (
    MINIO,
    NGINX,
    KEYCLOAK,
    POSTGRES,
    PROMETHEUS,
    ALERTMANAGER,
    LOKI,
    ALLOY,
    PROMTAIL,
    DOCKER_API_PROXY,
    GRAFANA,
    AUDIT_SINK,
    NGINX_EXPORTER,
    BLACKBOX_EXPORTER,
)

# the log agent that replaced Promtail (monitoring.logAgent)
DEFAULT_ALLOY_IMAGE = ALLOY.reference
