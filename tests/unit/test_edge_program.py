"""The Pulumi program under Pulumi's mocks: the edge proxy's ports, networks, certificates and secrets."""

from __future__ import annotations


import pytest
from pulumi.errors import RunError

from infra.config.edge import TLS_CERTIFICATE_KEY, TLS_PRIVATE_KEY_KEY
from infra.edge import throwaway_certificate
from infra.networks import host_address
from tests.unit import pulumi_harness
from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


def proxy(deployment: Deployment) -> pulumi_harness.Registration:
    return deployment.named("edge-proxy", CONTAINER)


def published(registration: pulumi_harness.Registration) -> set[tuple[str, int, int]]:
    return {(p["ip"], int(p["external"]), int(p["internal"])) for p in registration.inputs.get("ports") or []}


def test_only_the_edge_proxy_publishes_ports(deployment: Deployment) -> None:
    publishing = sorted(c.name for c in deployment.of_type(CONTAINER) if c.inputs.get("ports"))
    assert publishing == ["edge-proxy"]


# the shipped stacks share one host: prod keeps the standard ports, staging and dev add 10000 and 20000
PORT_OFFSETS = {"prod": 0, "staging": 10000, "dev": 20000}


def test_with_tls_on_the_proxy_publishes_s3_tls_http_and_https_on_the_bind_address_and_admin_on_loopback(
    deployment: Deployment,
) -> None:
    offset = PORT_OFFSETS[deployment.outputs["environment"]]
    assert published(proxy(deployment)) == {
        ("0.0.0.0", 9443 + offset, 9443 + offset), ("0.0.0.0", 80 + offset, 80 + offset), ("0.0.0.0", 443 + offset, 443 + offset),
        ("127.0.0.1", 9444 + offset, 9444 + offset),
    }


def test_with_tls_off_the_proxy_publishes_plain_s3_and_http_and_the_admin_listener_on_loopback() -> None:
    edge = {"tls": {"mode": "off"}, "bindAddress": "127.0.0.1", "s3Port": 19000, "httpPort": 8080}
    deployment = deploy("dev", overrides={"edge": edge})
    assert published(proxy(deployment)) == {("127.0.0.1", 19000, 19000), ("127.0.0.1", 8080, 8080), ("127.0.0.1", 9444, 9444)}
    assert deployment.outputs["endpoints"]["s3"] == "http://localhost:19000"
    assert deployment.outputs["endpoints"]["minioAdmin"] == "http://127.0.0.1:9444"
    assert not deployment.of_type(SELF_SIGNED)


def test_the_admin_listener_stays_on_loopback_whatever_the_bind_address() -> None:
    deployment = deploy("dev", overrides={"edge": {"bindAddress": "192.0.2.10", "adminPort": 30444}})
    ports = published(proxy(deployment))
    assert ("127.0.0.1", 30444, 30444) in ports
    assert {ip for ip, external, _ in ports if external != 30444} == {"192.0.2.10"}


