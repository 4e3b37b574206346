"""The `monitoring` section of stack configuration: defaults, and every bad value named with its key path."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import ConfigError, parse_stack_config
from infra.config.images import DEFAULT_ALLOY_IMAGE
from infra.config.monitoring import DEFAULT_PROMTAIL_IMAGE, DEFAULT_WEBHOOK_URL, duration_seconds


def problems(monitoring: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_stack_config("dev", {"monitoring": monitoring})
    return error.value.problems


def test_defaults_pin_every_image_and_deliver_alerts_to_the_audit_sink() -> None:
    settings = parse_stack_config("dev", {}).monitoring
    assert settings.log_agent == "alloy"
    assert settings.alloy_image == DEFAULT_ALLOY_IMAGE and DEFAULT_ALLOY_IMAGE.startswith("grafana/alloy:v1.")
    assert settings.promtail_image == DEFAULT_PROMTAIL_IMAGE == "grafana/promtail:3.6.11"
    assert settings.prometheus_image.startswith("prom/prometheus:v3.")
    assert settings.loki_image.startswith("grafana/loki:3.")
    for image in (settings.alertmanager_image, settings.grafana_image, settings.audit_sink_image):
        assert ":" in image and not image.endswith(":latest")
    assert settings.webhook_url == DEFAULT_WEBHOOK_URL == "http://audit-sink:8080/alertmanager"
    assert settings.webhook_is_audit_sink


def test_camel_case_keys_set_the_values() -> None:
    settings = parse_stack_config(
        "prod",
        {
            "monitoring": {
                "scrapeInterval": "30s",
                "evaluationInterval": "1m",
                "lokiRetention": "30d",
                "webhookUrl": "https://alerts.example.com/hook",
                "grafanaMemoryMb": 768,
            }
        },
    ).monitoring
    assert (settings.scrape_interval, settings.evaluation_interval, settings.loki_retention) == ("30s", "1m", "30d")
    assert settings.grafana_memory_mb == 768
    assert not settings.webhook_is_audit_sink


def test_every_bad_value_is_reported_with_its_key_path_at_once() -> None:
    found = problems(
        {
            "prometheusImage": "prom/prometheus:latest",
            "grafanaImage": "grafana/grafana",
            "scrapeInterval": "15 seconds",
            "webhookUrl": "ftp://alerts.example.com",
            "lokiMemoryMb": 0,
            "scrapeIntervall": "15s",
        }
    )
    joined = "\n".join(found)
    assert "monitoring.prometheusImage: 'prom/prometheus:latest' uses the moving tag 'latest'" in joined
    assert "monitoring.grafanaImage: 'grafana/grafana' is not pinned" in joined
    assert "monitoring.scrapeInterval: '15 seconds' is not a duration" in joined
    assert "monitoring.webhookUrl: 'ftp://alerts.example.com' is not an http(s) URL" in joined
    assert any(problem.startswith("monitoring.lokiMemoryMb:") for problem in found)
    assert "monitoring.scrapeIntervall: unknown key" in joined
    assert len(found) == 6


def test_alloy_is_the_default_log_agent_and_warns_of_nothing() -> None:
    config = parse_stack_config("dev", {"networks": {"storage": {"subnet": "172.30.20.0/24"}}})
    assert config.monitoring.log_agent == "alloy"
    assert config.warnings() == []


def test_promtail_stays_selectable_with_an_end_of_life_warning() -> None:
    config = parse_stack_config("dev", {"monitoring": {"logAgent": "promtail", "promtailMemoryMb": 192}})
    assert (config.monitoring.log_agent, config.monitoring.promtail_memory_mb) == ("promtail", 192)
    (warning,) = [w for w in config.warnings() if w.startswith("monitoring.logAgent")]
    assert "end of life on 2026-03-02" in warning and "grafana/promtail:3.6.11" in warning


def test_an_unknown_log_agent_is_refused_naming_the_choices() -> None:
    (problem,) = problems({"logAgent": "fluent-bit"})
    assert problem.startswith("monitoring.logAgent: ")
    assert "'alloy'" in problem and "'promtail'" in problem and "'fluent-bit'" in problem


def test_evaluation_faster_than_scrapes_is_refused() -> None:
    (problem,) = problems({"scrapeInterval": "1m", "evaluationInterval": "15s"})
    assert problem.startswith("monitoring.evaluationInterval: '15s' is shorter than scrapeInterval '1m'")


def test_loki_retention_must_be_whole_days() -> None:
    (problem,) = problems({"lokiRetention": "36h"})
    assert problem.startswith("monitoring.lokiRetention: '36h' is not a whole number of days")


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("15s", 15), ("2m", 120), ("1h", 3600), ("15d", 1296000)])
def test_durations_read_as_prometheus_reads_them(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["0s", "1m30s", "15", "s", "-5s", "1.5h"])
def test_only_plain_single_unit_durations_are_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        duration_seconds(text)
