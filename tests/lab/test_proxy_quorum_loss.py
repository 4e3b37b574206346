"""A cluster that lost write quorum answers writes with 503; reads must keep flowing through the proxy.

Two stand-in upstreams (plain HTTP servers, not MinIO) behave as MinIO does with two of four nodes
down: PUT answers 503 SlowDownWrite, GET answers 200. If nginx counted the 503 as a node failure
(`proxy_next_upstream http_503` with max_fails=1) it would mark both live nodes down and answer
the reads that follow with 502.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.edge import ProxyUpstreams
from tests.lab.proxy_lab import PROXY_ADDRESS, LabProxy, lab_stack, running_proxy

pytestmark = pytest.mark.lab

STAND_IN_ADDRESSES = ("127.0.3.40", "127.0.3.41")


class QuorumLostStandIn(http.server.BaseHTTPRequestHandler):
    puts: list[str] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).puts.append(self.server.server_address[0])  # type: ignore[index]
        body = b"<Error><Code>SlowDownWrite</Code></Error>"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        body = b"object"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[LabProxy]:
    QuorumLostStandIn.puts = []
    servers = [http.server.ThreadingHTTPServer((address, 0), QuorumLostStandIn) for address in STAND_IN_ADDRESSES]
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    endpoints = tuple(f"{s.server_address[0]}:{s.server_address[1]}" for s in servers)
    upstreams = ProxyUpstreams(s3=endpoints, console=endpoints[:1], keycloak=endpoints[0], grafana=endpoints[0])
    try:
        with running_proxy(tmp_path, lab_stack(), upstreams) as running:
            yield running
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=10)


def request(proxy: LabProxy, method: str, body: bytes | None = None) -> int:
    connection = http.client.HTTPConnection(PROXY_ADDRESS, proxy.s3_port, timeout=10)
    try:
        connection.request(method, "/bucket/key", body=body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_reads_keep_working_after_writes_are_refused_for_lost_quorum(proxy: LabProxy) -> None:
    writes = [request(proxy, "PUT", b"x" * 1024) for _ in range(4)]
    reads = [request(proxy, "GET") for _ in range(20)]
    assert writes == [503] * 4
    assert reads == [200] * 20, "the proxy took live nodes out of rotation because of 503 answers"
    # each refused write reached exactly one node: a 503 is passed back, never replayed elsewhere
    assert len(QuorumLostStandIn.puts) == 4
