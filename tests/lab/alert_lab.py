"""The alert path on loopback: real Prometheus and Alertmanager running the project's rendered configuration.

- STAND-IN MinIO nodes: small HTTP servers serving MinIO's metrics v2 text format at
  /minio/v2/metrics/{cluster,node,bucket}, checking the bearer JWT the way MinIO does (HS512,
  signed with the root secret key), and answering /minio/health/cluster with the status and headers
  the pinned MinIO source sends (`ClusterState.cluster_health`). They are fixtures, not MinIO; nothing
  they do is MinIO behaviour.
- The real blackbox exporter (Debian's) on the rendered module config, probing the stand-ins' health
  endpoint for job minio-health.
- A stand-in for the monitoring services' /metrics (Loki, the log agent, the audit sink are not here).
- One stand-in per platform job (Grafana, Keycloak, the edge proxy's exporter), each its own server, so
  that one can stop while the others answer; the exporter's reports `nginx_up`.
- A webhook receiver recording every Alertmanager notification with its arrival time.

Used by tests/lab/test_alert_path.py, test_platform_alerts.py, test_identity_alert.py and
tests/bench/bench_alert_latency.py. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import jwt
import jwt.warnings

from infra.__main__ import load_stack
from infra.config import StackConfig
from infra.monitoring import blackbox_exporter
from infra.monitoring.metrics import PLATFORM_JOBS, ScrapeAddresses, alertmanager_yml, minio_metrics_token, prometheus_yml, rule_files
from tests.conftest import require_tool
from tests.lab.ops_servers import free_port

# the loopback range of this layer's alert tests: one address per server
PROMETHEUS_HOST = "127.0.4.2"
ALERTMANAGER_HOST = "127.0.4.3"
WEBHOOK_HOST = "127.0.4.4"
SERVICES_HOST = "127.0.4.5"
PLATFORM_HOST = "127.0.4.6"
BLACKBOX_HOST = "127.0.4.7"
NODE_HOSTS = ("127.0.4.10", "127.0.4.11", "127.0.4.12", "127.0.4.13")

ROOT_USER = "labrootuser"
ROOT_PASSWORD = "lab-root-secret-key-0123456789abcdef0123"
T = TypeVar("T")
# the jobs that scrape MinIO's metrics, as against minio-health, which probes its health endpoint
MINIO_METRICS_JOBS = ("minio-cluster", "minio-nodes", "minio-bucket")


def wait_for(check: Callable[[], T | None], what: str, timeout: float, interval: float = 0.25) -> T:
    """The first truthy result of `check`, or TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError as error:
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not seen within {timeout:.0f}s (last error: {last_error})")
        time.sleep(interval)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post_json(url: str, payload: Any) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


