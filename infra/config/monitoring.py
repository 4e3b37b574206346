"""The monitoring tier's settings: image pins, the log agent, scrape and evaluation cadence, retention, alert delivery."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from infra.config.base import ImageRef, MemoryMb, Settings
from infra.config.images import ALERTMANAGER, AUDIT_SINK, DOCKER_API_PROXY, GRAFANA, LOKI, PROMETHEUS, PROMTAIL
from infra.config.images import DEFAULT_ALLOY_IMAGE
from infra.config.images import BLACKBOX_EXPORTER, NGINX_EXPORTER
from infra.services import audit_sink

DEFAULT_PROMETHEUS_IMAGE = PROMETHEUS.reference
DEFAULT_ALERTMANAGER_IMAGE = ALERTMANAGER.reference
DEFAULT_LOKI_IMAGE = LOKI.reference
# Promtail's last release line; it reached end of life on 2026-03-02 (see README, "Promtail end of life").
DEFAULT_PROMTAIL_IMAGE = PROMTAIL.reference
DEFAULT_GRAFANA_IMAGE = GRAFANA.reference
DEFAULT_AUDIT_SINK_IMAGE = AUDIT_SINK.reference
DEFAULT_NGINX_EXPORTER_IMAGE = NGINX_EXPORTER.reference
DEFAULT_BLACKBOX_EXPORTER_IMAGE = BLACKBOX_EXPORTER.reference
DEFAULT_DOCKER_API_PROXY_IMAGE = DOCKER_API_PROXY.reference

# grafana.com/docs/loki/latest/send-data/promtail/: "end of life as of March 2, 2026"; Alloy is its successor
PROMTAIL_END_OF_LIFE = "2026-03-02"

# Alertmanager's dev default: the stack's own audit sink, which writes every notification to its log.
DEFAULT_WEBHOOK_URL = audit_sink.ALERTMANAGER_WEBHOOK_URL

# the largest finite bucket of MinIO's time-to-first-byte histogram (cmd/metrics.go, httpRequestsDuration):
# above it histogram_quantile can only answer this bound, so a threshold there could never be crossed
TTFB_LARGEST_BUCKET_SECONDS = 10.0

# a Prometheus duration as both 2.42 and 3.x accept it, in one unit: 15s, 1m, 2h, 30d
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(value: str) -> float:
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration like '15s', '1m' or '30d' (a number and one unit: ms s m h d w y)")
    return int(value[: -len(match[1])]) * _SECONDS[match[1]]


def _duration(value: str) -> str:
    duration_seconds(value)
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL like 'https://alerts.example.com/hook'")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class MonitoringSettings(Settings):
    prometheus_image: ImageRef = DEFAULT_PROMETHEUS_IMAGE
    alertmanager_image: ImageRef = DEFAULT_ALERTMANAGER_IMAGE
    loki_image: ImageRef = DEFAULT_LOKI_IMAGE
    alloy_image: ImageRef = DEFAULT_ALLOY_IMAGE
    promtail_image: ImageRef = DEFAULT_PROMTAIL_IMAGE
    grafana_image: ImageRef = DEFAULT_GRAFANA_IMAGE
    audit_sink_image: ImageRef = Field(
        DEFAULT_AUDIT_SINK_IMAGE, description="Python runtime of the audit sink (standard library only)"
    )
    nginx_exporter_image: ImageRef = Field(
        DEFAULT_NGINX_EXPORTER_IMAGE, description="turns the edge proxy's stub_status into metrics"
    )
    blackbox_exporter_image: ImageRef = Field(
        DEFAULT_BLACKBOX_EXPORTER_IMAGE, description="probes MinIO's unauthenticated cluster health endpoint on every node"
    )
    docker_api_proxy_image: ImageRef = Field(
        DEFAULT_DOCKER_API_PROXY_IMAGE, description="the Docker API proxy between the log agent and the Docker socket"
    )

    scrape_interval: Duration = "15s"
    evaluation_interval: Duration = "15s"
    bucket_scrape_interval: Duration = Field(
        "1m", description="bucket usage comes from MinIO's background scanner and changes slowly"
    )
    prometheus_retention: Duration = "15d"
    alert_group_wait: Duration = Field("30s", description="how long Alertmanager gathers a new group's alerts")
    alert_group_interval: Duration = Field("5m", description="how often a changed group is notified again")
    alert_repeat_interval: Duration = Field("4h", description="how often a still-firing alert is repeated")
    loki_retention: Duration = Field("168h", description="log retention; Loki deletes in whole 24h index periods")
    s3_latency_p99_seconds: float = Field(
        2.0, description="MinIOHighRequestLatency fires when an S3 API's p99 time to first byte stays above this"
    )

    webhook_url: HttpUrl = Field(
        DEFAULT_WEBHOOK_URL,
        description="where Alertmanager posts every alert (the default logs them through the audit sink)",
    )
    runbook_url: HttpUrl | None = Field(
        None,
        description="where alerts link to for alerts/RUNBOOK.md (section anchors appended); "
        "unset: the page the edge proxy serves at <web URL>/runbook/",
    )
    log_agent: Literal["alloy", "promtail"] = Field(
        "alloy", description="what ships container logs to Loki: Grafana Alloy, or Promtail (end of life)"
    )
    docker_socket: str = Field(
        "/var/run/docker.sock",
        pattern=r"^/",
        description="the Docker API socket on the Docker host; only the Docker API proxy mounts it (read-only)",
    )
    docker_socket_gid: int | None = Field(
        None,
        ge=0,
        description="group owning dockerSocket on the Docker host (`stat -c %g /var/run/docker.sock`): the proxy "
        "then runs as nobody (65534) in that group; unset, as UID 0, the socket's owner, with every capability dropped",
    )

    prometheus_memory_mb: MemoryMb = 1024
    alertmanager_memory_mb: MemoryMb = 128
    loki_memory_mb: MemoryMb = 512
    alloy_memory_mb: MemoryMb = 256
    promtail_memory_mb: MemoryMb = 256
    grafana_memory_mb: MemoryMb = 512
    audit_sink_memory_mb: MemoryMb = 128
    nginx_exporter_memory_mb: MemoryMb = 32
    blackbox_exporter_memory_mb: MemoryMb = 64
    docker_api_proxy_memory_mb: MemoryMb = 64

    @field_validator("evaluation_interval")
    @classmethod
    def _evaluation_not_faster_than_scrapes(cls, value: str, info: ValidationInfo) -> str:
        scrape = info.data.get("scrape_interval")
        if scrape is not None and duration_seconds(value) < duration_seconds(scrape):
            raise ValueError(
                f"{value!r} is shorter than scrapeInterval {scrape!r}: rules would evaluate the same samples twice"
            )
        return value

    @field_validator("s3_latency_p99_seconds")
    @classmethod
    def _measurable_latency(cls, value: float) -> float:
        if not 0 < value < TTFB_LARGEST_BUCKET_SECONDS:
            raise ValueError(
                f"{value!r} is not between 0 and {TTFB_LARGEST_BUCKET_SECONDS:g} seconds: MinIO's time-to-first-byte "
                f"histogram ends at {TTFB_LARGEST_BUCKET_SECONDS:g}s, so a p99 above that cannot be measured"
            )
        return value

    @field_validator("loki_retention")
    @classmethod
    def _whole_index_periods(cls, value: str) -> str:
        seconds = duration_seconds(value)
        if seconds % 86400:
            raise ValueError(f"{value!r} is not a whole number of days (24h index periods), e.g. '168h' or '30d'")
        return value

    def warnings(self) -> list[str]:
        """Accepted but risky values, for the operator to read before deploying."""
        if self.log_agent != "promtail":
            return []
        return [
            f"monitoring.logAgent promtail: Promtail reached end of life on {PROMTAIL_END_OF_LIFE} and gets no more "
            f"fixes ({self.promtail_image}); leave logAgent unset for Grafana Alloy, which runs the same pipeline"
        ]

    @property
    def webhook_is_audit_sink(self) -> bool:
        """True when alerts go to the stack's own audit sink, which then needs its token."""
        return urlsplit(self.webhook_url).hostname == audit_sink.SERVICE
