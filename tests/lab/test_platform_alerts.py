"""The platform's own alerts end to end on loopback: real Prometheus and Alertmanager on the rendered configs.

Grafana, Keycloak and the edge proxy's exporter are STAND-INS serving /metrics (tests/lab/alert_lab.py),
one server each; Prometheus and Alertmanager are real and scrape themselves, so the rules on their
own metrics run against what these binaries export. Intervals are shortened to 1s for the lab; the
rules and their `for` durations are the rendered ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from infra.runbook import runbook_url
from tests.lab.alert_lab import AlertLab, alert_lab, exporter_metrics, wait_for

pytestmark = pytest.mark.lab

TARGET_DOWN_FOR_SECONDS = 120
MARGIN_SECONDS = 20


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertLab]:
    with alert_lab(tmp_path_factory.mktemp("platform-lab")) as running:
        yield running


def test_prometheus_holds_the_stacks_latency_threshold_from_its_rendered_recording_rule(lab: AlertLab) -> None:
    series = wait_for(
        lambda: lab.query("minio_platform:s3_ttfb_p99_threshold_seconds"), "the threshold recorded", timeout=15
    )
    assert [float(sample["value"][1]) for sample in series] == [lab.config.monitoring.s3_latency_p99_seconds]


def test_the_self_metrics_the_platform_rules_read_exist_in_the_real_binaries(lab: AlertLab) -> None:
    # what PrometheusNotConnectedToAlertmanagers, PrometheusRuleFailures, PrometheusErrorSendingAlerts and
    # AlertmanagerFailedToSendAlerts read, as these Prometheus and Alertmanager export it
    discovered = wait_for(
        lambda: lab.query('prometheus_notifications_alertmanagers_discovered{job="prometheus"}'), "discovered", timeout=15
    )
    assert float(discovered[0]["value"][1]) == 1
    for expr in (
        'prometheus_rule_evaluation_failures_total{job="prometheus"}',
        'prometheus_notifications_sent_total{job="prometheus"}',
        'prometheus_notifications_errors_total{job="prometheus"}',
        'alertmanager_notifications_total{job="alertmanager", integration="webhook"}',
        'alertmanager_notifications_failed_total{job="alertmanager", integration="webhook"}',
    ):
        assert wait_for(lambda: lab.query(expr), expr, timeout=15)
    # a healthy pipeline: no evaluation fails
    failures = lab.query('sum(prometheus_rule_evaluation_failures_total{job="prometheus"})')
    assert float(failures[0]["value"][1]) == 0
    for alertname in ("PrometheusRuleFailures", "PrometheusNotConnectedToAlertmanagers", "AlertmanagerFailedToSendAlerts"):
        assert lab.alert_state(alertname) is None, alertname


def test_nginx_not_answering_its_exporter_is_the_edge_proxy_alert_not_a_target_down(lab: AlertLab) -> None:
    exporter = lab.platform["edge-proxy"]
    exporter.metrics = exporter_metrics(nginx_up=0)
    try:
        wait_for(lambda: lab.alert_state("PlatformEdgeProxyDown") == "pending", "PlatformEdgeProxyDown pending", timeout=15)
        # the exporter itself still answers
        assert lab.alert_state("PlatformTargetDown", job="edge-proxy") is None
    finally:
        exporter.metrics = exporter_metrics(nginx_up=1)
    wait_for(lambda: lab.alert_state("PlatformEdgeProxyDown") is None, "PlatformEdgeProxyDown cleared", timeout=15)
    assert not lab.receiver.notifications("PlatformEdgeProxyDown", "firing")


def test_a_stopped_platform_exporter_makes_platform_target_down_fire_reach_the_webhook_and_resolve(lab: AlertLab) -> None:
    grafana = lab.platform["grafana"]
    assert lab.alert_state("PlatformTargetDown") is None
    grafana.stop()
    stopped = time.monotonic()
    try:
        wait_for(lambda: lab.alert_state("PlatformTargetDown", job="grafana") == "pending", "PlatformTargetDown pending", timeout=15)
        pending_after = time.monotonic() - stopped
        wait_for(
            lambda: lab.alert_state("PlatformTargetDown", job="grafana") == "firing",
            "PlatformTargetDown firing",
            timeout=TARGET_DOWN_FOR_SECONDS + MARGIN_SECONDS,
            interval=1,
        )
        firing_after = time.monotonic() - stopped
        (arrived, alert), *_ = wait_for(
            lambda: lab.receiver.notifications("PlatformTargetDown", "firing"), "PlatformTargetDown at the webhook", timeout=MARGIN_SECONDS
        )
    finally:
        grafana.start()
    restarted = time.monotonic()

    assert pending_after < 10
    assert TARGET_DOWN_FOR_SECONDS <= firing_after < TARGET_DOWN_FOR_SECONDS + MARGIN_SECONDS
    assert arrived - stopped >= TARGET_DOWN_FOR_SECONDS
    assert alert["labels"] == {
        "alertname": "PlatformTargetDown",
        "instance": f"{grafana.host}:{grafana.port}",
        "job": "grafana",
        "severity": "warning",
        "stack": lab.config.name,
    }
    assert alert["annotations"]["summary"] == "Platform service grafana is down"
    assert alert["annotations"]["runbook_url"] == f"{runbook_url(lab.config)}#platformtargetdown"
    # only the stopped one: Keycloak's and the exporter's stand-ins kept answering
    assert {a["labels"]["job"] for _, a in lab.receiver.notifications("PlatformTargetDown", "firing")} == {"grafana"}

    wait_for(lambda: lab.alert_state("PlatformTargetDown") is None, "PlatformTargetDown cleared in Prometheus", timeout=MARGIN_SECONDS)
    resolved = wait_for(
        lambda: lab.receiver.notifications("PlatformTargetDown", "resolved"), "the resolved notice at the webhook", timeout=MARGIN_SECONDS
    )
    assert resolved[0][0] > restarted and resolved[0][1]["labels"]["job"] == "grafana"


def test_logs_of_real_servers_show_no_config_errors(lab: AlertLab) -> None:
    for name in ("prometheus.log", "alertmanager.log"):
        text = (lab.logs / name).read_text()
        assert "level=error" not in text, f"{name}:\n{text[-2000:]}"
