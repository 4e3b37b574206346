"""Edge settings and the pure nginx rendering: validation messages, upstream addresses, limits, TLS."""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.config import ConfigError, parse_stack_config
from infra.edge import ProxyUpstreams, edge_files, render_nginx_conf, throwaway_certificate
from infra.networks import host_address
from infra.secrets import SecretValues


def test_bad_edge_values_are_all_reported_with_key_value_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as error:
        parse_stack_config(
            "dev",
            {
                "edge": {
                    "maxBodySize": "5GB",
                    "bindAddress": "localhost",
                    "publicHost": "https://storage.example.com",
                    "tls": {"mode": "letsencrypt"},
                    "failover": {"tries": 0},
                    "image": "nginx",
                }
            },
        )
    problems = "\n".join(error.value.problems)
    assert "edge.maxBodySize: '5GB' is not a size like '5g'" in problems
    assert "edge.bindAddress: 'localhost' is not an IPv4 address" in problems
    assert "edge.publicHost: 'https://storage.example.com' is not a host name" in problems
    assert "edge.tls.mode" in problems and "'self-signed', 'provided' or 'off'" in problems
    assert "edge.failover.tries" in problems
    assert "edge.image: 'nginx' is not pinned" in problems
    assert len(error.value.problems) == 6


def test_tls_mode_defaults_to_self_signed_on_dev_and_staging_and_provided_on_prod() -> None:
    assert parse_stack_config("dev", {}).edge.tls_mode("dev") == "self-signed"
    assert parse_stack_config("staging", {}).edge.tls_mode("staging") == "self-signed"
    assert parse_stack_config("prod", {}).edge.tls_mode("prod") == "provided"


def test_body_limit_defaults_to_five_gibibytes() -> None:
    config = parse_stack_config("dev", {})
    assert config.edge.max_body_bytes() == 5 * 1024**3
    assert "client_max_body_size 5g;" in render_nginx_conf(config)


def test_upstreams_are_the_fixed_addresses_of_every_node_and_service_never_names() -> None:
    config = parse_stack_config("dev", {"storage": {"nodes": 8, "drivesPerNode": 1}})
    text = render_nginx_conf(config)
    storage = config.networks.storage.subnet
    s3_block = re.search(r"upstream minio_s3 \{(.*?)\}", text, re.S)
    assert s3_block is not None
    servers = re.findall(r"server (\S+) max_fails", s3_block.group(1))
    assert servers == [f"{host_address(storage, 'minio', n)}:9000" for n in range(1, 9)]
    assert f"server {host_address(storage, 'keycloak')}:8080;" in text
    assert f"server {host_address(config.networks.monitoring.subnet, 'grafana')}:3000;" in text
    assert not re.search(r"server (minio|keycloak|grafana)", text)


def test_failover_retries_idempotent_requests_a_bounded_number_of_times() -> None:
    config = parse_stack_config("dev", {"edge": {"failover": {"tries": 2, "maxFails": 3, "failTimeoutSeconds": 20}}})
    text = render_nginx_conf(config)
    assert "proxy_next_upstream error timeout http_502 http_504;" in text
    assert "proxy_next_upstream_tries 2;" in text
    assert "max_fails=3 fail_timeout=20s;" in text
    assert "non_idempotent" not in text


def test_s3_listener_keeps_host_and_streams_without_buffering() -> None:
    text = render_nginx_conf(parse_stack_config("dev", {}))
    assert "proxy_set_header Host $http_host;" in text
    assert "proxy_request_buffering off;" in text and "proxy_buffering off;" in text
    assert "proxy_max_temp_file_size 0;" in text
    assert "server_tokens off;" in text


def test_tls_listeners_allow_tls12_and_tls13_only_and_send_hsts() -> None:
    text = render_nginx_conf(parse_stack_config("dev", {}))
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert text.count('add_header Strict-Transport-Security "max-age=31536000" always;') == 2
    assert "listen 9443 ssl default_server;" in text and "listen 443 ssl default_server;" in text
    assert "return 301 https://localhost$request_uri;" in text


def test_with_tls_off_nothing_listens_with_ssl() -> None:
    text = render_nginx_conf(parse_stack_config("dev", {"edge": {"tls": {"mode": "off"}}}))
    assert " ssl" not in text and "Strict-Transport-Security" not in text
    assert "listen 9000 default_server;" in text and "listen 80 default_server;" in text


def test_storage_path_answer_names_the_s3_endpoint() -> None:
    text = render_nginx_conf(parse_stack_config("dev", {"edge": {"publicHost": "storage.example.com"}}))
    assert "location ~ ^/storage(/|$)" in text
    assert "return 400" in text and "Use the S3 endpoint https://storage.example.com:9443/" in text


def test_lab_upstreams_replace_the_stack_addresses_in_the_same_template() -> None:
    config = parse_stack_config("dev", {})
    upstreams = ProxyUpstreams(s3=("127.0.3.10:1",), console=("127.0.3.10:2",), keycloak="127.0.3.11:3", grafana="127.0.3.12:4")
    text = render_nginx_conf(config, upstreams)
    assert "server 127.0.3.10:1 max_fails" in text and "172.40." not in text


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_rendered_tls_stacks_get_a_matching_throwaway_certificate_and_a_secret_key(stack: str) -> None:
    files = {f.path: f for f in edge_files(parse_stack_config(stack, {}), SecretValues.throwaway())}
    assert set(files) == {"nginx/nginx.conf", "nginx/runbook/index.html", "nginx/tls/server.crt", "nginx/tls/server.key"}
    assert files["nginx/tls/server.key"].secret and not files["nginx/tls/server.crt"].secret
    certificate = x509.load_pem_x509_certificate(files["nginx/tls/server.crt"].content.encode())
    key = serialization.load_pem_private_key(files["nginx/tls/server.key"].content.encode(), password=None)
    assert certificate.public_key() == key.public_key()


def test_throwaway_certificate_names_an_address_as_an_ip_san() -> None:
    certificate = x509.load_pem_x509_certificate(throwaway_certificate("127.0.3.1").certificate.encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.3.1"]


def test_every_proxied_location_sets_host_and_forwarded_headers_itself() -> None:
    # a location with any proxy_set_header inherits none from the http block
    text = render_nginx_conf(parse_stack_config("dev", {}))
    locations = re.findall(r"location [^{]+\{(.*?)\n        \}", text, re.S)
    proxied = [body for body in locations if "proxy_pass" in body]
    assert len(proxied) == 4
    for body in proxied:
        for header in ("Host $http_host", "X-Forwarded-For", "X-Forwarded-Proto $scheme", "X-Real-IP"):
            assert f"proxy_set_header {header}" in body, body
