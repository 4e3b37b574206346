"""The audit sink script under hostile and stalled clients, and the audit corpus through it, on 127.0.8.1.

What a client without the token can make the sink do is answered from the headers alone: the body
is never read. Stalled clients hold at most the connection cap, the rest get an immediate 503, and
every stalled one is dropped after the read timeout, after which MinIO's next try gets through.
What reaches stdout (and so the Docker log files on the host) holds none of the corpus's secrets.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.__main__ import load_stack
from infra.monitoring.log_agent import alloy_config
from infra.services import audit_sink
from tests.config.pipeline_emulator import read_pipeline
from tests.config.test_log_redaction import CORPUS, meta_of
from tests.unit.test_audit_sink import TOKEN, RunningSink, audit_entry, running_sink

pytestmark = pytest.mark.lab

HOST = "127.0.8.1"
# short, so the stalled-client test takes seconds; the same code path as the deployed 10 s
READ_TIMEOUT_SECONDS = 2.0
STALLED_CLIENTS = 50
GIB = 1024**3


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[RunningSink]:
    with running_sink(tmp_path, HOST, AUDIT_SINK_TIMEOUT=str(READ_TIMEOUT_SECONDS)) as running:
        yield running


def connect(sink: RunningSink) -> socket.socket:
    return socket.create_connection((sink.host, sink.port), timeout=5)


def read_until_closed(client: socket.socket, within: float) -> bytes:
    """Everything the sink sends before it closes the connection; fails if it stays open longer than `within`."""
    received, deadline = b"", time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the sink kept the connection open, waiting, after sending {received[:60]!r}"
        client.settimeout(remaining)
        try:
            chunk = client.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the sink kept the connection open, waiting, after sending {received[:60]!r}") from None
        if not chunk:
            return received
        received += chunk


def metric(sink: RunningSink, reason: str) -> int:
    prefix = f'audit_sink_rejected_requests_total{{reason="{reason}"}} '
    (line,) = [line for line in sink.get("/metrics")[1].splitlines() if line.startswith(prefix)]
    return int(line.removeprefix(prefix))


REFUSED_FROM_HEADERS = {
    "1 GiB announced, wrong token": ({"Authorization": "wrong-token", "Content-Length": str(GIB)}, 401),
    "64 KiB announced, no token": ({"Content-Length": str(64 * 1024)}, 401),
    "wrong token, waiting for 100 Continue": (
        {"Authorization": f"Bearer {TOKEN}x", "Content-Length": str(64 * 1024), "Expect": "100-continue"},
        401,
    ),
    "right token, 1 GiB announced": ({"Authorization": TOKEN, "Content-Length": str(GIB)}, 413),
    "right token, no length": ({"Authorization": TOKEN, "Transfer-Encoding": "chunked"}, 411),
}


@pytest.mark.parametrize("headers, status", REFUSED_FROM_HEADERS.values(), ids=REFUSED_FROM_HEADERS.keys())
def test_a_request_the_sink_will_not_take_is_answered_from_its_headers_and_its_body_never_read(
    sink: RunningSink, headers: dict[str, str], status: int
) -> None:
    head = f"POST {audit_sink.AUDIT_PATH} HTTP/1.1\r\nHost: {sink.host}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with connect(sink) as client:
        client.sendall(head.encode())
        # not one body byte sent: the answer comes from the headers, and the sink closes rather than read on
        answer = read_until_closed(client, within=READ_TIMEOUT_SECONDS / 2)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"Connection: close" in answer
    assert sink.lines() == []
    assert sink.process.poll() is None and sink.get("/health")[0] == 200


def answered_at_once(clients: list[socket.socket], within: float) -> list[socket.socket]:
    """The clients the sink has sent something to (or closed) within `within` seconds."""
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client, selectors.EVENT_READ)
        ready: set[socket.socket] = set()
        deadline = time.monotonic() + within
        while len(ready) < len(clients) and (remaining := deadline - time.monotonic()) > 0:
            ready |= {key.fileobj for key, _ in selector.select(remaining) if isinstance(key.fileobj, socket.socket)}
    return [client for client in clients if client in ready]


def test_the_sink_outlasts_stalled_clients_and_an_entry_gets_through_once_they_time_out(sink: RunningSink) -> None:
    cap = audit_sink.DEFAULT_MAX_CONNECTIONS
    opened = time.monotonic()
    stalled = [connect(sink) for _ in range(STALLED_CLIENTS)]
    try:
        # beyond the cap: an immediate 503 and a closed connection, no thread left waiting
        refused = answered_at_once(stalled, within=READ_TIMEOUT_SECONDS / 4)
        held = [client for client in stalled if client not in refused]
        assert len(refused) >= STALLED_CLIENTS - cap and len(held) <= cap, (len(refused), len(held))
        assert all(read_until_closed(client, within=1).startswith(b"HTTP/1.1 503 ") for client in refused)
        # MinIO retries a refused entry after its retry_interval; here every 0.2 s, for a bounded time
        entry = audit_entry("PutObject", 200)
        bound = READ_TIMEOUT_SECONDS + 3
        while True:
            try:
                status = sink.post(audit_sink.AUDIT_PATH, json.dumps(entry).encode())[0]
            except (ConnectionError, TimeoutError):
                status = None
            if status == 200:
                break
            assert time.monotonic() - opened < bound, f"no entry got through in {bound} s (last answer {status})"
            time.sleep(0.2)
        assert sink.lines() == [entry]
        # the stalled ones held their slots until the read timeout dropped them, without an answer
        assert all(read_until_closed(client, within=1) == b"" for client in held)
        assert metric(sink, "busy") >= len(refused)
    finally:
        for client in stalled:
            client.close()
    assert sink.process.poll() is None


def test_what_the_sink_writes_holds_no_secret_of_the_audit_corpus_and_keeps_its_labels(sink: RunningSink) -> None:
    cases = [case for case in CORPUS if case.service == "audit-sink"]
    for case in cases:
        assert sink.post(audit_sink.AUDIT_PATH, case.line.encode())[0] == 200, case.name
    # a newline-separated batch of the same, as MinIO sends with MINIO_AUDIT_WEBHOOK_BATCH_SIZE > 1
    assert sink.post(audit_sink.AUDIT_PATH, "\n".join(case.line for case in cases).encode())[0] == 200
    output = sink.output()
    survivors = {case.name for case in cases for secret in case.secrets if secret in output}
    assert not survivors, f"secrets of {sorted(survivors)} reach the sink's stdout"
    written = output.splitlines()
    assert len(written) == 2 * len(cases)
    # the log agent still finds what it labels by in the redacted lines
    agent = read_pipeline("alloy", alloy_config(load_stack("dev", None)))
    for case, line in zip(cases + cases, written, strict=True):
        assert json.loads(line)["api"] == json.loads(case.line)["api"], case.name
        labels = agent.run(line, meta_of(case.service)).labels
        assert (labels.get("op_type"), labels.get("security_event")) == (case.op_type, case.security_event), case.name
