"""Alerting end to end: a stopped node makes MinIONodeDown fire in Prometheus and reach Alertmanager; a restart resolves it.

The waits are bounded by what the stack's own configuration implies (scrape interval,
evaluation interval and the rule's `for`, read from Prometheus), plus a fixed margin for MinIO
to notice the lost peer.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.smoke import live
from tests.smoke.stack import (
    NodeOutage,
    StackOutputs,
    alert_rule,
    alertmanager_alerts,
    mismatch,
    prometheus_alerts,
    scrape_interval,
    wait_for,
)

pytestmark = pytest.mark.smoke

ALERT = "MinIONodeDown"
# the job whose `up` the rule watches
SCRAPE_JOB = "minio-nodes"
DETECTION_MARGIN_SECONDS = 90


def active_in_prometheus(in_stack: live.InStackHttp, prometheus: str) -> list[dict[str, Any]]:
    answer = in_stack.get(f"{prometheus}/api/v1/alerts").json()
    return prometheus_alerts(answer, ALERT, "firing") + prometheus_alerts(answer, ALERT, "pending")


def firing_in_prometheus(in_stack: live.InStackHttp, prometheus: str) -> list[dict[str, Any]]:
    return prometheus_alerts(in_stack.get(f"{prometheus}/api/v1/alerts").json(), ALERT, "firing")


def active_in_alertmanager(in_stack: live.InStackHttp, alertmanager: str) -> list[Any]:
    return alertmanager_alerts(in_stack.get(f"{alertmanager}/api/v2/alerts", active="true").json(), ALERT)


def test_node_down_alert_fires_reaches_alertmanager_and_resolves(
    disruptive: None, stack: StackOutputs, in_stack: live.InStackHttp, http: requests.Session
) -> None:
    prometheus, alertmanager = stack.endpoint("prometheusInternal"), stack.endpoint("alertmanagerInternal")
    rule = alert_rule(in_stack.get(f"{prometheus}/api/v1/rules", type="alert").json(), ALERT)
    assert rule is not None, mismatch("Prometheus alerting rules", f"a rule {ALERT}", "none loaded")
    hold, evaluation = rule.hold, rule.evaluation
    scrape = scrape_interval(in_stack.get(f"{prometheus}/api/v1/targets", state="active").json(), SCRAPE_JOB)
    assert scrape is not None, mismatch("Prometheus targets", f"job {SCRAPE_JOB}", "none")
    fire_bound = scrape + evaluation + hold + DETECTION_MARGIN_SECONDS
    clear_bound = scrape + 2 * evaluation + rule.keep_firing + DETECTION_MARGIN_SECONDS
    # an earlier outage (the failover check) may still be clearing: wait for it, bounded, before stopping anything
    wait_for(
        lambda: [alert.get("labels") for alert in active_in_prometheus(in_stack, prometheus)],
        lambda active: not active,
        what=f"{ALERT} in Prometheus before stopping a node",
        expected="not active (every node up)",
        timeout=clear_bound,
        interval=5,
    )

    node = stack.node(1)
    with NodeOutage.from_environment() as outage:
        outage.stop(live.DockerContainer.of(node))
        wait_for(
            lambda: firing_in_prometheus(in_stack, prometheus),
            bool,
            what=f"{ALERT} in Prometheus with {node.name} stopped",
            expected=f"firing (bound: scrape {scrape:g}s + evaluation {evaluation:g}s + for {hold:g}s + {DETECTION_MARGIN_SECONDS}s)",
            timeout=fire_bound,
            interval=5,
        )
        wait_for(
            lambda: active_in_alertmanager(in_stack, alertmanager),
            bool,
            what=f"{ALERT} in Alertmanager with {node.name} stopped",
            expected="active",
            timeout=evaluation + DETECTION_MARGIN_SECONDS,
            interval=5,
        )

    wait_for(
        lambda: active_in_prometheus(in_stack, prometheus),
        lambda alerts: not alerts,
        what=f"{ALERT} in Prometheus after {node.name} was started again",
        expected="resolved",
        timeout=clear_bound,
        interval=5,
    )
    wait_for(
        lambda: active_in_alertmanager(in_stack, alertmanager),
        lambda alerts: not alerts,
        what=f"{ALERT} in Alertmanager after {node.name} was started again",
        expected="resolved",
        timeout=clear_bound + evaluation,
        interval=5,
    )
    wait_for(
        lambda: live.status_of(http, f"{stack.endpoint('s3')}/minio/health/cluster"),
        lambda status: status == 200,
        what="/minio/health/cluster after the alert test",
        expected="200",
        timeout=120,
        interval=3,
    )
