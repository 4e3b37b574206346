"""Large bodies stream through the rendered proxy in both directions, never spooled to disk.

The upstream is a recording HTTP stand-in (not MinIO) that counts bytes as they pass, so the
tests can see how far the upstream got while the client is still sending or receiving.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from tests.lab.proxy_lab import (
    PROXY_ADDRESS,
    STREAM_STAND_IN_ADDRESS,
    LabProxy,
    RecordingStandIn,
    all_upstreams_at,
    lab_stack,
    recording_stand_in,
    running_proxy,
)

pytestmark = pytest.mark.lab

GIB = 1024**3
MIB = 1024**2


@pytest.fixture(scope="module")
def stand_in() -> Iterator[RecordingStandIn]:
    with recording_stand_in(STREAM_STAND_IN_ADDRESS) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(stand_in: RecordingStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    upstreams = all_upstreams_at(stand_in.endpoint)
    with running_proxy(tmp_path_factory.mktemp("nginx"), lab_stack(max_body_size="2g"), upstreams) as running:
        yield running


def connection(proxy: LabProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(PROXY_ADDRESS, proxy.s3_port, timeout=60)


def test_a_1_gib_upload_reaches_the_upstream_while_the_client_is_still_sending(proxy: LabProxy, stand_in: RecordingStandIn) -> None:
    stand_in.reset()
    chunk = b"\x42" * MIB
    total_chunks = GIB // MIB
    upstream_seen_before_last_chunk = -1
    temp_files_during_upload: list[str] = []
    client = connection(proxy)
    client.putrequest("PUT", "/lab-bucket/one-gib.bin")
    client.putheader("Content-Length", str(GIB))
    client.endheaders()
    for index in range(total_chunks):
        if index == total_chunks - 1:
            upstream_seen_before_last_chunk = stand_in.received
        if index == total_chunks // 2:
            temp_files_during_upload = proxy.open_temp_files()
        client.send(chunk)
    answer = client.getresponse()
    assert answer.status == 200 and answer.read() == f"received {GIB}".encode()
    client.close()
    # with request buffering, nothing would reach the upstream before the last byte arrived
    assert upstream_seen_before_last_chunk > GIB // 2
    assert temp_files_during_upload == []


def test_a_1_gib_download_reaches_the_client_while_the_upstream_is_still_sending(proxy: LabProxy, stand_in: RecordingStandIn) -> None:
    stand_in.reset()
    client = connection(proxy)
    client.request("GET", f"/download/{GIB}")
    answer = client.getresponse()
    assert answer.status == 200 and answer.getheader("Content-Length") == str(GIB)
    first = answer.read(MIB)
    # the client holds back: without response buffering the upstream is held back too
    stand_in.download_finished.wait(timeout=1.0)
    sent_while_client_paused = stand_in.sent
    temp_files_during_download = proxy.open_temp_files()
    received = len(first)
    while received < GIB:
        piece = answer.read(8 * MIB)
        assert piece, f"download ended after {received} bytes"
        received += len(piece)
    client.close()
    assert received == GIB
    assert not stand_in.download_finished.is_set() or sent_while_client_paused < GIB
    assert sent_while_client_paused < 256 * MIB
    assert temp_files_during_download == []


def test_nginx_logged_no_body_buffered_to_a_temporary_file(proxy: LabProxy) -> None:
    log = proxy.error_log()
    assert "buffered to a temporary file" not in log
    assert [entry for folder in (proxy.root / "temp").iterdir() for entry in folder.iterdir()] == []