def test_proxy_joins_edge_storage_and_monitoring_at_fixed_addresses(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    attached = {n["name"]: n.get("ipv4Address") for n in proxy(deployment).inputs["networksAdvanced"]}
    assert attached == {
        f"{prefix}-edge-net": host_address(deployment.subnet("edge"), "edge-proxy"),
        f"{prefix}-storage-net": host_address(deployment.subnet("storage"), "edge-proxy"),
        f"{prefix}-monitoring-net": host_address(deployment.subnet("monitoring"), "edge-proxy"),
    }


def test_proxy_configuration_and_key_reach_the_container_as_secret_uploads(deployment: Deployment) -> None:
    registration = proxy(deployment)
    assert "uploads" in registration.secret_paths
    assert set(registration.uploads()) == {
        "/etc/nginx/nginx.conf", "/etc/nginx/tls/server.crt", "/etc/nginx/tls/server.key",
        "/usr/share/nginx/runbook/index.html",
    }
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in registration.uploads()["/etc/nginx/nginx.conf"]
    assert 'id="minionodedown"' in registration.uploads()["/usr/share/nginx/runbook/index.html"]


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_dev_and_staging_get_a_certificate_generated_by_the_program(stack: str) -> None:
    deployment = deploy(stack)
    [certificate] = deployment.of_type(SELF_SIGNED)
    assert certificate.inputs["dnsNames"] == ["localhost"]
    # the admin listener's URL is https://127.0.0.1:<port>: the certificate names that address too
    assert certificate.inputs["ipAddresses"] == ["127.0.0.1"]
    # the mock's generated certificate is what nginx receives
    assert "BEGIN CERTIFICATE" in proxy(deployment).uploads()["/etc/nginx/tls/server.crt"]


def test_prod_serves_the_operators_certificate_and_key() -> None:
    operator = throwaway_certificate("storage.example.com")
    deployment = deploy(
        "prod",
        overrides={"edge": {"publicHost": "storage.example.com"}},
        secrets={TLS_CERTIFICATE_KEY: operator.certificate, TLS_PRIVATE_KEY_KEY: operator.key},
    )
    registration = proxy(deployment)
    assert not deployment.of_type(SELF_SIGNED)
    assert registration.uploads()["/etc/nginx/tls/server.crt"] == operator.certificate
    assert registration.uploads()["/etc/nginx/tls/server.key"] == operator.key
    assert deployment.outputs["endpoints"]["console"] == "https://storage.example.com/minio-console"


def test_prod_without_its_host_name_and_certificate_fails_before_any_resource_naming_each_key() -> None:
    with pytest.raises(RunError) as error:
        deploy("prod", operator_tls=False)
    message = str(error.value)
    assert "tlsCertificate" in message and "tlsPrivateKey" in message and "--secret" in message
    assert "edge.publicHost: prod needs the host name clients use" in message
    assert pulumi_harness.last_monitor is not None and not pulumi_harness.last_monitor.registrations


def test_a_private_key_given_in_plain_text_is_rejected() -> None:
    operator = throwaway_certificate("localhost")
    with pytest.raises(RunError, match="tlsPrivateKey: stored in plain text"):
        deploy("prod", operator_tls=False, secrets={TLS_CERTIFICATE_KEY: operator.certificate}, plain={TLS_PRIVATE_KEY_KEY: operator.key})


def test_endpoints_name_the_public_urls_of_every_service(deployment: Deployment) -> None:
    endpoints = deployment.outputs["endpoints"]
    offset = PORT_OFFSETS[deployment.outputs["environment"]]
    web = "https://localhost" + (f":{443 + offset}" if offset else "")
    assert endpoints["s3"] == f"https://localhost:{9443 + offset}"
    assert endpoints["web"] == web
    assert endpoints["console"] == f"{web}/minio-console"
    assert endpoints["grafana"] == f"{web}/monitoring/grafana/"
    assert endpoints["keycloak"] == f"{web}/auth"
    assert endpoints["keycloakIssuer"] == f"{web}/auth/realms/minio-platform"
    assert endpoints["minioAdmin"] == f"https://127.0.0.1:{9444 + offset}"


def grafana_envs(deployment: Deployment) -> dict[str, str]:
    grafana = deployment.named("grafana", CONTAINER)
    return dict(item.split("=", 1) for item in grafana.inputs["envs"])


def test_grafana_cookies_are_secure_behind_tls_and_same_site_lax(deployment: Deployment) -> None:
    envs = grafana_envs(deployment)
    assert envs["GF_SECURITY_COOKIE_SECURE"] == "true"
    assert envs["GF_SECURITY_COOKIE_SAMESITE"] == "lax"


def test_with_tls_off_grafana_cookies_cannot_be_secure() -> None:
    # a browser drops Secure cookies set over plain HTTP: Grafana's login would never stick
    envs = grafana_envs(deploy("dev", overrides={"edge": {"tls": {"mode": "off"}}}))
    assert envs["GF_SECURITY_COOKIE_SECURE"] == "false"
    assert envs["GF_SECURITY_COOKIE_SAMESITE"] == "lax"
