"""Health of a deployed stack: containers, networks, published ports, and every service's own health answer.

Each container is inspected on the Docker host it runs on: a node on a host of its own (and its log
agent) there, everything else on the stack's own host.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.smoke import live
from tests.smoke.stack import (
    ALERTMANAGER,
    LOKI,
    PROMETHEUS,
    StackOutputs,
    mismatch,
    node_curl,
    node_published_ports,
    target_jobs,
    targets_not_up,
    wait_for,
)

pytestmark = pytest.mark.smoke

HEALTHY_TIMEOUT_SECONDS = 180
TARGETS_UP_TIMEOUT_SECONDS = 120


def container_state(inspection: dict[str, Any]) -> str:
    state = inspection.get("State", {})
    health = state.get("Health", {}).get("Status", "no healthcheck")
    return f"{state.get('Status', '?')}/{health}"


def published_ports(inspection: dict[str, Any]) -> list[str]:
    """Host ports a container publishes, as configured and as bound."""
    published = []
    for source in (inspection.get("HostConfig", {}).get("PortBindings"), inspection.get("NetworkSettings", {}).get("Ports")):
        for port, bindings in (source or {}).items():
            published += [f"{binding.get('HostIp') or '*'}:{binding.get('HostPort')}->{port}" for binding in bindings or []]
    return sorted(set(published))


def test_every_container_is_running_and_healthy(stack: StackOutputs) -> None:
    def unhealthy() -> dict[str, str]:
        states = {info.name: container_state(live.inspect_container(info)) for info in stack.containers.values()}
        return {name: state for name, state in states.items() if state != "running/healthy"}

    wait_for(
        unhealthy,
        lambda bad: not bad,
        what=f"containers of stack {stack.name}",
        expected=f"all {len(stack.containers)} running/healthy",
        timeout=HEALTHY_TIMEOUT_SECONDS,
        interval=5,
    )


def test_minio_nodes_publish_no_port_but_on_a_node_hosts_private_address(stack: StackOutputs) -> None:
    published = {node.name: published_ports(live.inspect_container(node)) for node in stack.minio_nodes()}
    expected = {node.name: node_published_ports(node) for node in stack.minio_nodes()}
    assert published == expected, mismatch(
        "ports published by MinIO nodes", f"{expected} (none on the stack's own host, API and console on a node host's address)", published
    )


def test_only_containers_on_the_edge_network_publish_ports(stack: StackOutputs) -> None:
    edge = stack.networks.get("edge")
    # a node on a host of its own publishes on that host's private address: the check above
    nodes_on_hosts = {node.key for node in stack.minio_nodes() if node.host}
    offenders = {
        info.name: ports
        for info in stack.containers.values()
        if edge not in info.networks
        and info.key not in nodes_on_hosts
        and (ports := published_ports(live.inspect_container(info)))
    }
    assert not offenders, mismatch(f"ports published by containers off the edge network {edge}", "none", offenders)


def test_each_container_is_on_exactly_its_networks(stack: StackOutputs) -> None:
    wrong = {}
    for info in stack.containers.values():
        attached = set(live.inspect_container(info).get("NetworkSettings", {}).get("Networks", {}))
        if attached != set(info.networks):
            wrong[info.name] = f"expected {sorted(info.networks)}, seen {sorted(attached)}"
    assert not wrong, f"containers on other networks than the stack declares: {wrong}"


def test_every_minio_node_answers_liveness_inside_its_container(stack: StackOutputs) -> None:
    answers = {}
    for node in stack.minio_nodes():
        result = live.InContainer.of(node).run(
            *node_curl("-sS", "-o", "/dev/null", "--max-time", "10", "-w", "%{http_code}", path="/minio/health/live", tls=node.tls),
            timeout=10,
        )
        answers[node.name] = result.stdout.strip() or result.stderr.strip()
    assert all(answer == "200" for answer in answers.values()), mismatch("/minio/health/live on every node", "200", answers)


def test_cluster_health_through_the_proxy_reports_the_exported_quorums(stack: StackOutputs, http: requests.Session) -> None:
    # right after a deploy a node may still be starting: it answers 503 (iam-offline) until it is ready
    cluster, cluster_read = live.wait_until_cluster_healthy(http, stack.endpoint("s3"), timeout=HEALTHY_TIMEOUT_SECONDS)
    assert cluster.status == 200, mismatch("/minio/health/cluster through the proxy", 200, cluster)
    assert cluster_read.status == 200, mismatch("/minio/health/cluster/read through the proxy", 200, cluster_read)
    expected = tuple(str(quorum) for quorum in stack.layout.reported_quorums)
    quorums = (cluster.write_quorum, cluster_read.read_quorum)
    assert quorums == expected, mismatch("quorums MinIO reports (write, read)", f"the exported layout's {expected}", quorums)


def test_keycloak_discovery_names_the_public_issuer(stack: StackOutputs, http: requests.Session) -> None:
    issuer = stack.endpoint("keycloakIssuer")
    answer = live.get(http, f"{issuer}/.well-known/openid-configuration")
    assert answer.status_code == 200, mismatch("Keycloak discovery", 200, answer.status_code)
    document = answer.json()
    assert document.get("issuer") == issuer, mismatch("issuer in Keycloak discovery", issuer, document.get("issuer"))
    assert "authorization_code" in document.get("grant_types_supported", []), mismatch(
        "Keycloak grant types", "authorization_code (the console's login) among them", document.get("grant_types_supported")
    )


def test_grafana_reports_healthy_through_the_proxy(stack: StackOutputs, http: requests.Session) -> None:
    answer = live.get(http, f"{stack.endpoint('grafana')}/api/health")
    assert answer.status_code == 200, mismatch("Grafana /api/health", 200, answer.status_code)
    assert answer.json().get("database") == "ok", mismatch("Grafana database", "ok", answer.json())


def test_the_proxy_serves_the_alert_runbook(stack: StackOutputs, http: requests.Session) -> None:
    runbook = f"{stack.endpoint('web')}/runbook/"
    answer = live.get(http, runbook)
    assert answer.status_code == 200, mismatch(f"runbook at {runbook}", 200, answer.status_code)
    assert 'id="minionodedown"' in answer.text, mismatch("runbook page", "a MinIONodeDown section", answer.text[:300])


def test_minio_console_answers_through_the_proxy(stack: StackOutputs, http: requests.Session) -> None:
    answer = live.get(http, f"{stack.endpoint('console')}/")
    assert answer.status_code == 200, mismatch("MinIO console", 200, answer.status_code)


@pytest.mark.parametrize(
    ("service", "endpoint", "path"),
    [
        (PROMETHEUS, "prometheusInternal", "/-/ready"),
        (ALERTMANAGER, "alertmanagerInternal", "/-/ready"),
        (LOKI, "lokiInternal", "/ready"),
    ],
)
def test_monitoring_service_is_ready_inside_the_stack(
    stack: StackOutputs, in_stack: live.InStackHttp, service: str, endpoint: str, path: str
) -> None:
    url = f"{stack.endpoint(endpoint)}{path}"
    # Loki answers 503 for a while after start ("Ingester not ready: waiting for 15s after being ready")
    wait_for(
        lambda: in_stack.get(url).status,
        lambda status: status == 200,
        what=f"{service} {path} (from {in_stack.container})",
        expected="200",
        timeout=90,
        interval=5,
    )


def test_every_prometheus_target_is_up(stack: StackOutputs, in_stack: live.InStackHttp) -> None:
    url = f"{stack.endpoint('prometheusInternal')}/api/v1/targets"
    down, jobs = wait_for(
        lambda: (lambda answer: (targets_not_up(answer), target_jobs(answer)))(in_stack.get(url, state="active").json()),
        lambda seen: not seen[0] and bool(seen[1]),
        what="Prometheus targets (down, targets per job)",
        expected="every active target up",
        timeout=TARGETS_UP_TIMEOUT_SECONDS,
        interval=10,
    )
    # one node-metrics target per MinIO node of the exported layout, and the cluster and bucket jobs
    assert jobs.get("minio-nodes") == stack.layout.total_nodes, mismatch("minio-nodes targets", stack.layout.total_nodes, jobs)
    assert jobs.get("minio-cluster", 0) >= 1 and jobs.get("minio-bucket", 0) >= 1, mismatch(
        "scrape jobs", "minio-cluster and minio-bucket among them", jobs
    )
