"""The alert path end to end on loopback: real Prometheus and real Alertmanager on the rendered configs.

The scraped MinIO nodes are STAND-INS serving MinIO's metrics format (tests/lab/alert_lab.py);
what is shown is the project's configuration and rules driving the real Prometheus and
Alertmanager, not MinIO behaviour. Intervals are shortened to 1s for the lab; the rules, their
`for` durations, routes and inhibitions are the rendered ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.runbook import runbook_url
from tests.lab.alert_lab import AlertLab, alert_lab, get_json, post_json, wait_for

pytestmark = pytest.mark.lab

NODE_DOWN_FOR_SECONDS = 60
MARGIN_SECONDS = 20


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertLab]:
    with alert_lab(tmp_path_factory.mktemp("alert-lab")) as running:
        yield running


def test_rendered_rules_load_and_a_healthy_cluster_raises_nothing_but_the_watchdog(lab: AlertLab) -> None:
    groups = get_json(f"{lab.prometheus_url}/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"MinIONodeDown", "MinIOWriteQuorumLost", "Watchdog"} <= loaded
    watchdog = wait_for(lambda: lab.receiver.notifications("Watchdog", "firing"), "Watchdog at the webhook", timeout=20)
    assert watchdog[0][1]["labels"]["stack"] == lab.config.name
    time.sleep(2)
    active = {alert["labels"]["alertname"] for alert in get_json(f"{lab.prometheus_url}/api/v1/alerts")["data"]["alerts"]}
    assert active == {"Watchdog"}


def test_real_alertmanager_inhibits_node_alerts_while_quorum_is_lost(lab: AlertLab) -> None:
    # alerts posted directly, under their own stack label, so they cannot touch the node-down test
    stack = {"stack": "inhibition-check", "severity": "critical"}
    alerts = [
        {"labels": {"alertname": "MinIOWriteQuorumLost", "pool": "0", "set": "0", **stack}},
        {"labels": {"alertname": "MinIONodeDown", "node": "minio3", **stack}},
    ]
    assert post_json(f"{lab.alertmanager_url}/api/v2/alerts", alerts) == 200

    def states() -> dict[str, str] | None:
        answer = get_json(f"{lab.alertmanager_url}/api/v2/alerts?filter=stack%3D%22inhibition-check%22")
        found = {alert["labels"]["alertname"]: alert["status"]["state"] for alert in answer}
        return found if len(found) == 2 else None

    expected = {"MinIOWriteQuorumLost": "active", "MinIONodeDown": "suppressed"}
    # the inhibitor learns of the source alert a moment after the API has accepted both
    seen = wait_for(lambda: expected if states() == expected else None, f"both posted alerts in Alertmanager as {expected}", timeout=10)
    assert seen == expected
    notified = wait_for(
        lambda: [a for _, a in lab.receiver.notifications("MinIOWriteQuorumLost", "firing") if a["labels"]["stack"] == "inhibition-check"],
        "the quorum alert at the webhook",
        timeout=15,
    )
    assert notified
    assert not [a for _, a in lab.receiver.notifications("MinIONodeDown", "firing") if a["labels"]["stack"] == "inhibition-check"]


def test_stopping_a_node_makes_node_down_pend_fire_reach_the_webhook_and_resolve(lab: AlertLab) -> None:
    node = lab.nodes[1]
    assert lab.alert_state("MinIONodeDown") is None
    node.stop()
    stopped = time.monotonic()
    try:
        wait_for(lambda: lab.alert_state("MinIONodeDown", node="minio2") == "pending", "MinIONodeDown pending", timeout=15)
        pending_after = time.monotonic() - stopped
        wait_for(
            lambda: lab.alert_state("MinIONodeDown", node="minio2") == "firing",
            "MinIONodeDown firing",
            timeout=NODE_DOWN_FOR_SECONDS + MARGIN_SECONDS,
            interval=1,
        )
        firing_after = time.monotonic() - stopped
        (arrived, alert), *_ = wait_for(
            lambda: lab.receiver.notifications("MinIONodeDown", "firing"), "MinIONodeDown at the webhook", timeout=MARGIN_SECONDS
        )
    finally:
        node.start()
    restarted = time.monotonic()

    assert pending_after < 10
    assert NODE_DOWN_FOR_SECONDS <= firing_after < NODE_DOWN_FOR_SECONDS + MARGIN_SECONDS
    assert alert["labels"] == {
        "alertname": "MinIONodeDown",
        "instance": f"{node.host}:{node.port}",
        "job": "minio-nodes",
        "node": "minio2",
        "severity": "critical",
        "stack": lab.config.name,
    }
    assert alert["annotations"]["summary"] == "MinIO node minio2 is down"
    assert alert["annotations"]["runbook_url"] == f"{runbook_url(lab.config)}#minionodedown"
    # only the stopped node: the others kept answering
    assert {a["labels"]["node"] for _, a in lab.receiver.notifications("MinIONodeDown", "firing")} == {"minio2"}

    wait_for(lambda: lab.alert_state("MinIONodeDown") is None, "MinIONodeDown cleared in Prometheus", timeout=MARGIN_SECONDS)
    resolved = wait_for(
        lambda: lab.receiver.notifications("MinIONodeDown", "resolved"), "the resolved notice at the webhook", timeout=MARGIN_SECONDS
    )
    assert resolved[0][0] > restarted and resolved[0][1]["labels"]["node"] == "minio2"
    assert arrived - stopped >= NODE_DOWN_FOR_SECONDS
    # the peers reported the node offline meanwhile, as MinIO's cluster metrics would
    assert not lab.receiver.notifications("MinIONodesOffline", "firing")  # its 'for: 5m' outlasts the outage


def test_logs_of_real_servers_show_no_config_errors(lab: AlertLab) -> None:
    for name in ("prometheus.log", "alertmanager.log"):
        text = (lab.logs / name).read_text()
        assert "level=error" not in text, f"{name}:\n{text[-2000:]}"
