"""Real nginx running the rendered edge configuration on loopback, and the stand-in upstreams behind it.

The proxy's configuration comes from the same template and context builder as the deployed
one (`render_nginx_conf`); only the upstream addresses, listen address, ports, file paths and
the address standing in for the edge network's gateway are the lab's. Clients bind to chosen
127.0.3.x source addresses to stand on either side of an allow list. Stand-ins are named as
such: SeaweedFS (an S3 server that is not MinIO) and small recording HTTP servers standing in
for the console, Keycloak and Grafana.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.config import StackConfig, parse_stack_config
from infra.edge import ProxyBuffers, ProxyRuntime, ProxyUpstreams, render_nginx_conf, runbook_page, throwaway_certificate
from tests.conftest import ROOT, require_tool
from tests.lab.ops_servers import release_weed_ports, weed_ports

PROXY_ADDRESS = "127.0.3.1"
S3_GATEWAY_ADDRESSES = ("127.0.3.10", "127.0.3.11", "127.0.3.12", "127.0.3.13")
SEAWEED_ADDRESS = "127.0.3.20"
WEB_STAND_IN_ADDRESS = "127.0.3.30"
STREAM_STAND_IN_ADDRESS = "127.0.3.31"
# client source addresses: inside and outside the allow range the exposure tests render, and the
# address standing in for the edge network's gateway (where the Docker host's own connections come from)
ALLOWED_RANGE = "127.0.3.40/30"
INSIDE_CLIENT_ADDRESS = "127.0.3.41"
OUTSIDE_CLIENT_ADDRESS = "127.0.3.50"
HOST_GATEWAY_ADDRESS = "127.0.3.60"
ACCESS_KEY = "labaccesskey"
SECRET_KEY = "labsecretkey-0123456789"
STARTUP_SECONDS = 30.0


def free_ports(address: str, count: int) -> list[int]:
    """Distinct free ports (all probes stay bound until every port is chosen)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((address, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def free_port(address: str) -> int:
    return free_ports(address, 1)[0]


def wait_for_port(address: str, port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening on {address}:{port}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {address}:{port} after {seconds}s")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def lab_stack(tls: bool = False, max_body_size: str = "2g", identity: dict[str, Any] | None = None, **edge: Any) -> StackConfig:
    """A dev stack whose edge listens on free loopback ports (public host = the lab proxy's address)."""
    s3_port, s3_tls_port, http_port, https_port, admin_port = free_ports(PROXY_ADDRESS, 5)
    settings: dict[str, Any] = {
        "publicHost": PROXY_ADDRESS,
        "s3Port": s3_port,
        "s3TlsPort": s3_tls_port,
        "httpPort": http_port,
        "httpsPort": https_port,
        "adminPort": admin_port,
        "maxBodySize": max_body_size,
        "tls": {"mode": "self-signed" if tls else "off"},
        **edge,
    }
    return parse_stack_config("lab", {"environment": "dev", "name": "lab", "edge": settings, "identity": identity or {}})


def all_upstreams_at(endpoint: str) -> ProxyUpstreams:
    """Every upstream of the proxy (S3, console, Keycloak, Grafana) pointed at one stand-in."""
    return ProxyUpstreams(s3=(endpoint,), console=(endpoint,), keycloak=endpoint, grafana=endpoint)


@dataclass
class LabProxy:
    """Debian's nginx running the rendered configuration under `root`."""

    root: Path
    config: StackConfig
    upstreams: ProxyUpstreams
    buffers: ProxyBuffers = field(default_factory=ProxyBuffers)
    process: subprocess.Popen[bytes] | None = None

    @property
    def runtime(self) -> ProxyRuntime:
        return ProxyRuntime(
            pid_file=str(self.root / "nginx.pid"),
            temp_dir=str(self.root / "temp"),
            access_log=str(self.root / "access.log"),
            error_log=str(self.root / "error.log"),
            certificate=str(self.root / "tls" / "server.crt"),
            key=str(self.root / "tls" / "server.key"),
            listen_address=PROXY_ADDRESS,
            runbook_dir=str(self.root / "runbook"),
            host_gateway=HOST_GATEWAY_ADDRESS,
        )

    @property
    def tls(self) -> bool:
        return self.config.edge.tls_enabled(self.config.environment)

    @property
    def s3_port(self) -> int:
        edge = self.config.edge
        return edge.s3_tls_port if self.tls else edge.s3_port

    @property
    def web_port(self) -> int:
        edge = self.config.edge
        return edge.https_port if self.tls else edge.http_port

    @property
    def admin_port(self) -> int:
        return self.config.edge.admin_port

    def url(self, listener: str, path: str = "/") -> str:
        scheme = "https" if self.tls else "http"
        port = {"s3": self.s3_port, "web": self.web_port, "http": self.config.edge.http_port, "admin": self.admin_port}[listener]
        if listener == "http":
            scheme = "http"
        return f"{scheme}://{PROXY_ADDRESS}:{port}{path}"

    def start(self) -> LabProxy:
        nginx = require_tool("nginx")
        (self.root / "temp").mkdir(parents=True, exist_ok=True)
        if self.tls:
            material = throwaway_certificate(PROXY_ADDRESS)
            (self.root / "tls").mkdir(exist_ok=True)
            (self.root / "tls" / "server.crt").write_text(material.certificate)
            (self.root / "tls" / "server.key").write_text(material.key)
        (self.root / "runbook").mkdir(exist_ok=True)
        (self.root / "runbook" / "index.html").write_text(runbook_page(self.config))
        conf = self.root / "nginx.conf"
        conf.write_text(self.rendered())
        # workers as root: the lab's folders are private to root (the image runs them as 'nginx')
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(PROXY_ADDRESS, self.s3_port, self.process)
        wait_for_port(PROXY_ADDRESS, self.web_port, self.process)
        wait_for_port(PROXY_ADDRESS, self.admin_port, self.process)
        return self

    def rendered(self) -> str:
        """The configuration this proxy runs."""
        return render_nginx_conf(self.config, self.upstreams, self.runtime, self.buffers)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGQUIT)

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def open_temp_files(self) -> list[str]:
        """Files under nginx's temp folders that a worker holds open right now (deleted ones included)."""
        temp = str(self.root / "temp")
        found = []
        for pid in self.worker_pids():
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(temp):
                        found.append(target)
        return found

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log(self) -> list[dict[str, Any]]:
        path = self.root / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def logged(self, path: str, seconds: float = 5.0) -> dict[str, Any]:
        """The latest access-log entry for `path`; nginx writes it just after the response, so wait for it."""
        deadline = time.monotonic() + seconds
        while True:
            entries = [entry for entry in self.access_log() if entry["path"] == path]
            if entries:
                return entries[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no access-log entry for {path} after {seconds}s")
            time.sleep(0.05)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request_from(
    source: str,
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    ca_file: Path | None = None,
) -> Answer:
    """One request from the loopback address `source` (not 127.0.0.1), so nginx sees that client address."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=10, source_address=(source, 0), context=context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10, source_address=(source, 0))
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        answer = connection.getresponse()
        return Answer(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


@contextlib.contextmanager
def running_proxy(
    root: Path, config: StackConfig, upstreams: ProxyUpstreams, buffers: ProxyBuffers | None = None
) -> Iterator[LabProxy]:
    proxy = LabProxy(root, config, upstreams, buffers or ProxyBuffers())
    try:
        yield proxy.start()
    finally:
        proxy.stop()


@dataclass
class SeaweedStandIn:
    """SeaweedFS (an S3 server that is not MinIO) enforcing SigV4: one storage server, N S3 gateways."""

    root: Path
    gateways: int = 4
    verify_signatures: bool = True
    """False: anonymous access (the benchmark, which measures transfer, not signing)."""
    server: subprocess.Popen[bytes] | None = None
    gateway_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    gateway_endpoints: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def start(self) -> SeaweedStandIn:
        weed = str(ROOT / ".venv" / "bin" / "weed")
        if not Path(weed).exists():
            weed = require_tool("weed")
        self.root.mkdir(parents=True, exist_ok=True)
        identities = self.root / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "lab",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        address = SEAWEED_ADDRESS
        ports = weed_ports(address, 7)
        self.ports.extend(ports)
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, debug = ports
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - closed with the process
        self.server = subprocess.Popen(
            [
                weed, "server", f"-ip={address}", f"-ip.bind={address}", f"-dir={self.root / 'data'}",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
                "-master.volumeSizeLimitMB=2048", "-volume.max=20",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                f"-filer.localSocket={self.root / 'filer.sock'}", f"-debug.port={debug}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(address, filer, self.server)
        for index in range(self.gateways):
            gateway_address = S3_GATEWAY_ADDRESSES[index]
            port, grpc = weed_ports(gateway_address, 2)
            self.ports.extend((port, grpc))
            gateway_log = open(self.root / f"gateway{index}.log", "wb")  # noqa: SIM115
            process = subprocess.Popen(
                [
                    weed, "s3", f"-filer={address}:{filer}.{filer_grpc}", f"-ip.bind={gateway_address}", f"-port={port}",
                    f"-port.grpc={grpc}", "-port.lance=0", "-port.iceberg=0",
                    f"-localSocket={self.root / f'gateway{index}.sock'}",
                    *([f"-config={identities}"] if self.verify_signatures else []),
                ],
                stdout=gateway_log,
                stderr=subprocess.STDOUT,
            )
            self.gateway_processes.append(process)
            self.gateway_endpoints.append(f"{gateway_address}:{port}")
        for endpoint, process in zip(self.gateway_endpoints, self.gateway_processes):
            host, listening = endpoint.split(":")
            wait_for_port(host, int(listening), process)
        return self

    def kill_gateway(self, index: int) -> None:
        stop(self.gateway_processes[index], signal.SIGKILL)

    def stop(self) -> None:
        # throwaway data, and weed takes long to honour SIGTERM
        for process in self.gateway_processes:
            stop(process, signal.SIGKILL)
        if self.server is not None:
            stop(self.server, signal.SIGKILL)
        release_weed_ports(self.ports)


@contextlib.contextmanager
def running_seaweed(root: Path, gateways: int = 4, verify_signatures: bool = True) -> Iterator[SeaweedStandIn]:
    stand_in = SeaweedStandIn(root, gateways, verify_signatures)
    try:
        yield stand_in.start()
    finally:
        stand_in.stop()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


class QuietHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: HTTP/1.1 (connections kept alive, as nginx keeps its upstreams)
    and no access line on stderr per request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


class RecordingStandIn:
    """An HTTP server standing in for the console, Keycloak or Grafana: records what reaches it.

    It also answers a WebSocket upgrade (101, then echoes bytes back), streams a download of
    any size (`GET /download/<bytes>`) and drains uploads, counting bytes as they pass. A test
    may make its answers carry `response_headers` or wait `delay_seconds` before answering.
    """

    def __init__(self, address: str) -> None:
        self.requests: list[Recorded] = []
        self.received = 0
        self.sent = 0
        self.download_finished = threading.Event()
        self.response_headers: dict[str, str] = {}
        self.delay_seconds = 0.0
        stand_in = self

        class Handler(QuietHandler):
            def record(self) -> None:
                stand_in.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

            def answer(self, body: bytes, status: int = 200) -> None:
                if stand_in.delay_seconds:
                    time.sleep(stand_in.delay_seconds)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                for name, value in stand_in.response_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - name the base class dispatches to
                self.record()
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    self.websocket_echo()
                elif self.path.startswith("/download/"):
                    self.download(int(self.path.rsplit("/", 1)[1]))
                else:
                    self.answer(f"stand-in saw {self.path}".encode())

            def do_PUT(self) -> None:  # noqa: N802
                self.record()
                remaining = int(self.headers.get("Content-Length", "0"))
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    stand_in.received += len(chunk)
                self.answer(f"received {stand_in.received}".encode())

            do_POST = do_PUT  # noqa: N815

            def download(self, size: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"\x5a" * (1 << 20)
                left = size
                while left:
                    piece = chunk[: min(left, len(chunk))]
                    self.wfile.write(piece)
                    left -= len(piece)
                    stand_in.sent += len(piece)
                stand_in.download_finished.set()

            def websocket_echo(self) -> None:
                self.send_response(101, "Switching Protocols")
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", "stand-in")
                self.end_headers()
                self.wfile.flush()
                data = self.connection.recv(1024)
                self.connection.sendall(b"echo:" + data)
                self.close_connection = True

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> RecordingStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def reset(self) -> None:
        self.requests.clear()
        self.received = self.sent = 0
        self.download_finished.clear()
        self.response_headers = {}
        self.delay_seconds = 0.0


@contextlib.contextmanager
def recording_stand_in(address: str) -> Iterator[RecordingStandIn]:
    stand_in = RecordingStandIn(address).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
