"""What each listener of the rendered proxy exposes, and to which client address.

Real nginx on loopback; clients bind to chosen 127.0.3.x source addresses so that nginx sees
them inside or outside the allow lists this lab renders (edge.adminAllowFrom and
identity.adminAllowFrom = ALLOWED_RANGE; the admin listener's gateway = HOST_GATEWAY_ADDRESS).
Behind it, recording HTTP stand-ins (not MinIO, Keycloak or Grafana) show what got through.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.edge import ProxyUpstreams
from tests.lab.proxy_lab import (
    ALLOWED_RANGE,
    HOST_GATEWAY_ADDRESS,
    INSIDE_CLIENT_ADDRESS,
    OUTSIDE_CLIENT_ADDRESS,
    PROXY_ADDRESS,
    WEB_STAND_IN_ADDRESS,
    LabProxy,
    RecordingStandIn,
    lab_stack,
    recording_stand_in,
    request_from,
    running_proxy,
)

pytestmark = pytest.mark.lab

REALM = "minio-platform"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[str, RecordingStandIn]]:
    with recording_stand_in(WEB_STAND_IN_ADDRESS) as s3, recording_stand_in(WEB_STAND_IN_ADDRESS) as console, recording_stand_in(
        WEB_STAND_IN_ADDRESS
    ) as keycloak, recording_stand_in(WEB_STAND_IN_ADDRESS) as grafana:
        yield {"s3": s3, "console": console, "keycloak": keycloak, "grafana": grafana}


@pytest.fixture(scope="module")
def proxy(stand_ins: dict[str, RecordingStandIn], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    upstreams = ProxyUpstreams(
        s3=(stand_ins["s3"].endpoint,),
        console=(stand_ins["console"].endpoint,),
        keycloak=stand_ins["keycloak"].endpoint,
        grafana=stand_ins["grafana"].endpoint,
    )
    config = lab_stack(adminAllowFrom=[ALLOWED_RANGE], identity={"realm": REALM, "adminAllowFrom": [ALLOWED_RANGE]})
    with running_proxy(tmp_path_factory.mktemp("nginx"), config, upstreams) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_records(stand_ins: dict[str, RecordingStandIn]) -> None:
    for stand_in in stand_ins.values():
        stand_in.reset()


def paths_seen(stand_in: RecordingStandIn) -> list[str]:
    return [r.path for r in stand_in.requests]


# ---- MinIO's admin API --------------------------------------------------------------------------

ADMIN_PATHS = (
    "/minio/admin/v3/info",
    "/minio/admin/v3/add-user?accessKey=intruder",
    # nginx matches locations on the normalised path, so neither spelling slips past
    "/minio//admin/v3/info",
    "/minio/%61dmin/v3/info",
    # the KMS API creates and lists keys (cmd/kms-router.go): refused the same way
    "/minio/kms/v1/key/list?pattern=*",
    "/minio/kms/v1/key/create?key-id=intruder",
)


@pytest.mark.parametrize("source", [OUTSIDE_CLIENT_ADDRESS, HOST_GATEWAY_ADDRESS, "127.0.0.1"])
def test_the_public_s3_listener_refuses_the_admin_api_outside_edge_admin_allow_from(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn], source: str
) -> None:
    for path in ADMIN_PATHS:
        answer = request_from(source, proxy.url("s3", path))
        assert answer.status == 403, path
        assert answer.headers["Content-Type"] == "application/xml"
        assert b"<Code>AccessDenied</Code>" in answer.body
    assert stand_ins["s3"].requests == []


def test_the_public_s3_listener_passes_the_admin_api_inside_edge_admin_allow_from(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    answer = request_from(INSIDE_CLIENT_ADDRESS, proxy.url("s3", "/minio/admin/v3/info"))
    assert answer.status == 200 and answer.body == b"stand-in saw /minio/admin/v3/info"
    assert paths_seen(stand_ins["s3"]) == ["/minio/admin/v3/info"]


def test_the_rest_of_the_s3_api_stays_open_to_every_client(proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]) -> None:
    for path in ("/lab-bucket/key", "/minio/health/live", "/minio-bucket/admin-notes.txt"):
        assert request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("s3", path)).status == 200, path
    assert paths_seen(stand_ins["s3"]) == ["/lab-bucket/key", "/minio/health/live", "/minio-bucket/admin-notes.txt"]


def test_the_admin_listener_serves_the_whole_s3_api_to_the_host_gateway(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    for path in ("/minio/admin/v3/info", "/lab-bucket/key"):
        answer = request_from(HOST_GATEWAY_ADDRESS, proxy.url("admin", path))
        assert answer.status == 200 and answer.body == f"stand-in saw {path}".encode()
    request = stand_ins["s3"].requests[0]
    # Host passes unchanged (SigV4 signs it) and the client address is nginx's own view
    assert request.headers["host"] == f"{PROXY_ADDRESS}:{proxy.admin_port}"
    assert request.headers["x-forwarded-for"] == HOST_GATEWAY_ADDRESS


@pytest.mark.parametrize("source", [INSIDE_CLIENT_ADDRESS, OUTSIDE_CLIENT_ADDRESS, "127.0.0.1"])
def test_the_admin_listener_refuses_every_other_source(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn], source: str
) -> None:
    # edge.adminAllowFrom opens the public listener, never this one
    for path in ("/minio/admin/v3/info", "/lab-bucket/key"):
        assert request_from(source, proxy.url("admin", path)).status == 403, path
    assert stand_ins["s3"].requests == []


# ---- Keycloak ------------------------------------------------------------------------------------

KEYCLOAK_ADMIN_PATHS = (
    "/auth/admin/master/console/",
    "/auth/admin/realms/minio-platform/users",
    "/auth/realms/master/protocol/openid-connect/auth?client_id=security-admin-console",
)


def test_keycloaks_admin_console_and_master_realm_are_refused_outside_identity_admin_allow_from(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    for source in (OUTSIDE_CLIENT_ADDRESS, "127.0.0.1"):
        for path in KEYCLOAK_ADMIN_PATHS:
            assert request_from(source, proxy.url("web", path)).status == 403, (source, path)
    assert stand_ins["keycloak"].requests == []


def test_keycloaks_admin_console_and_master_realm_pass_inside_identity_admin_allow_from(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    for path in KEYCLOAK_ADMIN_PATHS:
        assert request_from(INSIDE_CLIENT_ADDRESS, proxy.url("web", path)).status == 200, path
    assert paths_seen(stand_ins["keycloak"]) == list(KEYCLOAK_ADMIN_PATHS)


def test_the_realm_its_static_resources_and_keycloak_js_pass_from_anywhere(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    paths = [
        f"/auth/realms/{REALM}/.well-known/openid-configuration",
        f"/auth/realms/{REALM}/protocol/openid-connect/auth?client_id=minio-console",
        f"/auth/realms/{REALM}/account/",
        "/auth/resources/abc12/login/keycloak.v2/css/styles.css",
        "/auth/js/keycloak.js",
    ]
    for path in paths:
        assert request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("web", path)).status == 200, path
    assert paths_seen(stand_ins["keycloak"]) == paths


def test_everything_else_under_auth_answers_404_without_reaching_keycloak(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    for path in ("/auth/", "/auth", "/auth/realms/other-realm/account/", "/auth/health/ready", "/auth/metrics", "/auth/welcome"):
        assert request_from(INSIDE_CLIENT_ADDRESS, proxy.url("web", path)).status == 404, path
    assert stand_ins["keycloak"].requests == []


def test_grafanas_unauthenticated_metrics_stay_inside_the_stack(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    assert request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("web", "/monitoring/grafana/metrics")).status == 404
    assert request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("web", "/monitoring/grafana/api/health")).status == 200
    assert paths_seen(stand_ins["grafana"]) == ["/monitoring/grafana/api/health"]


# ---- headers -------------------------------------------------------------------------------------

SECURITY_HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


@pytest.mark.parametrize(
    "path",
    [
        "/minio-console/browser", "/monitoring/grafana/d/minio", f"/auth/realms/{REALM}/account/",
        "/runbook/", "/nothing-here", "/auth/admin/",
    ],
)
def test_web_answers_carry_the_security_headers_whoever_answers(proxy: LabProxy, path: str) -> None:
    # upstreams, the static runbook, nginx's own 404 and 403 alike ('always')
    answer = request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("web", path))
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get_all(name) == [value], (path, name)


def test_an_upstreams_own_frame_and_referrer_policy_win_and_are_not_doubled(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]
) -> None:
    stand_ins["grafana"].response_headers = {"X-Frame-Options": "deny", "Referrer-Policy": "no-referrer"}
    answer = request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("web", "/monitoring/grafana/login-free-page"))
    assert answer.headers.get_all("X-Frame-Options") == ["deny"]
    assert answer.headers.get_all("Referrer-Policy") == ["no-referrer"]
    assert answer.headers.get_all("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.parametrize(
    ("listener", "path", "service"),
    [
        ("s3", "/lab-bucket/key", "s3"),
        ("web", "/minio-console/api/v1/buckets", "console"),
        ("web", f"/auth/realms/{REALM}/protocol/openid-connect/auth", "keycloak"),
        ("web", "/monitoring/grafana/api/health", "grafana"),
    ],
)
def test_a_client_cannot_choose_the_address_upstreams_see(
    proxy: LabProxy, stand_ins: dict[str, RecordingStandIn], listener: str, path: str, service: str
) -> None:
    spoofed = {"X-Forwarded-For": "10.1.2.3, 203.0.113.9", "X-Real-IP": "10.1.2.3"}
    assert request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url(listener, path), headers=spoofed).status == 200
    [request] = stand_ins[service].requests
    assert request.headers["x-forwarded-for"] == OUTSIDE_CLIENT_ADDRESS
    assert request.headers["x-real-ip"] == OUTSIDE_CLIENT_ADDRESS


# ---- body sizes ----------------------------------------------------------------------------------


def post(proxy: LabProxy, listener: str, path: str, size: int, method: str = "POST") -> int:
    return request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url(listener, path), method=method, body=b"\x00" * size).status


def test_large_bodies_reach_s3_and_console_uploads_only(proxy: LabProxy, stand_ins: dict[str, RecordingStandIn]) -> None:
    over_web_limit = 1 * MIB + 1
    assert post(proxy, "s3", "/lab-bucket/three-mib.bin", 3 * MIB, method="PUT") == 200
    assert post(proxy, "web", "/minio-console/api/v1/buckets/lab-bucket/objects/upload?prefix=eA==", 3 * MIB) == 200
    assert stand_ins["s3"].received == 3 * MIB and stand_ins["console"].received == 3 * MIB
    assert post(proxy, "web", "/minio-console/api/v1/buckets/lab-bucket/lifecycle", over_web_limit) == 413
    assert post(proxy, "web", f"/auth/realms/{REALM}/account/", over_web_limit) == 413
    assert post(proxy, "web", f"/auth/realms/{REALM}/account/", 8 * 1024) == 200


def test_grafana_takes_dashboards_up_to_its_own_limit(proxy: LabProxy) -> None:
    assert post(proxy, "web", "/monitoring/grafana/api/dashboards/db", 3 * MIB) == 200
    assert post(proxy, "web", "/monitoring/grafana/api/dashboards/db", 10 * MIB + 1) == 413
