"""S3 through the rendered proxy, on loopback, to a SeaweedFS stand-in (an S3 server that is not MinIO).

The stand-in verifies SigV4 on every request, so a request it accepts still carried a valid
signature after the proxy: Host, path and query arrived as the client signed them.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from minio import Minio
from minio.error import S3Error

from infra.edge import ProxyUpstreams
from tests.lab.proxy_lab import (
    ACCESS_KEY,
    PROXY_ADDRESS,
    SECRET_KEY,
    WEB_STAND_IN_ADDRESS,
    LabProxy,
    SeaweedStandIn,
    lab_stack,
    recording_stand_in,
    running_proxy,
    running_seaweed,
)

pytestmark = pytest.mark.lab

BODY_LIMIT = "8m"
BUCKET = "lab-bucket"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedStandIn]:
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def proxy(seaweed: SeaweedStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    with recording_stand_in(WEB_STAND_IN_ADDRESS) as web:
        upstreams = ProxyUpstreams(
            s3=tuple(seaweed.gateway_endpoints), console=(web.endpoint,), keycloak=web.endpoint, grafana=web.endpoint
        )
        config = lab_stack(max_body_size=BODY_LIMIT, failover={"tries": 4, "failTimeoutSeconds": 30})
        with running_proxy(tmp_path_factory.mktemp("nginx"), config, upstreams) as running:
            yield running


def client(endpoint: str, secret_key: str = SECRET_KEY, http: urllib3.PoolManager | None = None) -> Minio:
    # no SDK retries: a failure must show, not be retried away
    return Minio(
        endpoint, ACCESS_KEY, secret_key, secure=False, region="us-east-1",
        http_client=http or urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30)),
    )


@pytest.fixture(scope="module")
def s3(proxy: LabProxy) -> Minio:
    sdk = client(f"{PROXY_ADDRESS}:{proxy.s3_port}")
    if not sdk.bucket_exists(BUCKET):
        sdk.make_bucket(BUCKET)
    return sdk


class UnderStoragePrefix(urllib3.PoolManager):
    """Sends every SDK request to the web listener under /storage, as the seed design did."""

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        scheme, rest = url.split("://", 1)
        host, _, path = rest.partition("/")
        return super().urlopen(method, f"{scheme}://{host}/storage/{path}", redirect=redirect, **kw)


def test_signed_put_get_and_list_through_the_proxy_are_accepted_by_the_sigv4_checking_stand_in(s3: Minio) -> None:
    payload = b"signed through nginx\n" * 1000
    s3.put_object(BUCKET, "dir/signed.txt", io.BytesIO(payload), len(payload))
    response = s3.get_object(BUCKET, "dir/signed.txt")
    try:
        assert response.read() == payload
    finally:
        response.close()
        response.release_conn()
    assert [o.object_name for o in s3.list_objects(BUCKET, prefix="dir/", recursive=True)] == ["dir/signed.txt"]


def test_presigned_get_through_the_proxy_is_accepted(s3: Minio) -> None:
    s3.put_object(BUCKET, "presigned.txt", io.BytesIO(b"presigned"), 9)
    url = s3.presigned_get_object(BUCKET, "presigned.txt")
    assert url.startswith(f"http://{PROXY_ADDRESS}:")
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200 and answer.content == b"presigned"


def test_the_stand_in_rejects_a_wrong_signature_through_the_proxy(proxy: LabProxy, s3: Minio) -> None:
    forged = client(f"{PROXY_ADDRESS}:{proxy.s3_port}", secret_key="not-the-secret-key")
    with pytest.raises(S3Error) as error:
        forged.get_object(BUCKET, "presigned.txt")
    assert error.value.code == "SignatureDoesNotMatch"


def test_sdk_requests_under_storage_get_an_error_that_names_the_s3_endpoint(proxy: LabProxy, s3: Minio) -> None:
    s3_endpoint = f"http://{PROXY_ADDRESS}:{proxy.s3_port}"
    under_storage = client(f"{PROXY_ADDRESS}:{proxy.web_port}", http=UnderStoragePrefix(retries=False))
    attempts = {
        "put": lambda: under_storage.put_object(BUCKET, "x.txt", io.BytesIO(b"x"), 1),
        "get": lambda: under_storage.get_object(BUCKET, "presigned.txt"),
        "list": lambda: list(under_storage.list_objects(BUCKET)),
    }
    for name, attempt in attempts.items():
        with pytest.raises(S3Error) as error:
            attempt()
        assert error.value.response.status == 400, name
        assert error.value.code == "WrongEndpoint", name
        assert f"Use the S3 endpoint {s3_endpoint}/" in error.value.message, name


def test_presigned_url_under_storage_gets_the_explanation_not_a_signature_error(proxy: LabProxy, s3: Minio) -> None:
    signer = client(f"{PROXY_ADDRESS}:{proxy.web_port}")
    url = signer.presigned_get_object(BUCKET, "presigned.txt")
    prefixed = url.replace(f":{proxy.web_port}/", f":{proxy.web_port}/storage/", 1)
    answer = requests.get(prefixed, timeout=30)
    assert answer.status_code == 400
    assert f"<Endpoint>http://{PROXY_ADDRESS}:{proxy.s3_port}</Endpoint>" in answer.text
    assert "SignatureDoesNotMatch" not in answer.text


def test_body_over_the_limit_gets_413_and_one_under_it_passes(proxy: LabProxy, s3: Minio) -> None:
    url = proxy.url("s3", f"/{BUCKET}/too-big.bin")
    over = requests.put(url, data=b"\0" * (8 * 1024 * 1024 + 1), timeout=30)
    assert over.status_code == 413

    def chunked() -> Iterator[bytes]:
        for _ in range(9):
            yield b"\0" * (1024 * 1024)

    assert requests.put(url, data=chunked(), timeout=30).status_code == 413
    under = b"\1" * (7 * 1024 * 1024)
    s3.put_object(BUCKET, "under-limit.bin", io.BytesIO(under), len(under))
    assert s3.stat_object(BUCKET, "under-limit.bin").size == len(under)


def test_no_get_fails_while_one_of_four_stand_in_gateways_is_killed(
    proxy: LabProxy, seaweed: SeaweedStandIn, s3: Minio
) -> None:
    payload = b"failover" * 512
    s3.put_object(BUCKET, "failover.bin", io.BytesIO(payload), len(payload))
    failures: list[str] = []
    done = 0
    killed = threading.Event()

    def reader() -> None:
        nonlocal done
        deadline = time.monotonic() + 60
        while done < 400 and time.monotonic() < deadline:
            try:
                response = s3.get_object(BUCKET, "failover.bin")
                body = response.read()
                response.close()
                response.release_conn()
                if body != payload:
                    failures.append(f"GET {done}: {len(body)} bytes")
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                failures.append(f"GET {done}: {error}")
            done += 1
            if done == 100:
                killed.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert killed.wait(timeout=30)
    seaweed.kill_gateway(1)
    thread.join(timeout=90)
    assert done == 400 and failures == []
    # the kill was noticed: some GET was tried at the dead gateway, then answered by another
    dead = seaweed.gateway_endpoints[1]
    failed_over = [
        entry for entry in proxy.access_log()
        if entry["path"] == f"/{BUCKET}/failover.bin" and dead in entry["upstream_addr"] and "," in entry["upstream_addr"]
    ]
    assert failed_over, "no request was retried away from the killed gateway"
    assert all(entry["status"] == 200 for entry in failed_over)
