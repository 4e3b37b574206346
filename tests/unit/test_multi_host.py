"""Nodes on hosts of their own (storage.hosts), under Pulumi's mocks: a provider per host and each node
through it, ports on the private address only, one server command over TLS, the `hosts` entries, the
certificates and the clients that trust them, and a stack without hosts exactly as recorded."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from infra.config import ConfigError, parse_stack_config
from infra.config.storage import MAX_NODES
from infra.hosts import (
    CA_FILE,
    CA_VALIDITY_DAYS,
    CLUSTER_TLS_NAME,
    GATEWAY_NAME,
    GATEWAY_PORT,
    RENEW_BEFORE_DAYS,
    RENEWAL_STAGGER_DAYS,
    leaf_validity_days,
)
from infra.monitoring.metrics import ALERTS_DIR
from infra.inventory import CONTAINER, NETWORK
from tests.unit import pulumi_harness
from tests.unit.multi_host_stack import HOSTS, MAIN_HOST_ADDRESS, STORAGE_ON_HOSTS
from tests.unit.pulumi_harness import Deployment, Registration, deploy
from tests.unit.resource_snapshot import STACKS, current, recorded

PROVIDER = "pulumi:providers:docker"
CERTIFICATE = "tls:index/locallySignedCert:LocallySignedCert"
REQUEST = "tls:index/certRequest:CertRequest"
CA = "tls:index/selfSignedCert:SelfSignedCert"
ON_HOSTS = {"storage": STORAGE_ON_HOSTS}


@pytest.fixture(scope="module")
def spread() -> Deployment:
    return deploy("dev", ON_HOSTS)


def provider_of(deployment: Deployment, registration: Registration) -> str | None:
    """The dockerHost `registration` is created through; None for the stack's own (default) provider."""
    if not registration.provider:
        return None
    urn = registration.provider.split("::")
    providers = {p.urn: p for p in deployment.of_type(PROVIDER)}
    return str(providers["::".join(urn[:-1])].inputs["host"])


def test_one_provider_per_host_and_each_nodes_resources_through_it(spread: Deployment) -> None:
    providers = spread.of_type(PROVIDER)
    assert sorted(p.inputs["host"] for p in providers) == [host["dockerHost"] for host in HOSTS]
    for node, host in enumerate(HOSTS, start=1):
        on_host = {r.name for r in spread.resources if provider_of(spread, r) == host["dockerHost"]}
        assert {f"minio{node}", f"minio{node}-data1", f"minio{node}-data2", f"minio{node}-image", f"minio{node}-net"} <= on_host
        assert not {name for name in on_host if name.startswith("minio") and not name.startswith(f"minio{node}")}
    # the rest of the stack stays on the stack's own host
    for name in ("edge-proxy", "keycloak", "prometheus", "loki", "postgres"):
        assert provider_of(spread, spread.named(name, CONTAINER)) is None


def test_nodes_publish_on_their_private_address_only(spread: Deployment) -> None:
    for node, host in enumerate(HOSTS, start=1):
        ports = spread.named(f"minio{node}", CONTAINER).inputs["ports"]
        assert {(p["internal"], p["external"], p["ip"]) for p in ports} == {(9000, 9000, host["address"]), (9001, 9001, host["address"])}
    # on one host a node publishes nothing
    assert "ports" not in deploy("dev").named("minio1", CONTAINER).inputs


def test_every_node_runs_the_same_command_over_tls(spread: Deployment) -> None:
    commands = {tuple(spread.named(f"minio{node}", CONTAINER).inputs["command"]) for node in range(1, 5)}
    assert commands == {("server", "--certs-dir", "/etc/minio/certs", "--address", ":9000", "--console-address", ":9001",
                         "https://minio{1...4}:9000/data{1...2}")}
    assert spread.outputs["minioCommand"] == list(commands.pop())
    assert deploy("dev").outputs["minioCommand"][-1] == "http://minio{1...4}:9000/data{1...2}"


