"""Large bodies stream through the rendered proxy in both directions, in bounded memory, never spooled to disk.

The upstream is a recording HTTP stand-in (not MinIO) that counts bytes as they pass, so the
tests can see how far the upstream got while the client is still sending or receiving. Downloads
on the S3 listener are read ahead of the client into a bounded set of in-memory buffers
(ProxyBuffers); once those and the sockets are full, the upstream waits for the client.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.config.edge import size_in_bytes
from infra.edge import ProxyBuffers, ProxyRuntime
from tests.lab.proxy_lab import (
    PROXY_ADDRESS,
    STREAM_STAND_IN_ADDRESS,
    LabProxy,
    QuietHandler,
    RecordingStandIn,
    all_upstreams_at,
    lab_stack,
    recording_stand_in,
    running_proxy,
)

pytestmark = pytest.mark.lab

GIB = 1024**3
MIB = 1024**2
BUFFERS = ProxyBuffers()
# what nginx may read ahead of a client that does not read: its response buffers, plus what the
# kernel holds in the two sockets' buffers (upstream to nginx, nginx to client) at their largest
SOCKET_BYTES = 2 * sum(int(Path(f"/proc/sys/net/ipv4/tcp_{kind}").read_text().split()[2]) for kind in ("rmem", "wmem"))
READ_AHEAD_BYTES = BUFFERS.response_buffers * size_in_bytes(BUFFERS.response) + size_in_bytes(BUFFERS.head) + SOCKET_BYTES


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


def resident_bytes(proxy: LabProxy) -> int:
    """Resident memory of every nginx worker."""
    total = 0
    for pid in proxy.worker_pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


class EventStream(QuietHandler):
    """Answers like MinIO's event streams (bucket notifications, trace) with X-Accel-Buffering: no: one
    event now, the rest only when the test says so. The stream has neither a length nor chunked
    framing (it ends when the connection does), so that header alone must keep nginx from holding
    the event in a buffer until it fills."""

    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        # the event comes later than the head, so nginx reads it on its own (not with the head)
        time.sleep(0.3)
        self.wfile.write(b'{"Records":[]}\n')
        self.wfile.flush()
        type(self).release.wait(timeout=30)
        self.close_connection = True


def test_an_event_stream_reaches_the_client_event_by_event_while_downloads_are_buffered(tmp_path: Path) -> None:
    EventStream.release.clear()
    server = http.server.ThreadingHTTPServer((STREAM_STAND_IN_ADDRESS, 0), EventStream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        endpoint = f"{server.server_address[0]}:{server.server_address[1]}"
        with running_proxy(tmp_path, lab_stack(), all_upstreams_at(endpoint)) as proxy:
            client = connection(proxy)
            started = time.monotonic()
            client.request("GET", "/lab-bucket?events=s3:ObjectCreated:*")
            answer = client.getresponse()
            first = answer.read(15)
            waited = time.monotonic() - started
            EventStream.release.set()
            rest = answer.read()
            client.close()
    finally:
        EventStream.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert first == b'{"Records":[]}\n' and rest == b""
    # the upstream holds the rest of the stream for up to 30 s: the event came through on its own
    assert waited < 5


@dataclass
class PipeLoggingProxy(LabProxy):
    """The lab proxy writing its access log into a pipe, as it writes to /dev/stdout in its container."""

    pipe: Path = Path("/nonexistent")

    @property
    def runtime(self) -> ProxyRuntime:
        return dataclasses.replace(super().runtime, access_log=str(self.pipe))


def test_the_buffered_access_log_keeps_one_whole_record_per_request_with_the_path_only(
    stand_in: RecordingStandIn, tmp_path: Path
) -> None:
    stand_in.reset()
    pipe = tmp_path / "stdout"
    os.mkfifo(pipe)
    received = bytearray()

    def read_slowly() -> None:
        # a reader slower than the writers keeps the pipe full, where a write larger than PIPE_BUF
        # may be cut and interleaved with another worker's (POSIX allows it)
        with pipe.open("rb", buffering=0) as stream:
            while data := stream.read(2048):
                received.extend(data)
                time.sleep(0.001)

    # nginx opens the pipe for writing at start-up, which waits for this reader
    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    proxy = PipeLoggingProxy(tmp_path / "nginx", lab_stack(), all_upstreams_at(stand_in.endpoint), pipe=pipe)
    clients, each = 8, 150

    def requests_of(client: int) -> None:
        connection = http.client.HTTPConnection(PROXY_ADDRESS, proxy.s3_port, timeout=30)
        for number in range(each):
            connection.request("GET", f"/lab-bucket/c{client}-{number}?X-Amz-Signature=not-for-the-log")
            connection.getresponse().read()
        connection.close()

    try:
        proxy.start()
        # every worker writes at once, each batch of records in one write
        threads = [threading.Thread(target=requests_of, args=(client,)) for client in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        proxy.stop()
    reader.join(timeout=60)
    lines = bytes(received).splitlines()
    records = [json.loads(line) for line in lines]
    paths = sorted(record["path"] for record in records if record["path"].startswith("/lab-bucket/c"))
    assert paths == sorted(f"/lab-bucket/c{client}-{number}" for client in range(clients) for number in range(each))
    assert all(record["status"] == 200 for record in records)
    assert b"not-for-the-log" not in received


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
    # the client holds back: nginx reads ahead into its memory buffers only, then the upstream waits
    finished_while_client_paused = stand_in.download_finished.wait(timeout=1.0)
    sent_while_client_paused = stand_in.sent
    temp_files_during_download = proxy.open_temp_files()
    received = len(first)
    while received < GIB:
        piece = answer.read(8 * MIB)
        assert piece, f"download ended after {received} bytes"
        received += len(piece)
    client.close()
    assert received == GIB
    assert not finished_while_client_paused
    assert sent_while_client_paused < MIB + READ_AHEAD_BYTES
    assert temp_files_during_download == []


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_nginx_memory_stays_flat_over_a_2_gib_transfer(proxy: LabProxy, stand_in: RecordingStandIn, direction: str) -> None:
    stand_in.reset()
    size = 2 * GIB
    baseline = resident_bytes(proxy)
    samples: list[int] = []
    client = connection(proxy)
    if direction == "download":
        client.request("GET", f"/download/{size}")
        answer = client.getresponse()
        moved = 0
        while moved < size:
            piece = answer.read(8 * MIB)
            assert piece, f"download ended after {moved} bytes"
            moved += len(piece)
            samples.append(resident_bytes(proxy))
    else:
        client.putrequest("PUT", "/lab-bucket/two-gib.bin")
        client.putheader("Content-Length", str(size))
        client.endheaders()
        chunk = b"\x42" * (8 * MIB)
        for _ in range(size // len(chunk)):
            client.send(chunk)
            samples.append(resident_bytes(proxy))
        answer = client.getresponse()
        assert answer.read() == f"received {size}".encode()
    client.close()
    # bounded: no more than one request's buffers (ProxyBuffers) above where it started, plus the
    # pools of one request; flat: the second half of the transfer adds nothing to the first
    buffers = size_in_bytes(BUFFERS.body) + BUFFERS.response_buffers * size_in_bytes(BUFFERS.response) + size_in_bytes(BUFFERS.head)
    assert max(samples) - baseline < buffers + MIB
    half = len(samples) // 2
    assert max(samples[half:]) <= max(samples[:half]) + 256 * 1024


def test_nginx_logged_no_body_buffered_to_a_temporary_file(proxy: LabProxy) -> None:
    log = proxy.error_log()
    assert "buffered to a temporary file" not in log
    assert [entry for folder in (proxy.root / "temp").iterdir() for entry in folder.iterdir()] == []


def test_an_s3_answer_with_a_large_head_passes_the_small_head_buffer(proxy: LabProxy, stand_in: RecordingStandIn) -> None:
    # S3 allows 2 KiB of user metadata; with MinIO's own headers an answer's head stays far below
    # the S3 listeners' head buffer (ProxyBuffers.head), and one that nearly fills it still passes
    metadata = {f"X-Amz-Meta-Key{index:02}": "v" * 180 for index in range(size_in_bytes(BUFFERS.head) * 3 // 4 // 200)}
    stand_in.response_headers = metadata
    try:
        client = connection(proxy)
        client.request("GET", "/bucket/object-with-metadata")
        answer = client.getresponse()
        body = answer.read()
        client.close()
    finally:
        stand_in.reset()
    assert answer.status == 200, body
    assert {name: answer.getheader(name) for name in metadata} == metadata
    assert "upstream sent too big header" not in proxy.error_log()
