"""Hosts apart, as network namespaces: a stack with `storage.hosts` whose main host and four node hosts
are namespaces the lab creates and joins through a bridge, never touching the host's own network.

    switch namespace: bridge br0
      ├─ v-main   ── eth0 of the main namespace    10.213.0.10  nginx, Prometheus and the blackbox exporter on their rendered configs
      ├─ v-minio1 ── eth0 of the minio1 namespace  10.213.0.11  S3 stand-in, HTTPS :9000
      └─ ...         minio4                        10.213.0.14

Names resolve as Docker's `hosts` entries make them: `ip netns exec NAME` bind-mounts
/etc/netns/NAME/hosts over /etc/hosts, and the lab writes there what `node_host_entries` gives each
host. Cutting a host's link is `ip link set v-minioN down` in the switch namespace.

The nodes are stand-ins (a small Python TLS HTTP server, not MinIO); their certificates come from the
stand-in CA of tests/cluster_pki.py, with exactly the names the program's pulumi-tls certificates carry
(`node_certificate_names`, `node_certificate_addresses`). Lab code reaches into a namespace by switching
only the calling thread's network namespace (setns) while it opens a socket: a socket stays in the
namespace it was created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from infra.config import StackConfig, parse_stack_config
from infra.edge import ProxyRuntime, ProxyUpstreams, render_nginx_conf, runbook_page
from infra.hosts import CLUSTER_TLS_NAME, node_addresses, node_certificate_addresses, node_certificate_names, node_host_entries
from infra.monitoring import blackbox_exporter
from infra.monitoring.metrics import PROMETHEUS_PORT, ScrapeAddresses, minio_metrics_token
from infra.storage import API_PORT, node_name
from tests.cluster_pki import PemPair, StandInCa
from tests.conftest import require_root, require_tool
from tests.prometheus_files import write_prometheus_files
from tests.lab.proxy_lab import QuietHandler, stop

T = TypeVar("T")

# a private /24 the lab owns: it exists only inside the lab's namespaces
LAB_SUBNET = ipaddress.IPv4Network("10.213.0.0/24")
MAIN_ADDRESS = "10.213.0.10"
NODES = 4
NODE_ADDRESSES = tuple(f"10.213.0.{11 + index}" for index in range(NODES))
NAMESPACE_PREFIX = "mplab"
NETNS_RUN_DIR = Path("/run/netns")
NETNS_ETC_DIR = Path("/etc/netns")
# where a second proxy listens inside the main namespace, beside the first on MAIN_ADDRESS
SECOND_PROXY_ADDRESS = "127.0.0.1"
WRONG_CERTIFICATE_PORT = 9100
# the lab's proxy gives up on a silent node quickly; the template and every other setting are the stack's
LAB_FAILOVER = {"connectTimeoutSeconds": 1, "readTimeoutSeconds": 3, "failTimeoutSeconds": 30, "maxFails": 1, "tries": 3}
SCRAPE_INTERVAL = "1s"
COMMAND_SECONDS = 10.0
STARTUP_SECONDS = 20.0
ACCESS_KEY, SECRET_KEY = "labmetrics", "labmetrics-secret-0123"

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def wait_until(check: Callable[[], T | None], what: str, seconds: float, interval: float = 0.2) -> T:
    """The first truthy result of `check`, polled at most seconds/interval times; TimeoutError names `what`."""
    deadline = time.monotonic() + seconds
    last_error: Exception | None = None
    for _ in range(int(seconds / interval) + 1):
        try:
            result = check()
            if result:
                return result
        except (OSError, http.client.HTTPException) as error:
            last_error = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"{what}: not seen within {seconds:.0f}s (last error: {last_error})")


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """The calling thread in `namespace`'s network (only while it opens sockets: they keep their namespace)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_RUN_DIR / namespace, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def run_ip(*args: str) -> str:
    """One `ip` command, bounded in time; its error output in the exception when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_SECONDS)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


# -- the stack -------------------------------------------------------------------------------------


def multi_host_stack(**edge: Any) -> StackConfig:
    """A dev stack with every node on a host of its own (the lab's node namespaces), TLS off at the edge."""
    return parse_stack_config(
        "lab",
        {
            "environment": "dev",
            "name": "lab",
            "edge": {"publicHost": MAIN_ADDRESS, "tls": {"mode": "off"}, "failover": LAB_FAILOVER, **edge},
            "storage": {
                "nodes": NODES,
                # the Docker endpoints are never dialled: the lab stands in for the hosts
                "hosts": [{"dockerHost": f"ssh://ops@node{index}", "address": address} for index, address in enumerate(NODE_ADDRESSES, 1)],
                "mainHostAddress": MAIN_ADDRESS,
            },
            "monitoring": {
                "scrapeInterval": SCRAPE_INTERVAL,
                "evaluationInterval": SCRAPE_INTERVAL,
                "bucketScrapeInterval": SCRAPE_INTERVAL,
            },
        },
    )


def hosts_file(entries: dict[str, str]) -> str:
    """/etc/hosts as Docker writes it for a container with `hosts` entries (localhost, then the entries)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{name}" for name, address in entries.items()]
    return "\n".join(lines) + "\n"


# -- certificates ----------------------------------------------------------------------------------


def server_context(pair: PemPair, folder: Path, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(*pair.write(folder, name))
    return context


# -- the S3 stand-in on a node host ----------------------------------------------------------------


def exposition(node: str, path: str) -> str:
    """A small valid Prometheus text exposition per metrics path, labelled with the stand-in node."""
    metric, kind, value = {
        "cluster": ("minio_cluster_nodes_online_total", "gauge", NODES),
        "node": ("minio_node_process_uptime_seconds", "gauge", 42),
        "bucket": ("minio_bucket_usage_object_total", "gauge", 0),
    }[path]
    return f"# HELP {metric} stand-in value\n# TYPE {metric} {kind}\n{metric}{{server=\"{node}:{API_PORT}\"}} {value}\n"


class NodeStandIn:
    """An HTTPS server standing in for one MinIO node (not MinIO): answers S3-ish requests naming the
    node, /minio/health/live and /minio/health/cluster, and /minio/v2/metrics/{cluster,node,bucket}
    (with a bearer token).

    Its socket is opened inside the node's namespace; each handshake runs in the connection's own
    thread, and every request is recorded.
    """

    def __init__(self, node: str, namespace: str, address: str, port: int, context: ssl.SSLContext) -> None:
        self.node = node
        self.context = context
        self.paths: list[str] = []
        """Every request path, in order."""
        self.connections = 0
        """TCP connections accepted, whether or not TLS and a request followed."""
        stand_in = self

        class Handler(QuietHandler):
            def answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Stand-In-Node", stand_in.node)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - name the base class dispatches to
                stand_in.paths.append(self.path)
                path = urllib.parse.urlsplit(self.path).path
                if path in ("/minio/health/live", blackbox_exporter.HEALTH_PATH):
                    self.answer(200, "")
                elif path.startswith("/minio/v2/metrics/"):
                    kind = path.rsplit("/", 1)[1]
                    if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                        self.answer(403, "stand-in wants a bearer token")
                    elif kind not in ("cluster", "node", "bucket"):
                        self.answer(404, "")
                    else:
                        self.answer(200, exposition(stand_in.node, kind), "text/plain; version=0.0.4")
                else:
                    self.answer(200, f"stand-in {stand_in.node} saw GET {self.path}\n")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                # in the request's own thread: a slow or failed handshake holds up no other client
                stand_in.connections += 1
                try:
                    tls = stand_in.context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # a client that refuses the certificate (TLS 1.2) or leaves
                with contextlib.suppress(ssl.SSLError, OSError):  # one that refuses it after the handshake (TLS 1.3)
                    super().finish_request(tls, client_address)

        with inside(namespace):
            self.server = Server((address, port), Handler)
        self.endpoint = f"{address}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> NodeStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def s3_requests(self) -> list[str]:
        return [path for path in self.paths if not path.startswith("/minio/")]


# -- nginx and Prometheus in the main namespace -----------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


@dataclass
class NamespacedProxy:
    """Debian's nginx in the main namespace, running the configuration infra/edge.py renders for the stack."""

    namespace: str
    root: Path
    config: StackConfig
    upstreams: ProxyUpstreams
    tls_dir: Path
    """cluster-ca.crt, and gateway.crt and .key for the gateway listener"""
    listen_address: str = MAIN_ADDRESS
    process: subprocess.Popen[bytes] | None = None

    @property
    def runtime(self) -> ProxyRuntime:
        return ProxyRuntime(
            pid_file=str(self.root / "nginx.pid"),
            temp_dir=str(self.root / "temp"),
            access_log=str(self.root / "access.log"),
            error_log=str(self.root / "error.log"),
            listen_address=self.listen_address,
            runbook_dir=str(self.root / "runbook"),
            # each record written at once: tests read the log right after a request
            access_log_buffer=None,
            # one worker: its keepalive connections to the nodes are the ones a cut leaves behind
            worker_processes="1",
            cluster_ca=str(self.tls_dir / "cluster-ca.crt"),
            gateway_certificate=str(self.tls_dir / "gateway.crt"),
            gateway_key=str(self.tls_dir / "gateway.key"),
        )

    def rendered(self) -> str:
        return render_nginx_conf(self.config, self.upstreams, self.runtime)

    def start(self) -> NamespacedProxy:
        nginx = require_tool("nginx")
        (self.root / "temp").mkdir(parents=True, exist_ok=True)
        (self.root / "runbook").mkdir(exist_ok=True)
        (self.root / "runbook" / "index.html").write_text(runbook_page(self.config))
        conf = self.root / "nginx.conf"
        conf.write_text(self.rendered())
        log = open(self.root / "nginx.out", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, nginx, "-p", str(self.root), "-e", str(self.root / "error.log"),
             "-c", str(conf), "-g", "daemon off; user root;"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_listener(self.namespace, self.listen_address, self.s3_port, self.process, self.root / "nginx.out")
        return self

    @property
    def s3_port(self) -> int:
        return self.config.edge.s3_port

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGQUIT)

    def get(self, path: str, timeout: float = 30.0) -> Answer:
        """GET `path` on the S3 listener, from a client inside the main namespace."""
        started = time.monotonic()
        with inside(self.namespace):
            connection = http.client.HTTPConnection(self.listen_address, self.s3_port, timeout=timeout)
            connection.connect()
        try:
            connection.request("GET", path, headers={"Host": f"{self.listen_address}:{self.s3_port}"})
            answer = connection.getresponse()
            body = answer.read()
            return Answer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, body, time.monotonic() - started)
        finally:
            connection.close()

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log(self) -> list[dict[str, Any]]:
        path = self.root / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_listener(namespace: str, address: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}: {log.read_text() if log.exists() else ''}")
        with inside(namespace):
            probe = socket.create_connection((address, port), timeout=0.5)
        probe.close()
        return True

    wait_until(listening, f"a listener on {address}:{port} in {namespace}", STARTUP_SECONDS, 0.05)


