"""Edge settings and the pure nginx rendering: validation messages, upstream addresses, exposure, limits, TLS."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.config import PROJECT, ConfigError, StackConfig, parse_stack_config, read_stack_file
from infra.config.edge import size_in_bytes
from infra.edge import ProxyUpstreams, edge_files, render_nginx_conf, throwaway_certificate
from infra.networks import gateway_address, host_address
from infra.secrets import SecretValues
from tests.conftest import ROOT


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
    config = parse_stack_config("dev", {})
    proxied = [block for block in nginx_blocks(render_nginx_conf(config)) if block.kind == "location" and block.has("proxy_pass")]
    assert {(listener_of(config, block), block.argument) for block in proxied} == {
        ("s3", "/"), ("s3", "/minio/admin"), ("s3", "/minio/kms"), ("admin", "/"),
        ("web", "/minio-console/"), ("web", "/minio-console/api/v1/login"),
        ("web", "~ ^/minio-console/api/v1/buckets/[^/]+/objects/upload$"),
        ("web", "/monitoring/grafana/"), ("web", "/monitoring/grafana/login"),
        ("web", "/auth/realms/minio-platform/"), ("web", "/auth/realms/minio-platform/login-actions/"),
        ("web", "/auth/realms/minio-platform/protocol/openid-connect/token"),
        ("web", "/auth/resources/"), ("web", "/auth/js/"), ("web", "/auth/admin/"), ("web", "/auth/realms/master/"),
    }
    for block in proxied:
        for header in ("Host $http_host", "X-Forwarded-For $remote_addr", "X-Forwarded-Proto $scheme", "X-Real-IP $remote_addr"):
            assert block.has(f"proxy_set_header {header}"), block


# ---- what each listener exposes, to whom -------------------------------------------------------


@dataclass
class Block:
    """One `{ ... }` block of a rendered nginx.conf with the directives written directly inside it."""

    kind: str
    argument: str
    parents: tuple[Block, ...]
    directives: list[str] = field(default_factory=list)

    def has(self, directive: str) -> bool:
        return any(d == directive or d.startswith(directive + " ") for d in self.directives)

    def values(self, name: str) -> list[str]:
        return [d.removeprefix(name + " ") for d in self.directives if d.startswith(name + " ")]

    @property
    def server(self) -> Block:
        return next(b for b in (self, *reversed(self.parents)) if b.kind == "server")


def nginx_blocks(text: str) -> list[Block]:
    """Every block of `text`, in order (the template writes one directive or brace per line)."""
    found: list[Block] = []
    open_blocks: list[Block] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            kind, _, argument = line[:-1].strip().partition(" ")
            block = Block(kind, argument.strip(), tuple(open_blocks))
            found.append(block)
            open_blocks.append(block)
        elif line == "}":
            open_blocks.pop()
        elif open_blocks:
            open_blocks[-1].directives.append(line.rstrip(";"))
    assert not open_blocks, "unbalanced braces"
    return found


def port_of(server: Block) -> int:
    [listen] = server.values("listen")
    return int(listen.split()[0].rsplit(":", 1)[-1])


def listener_of(config: StackConfig, block: Block) -> str:
    """Which listener ('s3', 'admin', 'web', 'http') a block belongs to."""
    edge, tls = config.edge, config.edge.tls_enabled(config.environment)
    ports = {
        edge.s3_tls_port if tls else edge.s3_port: "s3",
        edge.admin_port: "admin",
        edge.https_port if tls else edge.http_port: "web",
    }
    return ports.get(port_of(block.server), "http")


def location(config: StackConfig, blocks: list[Block], listener: str, argument: str) -> Block:
    [found] = [b for b in blocks if b.kind == "location" and b.argument == argument and listener_of(config, b) == listener]
    return found


STACKS = ["dev", "staging", "prod"]


def shipped(stack: str) -> StackConfig:
    """The stack as its Pulumi.<stack>.yaml configures it (prod with the host name an operator must give)."""
    values, _ = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    flat = {key.removeprefix(f"{PROJECT}:"): value for key, value in values.items()}
    if stack == "prod":
        flat["edge"] = {"publicHost": "storage.example.com", **(flat.get("edge") or {})}
    return parse_stack_config(stack, flat)


def listeners_by_port(blocks: list[Block]) -> dict[int, Block]:
    return {port_of(b): b for b in blocks if b.kind == "server"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_public_s3_listener_refuses_the_admin_api_to_everyone_by_default(stack: str) -> None:
    config = shipped(stack)
    blocks = nginx_blocks(render_nginx_conf(config))
    s3 = listeners_by_port(blocks)[config.edge.s3_tls_port]
    [admin] = [b for b in blocks if b.kind == "location" and b.argument == "/minio/admin" and b.server is s3]
    assert admin.values("allow") == [] and admin.has("deny all")
    assert admin.values("error_page") == ["403 @admin_refused"]
    [refused] = [b for b in blocks if b.kind == "location" and b.argument == "@admin_refused" and b.server is s3]
    assert any(d.startswith("return 403 '<?xml") and "<Code>AccessDenied</Code>" in d for d in refused.directives)
    # the rest of the S3 API stays open to everyone
    [root] = [b for b in blocks if b.kind == "location" and b.argument == "/" and b.server is s3]
    assert not root.has("deny") and root.values("proxy_pass") == ["http://minio_s3"]


def test_edge_admin_allow_from_admits_those_ranges_to_the_admin_api_on_the_public_listener() -> None:
    config = parse_stack_config("dev", {"edge": {"adminAllowFrom": ["198.51.100.0/24", "203.0.113.7"]}})
    admin = location(config, nginx_blocks(render_nginx_conf(config)), "s3", "/minio/admin")
    assert admin.values("allow") == ["198.51.100.0/24", "203.0.113.7/32"]
    assert admin.directives.index("deny all") > admin.directives.index("allow 203.0.113.7/32")
    assert admin.values("proxy_pass") == ["http://minio_s3"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_admin_listener_serves_all_of_s3_to_the_edge_networks_gateway_only(stack: str) -> None:
    config = shipped(stack)
    blocks = nginx_blocks(render_nginx_conf(config))
    server = listeners_by_port(blocks)[config.edge.admin_port]
    # TLS on every shipped stack, with the stack's certificate (the ops CLI trusts the exported one)
    assert server.values("listen") == [f"{config.edge.admin_port} ssl"]
    assert server.values("allow") == [gateway_address(config.networks.edge.subnet)]
    assert server.directives.index("deny all") > server.directives.index("allow " + server.values("allow")[0])
    assert server.values("client_max_body_size") == [config.edge.max_body_size]
    [root] = [b for b in blocks if b.kind == "location" and b.server is server]
    assert root.argument == "/" and root.values("proxy_pass") == ["http://minio_s3"]
    assert not root.has("deny")


def test_with_tls_off_the_admin_listener_is_plain_http_like_the_others() -> None:
    config = parse_stack_config("dev", {"edge": {"tls": {"mode": "off"}, "adminPort": 19444}})
    server = listeners_by_port(nginx_blocks(render_nginx_conf(config)))[19444]
    assert server.values("listen") == ["19444"]
    assert config.edge.admin_url("dev") == "http://127.0.0.1:19444"


@pytest.mark.parametrize("stack", STACKS)
def test_keycloak_exposes_the_realm_resources_and_js_and_keeps_the_admin_console_to_its_allow_list(stack: str) -> None:
    config = shipped(stack)
    blocks = nginx_blocks(render_nginx_conf(config))
    keycloak = [b for b in blocks if b.kind == "location" and b.argument.startswith("/auth")]
    open_paths = {b.argument for b in keycloak if b.values("proxy_pass") == ["http://keycloak"] and not b.has("deny")}
    realm = f"/auth/realms/{config.identity.realm}/"
    assert open_paths == {
        realm, f"{realm}login-actions/", f"{realm}protocol/openid-connect/token", "/auth/resources/", "/auth/js/"
    }
    for path in ("/auth/admin/", "/auth/realms/master/"):
        block = location(config, blocks, "web", path)
        assert block.values("allow") == [] and block.has("deny all"), path
    assert location(config, blocks, "web", "/auth/").values("return") == ["404"]
    assert location(config, blocks, "web", "/").values("return") == ["404"]


def test_identity_admin_allow_from_admits_those_ranges_to_the_keycloak_admin_console() -> None:
    config = parse_stack_config("dev", {"identity": {"adminAllowFrom": ["192.0.2.0/28"]}})
    blocks = nginx_blocks(render_nginx_conf(config))
    for path in ("/auth/admin/", "/auth/realms/master/"):
        block = location(config, blocks, "web", path)
        assert block.values("allow") == ["192.0.2.0/28"] and block.has("deny all")
        assert block.values("proxy_pass") == ["http://keycloak"]


def test_allow_lists_and_the_admin_port_are_validated_naming_each_key() -> None:
    with pytest.raises(ConfigError) as error:
        parse_stack_config(
            "dev",
            {
                "edge": {
                    "adminAllowFrom": ["10.0.0.1/8", "everyone"],
                    "limits": {"webBodySize": "1MB", "loginBurst": -1},
                },
                "identity": {"adminAllowFrom": ["2001:db8::/32"], "realm": "master"},
            },
        )
    problems = "\n".join(error.value.problems)
    assert "edge.adminAllowFrom.0: '10.0.0.1/8' is not an IPv4 address or CIDR block" in problems and "host bits set" in problems
    assert "edge.adminAllowFrom.1: 'everyone' is not an IPv4 address or CIDR block" in problems
    assert "edge.limits.webBodySize: '1MB' is not a size" in problems
    assert "edge.limits.loginBurst" in problems
    assert "identity.adminAllowFrom.0: '2001:db8::/32' is not an IPv4 address or CIDR block" in problems
    assert "identity.realm: 'master' is Keycloak's administration realm" in problems
    assert len(error.value.problems) == 6


def test_the_admin_port_is_a_published_port_like_the_others() -> None:
    with pytest.raises(ConfigError, match="s3TlsPort and adminPort are both 9443: every published port must be different"):
        parse_stack_config("dev", {"edge": {"adminPort": 9443}})


@pytest.mark.parametrize("stack", STACKS)
def test_login_endpoints_answer_429_past_a_per_client_rate_and_connection_limit(stack: str) -> None:
    config = shipped(stack)
    text = render_nginx_conf(config)
    limits = config.edge.limits
    assert f"limit_req_zone $binary_remote_addr zone=login:10m rate={limits.login_requests_per_minute}r/m;" in text
    assert "limit_conn_zone $binary_remote_addr zone=login_connections:10m;" in text
    assert "limit_req_status 429;" in text and "limit_conn_status 429;" in text
    blocks = nginx_blocks(text)
    limited = {b.argument for b in blocks if b.kind == "location" and b.has("limit_req")}
    realm = f"/auth/realms/{config.identity.realm}/"
    assert limited == {
        "/minio-console/api/v1/login", "/monitoring/grafana/login",
        f"{realm}login-actions/", f"{realm}protocol/openid-connect/token",
    }
    for path in limited:
        block = location(config, blocks, "web", path)
        assert block.values("limit_req") == [f"zone=login burst={limits.login_burst} nodelay"]
        assert block.values("limit_conn") == [f"login_connections {limits.login_connections}"]


@pytest.mark.parametrize("stack", STACKS)
def test_bodies_up_to_max_body_size_reach_s3_and_console_uploads_only(stack: str) -> None:
    config = shipped(stack)
    blocks = nginx_blocks(render_nginx_conf(config))
    [http] = [b for b in blocks if b.kind == "http"]
    assert http.values("client_max_body_size") == ["1m"]
    servers = listeners_by_port(blocks)
    for port in (config.edge.s3_tls_port, config.edge.admin_port):
        assert servers[port].values("client_max_body_size") == ["5g"]
    sized = {
        b.argument: b.values("client_max_body_size")[0]
        for b in blocks
        if b.kind == "location" and b.has("client_max_body_size")
    }
    assert sized == {
        "~ ^/minio-console/api/v1/buckets/[^/]+/objects/upload$": "5g",
        "/monitoring/grafana/": "10m",
        "/monitoring/grafana/login": "10m",
    }
    assert not servers[config.edge.https_port].has("client_max_body_size")


@pytest.mark.parametrize("stack", STACKS)
def test_the_web_listener_adds_its_security_headers_at_server_level_and_no_location_drops_them(stack: str) -> None:
    config = shipped(stack)
    text = render_nginx_conf(config)
    blocks = nginx_blocks(text)
    web = listeners_by_port(blocks)[config.edge.https_port]
    assert web.values("add_header") == [
        "X-Frame-Options $frame_options always",
        "X-Content-Type-Options $content_type_options always",
        "Referrer-Policy $referrer_policy always",
        'Strict-Transport-Security "max-age=31536000" always',
    ]
    # a location with any add_header of its own would inherit none of the server's
    assert not [b.argument for b in blocks if b.kind == "location" and b.server is web and b.has("add_header")]
    # each default applies only where the upstream sends no header of that name
    for variable, upstream, default in (
        ("$frame_options", "$upstream_http_x_frame_options", "SAMEORIGIN"),
        ("$content_type_options", "$upstream_http_x_content_type_options", "nosniff"),
        ("$referrer_policy", "$upstream_http_referrer_policy", "strict-origin-when-cross-origin"),
    ):
        [mapping] = [b for b in blocks if b.kind == "map" and b.argument == f"{upstream} {variable}"]
        assert [" ".join(d.split()) for d in mapping.directives] == [f"'' {default}", "default ''"]


def test_no_location_forwards_the_clients_own_x_forwarded_for() -> None:
    for stack in STACKS:
        assert "$proxy_add_x_forwarded_for" not in render_nginx_conf(shipped(stack))


def test_the_stack_certificate_also_names_the_admin_listeners_loopback_address() -> None:
    files = {f.path: f for f in edge_files(parse_stack_config("dev", {}), SecretValues.throwaway())}
    certificate = x509.load_pem_x509_certificate(files["nginx/tls/server.crt"].content.encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


# ---- the S3 data path: streaming, memory only, and what one connection may hold ----------------


def effective(block: Block, name: str) -> str:
    """The value of `name` where `block` is, the closest level that writes it winning (nginx's inheritance)."""
    for level in (block, *reversed(block.parents)):
        if level.values(name):
            return level.values(name)[-1]
    raise AssertionError(f"{name} is not written in the rendered configuration: the memory bound counts only what it states")


S3_LOCATIONS = [("s3", "/"), ("s3", "/minio/admin"), ("s3", "/minio/kms"), ("admin", "/")]


@pytest.mark.parametrize("stack", STACKS)
def test_s3_locations_stream_uploads_and_read_downloads_ahead_in_memory_only(stack: str) -> None:
    config = shipped(stack)
    blocks = nginx_blocks(render_nginx_conf(config))
    for listener, path in S3_LOCATIONS:
        block = location(config, blocks, listener, path)
        assert block.values("proxy_set_header")[0] == "Host $http_host"
        # uploads pass through as they arrive; downloads fill bounded memory buffers, never a file
        assert effective(block, "proxy_request_buffering") == "off"
        assert effective(block, "proxy_buffering") == "on"
        assert effective(block, "proxy_max_temp_file_size") == "0"
        assert effective(block, "proxy_http_version") == "1.1" and block.has('proxy_set_header Connection ""')
    # the web listener's streams (console, Grafana, Keycloak) still relay byte for byte
    assert effective(location(config, blocks, "web", "/minio-console/"), "proxy_buffering") == "off"
    assert effective(location(config, blocks, "web", "/monitoring/grafana/"), "proxy_buffering") == "off"


def test_every_s3_location_keeps_upstream_connections_alive() -> None:
    config = parse_stack_config("dev", {})
    blocks = nginx_blocks(render_nginx_conf(config))
    [pool] = [b for b in blocks if b.kind == "upstream" and b.argument == "minio_s3"]
    assert int(pool.values("keepalive")[0]) >= 64
    for listener, path in S3_LOCATIONS:
        assert location(config, blocks, listener, path).values("proxy_pass") == ["http://minio_s3"]


@pytest.mark.parametrize("stack", STACKS)
def test_the_access_log_is_one_json_record_per_request_with_the_path_only_written_in_pipe_sized_batches(stack: str) -> None:
    text = render_nginx_conf(shipped(stack))
    [http] = [b for b in nginx_blocks(text) if b.kind == "http"]
    [access_log] = http.values("access_log")
    target, log_format, *options = access_log.split()
    assert (target, log_format) == ("/dev/stdout", "json")
    settings = dict(option.split("=", 1) for option in options)
    # /dev/stdout is a pipe every worker writes to: a write of PIPE_BUF (4096) bytes or less
    # arrives whole, so records never interleave mid-line
    assert size_in_bytes(settings["buffer"]) <= 4096 and settings["flush"] == "1s"
    declared = re.search(r"log_format json escape=json (.*?);\n", text, re.S)
    assert declared is not None
    fields = declared.group(1)
    assert '"path":"$uri"' in fields
    # presigned URLs carry usable signatures in their query strings
    assert not re.search(r"\$(request_uri|args|query_string|arg_\w+|request)\b", fields)


def worst_case_bytes_per_connection(config: StackConfig) -> int:
    """Every buffer one S3 request may hold at once, read off the rendered configuration: its request
    head (the first buffer and every large one), one body read, the response head and the buffers
    downloads are read ahead into, and with TLS nginx's record buffer."""
    blocks = nginx_blocks(render_nginx_conf(config))
    s3 = location(config, blocks, "s3", "/")
    large_count, large_size = effective(s3, "large_client_header_buffers").split()
    total = size_in_bytes(effective(s3, "client_header_buffer_size")) + int(large_count) * size_in_bytes(large_size)
    total += size_in_bytes(effective(s3, "client_body_buffer_size"))
    total += size_in_bytes(effective(s3, "proxy_buffer_size"))
    if effective(s3, "proxy_buffering") == "on":
        count, each = effective(s3, "proxy_buffers").split()
        total += int(count) * size_in_bytes(each)
    if config.edge.tls_enabled(config.environment):
        total += size_in_bytes(effective(s3, "ssl_buffer_size"))
    # the admin listener and the web listener hold no more than the S3 listener
    for listener, path in S3_LOCATIONS[1:] + [("web", "/minio-console/")]:
        other = location(config, blocks, listener, path)
        assert size_in_bytes(effective(other, "client_body_buffer_size")) <= size_in_bytes(effective(s3, "client_body_buffer_size"))
        assert effective(other, "proxy_buffers") == effective(s3, "proxy_buffers") or effective(other, "proxy_buffering") == "off"
    return total


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


@pytest.mark.parametrize("stack", STACKS)
def test_the_memory_bound_in_the_readme_is_what_the_rendered_configuration_allows(stack: str) -> None:
    config = shipped(stack)
    tls_kib = worst_case_bytes_per_connection(config) // 1024
    plain = parse_stack_config(stack, {"edge": {"tls": {"mode": "off"}}})
    plain_kib = worst_case_bytes_per_connection(plain) // 1024
    [events] = [b for b in nginx_blocks(render_nginx_conf(config)) if b.kind == "events"]
    connections = int(events.values("worker_connections")[0])
    # a proxied request holds two of a worker's connections: the client's and the upstream's
    per_worker_mib = connections // 2 * tls_kib // 1024
    section = readme_section("Edge proxy")
    assert f"{tls_kib} KiB per connection" in section
    assert f"{plain_kib} KiB without TLS" in section
    assert f"worker_connections {connections}" in section
    assert f"{per_worker_mib} MiB per worker process" in section
    # the measurements behind the buffer sizes: the document exists and the section links it
    assert (ROOT / "docs" / "proxy-performance.md").is_file()
    assert "(docs/proxy-performance.md)" in section
