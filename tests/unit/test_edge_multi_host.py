"""The edge proxy of a stack whose nodes run on hosts of their own (storage.hosts): TLS to the nodes at
their private addresses, and the gateway listener the node hosts send through; a stack without hosts
gets none of it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.config import StackConfig, parse_stack_config
from infra.config.storage import GATEWAY_PORT
from infra.edge import ProxyRuntime, ProxyUpstreams, edge_files, published_ports, render_nginx_conf
from infra.hosts import CLUSTER_TLS_NAME
from infra.networks import host_address
from infra.secrets import SecretValues
from tests.unit.multi_host_stack import HOSTS, MAIN_HOST_ADDRESS, STORAGE_ON_HOSTS
from tests.unit.pulumi_harness import Deployment, Registration, deploy

CONTAINER = "docker:index/container:Container"
NODE_ADDRESSES = [host["address"] for host in HOSTS]


def multi_host(**settings: Any) -> StackConfig:
    return parse_stack_config("dev", {"environment": "dev", "name": "t", "storage": STORAGE_ON_HOSTS, **settings})


def one_host() -> StackConfig:
    return parse_stack_config("dev", {"environment": "dev", "name": "t"})


def block(text: str, opening: str) -> str:
    """The body of the `{ ... }` block that starts with `opening`, nested blocks included."""
    start = text.index(opening + " {") + len(opening) + 2
    depth, index = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    return text[start : index - 1]


def gateway_server(text: str) -> str:
    [server] = [body for body in re.split(r"\n    server \{", text)[1:] if f"listen {GATEWAY_PORT} ssl;" in body]
    return server


def locations(server: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"location ([^{]+?) \{(.*?)\n        \}", server, re.S)}


def test_multi_host_upstreams_are_the_nodes_private_addresses() -> None:
    text = render_nginx_conf(multi_host())
    assert re.findall(r"server (\S+) max_fails", block(text, "upstream minio_s3")) == [f"{a}:9000" for a in NODE_ADDRESSES]
    assert re.findall(r"server (\S+) max_fails", block(text, "upstream minio_console")) == [f"{a}:9001" for a in NODE_ADDRESSES]
    storage = multi_host().networks.storage.subnet
    assert host_address(storage, "minio", 1) not in text


def test_every_location_to_minio_speaks_tls_checked_against_the_cluster_ca_under_one_name() -> None:
    text = render_nginx_conf(multi_host())
    passes = re.findall(r"proxy_pass (\w+)://(minio_\w+);", text)
    # S3 listener (/, admin and KMS API), admin listener, console (pages and websocket, login, uploads)
    assert len(passes) == 7 and {scheme for scheme, _ in passes} == {"https"}
    for directive in (
        "proxy_ssl_trusted_certificate /etc/nginx/tls/cluster-ca.crt;",
        "proxy_ssl_verify on;",
        "proxy_ssl_verify_depth 2;",
        f"proxy_ssl_name {CLUSTER_TLS_NAME};",
        "proxy_ssl_session_reuse on;",
        "proxy_ssl_protocols TLSv1.2 TLSv1.3;",
    ):
        assert text.count(directive) == 1, directive
    # upstream keepalive survives TLS: HTTP/1.1 without Connection: close, and a connection cache per group
    assert "proxy_http_version 1.1;" in text
    assert "keepalive 64;" in block(text, "upstream minio_s3") and "keepalive 16;" in block(text, "upstream minio_console")
    assert 'proxy_set_header Connection "";' in block(text, "location /")


def test_the_gateway_admits_only_the_nodes_and_serves_keycloaks_realm_the_audit_sink_and_loki() -> None:
    config = multi_host()
    text = render_nginx_conf(config)
    server = gateway_server(text)
    assert "ssl_certificate /etc/nginx/tls/gateway.crt;" in server and "ssl_certificate_key /etc/nginx/tls/gateway.key;" in server
    head = server.split("location", 1)[0]
    assert re.findall(r"allow (\S+);", head) == NODE_ADDRESSES and "deny all;" in head

    routes = locations(server)
    assert set(routes) == {"/", "/auth/realms/minio-platform/", "= /minio/audit", "= /loki/api/v1/push"}
    assert "return 404;" in routes["/"]
    keycloak = routes["/auth/realms/minio-platform/"]
    # Keycloak (proxy-headers=xforwarded, hostname-backchannel-dynamic) answers with https://cluster-gateway:<port>/...
    for header in (
        "Host $http_host", "X-Forwarded-Proto $scheme", "X-Forwarded-Host $host", "X-Forwarded-Port $server_port",
    ):
        assert f"proxy_set_header {header};" in keycloak
    assert "proxy_pass http://keycloak;" in keycloak
    assert "proxy_pass http://audit_sink;" in routes["= /minio/audit"]
    assert "client_max_body_size 8m;" in routes["= /minio/audit"]
    assert "proxy_pass http://loki;" in routes["= /loki/api/v1/push"]
    assert "client_max_body_size 4m;" in routes["= /loki/api/v1/push"]
    assert "/auth/admin" not in server and "realms/master" not in server

    storage, monitoring = config.networks.storage.subnet, config.networks.monitoring.subnet
    assert f"server {host_address(storage, 'audit-sink')}:8080;" in block(text, "upstream audit_sink")
    assert f"server {host_address(monitoring, 'loki')}:3100;" in block(text, "upstream loki")


def test_the_gateway_is_tls_even_when_the_public_listeners_are_not() -> None:
    server = gateway_server(render_nginx_conf(multi_host(edge={"tls": {"mode": "off"}})))
    assert "ssl_certificate /etc/nginx/tls/gateway.crt;" in server and "ssl_protocols TLSv1.2 TLSv1.3;" in server


def test_a_stack_without_hosts_has_no_gateway_and_plain_http_to_the_nodes() -> None:
    text = render_nginx_conf(one_host())
    assert f"listen {GATEWAY_PORT}" not in text
    assert "proxy_ssl" not in text and "https://minio" not in text and "cluster-ca" not in text
    assert "upstream audit_sink" not in text and "upstream loki" not in text
    assert {f.target for f in edge_files(one_host(), SecretValues.throwaway())} == {
        "/etc/nginx/nginx.conf", "/usr/share/nginx/runbook/index.html", "/etc/nginx/tls/server.crt", "/etc/nginx/tls/server.key",
    }
    assert all(port.internal != GATEWAY_PORT for port in published_ports(one_host()))


def test_a_lab_names_its_own_files_for_the_ca_and_the_gateway_pair() -> None:
    runtime = ProxyRuntime(cluster_ca="/lab/ca.pem", gateway_certificate="/lab/gw.pem", gateway_key="/lab/gw.key", listen_address="127.0.3.1")
    text = render_nginx_conf(multi_host(), runtime=runtime)
    assert "proxy_ssl_trusted_certificate /lab/ca.pem;" in text
    server = gateway_server(text.replace("listen 127.0.3.1:", "listen "))
    assert "ssl_certificate /lab/gw.pem;" in server and "ssl_certificate_key /lab/gw.key;" in server
    assert "/etc/nginx/tls/cluster-ca.crt" not in text and "/etc/nginx/tls/gateway" not in text


def test_lab_upstreams_without_the_gateways_services_are_refused_on_a_multi_host_stack() -> None:
    upstreams = ProxyUpstreams(s3=("127.0.3.10:1",), console=("127.0.3.10:2",), keycloak="127.0.3.11:3", grafana="127.0.3.12:4")
    with pytest.raises(ValueError, match="audit_sink and loki upstream"):
        render_nginx_conf(multi_host(), upstreams)


def test_edge_files_add_the_cluster_ca_and_the_gateway_pair_with_the_key_secret() -> None:
    secrets = SecretValues.throwaway(nodes_on_hosts=4)
    assert secrets.cluster_tls is not None
    files = {f.target: f for f in edge_files(multi_host(), secrets)}
    assert files["/etc/nginx/tls/cluster-ca.crt"].content == secrets.cluster_tls.ca_certificate
    assert files["/etc/nginx/tls/gateway.crt"].content == secrets.cluster_tls.gateway.certificate
    assert files["/etc/nginx/tls/gateway.key"].content == secrets.cluster_tls.gateway.key
    assert files["/etc/nginx/tls/gateway.key"].secret
    assert not files["/etc/nginx/tls/cluster-ca.crt"].secret and not files["/etc/nginx/tls/gateway.crt"].secret
    with pytest.raises(ValueError, match="cluster_tls"):
        edge_files(multi_host(), SecretValues.throwaway())


# under Pulumi's mocks, with the dev stack's own ports


@pytest.fixture(scope="module")
def spread() -> Deployment:
    return deploy("dev", overrides={"storage": STORAGE_ON_HOSTS})


def proxy(deployment: Deployment) -> Registration:
    return deployment.named("edge-proxy", CONTAINER)


def test_the_proxy_publishes_the_gateway_on_the_main_hosts_private_address_only(spread: Deployment) -> None:
    ports = {(p["ip"], int(p["external"]), int(p["internal"])) for p in proxy(spread).inputs["ports"]}
    assert {port for port in ports if GATEWAY_PORT in port[1:]} == {(MAIN_HOST_ADDRESS, GATEWAY_PORT, GATEWAY_PORT)}
    assert {port for port in ports if port[0] == MAIN_HOST_ADDRESS} == {(MAIN_HOST_ADDRESS, GATEWAY_PORT, GATEWAY_PORT)}
    one_host_ports = {(p["ip"], int(p["external"])) for p in proxy(deploy("dev")).inputs["ports"]}
    assert ports - {(MAIN_HOST_ADDRESS, GATEWAY_PORT, GATEWAY_PORT)} == {(ip, port, port) for ip, port in one_host_ports}


def test_the_proxy_receives_the_stacks_ca_and_gateway_pair_as_secret_uploads(spread: Deployment) -> None:
    registration = proxy(spread)
    assert "uploads" in registration.secret_paths
    uploads = registration.uploads()
    ca = spread.named("cluster-tls-ca", "tls:index/selfSignedCert:SelfSignedCert")
    gateway = spread.named("cluster-tls-cluster-gateway", "tls:index/locallySignedCert:LocallySignedCert")
    gateway_key = spread.named("cluster-tls-cluster-gateway-key", "tls:index/privateKey:PrivateKey")
    assert uploads["/etc/nginx/tls/cluster-ca.crt"] == ca.inputs["certPem"]
    assert uploads["/etc/nginx/tls/gateway.crt"] == gateway.inputs["certPem"]
    assert uploads["/etc/nginx/tls/gateway.key"] == gateway_key.inputs["privateKeyPem"]
    conf = uploads["/etc/nginx/nginx.conf"]
    assert "proxy_pass https://minio_s3;" in conf and f"server {NODE_ADDRESSES[0]}:9000 max_fails" in conf
    assert f"listen {GATEWAY_PORT} ssl;" in conf