def test_a_node_names_the_others_and_the_gateway_but_never_itself(spread: Deployment) -> None:
    entries = {e["host"]: e["ip"] for e in spread.named("minio2", CONTAINER).inputs["hosts"]}
    # its own name stays its container's address, or MinIO would not find itself among the endpoints
    assert entries == {"minio1": "10.0.0.11", "minio3": "10.0.0.13", "minio4": "10.0.0.14", GATEWAY_NAME: MAIN_HOST_ADDRESS}
    assert spread.named("minio2", CONTAINER).inputs["hostname"] == "minio2"
    backup = {e["host"]: e["ip"] for e in spread.named("backup", CONTAINER).inputs["hosts"]}
    assert backup == {f"minio{node}": host["address"] for node, host in enumerate(HOSTS, start=1)}


def test_each_node_network_is_a_routed_bridge_on_its_host(spread: Deployment) -> None:
    network = spread.named("minio3-net", NETWORK)
    assert not network.inputs.get("internal") and network.inputs["driver"] == "bridge"
    container = spread.named("minio3", CONTAINER)
    assert [n["name"] for n in container.inputs["networksAdvanced"]] == [network.inputs["name"]]
    # storage-net carries the clients of the nodes out to the hosts' network; on one host it stays internal
    assert not spread.named("storage-net", NETWORK).inputs.get("internal")
    assert deploy("dev").named("storage-net", NETWORK).inputs["internal"] is True


def test_every_node_certificate_is_signed_by_the_stack_ca(spread: Deployment) -> None:
    [ca] = [c for c in spread.of_type(CA) if c.name == "cluster-tls-ca"]
    assert ca.inputs["isCaCertificate"] is True
    requests = {r.name: r for r in spread.of_type(REQUEST)}
    for node, host in enumerate(HOSTS, start=1):
        request = requests[f"cluster-tls-minio{node}-request"]
        assert request.inputs["dnsNames"] == [f"minio{node}", CLUSTER_TLS_NAME, "localhost"]
        assert request.inputs["ipAddresses"] == [host["address"], "127.0.0.1"]
    assert requests[f"cluster-tls-{GATEWAY_NAME}-request"].inputs["ipAddresses"] == [MAIN_HOST_ADDRESS]
    certificates = {c.name: c for c in spread.of_type(CERTIFICATE)}
    assert len(certificates) == 5
    assert {c.inputs["caCertPem"] for c in certificates.values()} == {ca.inputs["certPem"]}
    assert all(c.inputs["earlyRenewalHours"] > 0 for c in certificates.values())


def test_no_two_nodes_certificates_fall_due_in_one_renewal_window(spread: Deployment) -> None:
    """Renewing a node's certificate replaces that node: two renewed in one update would take two nodes down."""
    certificates = {c.name: c.inputs for c in spread.of_type(CERTIFICATE)}
    windows = sorted(
        (inputs["validityPeriodHours"] - inputs["earlyRenewalHours"], inputs["validityPeriodHours"])
        for name, inputs in certificates.items()
        if name != f"cluster-tls-{GATEWAY_NAME}"
    )
    assert len(windows) == len(HOSTS)
    assert all(earlier[1] < later[0] for earlier, later in zip(windows, windows[1:]))
    # even the largest cluster's last node falls due years before the CA that signs it ends
    assert leaf_validity_days(MAX_NODES) < CA_VALIDITY_DAYS - 365


def test_the_expiry_alert_fires_when_the_renewal_window_opens() -> None:
    """MinIOCertificateExpiring says a due certificate was not renewed: its threshold is the renewal window."""
    rules = {rule.get("alert"): rule for group in yaml.safe_load((ALERTS_DIR / "minio.rules.yml").read_text())["groups"]
             for rule in group["rules"]}
    assert f"< {RENEW_BEFORE_DAYS} * 86400" in rules["MinIOCertificateExpiring"]["expr"]
    runbook = " ".join((ALERTS_DIR / "RUNBOOK.md").read_text().split())
    assert f"within {RENEW_BEFORE_DAYS} days of its end" in runbook and f"lasts {RENEWAL_STAGGER_DAYS} days longer" in runbook


