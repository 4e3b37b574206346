"""The monitoring tier's settings: image pins, the log agent, scrape and evaluation cadence, retention, alert delivery."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from infra.config.base import ImageRef, MemoryMb, Settings
from infra.config.images import ALERTMANAGER, AUDIT_SINK, GRAFANA, LOKI, PROMETHEUS, PROMTAIL
from infra.config.images import DEFAULT_ALLOY_IMAGE
from infra.services import audit_sink

DEFAULT_PROMETHEUS_IMAGE = PROMETHEUS.reference
DEFAULT_ALERTMANAGER_IMAGE = ALERTMANAGER.reference
DEFAULT_LOKI_IMAGE = LOKI.reference
# Promtail's last release line; it reached end of life on 2026-03-02 (see README, "Promtail end of life").
DEFAULT_PROMTAIL_IMAGE = PROMTAIL.reference
DEFAULT_GRAFANA_IMAGE = GRAFANA.reference
DEFAULT_AUDIT_SINK_IMAGE = AUDIT_SINK.reference

# grafana.com/docs/loki/latest/send-data/promtail/: "end of life as of March 2, 2026"; Alloy is its successor
PROMTAIL_END_OF_LIFE = "2026-03-02"

# Alertmanager's dev default: the stack's own audit sink, which writes every notification to its log.
DEFAULT_WEBHOOK_URL = audit_sink.ALERTMANAGER_WEBHOOK_URL

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
        "/var/run/docker.sock", pattern=r"^/", description="Docker API socket the log agent reads (mounted read-only)"
    )

    prometheus_memory_mb: MemoryMb = 1024
    alertmanager_memory_mb: MemoryMb = 128
    loki_memory_mb: MemoryMb = 512
    alloy_memory_mb: MemoryMb = 256
    promtail_memory_mb: MemoryMb = 256
    grafana_memory_mb: MemoryMb = 512
    audit_sink_memory_mb: MemoryMb = 128

    @field_validator("evaluation_interval")
    @classmethod
    def _evaluation_not_faster_than_scrapes(cls, value: str, info: ValidationInfo) -> str:
        scrape = info.data.get("scrape_interval")
        if scrape is not None and duration_seconds(value) < duration_seconds(scrape):
            raise ValueError(
                f"{value!r} is shorter than scrapeInterval {scrape!r}: rules would evaluate the same samples twice"
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
