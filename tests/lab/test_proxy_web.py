"""The web listener of the rendered proxy: console (WebSockets, prefix stripped), Grafana and Keycloak routes.

Behind it, recording HTTP stand-ins (not MinIO, Grafana or Keycloak) show what reaches each service.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from infra.edge import ProxyUpstreams
from infra.runbook import runbook_url
from tests.lab.proxy_lab import (
    PROXY_ADDRESS,
    WEB_STAND_IN_ADDRESS,
    LabProxy,
    RecordingStandIn,
    lab_stack,
    recording_stand_in,
    running_proxy,
)

pytestmark = pytest.mark.lab

# one stand-in per service, each on its own port of the same loopback address
SERVICES = ("console", "keycloak", "grafana")


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[str, RecordingStandIn]]:
    with recording_stand_in(WEB_STAND_IN_ADDRESS) as console, recording_stand_in(
        WEB_STAND_IN_ADDRESS
    ) as keycloak, recording_stand_in(WEB_STAND_IN_ADDRESS) as grafana:
        yield {"console": console, "keycloak": keycloak, "grafana": grafana}


@pytest.fixture(scope="module")
def proxy(stand_ins: dict[str, RecordingStandIn], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    upstreams = ProxyUpstreams(
        s3=(stand_ins["console"].endpoint,),
        console=(stand_ins["console"].endpoint,),
        keycloak=stand_ins["keycloak"].endpoint,
        grafana=stand_ins["grafana"].endpoint,
    )
    with running_proxy(tmp_path_factory.mktemp("nginx"), lab_stack(), upstreams) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_records(stand_ins: dict[str, RecordingStandIn]) -> None:
    for stand_in in stand_ins.values():
        stand_in.reset()


def read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return head


def test_websocket_upgrade_on_the_console_reaches_the_stand_in_with_the_prefix_removed(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    with socket.create_connection((PROXY_ADDRESS, proxy.web_port), timeout=10) as sock:
        sock.sendall(
            b"GET /minio-console/ws/objectManager HTTP/1.1\r\n"
            + f"Host: {PROXY_ADDRESS}:{proxy.web_port}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101"), head
        # the connection is now a tunnel to the stand-in, both ways
        sock.sendall(b"frame-from-browser")
        assert sock.recv(1024) == b"echo:frame-from-browser"
    [request] = stand_ins["console"].requests
    assert request.path == "/ws/objectManager"
    assert request.headers["upgrade"] == "websocket" and request.headers["connection"].lower() == "upgrade"
    assert request.headers["host"] == f"{PROXY_ADDRESS}:{proxy.web_port}"


def test_console_pages_arrive_without_the_prefix(proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]) -> None:
    answer = requests.get(proxy.url("web", "/minio-console/browser/lab-bucket?x=1"), timeout=10)
    assert answer.status_code == 200
    assert [r.path for r in stand_ins["console"].requests] == ["/browser/lab-bucket?x=1"]
    bare = requests.get(proxy.url("web", "/minio-console"), allow_redirects=False, timeout=10)
    assert bare.status_code == 301 and bare.headers["Location"].endswith("/minio-console/")


def test_grafana_receives_its_sub_path_unchanged(proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]) -> None:
    answer = requests.get(proxy.url("web", "/monitoring/grafana/api/health"), timeout=10)
    assert answer.status_code == 200
    assert [r.path for r in stand_ins["grafana"].requests] == ["/monitoring/grafana/api/health"]


def test_keycloak_receives_auth_paths_unchanged_with_forwarded_headers(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    path = "/auth/realms/minio-platform/.well-known/openid-configuration"
    assert requests.get(proxy.url("web", path), timeout=10).status_code == 200
    [request] = stand_ins["keycloak"].requests
    assert request.path == path
    assert request.headers["x-forwarded-proto"] == "http"
    assert request.headers["x-forwarded-host"] == PROXY_ADDRESS
    assert request.headers["x-forwarded-port"] == str(proxy.web_port)
    assert request.headers["x-forwarded-for"] == "127.0.0.1"


def test_root_leads_to_the_console_and_health_answers(proxy: LabProxy) -> None:
    root = requests.get(proxy.url("web", "/"), allow_redirects=False, timeout=10)
    assert root.status_code == 302 and root.headers["Location"].endswith("/minio-console/")
    assert requests.get(proxy.url("web", "/healthz"), timeout=10).text == "ok\n"


def test_the_runbook_every_alert_links_to_is_served_as_utf8_html_without_a_listing(proxy: LabProxy) -> None:
    url = runbook_url(proxy.config)
    assert url == proxy.url("web", "/runbook/")
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'id="minionodedown"' in page.text and 'id="miniowritequorumlost"' in page.text
    bare = requests.get(proxy.url("web", "/runbook"), allow_redirects=False, timeout=10)
    assert bare.status_code == 301 and bare.headers["Location"].endswith("/runbook/")
    # only the page: nothing else of the folder or above it
    assert requests.get(proxy.url("web", "/runbook/missing.html"), timeout=10).status_code == 404
    assert requests.get(proxy.url("web", "/runbook../nginx.conf"), timeout=10).status_code == 404


def test_responses_do_not_name_the_nginx_version_and_access_log_is_json(proxy: LabProxy) -> None:
    answer = requests.get(proxy.url("web", "/nothing-here"), timeout=10)
    assert answer.status_code == 404 and answer.headers["Server"] == "nginx"
    entry = proxy.logged("/nothing-here")
    assert entry["status"] == 404 and entry["method"] == "GET" and entry["upstream_addr"] == ""
