"""Nodes on hosts of their own (`storage.hosts`), with hosts as network namespaces the lab creates.

The main namespace runs the real nginx and Prometheus on the configurations infra/edge.py and
infra/monitoring/metrics.py render for a multi-host stack; four node namespaces run S3 stand-ins
(small Python TLS servers, not MinIO) with certificates from a lab CA carrying the program's names.
What is shown: S3 through the proxy reaches every node over TLS verified against that CA, a node
certificate the proxy cannot verify is refused, a host whose link is cut is failed over within the
proxy's bounds, Prometheus scrapes the four across namespaces and sees the cut one go down, and the
real blackbox exporter's health probe verifies each node's certificate and reports its end, which the
committed MinIOCertificateExpiring rule reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from cryptography import x509

from infra.hosts import CLUSTER_TLS_NAME, GATEWAY_NAME, node_addresses
from infra.storage import API_PORT, node_name
from tests.lab.netns_lab import MAIN_ADDRESS, NODES, NetnsLab, netns_lab, wait_until, wrong_certificates

pytestmark = pytest.mark.lab

ALL_NODES = {node_name(index) for index in range(1, NODES + 1)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsLab]:
    with netns_lab(tmp_path_factory.mktemp("netns")) as running:
        yield running


def answering_nodes(lab: NetnsLab, requests: int, path: str = "/lab-bucket/object") -> list[str]:
    """The stand-in node behind each of `requests` GETs through the proxy's S3 listener (each must be 200)."""
    assert lab.proxy is not None
    nodes = []
    for _ in range(requests):
        answer = lab.proxy.get(path)
        assert answer.status == 200, (answer.status, answer.body, lab.proxy.error_log()[-2000:])
        nodes.append(answer.headers["x-stand-in-node"])
    return nodes


def test_each_host_resolves_the_other_nodes_through_its_hosts_entries(lab: NetnsLab) -> None:
    addresses = {node_name(index): address for index, address in node_addresses(lab.config).items()}
    assert {name: lab.resolve(lab.main, name) for name in ALL_NODES} == addresses
    second = lab.node_namespace(2)
    assert lab.resolve(second, "minio1") == addresses["minio1"]
    assert lab.resolve(second, GATEWAY_NAME) == MAIN_ADDRESS
    # a node's own name stays its container's (Docker's own entry), never a `hosts` entry
    assert lab.resolve(second, "minio2") is None


def test_s3_through_the_proxy_reaches_every_node_host_over_verified_tls(lab: NetnsLab) -> None:
    assert lab.proxy is not None
    rendered = lab.proxy.rendered()
    assert "proxy_pass https://minio_s3;" in rendered
    assert f"proxy_ssl_trusted_certificate {lab.ca_file};" in rendered

    assert set(answering_nodes(lab, 2 * NODES)) == ALL_NODES
    upstreams = {entry["upstream_addr"] for entry in lab.proxy.access_log() if entry["path"] == "/lab-bucket/object"}
    assert upstreams == {f"{address}:{API_PORT}" for address in node_addresses(lab.config).values()}
    assert all(stand_in.s3_requests() for stand_in in lab.nodes.values())


@pytest.mark.parametrize(
    ("wrong", "logged"),
    [
        ("signed by another CA", "upstream SSL certificate verify error"),
        (f"without the name {CLUSTER_TLS_NAME}", f'upstream SSL certificate does not match "{CLUSTER_TLS_NAME}"'),
    ],
)
def test_a_node_certificate_the_proxy_cannot_verify_is_refused(lab: NetnsLab, tmp_path: Path, wrong: str, logged: str) -> None:
    pair = wrong_certificates(lab.ca, 1, node_addresses(lab.config)[1])[wrong]
    with lab.wrong_certificate_node(tmp_path, pair) as (proxy, stand_in):
        answer = proxy.get("/lab-bucket/object")
        assert answer.status == 502
        assert stand_in.connections > 0, "the proxy never reached the stand-in"
        assert stand_in.paths == []
        assert logged in proxy.error_log()