@dataclass
class ClusterState:
    """What the stand-in nodes report: which of them are up, as a 4 x 2 layout with EC:4 would."""

    nodes: int = 4
    drives_per_node: int = 2
    online: set[int] = field(default_factory=lambda: {1, 2, 3, 4})
    iam_offline: set[int] = field(default_factory=set)
    """Nodes whose IAM has not loaded (OpenID discovery unreachable): only their health answer shows it."""
    write_quorum: int = 5
    """Of the one 8-drive erasure set with EC:4: drives - parity, plus 1 as parity is half the set."""

    def cluster_health(self, index: int) -> tuple[int, dict[str, str]]:
        """Status and headers of /minio/health/cluster as the pinned MinIO source answers it (GET, no query):
        cmd/healthcheck-handler.go `checkHealth` (lines 32-53 at pgsty/minio RELEASE.2025-12-03T12-00-00Z and
        minio/minio RELEASE.2025-10-15T17-29-55Z: with IAM not initialised, header x-minio-server-status
        "iam-offline" and 503, before any quorum is computed) and `ClusterCheckHandler` (lines 56-90:
        x-minio-write-quorum and x-minio-storage-class-defaults, 200 with write quorum, 503 without);
        `writeResponse` (cmd/api-response.go) adds Server (MinioStoreName, "MinIO" in pgsty/minio; the Silo
        fork's healthcheck docs show "Silo", and nothing reads it) and Accept-Ranges (setCommonHeaders) and
        Content-Length 0, no Content-Type (mimeNone); addCustomHeadersMiddleware (cmd/generic-handlers.go)
        the security headers, x-amz-request-id and, in distributed mode, x-amz-id-2. Go writes header names
        canonicalised. (Over HTTP/1.0, as every stand-in here; the probe does not look at the version.)"""
        headers = {
            "Server": "MinIO",
            "Accept-Ranges": "bytes",
            "X-Xss-Protection": "1; mode=block",
            "X-Content-Type-Options": "nosniff",
            "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
            "X-Amz-Request-Id": f"{time.time_ns():X}",
            "X-Amz-Id-2": hashlib.sha256(f"minio{index}:9000".encode()).hexdigest(),
            "Content-Length": "0",
        }
        if index in self.iam_offline:
            return 503, {"X-Minio-Server-Status": blackbox_exporter.IAM_OFFLINE_STATUS, **headers}
        quorum = {"X-Minio-Write-Quorum": str(self.write_quorum), "X-Minio-Storage-Class-Defaults": "true"}
        healthy = len(self.online) * self.drives_per_node >= self.write_quorum
        return (200 if healthy else 503), {**quorum, **headers}

    def cluster_metrics(self, server: str) -> str:
        online_drives = len(self.online) * self.drives_per_node
        offline_drives = (self.nodes - len(self.online)) * self.drives_per_node
        labels = f'server="{server}"'
        set_labels = f'pool="0",server="{server}",set="0"'
        lines = [
            ("minio_cluster_nodes_online_total", labels, len(self.online)),
            ("minio_cluster_nodes_offline_total", labels, self.nodes - len(self.online)),
            ("minio_cluster_drive_online_total", labels, online_drives),
            ("minio_cluster_drive_offline_total", labels, offline_drives),
            ("minio_cluster_health_status", labels, 1 if online_drives >= 5 else 0),
            ("minio_cluster_health_erasure_set_online_drives", set_labels, online_drives),
            ("minio_cluster_health_erasure_set_read_quorum", set_labels, 4),
            ("minio_cluster_health_erasure_set_write_quorum", set_labels, 5),
            ("minio_cluster_health_erasure_set_healing_drives", set_labels, 0),
            ("minio_cluster_capacity_usable_total_bytes", labels, 4 * 10**12),
            ("minio_cluster_capacity_usable_free_bytes", labels, 3 * 10**12),
        ]
        return "".join(f"# TYPE {name} gauge\n{name}{{{label}}} {value}\n" for name, label, value in lines)

    @staticmethod
    def node_metrics(server: str) -> str:
        return (
            "# TYPE minio_s3_requests_total counter\n"
            f'minio_s3_requests_total{{api="getobject",server="{server}"}} 100\n'
            "# TYPE minio_s3_requests_5xx_errors_total counter\n"
            f'minio_s3_requests_5xx_errors_total{{api="getobject",server="{server}"}} 0\n'
            "# TYPE minio_node_process_uptime_seconds gauge\n"
            f'minio_node_process_uptime_seconds{{server="{server}"}} 3600\n'
        )

    @staticmethod
    def bucket_metrics(server: str) -> str:
        return (
            "# TYPE minio_bucket_usage_total_bytes gauge\n"
            f'minio_bucket_usage_total_bytes{{bucket="photos",server="{server}"}} 1048576\n'
        )