def test_a_node_receives_its_own_certificate_and_the_ca_with_its_key_secret(spread: Deployment) -> None:
    certificates = {c.name: c.inputs["certPem"] for c in spread.of_type(CERTIFICATE)}
    [ca] = [c.inputs["certPem"] for c in spread.of_type(CA) if c.name == "cluster-tls-ca"]
    node = spread.named("minio3", CONTAINER)
    files = node.uploads()
    assert files["/etc/minio/certs/public.crt"] == certificates["cluster-tls-minio3"]
    assert files["/etc/minio/certs/CAs/cluster-ca.crt"] == ca
    assert "PRIVATE KEY" in files["/etc/minio/certs/private.key"]
    assert "uploads" in node.secret_paths


def test_nodes_reach_keycloak_and_the_audit_sink_through_the_gateway(spread: Deployment) -> None:
    settings = spread.named("minio1", CONTAINER).uploads()["/etc/minio/config.env"]
    assert f"MINIO_IDENTITY_OPENID_CONFIG_URL=https://{GATEWAY_NAME}:{GATEWAY_PORT}/auth/realms/" in settings
    assert f"MINIO_AUDIT_WEBHOOK_ENDPOINT=https://{GATEWAY_NAME}:{GATEWAY_PORT}/minio/audit" in settings
    one_host = deploy("dev").named("minio1", CONTAINER).uploads()["/etc/minio/config.env"]
    assert "MINIO_IDENTITY_OPENID_CONFIG_URL=http://keycloak:8080/auth/realms/" in one_host


def test_the_backup_trusts_the_ca_and_speaks_tls_to_minio1(spread: Deployment) -> None:
    backup = spread.named("backup", CONTAINER)
    command = backup.inputs["command"]
    assert command[command.index("--ca-file") + 1] == CA_FILE
    files = backup.uploads()
    [ca] = [c.inputs["certPem"] for c in spread.of_type(CA) if c.name == "cluster-tls-ca"]
    assert files[CA_FILE] == ca
    assert "OPS_ENDPOINT=https://minio1:9000" in files["/etc/ops/ops.env"]
    assert "OPS_FALLBACK_ENDPOINTS=https://minio2:9000,https://minio3:9000,https://minio4:9000" in files["/etc/ops/ops.env"]
    assert "--ca-file" not in deploy("dev").named("backup", CONTAINER).inputs["command"]


def test_the_layout_counts_hosts(spread: Deployment) -> None:
    layout = spread.outputs["layout"]
    assert layout["hosts"] == 4
    # one node per host: a host lost is a node lost, row for row
    assert [(row["hostsDown"], row["reads"], row["writes"]) for row in layout["hostLoss"]] == [
        (row["nodesDown"], row["reads"], row["writes"]) for row in layout["nodeLoss"]
    ]
    one_host = deploy("dev").outputs["layout"]
    assert one_host["hosts"] == 1 and one_host["hostLoss"][1] == {"hostsDown": 1, "reads": False, "writes": False}
    assert spread.outputs["nodeHosts"]["minio2"] == HOSTS[1]
    assert deploy("dev").outputs["nodeHosts"]["minio2"] is None


@pytest.mark.parametrize("stack", STACKS)
def test_without_hosts_or_drive_paths_the_resources_are_exactly_as_recorded(stack: str) -> None:
    # taken from the program as it was before storage.hosts, then once more for the one deliberate change
    # to a one-host stack since: the edge proxy's retry window (proxy_next_upstream_timeout) in nginx.conf;
    # `python -m tests.unit.resource_snapshot` rewrites them
    assert current(stack) == recorded(stack)


