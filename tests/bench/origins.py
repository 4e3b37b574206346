"""The upstream the proxy benchmark measures against: Debian's nginx, as cheap as an origin gets. Not MinIO.

One nginx serves every workload, on its plain and its TLS listener:

  GET  /bench/<file>           the file, with sendfile (plain) or through nginx's output buffers (TLS)
  PUT  /bench/put.bin          a small body, which arrives with the request head: answered once it is read
  PUT  /bench/upload/<name>    a large body, read whole into one in-memory buffer (client_body_buffer_size)
                               before the answer, so a 200 means every byte arrived; the answer says how
                               many bytes the request took (X-Bench-Received: $request_length)

nginx's discard path (`return 200` on a large body) would be cheaper still, but it answers before the
body has arrived: a proxy in front of it then relays an early answer and measures nothing. The
large-body buffer is kept between requests (glibc's mmap and trim thresholds raised for the origin),
so a PUT costs the copy into it and no page faults; bodies larger than the buffer (the 5 GiB memory
run) go to a temporary file in tmpfs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool
from tests.lab.proxy_lab import free_ports, stop, wait_for_port

# the benchmark's own processes, apart from the lab tests' 127.0.3.x and the backup benchmark's 127.0.5.x
ORIGIN_ADDRESS = "127.0.6.11"
REFERENCE_ADDRESS = "127.0.6.20"
BUCKET = "bench"

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
    client_body_temp_path {body_temp};
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

        # read the whole body into memory (the mirror module reads it before the content phase),
        # then answer: the static handler refuses PUT with 405, which becomes the 200 below
        location /{bucket}/upload/ {{
            client_body_buffer_size {body_buffer};
            mirror /read-body;
            mirror_request_body on;
            error_page 405 = @stored;
        }}

        location = /read-body {{
            internal;
            return 204;
        }}

        location @stored {{
            add_header X-Bench-Received $request_length;
            return 200;
        }}
    }}
}}
"""


def nginx_pids(master: int) -> list[int]:
    """The master and its workers."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return [master]
    return [master, *(int(pid) for pid in children)]


@dataclass
class NginxOrigin:
    """nginx on ORIGIN_ADDRESS serving `files` (and, with `tls`, over TLS too)."""

    root: Path
    files: Path
    body_buffer: int
    """Bytes of the in-memory buffer a large PUT is read into: at least the largest measured object."""
    tls: tuple[Path, Path] | None = None
    ssl_directives: str = ""
    """The edge's own ssl_* settings, so the origin's TLS listener negotiates what the proxy's does."""
    workers: str = "auto"
    """As a server on its own machine runs: one worker per core."""
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    tls_port: int = 0
    body_temp: Path | None = None

    def start(self) -> NginxOrigin:
        nginx = require_tool("nginx")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_ports(ORIGIN_ADDRESS, 2)
        self.body_temp = Path(tempfile.mkdtemp(prefix="bench-origin-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        tls_block = tls_listen = ""
        if self.tls:
            tls_block = f"    ssl_certificate {self.tls[0]};\n    ssl_certificate_key {self.tls[1]};\n{self.ssl_directives}"
            tls_listen = f"        listen {ORIGIN_ADDRESS}:{self.tls_port} ssl;"
        conf = self.root / "nginx.conf"
        conf.write_text(
            ORIGIN_CONF.format(
                workers=self.workers, root=self.root, files=self.files, address=ORIGIN_ADDRESS, port=self.port,
                tls=tls_block, tls_listen=tls_listen, bucket=BUCKET, body_buffer=self.body_buffer, body_temp=self.body_temp,
            )
        )
        # keep the large-body buffer mapped from one PUT to the next (glibc would unmap it at every free)
        environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
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
            stop(self.process, signal.SIGQUIT)
        if self.body_temp is not None:
            shutil.rmtree(self.body_temp, ignore_errors=True)


@contextlib.contextmanager
def running_origin(origin: NginxOrigin) -> Iterator[NginxOrigin]:
    try:
        yield origin.start()
    finally:
        origin.stop()
