"""The rendered proxy with TLS on: HTTP redirects, TLS 1.2 and 1.3 only, HSTS, S3 over HTTPS.

The certificate is a throwaway self-signed one for the lab address; upstreams are a recording
HTTP stand-in (not MinIO).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import requests
import urllib3

from tests.lab.proxy_lab import (
    HOST_GATEWAY_ADDRESS,
    OUTSIDE_CLIENT_ADDRESS,
    PROXY_ADDRESS,
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


@pytest.fixture(scope="module")
def stand_in() -> Iterator[RecordingStandIn]:
    with recording_stand_in(WEB_STAND_IN_ADDRESS) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(stand_in: RecordingStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    upstreams = all_upstreams_at(stand_in.endpoint)
    with running_proxy(tmp_path_factory.mktemp("nginx"), lab_stack(tls=True), upstreams) as running:
        yield running


def handshake(proxy: LabProxy, version: ssl.TLSVersion) -> str:
    """The protocol nginx agrees to when the client offers exactly `version`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # let the client itself offer old protocols, so a refusal is the server's
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    with socket.create_connection((PROXY_ADDRESS, proxy.web_port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        return str(tls.version())


def test_plain_http_redirects_to_https(proxy: LabProxy) -> None:
    answer = requests.get(proxy.url("http", "/minio-console/login?next=1"), allow_redirects=False, timeout=10)
    assert answer.status_code == 301
    assert answer.headers["Location"] == f"https://{PROXY_ADDRESS}:{proxy.web_port}/minio-console/login?next=1"


def test_tls_12_and_13_are_accepted(proxy: LabProxy) -> None:
    assert handshake(proxy, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(proxy, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_11_is_refused(proxy: LabProxy) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(proxy, ssl.TLSVersion.TLSv1_1)


def test_https_answers_carry_hsts_on_web_and_s3(proxy: LabProxy) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    web = requests.get(proxy.url("web", "/minio-console/"), verify=False, timeout=10)
    s3 = requests.get(proxy.url("s3", "/lab-bucket/key"), verify=False, timeout=10)
    for answer in (web, s3):
        assert answer.status_code == 200
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_s3_over_https_passes_host_and_scheme_to_the_upstream(proxy: LabProxy, stand_in: RecordingStandIn) -> None:
    stand_in.reset()
    certificate = proxy.root / "tls" / "server.crt"
    answer = requests.get(proxy.url("s3", "/lab-bucket/key"), verify=str(certificate), timeout=10)
    assert answer.status_code == 200
    [request] = stand_in.requests
    assert request.path == "/lab-bucket/key"
    assert request.headers["host"] == f"{PROXY_ADDRESS}:{proxy.s3_port}"
    assert request.headers["x-forwarded-proto"] == "https"


def test_the_admin_listener_speaks_https_with_the_stack_certificate(proxy: LabProxy, stand_in: RecordingStandIn) -> None:
    stand_in.reset()
    certificate = proxy.root / "tls" / "server.crt"
    assert proxy.url("admin", "/").startswith("https://")
    answer = request_from(HOST_GATEWAY_ADDRESS, proxy.url("admin", "/minio/admin/v3/info"), ca_file=certificate)
    assert answer.status == 200
    [request] = stand_in.requests
    assert request.path == "/minio/admin/v3/info" and request.headers["x-forwarded-proto"] == "https"
    assert request_from(OUTSIDE_CLIENT_ADDRESS, proxy.url("admin", "/minio/admin/v3/info"), ca_file=certificate).status == 403