def test_moving_a_deployed_node_to_its_own_host_is_refused_before_any_resource() -> None:
    deployed = deploy("dev").outputs
    with pytest.raises(Exception) as raised:
        deploy("dev", ON_HOSTS, previous=deployed)
    message = str(raised.value)
    assert "storage.hosts: minio1 is deployed on the stack's own Docker host and would move on ssh://ops@node1" in message
    assert pulumi_harness.last_monitor is not None and pulumi_harness.last_monitor.registrations == []
    allowed = deploy("dev", {"storage": {**STORAGE_ON_HOSTS, "allowLayoutChange": True}}, previous=deployed)
    assert any("minio1 is deployed on the stack's own Docker host" in warning for warning in allowed.warnings)
    # once spread, the same hosts again: nothing to refuse
    again = deploy("dev", ON_HOSTS, previous=deploy("dev", ON_HOSTS).outputs)
    assert again.outputs["nodeHosts"] == spread_hosts()


def spread_hosts() -> dict[str, Any]:
    return {f"minio{node}": host for node, host in enumerate(HOSTS, start=1)}


@pytest.mark.parametrize(
    ("storage", "words"),
    [
        ({**STORAGE_ON_HOSTS, "hosts": HOSTS[:3]}, "storage.hosts: 3 hosts for 4 nodes"),
        ({"hosts": HOSTS}, "storage.hosts: need storage.mainHostAddress too"),
        ({"mainHostAddress": MAIN_HOST_ADDRESS}, "storage.hosts: storage.mainHostAddress is only read with storage.hosts"),
        ({**STORAGE_ON_HOSTS, "hosts": [*HOSTS[:3], {**HOSTS[3], "address": "10.0.0.11"}]}, "address 10.0.0.11 is given for two nodes"),
        ({**STORAGE_ON_HOSTS, "hosts": [*HOSTS[:3], {**HOSTS[3], "dockerHost": "ssh://ops@node1"}]}, "dockerHost ssh://ops@node1 is given for two"),
        ({**STORAGE_ON_HOSTS, "hosts": [*HOSTS[:3], {**HOSTS[3], "dockerHost": "http://node4:2375"}]}, "storage.hosts.3.dockerHost: 'http://node4:2375' is not a Docker endpoint"),
        ({**STORAGE_ON_HOSTS, "hosts": [*HOSTS[:3], {**HOSTS[3], "address": "203.0.113.4"}]}, "storage.hosts.3.address: 203.0.113.4 is not a private address"),
        ({**STORAGE_ON_HOSTS, "hosts": [*HOSTS[:3], {**HOSTS[3], "address": "node4"}]}, "storage.hosts.3.address: 'node4' is not an IPv4 address"),
        ({**STORAGE_ON_HOSTS, "hosts": [*HOSTS[:3], {**HOSTS[3], "dockerSocketGid": -1}]}, "storage.hosts.3.dockerSocketGid: Input should be greater than or equal to 0 (got -1)"),
        ({"hosts": HOSTS, "mainHostAddress": "10.0.0.12"}, "10.0.0.12 is both a node's address and storage.mainHostAddress"),
        ({"hosts": HOSTS, "mainHostAddress": "172.31.0.20"}, "networks: monitoring.subnet 172.31.0.0/24 holds storage.mainHostAddress"),
    ],
)
def test_bad_hosts_are_refused_naming_the_key(storage: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("dev", {"environment": "dev", "name": "minio-dev", "storage": storage})
    assert words in str(raised.value)


def test_an_edge_port_on_the_gateways_is_refused_naming_the_key() -> None:
    values = {"environment": "dev", "name": "minio-dev", **ON_HOSTS, "edge": {"s3TlsPort": GATEWAY_PORT}}
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("dev", values)
    assert f"edge: s3TlsPort {GATEWAY_PORT} is the port of the gateway listener" in str(raised.value)
    # on one host the port is free to use
    parse_stack_config("dev", {**values, "storage": {}})