@dataclass
class NamespacedPrometheus:
    """Prometheus in the main namespace on the configuration infra/monitoring/metrics.py renders, with
    the stack's rule files; it probes the nodes through the lab's blackbox exporter."""

    namespace: str
    root: Path
    config: StackConfig
    ca_file: Path
    blackbox_exporter: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def listen(self) -> str:
        return f"{MAIN_ADDRESS}:{PROMETHEUS_PORT}"

    def start(self) -> NamespacedPrometheus:
        prometheus = require_tool("prometheus")
        # the node targets are the program's own (minioN:9000, named by the hosts entries); nothing else runs
        addresses = replace(ScrapeAddresses.of_stack(self.config), blackbox_exporter=self.blackbox_exporter)
        conf = write_prometheus_files(
            self.config, addresses, self.root, token=minio_metrics_token(ACCESS_KEY, SECRET_KEY), ca_file=self.ca_file
        )
        log = open(self.root / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, prometheus, f"--config.file={conf}",
             f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address={self.listen}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: self.api("/-/ready", raw=True), f"Prometheus ready (log: {self.root / 'prometheus.log'})", STARTUP_SECONDS)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def api(self, path: str, raw: bool = False) -> Any:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"Prometheus exited with {self.process.returncode}: {(self.root / 'prometheus.log').read_text()}")
        host, port = self.listen.split(":")
        with inside(self.namespace):
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            connection.connect()
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        if raw:
            return answer.status == 200
        return json.loads(body)

    def up(self, job: str) -> dict[str, float]:
        """`up` of every target of `job`, by node label."""
        query = urllib.parse.urlencode({"query": f'up{{job="{job}"}}'})
        result = self.api(f"/api/v1/query?{query}")["data"]["result"]
        return {sample["metric"]["node"]: float(sample["value"][1]) for sample in result}

    def targets(self, job: str) -> list[dict[str, Any]]:
        active = self.api("/api/v1/targets?state=active")["data"]["activeTargets"]
        return [target for target in active if target["labels"]["job"] == job]

    def by_node(self, expr: str) -> dict[str, float]:
        """The value of instant query `expr` for each node label."""
        query = urllib.parse.urlencode({"query": expr})
        result = self.api(f"/api/v1/query?{query}")["data"]["result"]
        return {sample["metric"]["node"]: float(sample["value"][1]) for sample in result}

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        """`alertname`'s alerts, pending and firing."""
        return [alert for alert in self.api("/api/v1/alerts")["data"]["alerts"] if alert["labels"]["alertname"] == alertname]