class _MetricsHandler(BaseHTTPRequestHandler):
    server: StandInServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: scrapes arrive every second."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == blackbox_exporter.HEALTH_PATH and self.server.index:
            status, headers = self.server.state.cluster_health(self.server.index)
            self.send_response_only(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Date", self.date_time_string())
            self.end_headers()
            return
        body, status = self.server.answer(self.path, self.headers.get("Authorization"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


STAND_IN_METRICS = "# TYPE standin_up gauge\nstandin_up 1\n"


class StandInServer(ThreadingHTTPServer):
    """A STAND-IN for one MinIO node (or, with index 0, for a service's /metrics)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, index: int, state: ClusterState, metrics: Callable[[], str]) -> None:
        super().__init__((host, port), _MetricsHandler)
        self.index, self.state, self.metrics = index, state, metrics
        self.server_label = f"{host}:{port}"

    def answer(self, path: str, authorization: str | None) -> tuple[str, int]:
        if path == "/metrics":
            return self.metrics(), 200
        if not self._token_valid(authorization):
            return "Access Denied.", 403
        if path == "/minio/v2/metrics/cluster":
            return self.state.cluster_metrics(self.server_label), 200
        if path == "/minio/v2/metrics/node":
            return self.state.node_metrics(self.server_label), 200
        if path == "/minio/v2/metrics/bucket":
            return self.state.bucket_metrics(self.server_label), 200
        return "not found", 404

    @staticmethod
    def _token_valid(authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        try:
            with warnings.catch_warnings():
                # MinIO's secret keys are shorter than RFC 7518 recommends for HS512; MinIO accepts them
                warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                claims = jwt.decode(authorization[7:], ROOT_PASSWORD, algorithms=["HS512"], issuer="prometheus")
        except jwt.PyJWTError:
            return False
        return bool(claims.get("sub") == ROOT_USER)


@dataclass
class StandInNode:
    index: int
    host: str
    port: int
    state: ClusterState
    server: StandInServer | None = None
    thread: threading.Thread | None = None
    metrics: str = STAND_IN_METRICS
    """What it serves at /metrics; may change while it runs."""

    def start(self) -> None:
        self.server = StandInServer(self.host, self.port, self.index, self.state, lambda: self.metrics)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.state.online.add(self.index)

    def stop(self) -> None:
        """Like a stopped container: the port refuses connections, and the peers report the node offline."""
        self.state.online.discard(self.index)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None


@dataclass
class WebhookReceiver:
    """Records every Alertmanager notification (payload version 4) with the time it arrived."""

    host: str
    port: int
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def notifications(self, alertname: str, status: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival, alert) of every alert named `alertname` with `status` ('firing' or 'resolved')."""
        with self.lock:
            return [
                (arrived, alert)
                for arrived, payload in self.received
                for alert in payload.get("alerts", [])
                if alert["labels"].get("alertname") == alertname and alert["status"] == status
            ]

    @contextmanager
    def serving(self) -> Iterator[WebhookReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@dataclass(frozen=True)
class LabTiming:
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    group_wait: str = "1s"
    group_interval: str = "1s"


def lab_config(timing: LabTiming, webhook_url: str) -> StackConfig:
    """The dev stack's configuration with the lab's intervals and webhook: everything else as rendered for dev."""
    config = load_stack("dev", None)
    monitoring = config.monitoring.model_copy(
        update={
            "scrape_interval": timing.scrape_interval,
            "bucket_scrape_interval": timing.scrape_interval,
            "evaluation_interval": timing.evaluation_interval,
            "alert_group_wait": timing.group_wait,
            "alert_group_interval": timing.group_interval,
            "webhook_url": webhook_url,
        }
    )
    return config.model_copy(update={"monitoring": monitoring})


def exporter_metrics(nginx_up: int) -> str:
    """What nginx-prometheus-exporter serves, in part: nginx_up 0 when nginx's stub_status does not answer."""
    return f"# TYPE nginx_up gauge\nnginx_up {nginx_up}\n"


@dataclass
class AlertLab:
    config: StackConfig
    nodes: list[StandInNode]
    receiver: WebhookReceiver
    prometheus_url: str
    alertmanager_url: str
    logs: Path
    platform: dict[str, StandInNode] = field(default_factory=dict)
    """The stand-in of each platform job (grafana, keycloak, edge-proxy), by job."""
    blackbox_url: str = ""
    """The real blackbox exporter probing the stand-ins' health endpoint."""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector Prometheus answers for `expr`."""
        answer = get_json(f"{self.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def prometheus_alerts(self, alertname: str) -> list[dict[str, Any]]:
        answer = get_json(f"{self.prometheus_url}/api/v1/alerts")
        return [alert for alert in answer["data"]["alerts"] if alert["labels"]["alertname"] == alertname]

    def alert_state(self, alertname: str, **labels: str) -> str | None:
        """'pending', 'firing' or None for the alert with these labels in Prometheus."""
        for alert in self.prometheus_alerts(alertname):
            if all(alert["labels"].get(key) == value for key, value in labels.items()):
                return str(alert["state"])
        return None

    def minio_targets_up(self) -> bool:
        answer = get_json(f"{self.prometheus_url}/api/v1/targets?state=active")
        minio = [t for t in answer["data"]["activeTargets"] if t["labels"]["job"] in MINIO_METRICS_JOBS]
        return len(minio) == 3 * len(self.nodes) and all(t["health"] == "up" for t in minio)

    def health_probes_up(self) -> bool:
        """Every node's probe scraped through the exporter (`up` is the exporter's, not the node's)."""
        answer = get_json(f"{self.prometheus_url}/api/v1/targets?state=active")
        probes = [t for t in answer["data"]["activeTargets"] if t["labels"]["job"] == blackbox_exporter.HEALTH_JOB]
        return len(probes) == len(self.nodes) and all(t["health"] == "up" for t in probes)

    def platform_targets_up(self) -> bool:
        answer = get_json(f"{self.prometheus_url}/api/v1/targets?state=active")
        platform = [t for t in answer["data"]["activeTargets"] if t["labels"]["job"] in PLATFORM_JOBS]
        return len(platform) == len(PLATFORM_JOBS) and all(t["health"] == "up" for t in platform)


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def alert_lab(workdir: Path, timing: LabTiming = LabTiming()) -> Iterator[AlertLab]:
    """Stand-in nodes, a webhook receiver, and real Alertmanager and Prometheus on their rendered configs."""
    prometheus_binary = require_tool("prometheus")
    alertmanager_binary = require_tool("prometheus-alertmanager")
    blackbox_binary = require_tool("prometheus-blackbox-exporter")
    state = ClusterState()
    nodes = [StandInNode(index, host, free_port(host), state) for index, host in enumerate(NODE_HOSTS, start=1)]
    services = StandInNode(0, SERVICES_HOST, free_port(SERVICES_HOST), ClusterState())
    platform = {job: StandInNode(0, PLATFORM_HOST, free_port(PLATFORM_HOST), ClusterState()) for job in PLATFORM_JOBS}
    platform["edge-proxy"].metrics = exporter_metrics(nginx_up=1)
    receiver = WebhookReceiver(WEBHOOK_HOST, free_port(WEBHOOK_HOST))
    prometheus_address = f"{PROMETHEUS_HOST}:{free_port(PROMETHEUS_HOST)}"
    alertmanager_address = f"{ALERTMANAGER_HOST}:{free_port(ALERTMANAGER_HOST)}"
    blackbox_address = f"{BLACKBOX_HOST}:{free_port(BLACKBOX_HOST)}"
    config = lab_config(timing, receiver.url)

    rules_dir, data = workdir / "rules", workdir / "data"
    rules_dir.mkdir(parents=True)
    for name, content in rule_files(config).items():
        (rules_dir / name).write_text(content)
    token_file = workdir / "minio-metrics-token"
    token_file.write_text(minio_metrics_token(ROOT_USER, ROOT_PASSWORD) + "\n")
    services_address = f"{services.host}:{services.port}"
    addresses = ScrapeAddresses(
        prometheus=prometheus_address,
        alertmanager=alertmanager_address,
        loki=services_address,
        log_agent=services_address,
        audit_sink=services_address,
        minio_nodes=tuple((f"minio{node.index}", f"{node.host}:{node.port}") for node in nodes),
        **{field: f"{platform[job].host}:{platform[job].port}" for field, job in (("grafana", "grafana"), ("keycloak", "keycloak"), ("edge_proxy", "edge-proxy"))},
        blackbox_exporter=blackbox_address,
    )
    (workdir / "blackbox.yml").write_text(blackbox_exporter.blackbox_yml(config))
    (workdir / "prometheus.yml").write_text(prometheus_yml(config, addresses, str(rules_dir), str(token_file)))
    (workdir / "alertmanager.yml").write_text(alertmanager_yml(config, token_file=None))

    processes: list[subprocess.Popen[bytes]] = []
    for node in [*nodes, services, *platform.values()]:
        node.start()
    try:
        with receiver.serving():
            alertmanager = _start(
                [
                    alertmanager_binary,
                    f"--config.file={workdir / 'alertmanager.yml'}",
                    f"--storage.path={data / 'alertmanager'}",
                    f"--web.listen-address={alertmanager_address}",
                    "--cluster.listen-address=",
                ],
                workdir / "alertmanager.log",
            )
            processes.append(alertmanager)
            blackbox = _start(
                [
                    blackbox_binary,
                    f"--config.file={workdir / 'blackbox.yml'}",
                    f"--web.listen-address={blackbox_address}",
                ],
                workdir / "blackbox.log",
            )
            processes.append(blackbox)
            prometheus = _start(
                [
                    prometheus_binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={data / 'prometheus'}",
                    f"--web.listen-address={prometheus_address}",
                    # an alert that fires before Prometheus has discovered Alertmanager (the Watchdog, at the
                    # first evaluation) is otherwise re-sent only after the default 1m
                    "--rules.alert.resend-delay=1s",
                ],
                workdir / "prometheus.log",
            )
            processes.append(prometheus)
            lab = AlertLab(
                config,
                nodes,
                receiver,
                f"http://{prometheus_address}",
                f"http://{alertmanager_address}",
                workdir,
                platform,
                f"http://{blackbox_address}",
            )
            for process, name, url in (
                (alertmanager, "Alertmanager", f"{lab.alertmanager_url}/-/ready"),
                (blackbox, "blackbox exporter", f"{lab.blackbox_url}/-/healthy"),
                (prometheus, "Prometheus", f"{lab.prometheus_url}/-/ready"),
            ):
                wait_for(
                    lambda: process.poll() is None and urllib.request.urlopen(url, timeout=2).status == 200,
                    f"{name} ready (log: {workdir})",
                    timeout=30,
                )
            wait_for(lab.minio_targets_up, "every stand-in node scraped and up", timeout=30)
            wait_for(lab.health_probes_up, "every stand-in node probed through the exporter", timeout=30)
            wait_for(lab.platform_targets_up, "every platform stand-in scraped and up", timeout=30)
            wait_for(
                lambda: get_json(f"{lab.prometheus_url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"],
                "Alertmanager discovered by Prometheus",
                timeout=30,
            )
            yield lab
    finally:
        for process in reversed(processes):
            _stop(process)
        for node in [*nodes, services, *platform.values()]:
            node.stop()