def test_prometheus_scrapes_every_node_host_over_tls_by_name(lab: NetnsLab) -> None:
    assert lab.prometheus is not None
    prometheus = lab.prometheus
    healthy = dict.fromkeys(ALL_NODES, 1.0)
    for job in ("minio-cluster", "minio-nodes", "minio-bucket"):
        wait_until(partial(lambda job: prometheus.up(job) == healthy, job), f"up{{job={job!r}}} 1 for all four nodes", seconds=15)
    urls = {target["labels"]["node"]: target["scrapeUrl"] for target in prometheus.targets("minio-nodes")}
    assert urls == {name: f"https://{name}:{API_PORT}/minio/v2/metrics/node" for name in ALL_NODES}


def test_a_host_cut_off_before_the_proxy_connects_is_failed_over_within_the_connect_timeout(lab: NetnsLab, tmp_path: Path) -> None:
    failover = lab.config.edge.failover
    cut = lab.nodes[NODES]
    before = len(cut.s3_requests())
    with lab.second_proxy(tmp_path) as proxy, lab.link_cut(NODES):
        answers = [proxy.get("/lab-bucket/object") for _ in range(2 * NODES)]
        assert [answer.status for answer in answers] == [200] * len(answers), proxy.error_log()[-2000:]
        assert "upstream timed out (110: Connection timed out) while connecting to upstream" in proxy.error_log()
    assert {answer.headers["x-stand-in-node"] for answer in answers} == ALL_NODES - {cut.node}
    assert len(cut.s3_requests()) == before
    # one connect that times out, then the next node; the cut node is skipped for fail_timeout after that
    assert max(answer.seconds for answer in answers) < failover.connect_timeout_seconds + 1.0
    assert sorted(answer.seconds for answer in answers)[-2] < 0.5


def test_a_host_cut_off_while_the_proxy_keeps_connections_to_it_is_failed_over(lab: NetnsLab) -> None:
    """A request sent on a stale connection to the cut host meets silence, not a reset: it waits one read
    timeout, then the retry window (every try's timeouts) still lets it go to the next node."""
    assert lab.proxy is not None
    failover = lab.config.edge.failover
    # the worker holds kept-alive TLS connections to every node, as a busy proxy does
    assert set(answering_nodes(lab, 2 * NODES)) == ALL_NODES
    cut = lab.nodes[NODES]
    with lab.link_cut(NODES):
        answers = [lab.proxy.get("/lab-bucket/object") for _ in range(2 * NODES)]
    assert [answer.status for answer in answers] == [200] * len(answers), lab.proxy.error_log()[-2000:]
    assert {answer.headers["x-stand-in-node"] for answer in answers} == ALL_NODES - {cut.node}
    # one silent try at the cut node, then the next node
    assert max(answer.seconds for answer in answers) < failover.read_timeout_seconds + 1.0


def test_prometheus_sees_the_cut_node_host_go_down_and_come_back(lab: NetnsLab) -> None:
    assert lab.prometheus is not None
    prometheus = lab.prometheus
    healthy = dict.fromkeys(ALL_NODES, 1.0)
    wait_until(lambda: prometheus.up("minio-nodes") == healthy, "all four nodes up before the cut", seconds=15)
    with lab.link_cut(2):
        down = {**healthy, "minio2": 0.0}
        wait_until(lambda: prometheus.up("minio-nodes") == down, "minio2 down after its link is cut", seconds=15)
    wait_until(lambda: prometheus.up("minio-nodes") == healthy, "minio2 up again once its link is back", seconds=15)


def test_the_health_probe_verifies_each_node_certificate_and_reports_its_end(lab: NetnsLab) -> None:
    assert lab.prometheus is not None
    prometheus = lab.prometheus
    healthy = dict.fromkeys(ALL_NODES, 1.0)
    wait_until(lambda: prometheus.by_node('probe_success{job="minio-health"}') == healthy, "every node's health probe succeeding", seconds=20)
    ends = {
        node_name(node): x509.load_pem_x509_certificate(pair.certificate.encode()).not_valid_after_utc.timestamp()
        for node, pair in lab.node_pairs.items()
    }
    assert prometheus.by_node('probe_ssl_earliest_cert_expiry{job="minio-health"}') == ends
    # the lab's certificates end within a day, inside the renewal window: the rule matches each node
    # and waits out its 'for'
    pending = wait_until(
        lambda: (alerts := prometheus.alerts("MinIOCertificateExpiring")) and len(alerts) == NODES and alerts,
        "MinIOCertificateExpiring pending for every node",
        seconds=20,
    )
    assert {alert["labels"]["node"] for alert in pending} == ALL_NODES
    assert {alert["state"] for alert in pending} == {"pending"}