@dataclass
class NamespacedBlackboxExporter:
    """Debian's blackbox exporter in the main namespace on the module infra/monitoring/blackbox_exporter.py renders."""

    namespace: str
    root: Path
    config: StackConfig
    ca_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def listen(self) -> str:
        return f"{MAIN_ADDRESS}:{blackbox_exporter.PORT}"

    def start(self) -> NamespacedBlackboxExporter:
        binary = require_tool("prometheus-blackbox-exporter")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "blackbox.yml"
        conf.write_text(blackbox_exporter.blackbox_yml(self.config, ca_file=str(self.ca_file)))
        log_path = self.root / "blackbox.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, binary, f"--config.file={conf}", f"--web.listen-address={self.listen}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        host, port = self.listen.split(":")
        wait_for_listener(self.namespace, host, int(port), self.process, log_path)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


# -- the lab ---------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# `outsider`: a host on the private network that is no node (test_gateway_keycloak.py)
_OWN_NAME = re.compile(rf"^{NAMESPACE_PREFIX}(\d+)-(switch|main|minio\d+|outsider)$")


def sweep_stale_namespaces() -> list[str]:
    """Delete the namespaces a lab run that no longer exists left behind (killed before its finalizer)."""
    swept = []
    for path in sorted(NETNS_RUN_DIR.glob(f"{NAMESPACE_PREFIX}*")) if NETNS_RUN_DIR.is_dir() else []:
        match = _OWN_NAME.match(path.name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(RuntimeError):
                run_ip("netns", "del", path.name)
            shutil.rmtree(NETNS_ETC_DIR / path.name, ignore_errors=True)
            swept.append(path.name)
    return swept


@dataclass
class NetnsLab:
    config: StackConfig
    workdir: Path
    ca: StandInCa
    prefix: str = field(default_factory=lambda: f"{NAMESPACE_PREFIX}{os.getpid()}")
    created: list[str] = field(default_factory=list)
    created_etc: list[Path] = field(default_factory=list)
    made_etc_netns: bool = False
    nodes: dict[int, NodeStandIn] = field(default_factory=dict)
    proxies: list[NamespacedProxy] = field(default_factory=list)
    proxy: NamespacedProxy | None = None
    prometheus: NamespacedPrometheus | None = None
    blackbox: NamespacedBlackboxExporter | None = None
    node_pairs: dict[int, PemPair] = field(default_factory=dict)
    """The certificate and key each node stand-in serves."""

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "cluster-ca.crt"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-switch"

    @property
    def main(self) -> str:
        return f"{self.prefix}-main"

    def node_namespace(self, node: int) -> str:
        return f"{self.prefix}-{node_name(node)}"

    @staticmethod
    def switch_port(role: str) -> str:
        return f"v-{role}"

    # building and tearing down

    def add_host(self, namespace: str, role: str, address: str, entries: dict[str, str]) -> None:
        """A namespace joined to the bridge by a veth pair, its address on eth0, its hosts entries written."""
        run_ip("netns", "add", namespace)
        self.created.append(namespace)
        # both ends are created where they live: the root namespace never holds either
        run_ip("-n", self.switch, "link", "add", self.switch_port(role), "type", "veth", "peer", "name", "eth0", "netns", namespace)
        run_ip("-n", self.switch, "link", "set", self.switch_port(role), "master", "br0", "up")
        run_ip("-n", namespace, "addr", "add", f"{address}/{LAB_SUBNET.prefixlen}", "dev", "eth0")
        run_ip("-n", namespace, "link", "set", "eth0", "up")
        run_ip("-n", namespace, "link", "set", "lo", "up")
        etc = NETNS_ETC_DIR / namespace
        etc.mkdir(parents=True)
        self.created_etc.append(etc)
        (etc / "hosts").write_text(hosts_file(entries))

    def build_network(self) -> None:
        sweep_stale_namespaces()
        self.made_etc_netns = not NETNS_ETC_DIR.exists()
        run_ip("netns", "add", self.switch)
        self.created.append(self.switch)
        run_ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        run_ip("-n", self.switch, "link", "set", "br0", "up")
        self.add_host(self.main, "main", MAIN_ADDRESS, node_host_entries(self.config))
        for node, address in node_addresses(self.config).items():
            self.add_host(self.node_namespace(node), node_name(node), address, node_host_entries(self.config, node))

    def write_tls(self) -> None:
        """The CA and the gateway listener's pair where the proxy's runtime names them."""
        self.ca.write(self.ca_file)
        self.ca.gateway_pair(MAIN_ADDRESS).write(self.workdir / "tls", "gateway")

    def start_nodes(self) -> None:
        for node, address in node_addresses(self.config).items():
            self.node_pairs[node] = self.ca.node_pair(node, address)
            context = server_context(self.node_pairs[node], self.workdir / "tls", node_name(node))
            self.nodes[node] = NodeStandIn(node_name(node), self.node_namespace(node), address, API_PORT, context).start()

    def start_proxy(self, root: Path, upstreams: ProxyUpstreams, listen_address: str = MAIN_ADDRESS) -> NamespacedProxy:
        """nginx in the main namespace on the stack's rendering, stopped at teardown at the latest."""
        proxy = NamespacedProxy(self.main, root, self.config, upstreams, self.workdir / "tls", listen_address)
        self.proxies.append(proxy)
        return proxy.start()

    @contextlib.contextmanager
    def second_proxy(self, root: Path, upstreams: ProxyUpstreams | None = None) -> Iterator[NamespacedProxy]:
        """Another nginx on the same rendering, on the main namespace's loopback: fresh, holding no connection."""
        proxy = self.start_proxy(root, upstreams or ProxyUpstreams.of_stack(self.config), SECOND_PROXY_ADDRESS)
        try:
            yield proxy
        finally:
            proxy.stop()

    @contextlib.contextmanager
    def wrong_certificate_node(self, root: Path, pair: PemPair, node: int = 1) -> Iterator[tuple[NamespacedProxy, NodeStandIn]]:
        """A stand-in serving `pair` on `node`'s host (WRONG_CERTIFICATE_PORT), and a second proxy whose only
        S3 upstream it is: one server, so no failover hides a refusal."""
        context = server_context(pair, root / "tls", "wrong")
        address = node_addresses(self.config)[node]
        stand_in = NodeStandIn(node_name(node), self.node_namespace(node), address, WRONG_CERTIFICATE_PORT, context).start()
        endpoint = (stand_in.endpoint,)
        try:
            with self.second_proxy(root, replace(ProxyUpstreams.of_stack(self.config), s3=endpoint, console=endpoint)) as proxy:
                yield proxy, stand_in
        finally:
            stand_in.stop()

    def start_prometheus(self) -> NamespacedPrometheus:
        self.blackbox = NamespacedBlackboxExporter(self.main, self.workdir / "blackbox", self.config, self.ca_file).start()
        self.prometheus = NamespacedPrometheus(self.main, self.workdir / "prometheus", self.config, self.ca_file, self.blackbox.listen)
        return self.prometheus.start()

    def teardown(self) -> None:
        errors: list[str] = []
        steps: list[Callable[[], None]] = []
        if self.prometheus is not None:
            steps.append(self.prometheus.stop)
        if self.blackbox is not None:
            steps.append(self.blackbox.stop)
        steps += [proxy.stop for proxy in self.proxies]
        steps += [stand_in.stop for stand_in in self.nodes.values()]
        # deleting a namespace takes its veth end with it; the switch's bridge goes with the switch
        steps += [_deleting(name) for name in reversed(self.created)]
        for step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - every step runs; the errors are reported together
                errors.append(repr(error))
        for etc in self.created_etc:
            shutil.rmtree(etc, ignore_errors=True)
        if self.made_etc_netns:
            with contextlib.suppress(OSError):
                NETNS_ETC_DIR.rmdir()  # only if empty: another lab may be using it
        if errors:
            raise RuntimeError(f"lab teardown: {'; '.join(errors)}")

    # what tests do

    def cut_link(self, node: int) -> None:
        run_ip("-n", self.switch, "link", "set", self.switch_port(node_name(node)), "down")

    def restore_link(self, node: int) -> None:
        run_ip("-n", self.switch, "link", "set", self.switch_port(node_name(node)), "up")

    @contextlib.contextmanager
    def link_cut(self, node: int) -> Iterator[None]:
        self.cut_link(node)
        try:
            yield
        finally:
            self.restore_link(node)

    def resolve(self, namespace: str, name: str) -> str | None:
        """What `name` resolves to for a process started in `namespace` (through its bind-mounted /etc/hosts)."""
        done = subprocess.run(
            ["ip", "netns", "exec", namespace, "getent", "hosts", name], capture_output=True, text=True, timeout=COMMAND_SECONDS
        )
        return done.stdout.split()[0] if done.returncode == 0 and done.stdout else None


def _deleting(namespace: str) -> Callable[[], None]:
    def delete() -> None:
        run_ip("netns", "del", namespace)

    return delete


@contextlib.contextmanager
def netns_lab(workdir: Path, config: StackConfig | None = None) -> Iterator[NetnsLab]:
    """Namespaces, bridge, CA, the four node stand-ins, the proxy, the blackbox exporter and Prometheus;
    all of it gone afterwards."""
    require_root("creates network namespaces")
    require_tool("ip")
    config = config or multi_host_stack()
    ca = StandInCa(f"minio-platform {config.name} cluster CA (lab stand-in)")
    lab = NetnsLab(config, workdir, ca)
    try:
        lab.write_tls()
        lab.build_network()
        lab.start_nodes()
        # the upstreams the program chooses for a multi-host stack: the nodes' private addresses
        lab.proxy = lab.start_proxy(workdir / "nginx", ProxyUpstreams.of_stack(config))
        lab.start_prometheus()
        yield lab
    finally:
        lab.teardown()


def wrong_certificates(ca: StandInCa, node: int, address: str) -> dict[str, PemPair]:
    """Node certificates the proxy must refuse: every name right but another CA's, and the right CA without CLUSTER_TLS_NAME."""
    names = [name for name in node_certificate_names(node) if name != CLUSTER_TLS_NAME]
    return {
        "signed by another CA": StandInCa("another CA").node_pair(node, address),
        f"without the name {CLUSTER_TLS_NAME}": ca.sign(node_name(node), names, node_certificate_addresses(address)),
    }
