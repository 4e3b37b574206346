"""MinIOIdentityOffline on loopback: the real blackbox exporter on the rendered module config, real
Prometheus on the rendered scrape job and rules, probing STAND-IN MinIO nodes.

The stand-ins answer /minio/health/cluster with the status and headers the pinned MinIO source sends
(tests/lab/alert_lab.py, `ClusterState.cluster_health`, with the source lines): healthy, IAM not
loaded, write quorum lost. What is shown is the project's probe module, scrape job and rule reading
those answers; the answers themselves are a fixture, not MinIO behaviour. Intervals are 1s for the
lab; the rule and its `for` are the rendered ones, so the lab sees the alert pending and clearing (the
5 minutes to firing are promtool's to show, alerts/identity.rules.test.yml).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from infra.monitoring import blackbox_exporter
from tests.lab.alert_lab import AlertLab, alert_lab, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertLab]:
    with alert_lab(tmp_path_factory.mktemp("identity-lab")) as running:
        yield running


def probe(lab: AlertLab, index: int) -> dict[str, float]:
    """The exporter's answer for one stand-in node, asked the way job minio-health asks it."""
    node = lab.nodes[index - 1]
    query = urllib.parse.urlencode(
        {"module": blackbox_exporter.HEALTH_MODULE, "target": f"http://{node.host}:{node.port}{blackbox_exporter.HEALTH_PATH}"}
    )
    with urllib.request.urlopen(f"{lab.blackbox_url}/probe?{query}", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            samples[name] = float(value)
    return samples


def verdict(samples: dict[str, float]) -> tuple[float, float, float]:
    return samples["probe_success"], samples["probe_failed_due_to_regex"], samples["probe_http_status_code"]


def test_the_real_exporter_tells_iam_offline_from_quorum_loss_and_a_stopped_node(lab: AlertLab) -> None:
    state = lab.nodes[0].state
    assert verdict(probe(lab, 1)) == (1, 0, 200)
    state.iam_offline.add(1)
    try:
        # the one answer that fails on the header
        assert verdict(probe(lab, 1)) == (0, 1, 503)
        assert verdict(probe(lab, 2)) == (1, 0, 200)
    finally:
        state.iam_offline.discard(1)
    assert verdict(probe(lab, 1)) == (1, 0, 200)
    # write quorum lost (the stand-ins report 3 of 4 nodes offline): 503 without the header passes
    saved = set(state.online)
    state.online.intersection_update({1})
    try:
        assert verdict(probe(lab, 1)) == (1, 0, 503)
    finally:
        state.online.update(saved)
    # a stopped node: no answer, so no header to match either
    lab.nodes[3].stop()
    try:
        assert verdict(probe(lab, 4)) == (0, 0, 0)
    finally:
        lab.nodes[3].start()


def test_prometheus_sees_the_probe_flip_and_the_rendered_rule_goes_pending_for_that_node_only(lab: AlertLab) -> None:
    failed = 'probe_failed_due_to_regex{job="minio-health", node="minio2"}'
    wait_for(lambda: [s for s in lab.query(failed) if s["value"][1] == "0"], "minio2 probed healthy", timeout=15)
    wait_for(lambda: lab.alert_state("MinIOIdentityOffline") is None, "no MinIOIdentityOffline to begin with", timeout=15)
    state = lab.nodes[1].state
    state.iam_offline.add(2)
    try:
        wait_for(lambda: [s for s in lab.query(failed) if s["value"][1] == "1"], "minio2 probed iam-offline", timeout=15)
        wait_for(lambda: lab.alert_state("MinIOIdentityOffline", node="minio2") == "pending", "MinIOIdentityOffline pending", timeout=15)
        [alert] = lab.prometheus_alerts("MinIOIdentityOffline")
        node = lab.nodes[1]
        assert alert["labels"] == {
            "alertname": "MinIOIdentityOffline",
            "job": "minio-health",
            "instance": f"{node.host}:{node.port}",
            "node": "minio2",
            "severity": "critical",
        }
        assert alert["annotations"]["summary"] == "MinIO node minio2 cannot load IAM (OpenID provider unreachable)"
        # the exporter answered throughout: the probe job's `up` is the exporter's
        up = lab.query('min(up{job="minio-health"})')
        assert float(up[0]["value"][1]) == 1
    finally:
        state.iam_offline.discard(2)
    wait_for(lambda: [s for s in lab.query(failed) if s["value"][1] == "0"], "minio2 probed healthy again", timeout=15)
    wait_for(lambda: lab.alert_state("MinIOIdentityOffline") is None, "MinIOIdentityOffline cleared", timeout=15)
    assert not lab.receiver.notifications("MinIOIdentityOffline", "firing")


def test_a_stopped_node_is_not_reported_as_identity_offline(lab: AlertLab) -> None:
    node = lab.nodes[2]
    node.stop()
    try:
        success = 'probe_success{job="minio-health", node="minio3"}'
        wait_for(lambda: [s for s in lab.query(success) if s["value"][1] == "0"], "minio3 probe failing", timeout=15)
        failed = lab.query('probe_failed_due_to_regex{job="minio-health", node="minio3"}')
        assert [s["value"][1] for s in failed] == ["0"]
        assert lab.alert_state("MinIOIdentityOffline") is None
    finally:
        node.start()
    wait_for(lab.minio_targets_up, "minio3 scraped again", timeout=30)


def test_the_exporter_loaded_the_rendered_configuration(lab: AlertLab) -> None:
    text = (lab.logs / "blackbox.log").read_text()
    assert "Loaded config file" in text and "Error loading config" not in text, text[-2000:]
