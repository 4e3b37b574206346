"""socket-proxy itself, built from the release the image pin names, in front of a stand-in Docker API.

The stand-in (not Docker) is a small HTTP server on a unix socket that answers every request and
records it, so a test sees what got through. The proxy runs the arguments the program renders
(`proxy_command`); only the listen address, port, socket path and admitted caller are the lab's, on
loopback. Clients bind 127.0.9.x source addresses to stand inside and outside `-allowfrom`.

The binaries, `socket-proxy` and `healthcheck` of the pinned release, are built by whoever runs the
lab, in the folder SOCKET_PROXY_BIN_DIR names (no registry here serves them: see `binaries`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from infra.config.images import DOCKER_API_PROXY
from infra.monitoring.docker_api_proxy import proxy_command
from tests.conftest import IN_CI
from tests.lab.proxy_lab import free_port, stop, wait_for_port
from tests.unit.test_docker_api_proxy import AGENT_CALLS, API, ID

pytestmark = pytest.mark.lab

RELEASE = "1.13.1"
BIN_DIR_VARIABLE = "SOCKET_PROXY_BIN_DIR"
PROXY_ADDRESS = "127.0.9.1"
AGENT_ADDRESS = "127.0.9.2"
OTHER_ADDRESS = "127.0.9.3"
# fixed in socket-proxy: -allowhealthcheck serves 127.0.0.1:55555/health
HEALTH_PORT = 55555
LOG_LINES = (b"first line\n", b"second line\n")


def skip_or_fail(message: str) -> None:
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def binaries() -> Path:
    """A folder with socket-proxy and healthcheck of the pinned release, named by SOCKET_PROXY_BIN_DIR.

    The Go module proxy does not serve the release (it answers 403 "This module version is not
    available" for its commit, and its tags are not semver), and no other registry ships it: so this
    lab runs where an operator built the release and names the folder, and skips, with that reason,
    everywhere else, CI included. tests/unit/test_docker_api_proxy.py checks the same allow-list offline
    with RE2, the engine the proxy matches with.
    """
    given = os.environ.get(BIN_DIR_VARIABLE)
    if not given:
        pytest.skip(f"socket-proxy {RELEASE} is not available from any registry here: set {BIN_DIR_VARIABLE} to run this lab")
    folder = Path(given)
    if not all((folder / name).is_file() for name in ("socket-proxy", "healthcheck")):
        pytest.fail(f"{BIN_DIR_VARIABLE}={given} holds no socket-proxy and healthcheck", pytrace=False)
    return folder


class StandInDockerApi(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers every method and path with 200 (a followed log stream for /logs) and records each request."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.seen: list[tuple[str, str]] = []
        self.release_stream = threading.Event()
        self.stream_finished = threading.Event()
        super().__init__(str(path), _StandInHandler)


class _StandInHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandInDockerApi

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path))
        if self.path.split("?", 1)[0].endswith("/logs"):
            self._follow()
            return
        body = json.dumps({"standIn": True, "method": self.command, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Api-Version", API.removeprefix("/v"))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _follow(self) -> None:
        """One line, then hold the stream open until the test has read it, as `logs?follow=1` does."""
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.raw-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first, second = LOG_LINES
        self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
        self.wfile.flush()
        self.server.release_stream.wait(timeout=20)
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
        self.wfile.flush()
        self.server.stream_finished.set()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer


@dataclass
class LabProxy:
    port: int
    stand_in: StandInDockerApi
    socket_path: Path
    process: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, source: str = AGENT_ADDRESS) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(PROXY_ADDRESS, self.port, timeout=10, source_address=(source, 0))
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@contextlib.contextmanager
def running_proxy(binaries: Path, workdir: Path, health: bool) -> Iterator[LabProxy]:
    socket_path = workdir / "docker.sock"
    stand_in = StandInDockerApi(socket_path)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    port = free_port(PROXY_ADDRESS)
    arguments = proxy_command(allow_from=f"{AGENT_ADDRESS}/32", listen_ip=PROXY_ADDRESS, port=port, socket_path=str(socket_path))
    if not health:
        # its port is fixed, so only the one test that probes health serves it
        arguments.remove("-allowhealthcheck")
    log = workdir / "socket-proxy.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(binaries / "socket-proxy"), *arguments], stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(PROXY_ADDRESS, port, process)
        yield LabProxy(port, stand_in, socket_path, process, log)
    finally:
        stop(process)
        stand_in.shutdown()
        stand_in.server_close()


@pytest.fixture(scope="module")
def lab_proxy(binaries: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProxy]:
    with running_proxy(binaries, tmp_path_factory.mktemp("dapi"), health=False) as running:
        yield running


def test_the_lab_builds_the_release_the_image_pin_names() -> None:
    assert DOCKER_API_PROXY.reference.rsplit(":", 1)[1] == RELEASE


@pytest.mark.parametrize(("method", "path"), AGENT_CALLS, ids=lambda value: str(value))
def test_each_read_the_agents_make_reaches_the_docker_api_unchanged(lab_proxy: LabProxy, method: str, path: str) -> None:
    sent = f"{path}?all=0&filters=%7B%22label%22%3A%5B%22io.minio-platform.stack%3Dminio-dev%22%5D%7D" if path.endswith("/containers/json") else path
    lab_proxy.stand_in.seen.clear()
    # a log stream ends at once here; test_a_followed_log_stream_is_relayed_line_by_line holds one open
    lab_proxy.stand_in.release_stream.set()
    status, body = lab_proxy.request(method, sent)
    assert status == 200, body
    assert lab_proxy.stand_in.seen == [(method, sent)]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", f"{API}/containers/create", 405),
        ("POST", f"{API}/containers/{ID}/exec", 405),
        ("POST", f"{API}/exec/{ID}/start", 405),
        ("POST", f"{API}/containers/{ID}/start", 405),
        ("PUT", f"{API}/containers/{ID}/archive", 405),
        ("DELETE", f"{API}/containers/{ID}", 405),
        ("GET", f"{API}/containers/{ID}/archive?path=/etc", 403),
        ("GET", f"{API}/containers/{ID}/export", 403),
        ("GET", f"{API}/containers/{ID}/attach/ws?stdin=1", 403),
        ("GET", f"{API}/containers/minio-dev-keycloak/json", 403),
        ("GET", f"{API}/containers/{ID}/json/../archive", 403),
        ("GET", f"{API}/events", 403),
        ("GET", f"{API}/version", 403),
        ("GET", f"{API}/info", 403),
        ("GET", f"{API}/images/json", 403),
        ("HEAD", f"{API}/containers/json", 403),
    ],
    ids=lambda value: str(value),
)
def test_writes_and_other_reads_are_refused_before_the_docker_api(lab_proxy: LabProxy, method: str, path: str, status: int) -> None:
    lab_proxy.stand_in.seen.clear()
    assert lab_proxy.request(method, path)[0] == status
    assert lab_proxy.stand_in.seen == []


def test_a_caller_outside_allowfrom_is_refused_even_the_reads(lab_proxy: LabProxy) -> None:
    lab_proxy.stand_in.seen.clear()
    for method, path in AGENT_CALLS:
        assert lab_proxy.request(method, path, source=OTHER_ADDRESS)[0] == 403, (method, path)
    assert lab_proxy.stand_in.seen == []
    assert lab_proxy.request("GET", f"{API}/containers/json", source=AGENT_ADDRESS)[0] == 200


def test_a_followed_log_stream_is_relayed_line_by_line(lab_proxy: LabProxy) -> None:
    stand_in = lab_proxy.stand_in
    stand_in.release_stream.clear()
    stand_in.stream_finished.clear()
    connection = http.client.HTTPConnection(PROXY_ADDRESS, lab_proxy.port, timeout=15, source_address=(AGENT_ADDRESS, 0))
    try:
        connection.request("GET", f"{API}/containers/{ID}/logs?follow=1&stdout=1&stderr=1&timestamps=1")
        response = connection.getresponse()
        assert response.status == 200
        # the first line arrives while the Docker API still holds the stream open: nothing waits for the end
        assert response.readline() == LOG_LINES[0]
        assert not stand_in.stream_finished.is_set()
        stand_in.release_stream.set()
        assert response.read() == LOG_LINES[1]
    finally:
        stand_in.release_stream.set()
        connection.close()


def test_the_image_s_healthcheck_passes_only_while_the_socket_answers(binaries: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", HEALTH_PORT))
        except OSError:
            skip_or_fail(f"127.0.0.1:{HEALTH_PORT}, socket-proxy's fixed health port, is taken on this host")
    healthcheck = [str(binaries / "healthcheck")]
    with running_proxy(binaries, tmp_path, health=True) as running:
        wait_for_port("127.0.0.1", HEALTH_PORT, running.process)
        assert subprocess.run(healthcheck, capture_output=True, timeout=30, check=False).returncode == 0
        # the socket goes away (a daemon restart, a wrong group would look the same): unhealthy
        running.stand_in.shutdown()
        running.stand_in.server_close()
        running.socket_path.unlink()
        failed = subprocess.run(healthcheck, capture_output=True, text=True, timeout=30, check=False)
        assert failed.returncode != 0 and "503" in failed.stderr, failed.stderr
