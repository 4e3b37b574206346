"""The peer the edge proxy is measured beside: MinIO's reference NGINX configuration, run in the lab.

The directives are those of the S3 server block of minio/minio
docs/orchestration/docker-compose/nginx.conf (the file MinIO's docker-compose example ships),
written out here rather than copied (that repository is AGPL): the same worker and event settings,
its text access log, no upstream keep-alive pool, proxy_buffering and proxy_request_buffering off
with nginx's default buffer sizes, HTTP/1.1 with an empty Connection header, chunked encoding off.
Only what the lab needs differs: loopback addresses, files under the lab folder, workers as root,
and for the TLS figures a TLS listener with the edge's own ssl_* settings (the reference has none).
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bench.origins import REFERENCE_ADDRESS, nginx_pids
from tests.conftest import require_tool
from tests.lab.proxy_lab import free_ports, stop, wait_for_port

REFERENCE_CONF = """\
# MinIO's reference nginx.conf (minio/minio docs/orchestration/docker-compose/nginx.conf), S3 server block
worker_processes auto;
error_log {root}/error.log warn;
pid {root}/nginx.pid;

events {{
    worker_connections 4096;
}}

http {{
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log {root}/access.log main;
    sendfile on;
    keepalive_timeout 65;
    # lab only: temp folders under the lab root (nothing is written there with buffering off)
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{tls}
    upstream minio {{
        server {upstream};
    }}

    server {{
        listen {address}:{port};
{tls_listen}
        ignore_invalid_headers off;
        client_max_body_size 0;
        proxy_buffering off;
        proxy_request_buffering off;

        location / {{
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 300;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            chunked_transfer_encoding off;
            proxy_pass http://minio;
        }}
    }}
}}
"""


def render_reference_conf(
    root: Path, upstream: str, port: int, tls_port: int | None = None, tls: tuple[Path, Path] | None = None, ssl_directives: str = ""
) -> str:
    tls_block = tls_listen = ""
    if tls is not None and tls_port is not None:
        tls_block = f"    # lab only: the edge's TLS settings\n    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};\n{ssl_directives}"
        tls_listen = f"        listen {REFERENCE_ADDRESS}:{tls_port} ssl;"
    return REFERENCE_CONF.format(
        root=root, upstream=upstream, address=REFERENCE_ADDRESS, port=port, tls=tls_block, tls_listen=tls_listen
    )


@dataclass
class ReferenceProxy:
    """Debian's nginx running MinIO's reference configuration in front of `upstream`."""

    root: Path
    upstream: str
    tls: tuple[Path, Path] | None = None
    ssl_directives: str = ""
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    tls_port: int = 0

    def start(self) -> ReferenceProxy:
        nginx = require_tool("nginx")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_ports(REFERENCE_ADDRESS, 2)
        conf = self.root / "nginx.conf"
        conf.write_text(render_reference_conf(self.root, self.upstream, self.port, self.tls_port, self.tls, self.ssl_directives))
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.root), "-e", str(self.root / "error.log"), "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(REFERENCE_ADDRESS, self.port, self.process)
        if self.tls:
            wait_for_port(REFERENCE_ADDRESS, self.tls_port, self.process)
        return self

    def url(self, tls: bool = False) -> str:
        return f"https://{REFERENCE_ADDRESS}:{self.tls_port}" if tls else f"http://{REFERENCE_ADDRESS}:{self.port}"

    def pids(self) -> list[int]:
        assert self.process is not None
        return nginx_pids(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGQUIT)
