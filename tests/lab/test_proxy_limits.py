"""The login endpoints of the rendered proxy under a burst: 429 past the per-client limits.

Real nginx with the default limits (edge.limits: 30 requests a minute, a burst of 20, 10 at
once per client address). Each test sends from its own 127.0.3.x source address, so the
per-address counters of one test never spill into another. Behind the proxy, recording HTTP
stand-ins (not the MinIO console, Keycloak or Grafana) count what got through.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import pytest

from tests.lab.proxy_lab import (
    WEB_STAND_IN_ADDRESS,
    LabProxy,
    RecordingStandIn,
    all_upstreams_at,
    lab_stack,
    recording_stand_in,
    request_from,
    running_proxy,
)

pytestmark = pytest.mark.lab

REALM = "minio-platform"
BURST_REQUESTS = 50
LOGIN_ENDPOINTS = {
    "console login": ("POST", "/minio-console/api/v1/login", "127.0.3.70"),
    "console SSO callback": ("POST", "/minio-console/api/v1/login/oauth2/auth", "127.0.3.71"),
    "Keycloak login form": ("POST", f"/auth/realms/{REALM}/login-actions/authenticate?session_code=x", "127.0.3.72"),
    "Keycloak token endpoint": ("POST", f"/auth/realms/{REALM}/protocol/openid-connect/token", "127.0.3.73"),
    "Grafana login": ("POST", "/monitoring/grafana/login", "127.0.3.74"),
}


@pytest.fixture(scope="module")
def stand_in() -> Iterator[RecordingStandIn]:
    with recording_stand_in(WEB_STAND_IN_ADDRESS) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(stand_in: RecordingStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    config = lab_stack(identity={"realm": REALM})
    with running_proxy(tmp_path_factory.mktemp("nginx"), config, all_upstreams_at(stand_in.endpoint)) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_records(stand_in: RecordingStandIn) -> None:
    stand_in.reset()


def burst(proxy: LabProxy, source: str, method: str, path: str, count: int = BURST_REQUESTS) -> list[int]:
    body = b"username=someone&password=guess" if method == "POST" else None
    return [request_from(source, proxy.url("web", path), method=method, body=body).status for _ in range(count)]


@pytest.mark.parametrize("endpoint", list(LOGIN_ENDPOINTS))
def test_a_burst_of_logins_from_one_address_gets_429_past_the_burst(
    proxy: LabProxy, stand_in: RecordingStandIn, endpoint: str
) -> None:
    method, path, source = LOGIN_ENDPOINTS[endpoint]
    limits = proxy.config.edge.limits
    statuses = burst(proxy, source, method, path)
    allowed = limits.login_burst + 1
    # the first request and the burst pass at once (nodelay); the rate refills one every 2 s
    assert statuses[:allowed] == [200] * allowed
    assert set(statuses[allowed:]) <= {200, 429}
    assert statuses.count(429) >= BURST_REQUESTS - allowed - 2
    assert len(stand_in.requests) == statuses.count(200)
    assert "limiting requests, excess" in proxy.error_log()


def test_the_login_limit_is_per_client_address(proxy: LabProxy) -> None:
    method, path, _ = LOGIN_ENDPOINTS["console login"]
    assert 429 in burst(proxy, "127.0.3.75", method, path)
    # another client is not held back by the first one's attempts
    assert burst(proxy, "127.0.3.76", method, path, count=5) == [200] * 5


def test_pages_that_are_not_logins_are_not_rate_limited(proxy: LabProxy) -> None:
    for path in ("/minio-console/browser", f"/auth/realms/{REALM}/account/", "/monitoring/grafana/api/health"):
        assert burst(proxy, "127.0.3.77", "GET", path) == [200] * BURST_REQUESTS, path


def test_too_many_logins_at_once_from_one_address_get_429(proxy: LabProxy, stand_in: RecordingStandIn) -> None:
    # each stand-in answer takes a while, so every request is in progress at the same time
    stand_in.delay_seconds = 1.5
    limits = proxy.config.edge.limits
    at_once = limits.login_connections + 5
    assert at_once <= limits.login_burst + 1, "the rate limit must not be what refuses them"
    path = f"/auth/realms/{REALM}/login-actions/authenticate"

    def login(_: int) -> int:
        return request_from("127.0.3.78", proxy.url("web", path), method="POST", body=b"x").status

    with concurrent.futures.ThreadPoolExecutor(max_workers=at_once) as pool:
        statuses = list(pool.map(login, range(at_once)))
    assert sorted(statuses) == [200] * limits.login_connections + [429] * 5
    assert 'limiting connections by zone "login_connections"' in proxy.error_log()
