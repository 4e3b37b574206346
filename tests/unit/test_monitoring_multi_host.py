"""The monitoring tier with nodes on hosts of their own (storage.hosts), under Pulumi's mocks: a log agent
and its Docker API proxy on every node host, through that host's provider and on its network; Prometheus
and the blackbox exporter naming the nodes and trusting the stack's CA; the stack's own agent as before."""

from __future__ import annotations

import pytest

from infra.config.storage import GATEWAY_PORT
from infra.hosts import CA_FILE, GATEWAY_NAME
from infra.inventory import CONTAINER, REMOTE_IMAGE, VOLUME
from infra.networks import host_address
from tests.unit.multi_host_stack import HOSTS, MAIN_HOST_ADDRESS, STORAGE_ON_HOSTS
from tests.unit.pulumi_harness import Deployment, Registration, deploy

PROVIDER = "pulumi:providers:docker"
CA = "tls:index/selfSignedCert:SelfSignedCert"
NODES = range(1, len(HOSTS) + 1)
NODE_ADDRESSES = {f"minio{node}": host["address"] for node, host in zip(NODES, HOSTS, strict=True)}


@pytest.fixture(scope="module", params=["alloy", "promtail"])
def spread(request: pytest.FixtureRequest) -> tuple[str, Deployment]:
    agent = request.param
    return agent, deploy("dev", {"storage": STORAGE_ON_HOSTS, "monitoring": {"logAgent": agent}})


def provider_ref(deployment: Deployment, node: int) -> str:
    """The provider reference ('urn::id') of minio<node>'s host, as a resource created through it carries."""
    provider = deployment.named(f"minio{node}-host", PROVIDER)
    return f"{provider.urn}::{provider.name}-id"


def hosts_of(container: Registration) -> dict[str, str]:
    return {entry["host"]: entry["ip"] for entry in container.inputs.get("hosts") or []}


def ca_certificate(deployment: Deployment) -> str:
    # the stack's cluster CA (infra/hosts.py ClusterCertificates), not the edge's own self-signed certificate
    return str(deployment.named("cluster-tls-ca", CA).inputs["certPem"])


def test_every_node_host_runs_an_agent_and_its_proxy_through_that_host_s_provider(spread: tuple[str, Deployment]) -> None:
    agent, deployment = spread
    for node in NODES:
        on_host = provider_ref(deployment, node)
        for name, kind in (
            (f"docker-api-proxy-minio{node}", CONTAINER),
            (f"docker-api-proxy-minio{node}-image", REMOTE_IMAGE),
            (f"{agent}-minio{node}", CONTAINER),
            (f"{agent}-minio{node}-image", REMOTE_IMAGE),
            (f"{agent}-minio{node}-data", VOLUME),
        ):
            assert deployment.named(name, kind).provider == on_host, name
    # the stack's own agent and proxy stay on the stack's own host, as they are on one host
    for name in (agent, "docker-api-proxy"):
        assert deployment.named(name, CONTAINER).provider == ""
        assert not hosts_of(deployment.named(name, CONTAINER))


def test_a_node_host_s_pair_sits_on_that_host_s_network_at_the_fixed_addresses(spread: tuple[str, Deployment]) -> None:
    agent, deployment = spread
    prefix = deployment.outputs["name"]
    subnet = deployment.subnet("storage")
    for node in NODES:
        proxy = deployment.named(f"docker-api-proxy-minio{node}", CONTAINER)
        shipper = deployment.named(f"{agent}-minio{node}", CONTAINER)
        assert proxy.inputs["networksAdvanced"] == [
            {"name": f"{prefix}-minio{node}-net", "aliases": ["docker-api-proxy"], "ipv4Address": host_address(subnet, "docker-api-proxy")}
        ]
        assert shipper.inputs["networksAdvanced"] == [
            {"name": f"{prefix}-minio{node}-net", "aliases": [agent], "ipv4Address": host_address(subnet, agent)}
        ]
        # the proxy admits that host's agent only, and the agent waits for it
        assert f"-allowfrom={host_address(subnet, agent)}/32" in proxy.inputs["command"]
        assert proxy.urn in shipper.dependencies
        # Docker names are unique on the host and in the stack's outputs
        assert shipper.inputs["name"] == f"{prefix}-{agent}-minio{node}"
        assert f"{agent}-minio{node}" in deployment.outputs["containers"]


def test_a_node_host_s_agent_names_the_gateway_and_receives_the_ca(spread: tuple[str, Deployment]) -> None:
    agent, deployment = spread
    for node in NODES:
        shipper = deployment.named(f"{agent}-minio{node}", CONTAINER)
        assert hosts_of(shipper)[GATEWAY_NAME] == MAIN_HOST_ADDRESS
        files = shipper.uploads()
        assert files[CA_FILE] == ca_certificate(deployment)
        (config,) = [content for path, content in files.items() if path != CA_FILE]
        assert f"https://{GATEWAY_NAME}:{GATEWAY_PORT}/loki/api/v1/push" in config and CA_FILE in config
        # nothing publishes its port: Prometheus cannot scrape it
        assert not shipper.inputs.get("ports")


@pytest.mark.parametrize("service", ["prometheus", "blackbox-exporter"])
def test_prometheus_and_the_exporter_name_every_node_and_trust_the_ca(spread: tuple[str, Deployment], service: str) -> None:
    _, deployment = spread
    container = deployment.named(service, CONTAINER)
    assert hosts_of(container) == NODE_ADDRESSES
    assert container.uploads()[CA_FILE] == ca_certificate(deployment)
    config = next(content for path, content in container.uploads().items() if path.endswith(".yml") and "rules" not in path)
    assert f"ca_file: {CA_FILE}" in config
    assert container.provider == ""


def test_a_one_host_stack_runs_no_node_host_agent_and_no_ca() -> None:
    deployment = deploy("dev")
    names = {r.name for r in deployment.of_type(CONTAINER)}
    assert not {name for name in names if name.endswith("-minio1")}
    for service in ("prometheus", "blackbox-exporter"):
        container = deployment.named(service, CONTAINER)
        assert "hosts" not in container.inputs and CA_FILE not in container.uploads()


def test_each_hosts_docker_api_proxy_runs_in_the_group_of_that_hosts_socket() -> None:
    """monitoring.dockerSocketGid for every host, unless a node host's entry names its own group."""
    hosts = [dict(host) for host in HOSTS]
    hosts[2]["dockerSocketGid"] = 990
    deployment = deploy("dev", {"storage": {**STORAGE_ON_HOSTS, "hosts": hosts}, "monitoring": {"dockerSocketGid": 988}})
    users = {
        name: deployment.named(name, CONTAINER).inputs["user"]
        for name in ("docker-api-proxy", *(f"docker-api-proxy-minio{node}" for node in NODES))
    }
    assert users == {
        "docker-api-proxy": "65534:988",
        "docker-api-proxy-minio1": "65534:988",
        "docker-api-proxy-minio2": "65534:988",
        "docker-api-proxy-minio3": "65534:990",
        "docker-api-proxy-minio4": "65534:988",
    }
