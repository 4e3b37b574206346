"""The upstreams the proxy benchmark measures against: neither is MinIO, both are as cheap as an origin gets.

object sink   a small HTTP/1.1 server for large objects: drains PUT bodies without copying them to
              user space (recv with MSG_TRUNC), answers GETs with sendfile(), and tells how many body
              bytes it received (X-Bench-Received), so a benchmark can check that every byte arrived.
              With TLS it decrypts and encrypts through Python's ssl module (OpenSSL, like nginx).
nginx origin  Debian's nginx serving small files with sendfile and answering 4 KiB PUTs from its read
              buffer, keep-alive without a request limit: the small-object origin.

Run the sink on its own (the benchmark starts it as a child process, so its CPU time is its own):

    python -m tests.bench.origins sink ADDRESS PORT FOLDER [--tls-port PORT --certificate PEM --key PEM]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, require_tool
from tests.lab.proxy_lab import free_ports, stop, wait_for_port

# the benchmark's own processes, apart from the lab tests' 127.0.3.x and the backup benchmark's 127.0.5.x
SINK_ADDRESS = "127.0.6.10"
ORIGIN_ADDRESS = "127.0.6.11"
REFERENCE_ADDRESS = "127.0.6.20"

RELAY_CHUNK = 1 << 20


def read_head(sock: socket.socket, pending: bytearray) -> bytes | None:
    """One request head (up to the blank line); what follows it stays in `pending`."""
    while b"\r\n\r\n" not in pending:
        data = sock.recv(65536)
        if not data:
            return None
        pending += data
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    pending[:] = rest
    return head


def drain(sock: socket.socket, remaining: int, tls: bool) -> int:
    """Read and discard `remaining` body bytes; plain TCP discards them in the kernel (MSG_TRUNC)."""
    buffer = bytearray(RELAY_CHUNK)
    view = memoryview(buffer)
    received = 0
    while remaining > 0:
        want = min(remaining, RELAY_CHUNK)
        got = sock.recv_into(view, want) if tls else sock.recv_into(view, want, socket.MSG_TRUNC)
        if not got:
            break
        received += got
        remaining -= got
    return received


def send_file(sock: socket.socket, path: Path, tls: bool) -> None:
    size = path.stat().st_size
    with path.open("rb") as body:
        if not tls:
            sock.sendfile(body, 0, size)
            return
        buffer = bytearray(RELAY_CHUNK)
        while got := body.readinto(buffer):
            sock.sendall(memoryview(buffer)[:got])


def serve_sink(address: str, port: int, folder: Path, tls_port: int | None, certificate: str | None, key: str | None) -> None:
    """GET /<bucket>/<name> sends folder/<name>; PUT drains the body; both keep the connection open."""

    def handler_for(context: ssl.SSLContext | None) -> type[socketserver.BaseRequestHandler]:
        class Connection(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                # port probes and clients that hang up end their connection, not the server
                with contextlib.suppress(OSError):
                    self.serve(self.request if context is None else context.wrap_socket(self.request, server_side=True))

            def serve(self, sock: socket.socket) -> None:
                pending = bytearray()
                while (head := read_head(sock, pending)) is not None:
                    lines = head.decode("latin-1").split("\r\n")
                    method, target = lines[0].split(" ")[:2]
                    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                    length = int(headers.get("content-length", "0"))
                    already = min(len(pending), length)
                    del pending[:already]
                    received = already + drain(sock, length - already, context is not None)
                    if method == "GET":
                        path = folder / target.rsplit("/", 1)[-1]
                        if not path.is_file():
                            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                            continue
                        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {path.stat().st_size}\r\n\r\n".encode())
                        send_file(sock, path, context is not None)
                    else:
                        sock.sendall(f"HTTP/1.1 200 OK\r\nX-Bench-Received: {received}\r\nContent-Length: 0\r\n\r\n".encode())

        return Connection

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    servers = [Server((address, port), handler_for(None))]
    if tls_port is not None:
        assert certificate and key
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        servers.append(Server((address, tls_port), handler_for(context)))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@dataclass
class ObjectSink:
    """The large-object origin, as a child process on SINK_ADDRESS."""

    folder: Path
    tls: tuple[Path, Path] | None = None
    """(certificate, key) to open a TLS listener too."""
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    tls_port: int = 0

    def start(self) -> ObjectSink:
        self.port, self.tls_port = free_ports(SINK_ADDRESS, 2)
        command = [sys.executable, "-m", "tests.bench.origins", "sink", SINK_ADDRESS, str(self.port), str(self.folder)]
        if self.tls:
            command += ["--tls-port", str(self.tls_port), "--certificate", str(self.tls[0]), "--key", str(self.tls[1])]
        self.process = subprocess.Popen(command, cwd=ROOT)
        wait_for_port(SINK_ADDRESS, self.port, self.process)
        if self.tls:
            wait_for_port(SINK_ADDRESS, self.tls_port, self.process)
        return self

    def endpoint(self, tls: bool = False) -> str:
        return f"{SINK_ADDRESS}:{self.tls_port if tls else self.port}"

    def pids(self) -> list[int]:
        assert self.process is not None
        return [self.process.pid]

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


ORIGIN_CONF = """\
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=64 inactive=300s;
    open_file_cache_valid 300s;
    # no limit: a connection the client keeps stays open, as Go's HTTP server (MinIO) does
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{tls}
    server {{
        listen {address}:{port};
{tls_listen}
        root {files};
        # a 4 KiB body arrives with its head, in the first read: `return` answers once it is consumed
        client_header_buffer_size 16k;
        client_max_body_size 0;
        location / {{
            if ($request_method = PUT) {{
                return 200;
            }}
        }}
    }}
}}
"""


@dataclass
class NginxOrigin:
    """The small-object origin: nginx on ORIGIN_ADDRESS serving `files` (and, with `tls`, over TLS too)."""

    root: Path
    files: Path
    tls: tuple[Path, Path] | None = None
    ssl_directives: str = ""
    """The edge's own ssl_* settings, so the origin's TLS listener negotiates what the proxy's does."""
    workers: str = "auto"
    """As a server on its own machine runs: one worker per core."""
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    tls_port: int = 0

    def start(self) -> NginxOrigin:
        nginx = require_tool("nginx")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_ports(ORIGIN_ADDRESS, 2)
        tls_block = tls_listen = ""
        if self.tls:
            tls_block = f"    ssl_certificate {self.tls[0]};\n    ssl_certificate_key {self.tls[1]};\n{self.ssl_directives}"
            tls_listen = f"        listen {ORIGIN_ADDRESS}:{self.tls_port} ssl;"
        conf = self.root / "nginx.conf"
        conf.write_text(
            ORIGIN_CONF.format(
                workers=self.workers, root=self.root, files=self.files, address=ORIGIN_ADDRESS, port=self.port,
                tls=tls_block, tls_listen=tls_listen,
            )
        )
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(ORIGIN_ADDRESS, self.port, self.process)
        if self.tls:
            wait_for_port(ORIGIN_ADDRESS, self.tls_port, self.process)
        return self

    def endpoint(self, tls: bool = False) -> str:
        return f"{ORIGIN_ADDRESS}:{self.tls_port if tls else self.port}"

    def pids(self) -> list[int]:
        assert self.process is not None
        return nginx_pids(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            import signal

            stop(self.process, signal.SIGQUIT)


def nginx_pids(master: int) -> list[int]:
    """The master and its workers."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return [master]
    return [master, *(int(pid) for pid in children)]


@contextlib.contextmanager
def running(server: ObjectSink | NginxOrigin) -> Iterator[ObjectSink | NginxOrigin]:
    try:
        yield server.start()
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sink = commands.add_parser("sink")
    sink.add_argument("address")
    sink.add_argument("port", type=int)
    sink.add_argument("folder", type=Path)
    sink.add_argument("--tls-port", type=int)
    sink.add_argument("--certificate")
    sink.add_argument("--key")
    args = parser.parse_args()
    serve_sink(args.address, args.port, args.folder, args.tls_port, args.certificate, args.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
