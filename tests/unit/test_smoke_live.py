"""The smoke suite's hands on a live stack (tests/smoke/live.py), against stand-ins.

Docker is stood in for by FakeDockerDaemon (a callable that answers as the docker CLI and its
daemon do) or by a stand-in `docker` executable on PATH; MinIO's STS, its health endpoints and
a TLS endpoint by stand-in HTTP servers on loopback; the minio client by StandInS3Client.
"""

from __future__ import annotations

import ast
import datetime
import io
import ipaddress
import json
import os
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import certifi
import jwt
import pytest
import requests
import urllib3
from minio import Minio

from tests.conftest import ROOT
from tests.smoke import live
from tests.smoke import stack as smoke
from tests.smoke.stack import HealthAnswer, NodeOutage, RestartFailed, WaitTimeout

SMOKE_DIR = ROOT / "tests" / "smoke"
Reply = tuple[int, dict[str, str], bytes]


def quiet(message: str) -> None:
    pass


def no_sleep(seconds: float) -> None:
    pass


@contextmanager
def stand_in_server(reply: Callable[[str, str], Reply], tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[str]]]:
    """A stand-in HTTP(S) server on loopback: `reply(method, path)` answers; yields its URL and the requests it saw."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(f"{self.command} {self.path}")
            status, headers, body = reply(self.command, self.path)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


# --- 1. a refused STS exchange keeps the ID token out of the message -------------------------


def test_a_refused_sts_exchange_fails_without_the_id_token_in_the_message() -> None:
    id_token = jwt.encode({"policy": ["readwrite"], "azp": "minio-console"}, "k" * 32, algorithm="HS256")
    refusal = b"<ErrorResponse><Error><Code>InvalidParameterValue</Code><Message>Token is not valid</Message></Error></ErrorResponse>"
    with stand_in_server(lambda method, path: (400, {"Content-Type": "application/xml"}, refusal)) as (sts, seen):
        with pytest.raises(AssertionError) as error:
            live.web_identity_credentials(sts, id_token, True)
    assert any(f"WebIdentityToken={id_token}" in request for request in seen)  # the SDK puts the token in the URL it reports
    message = str(error.value)
    assert id_token not in message
    assert "AssumeRoleWithWebIdentity at MinIO's STS: expected temporary credentials" in message
    assert "WebIdentityToken=[redacted]" in message and "400" in message


# --- 2. health is polled while a node starts, and on every node --------------------------------


class StandInMinioHealth:
    """Stand-in for MinIO's health endpoints through the proxy: a node still starting, then ready."""

    def __init__(self, starting_answers: list[Reply]) -> None:
        self.starting_answers = list(starting_answers)

    def __call__(self, method: str, path: str) -> Reply:
        if path == "/minio/health/cluster/read":
            return 200, {"X-Minio-Read-Quorum": "4"}, b""
        if self.starting_answers:
            return self.starting_answers.pop(0)
        return 200, {"X-Minio-Write-Quorum": "5"}, b""


IAM_OFFLINE: Reply = (503, {"X-Minio-Server-Status": "iam-offline"}, b"")
NOT_INITIALISED: Reply = (
    503,
    {"Content-Type": "application/xml"},
    b"<Error><Code>XMinioServerNotInitialized</Code><Message>Server not initialized yet, please try again.</Message></Error>",
)


def test_cluster_health_is_polled_until_a_starting_node_answers_200() -> None:
    with stand_in_server(StandInMinioHealth([IAM_OFFLINE, NOT_INITIALISED])) as (s3, seen):
        with live.http_session(True) as session:
            cluster, cluster_read = live.wait_until_cluster_healthy(session, s3, timeout=10, interval=0.05)
    assert (cluster.write_quorum, cluster_read.read_quorum) == ("5", "4")
    assert seen.count("GET /minio/health/cluster") == 3


def test_a_node_that_never_finishes_starting_fails_the_wait_saying_iam_offline() -> None:
    with stand_in_server(StandInMinioHealth([IAM_OFFLINE] * 1000)) as (s3, _):
        with live.http_session(True) as session, pytest.raises(WaitTimeout) as error:
            live.wait_until_cluster_healthy(session, s3, timeout=0.5, interval=0.1)
    assert "503 (iam-offline)" in str(error.value)


class StandInNodes:
    """Stand-in for each MinIO node's own /minio/health/cluster: a node answers iam-offline for its first `starting` probes."""

    def __init__(self, starting: dict[str, int]) -> None:
        self.starting = dict(starting)
        self.probes: list[str] = []

    def __call__(self, name: str) -> HealthAnswer:
        self.probes.append(name)
        if self.starting.get(name, 0) > 0:
            self.starting[name] -= 1
            return HealthAnswer(503, server_status="iam-offline")
        return HealthAnswer(200, write_quorum="5")


NODES = ["minio1", "minio2", "minio3", "minio4"]


def test_after_a_restart_every_node_must_answer_healthy_not_just_the_first() -> None:
    nodes = StandInNodes({"minio3": 2})
    answers = live.wait_until_every_node_healthy(NODES, timeout=30, interval=1, probe=nodes, sleep=no_sleep)
    assert all(answer.healthy for answer in answers.values())
    assert nodes.probes.count("minio3") == 3 and nodes.probes.count("minio1") == 3


def test_a_node_still_starting_is_named_when_the_wait_runs_out() -> None:
    with pytest.raises(WaitTimeout) as error:
        live.wait_until_every_node_healthy(NODES, timeout=2, interval=1, probe=StandInNodes({"minio4": 10**6}), sleep=no_sleep)
    assert "'minio4': 503 (iam-offline)" in str(error.value) and "'minio1': 200" in str(error.value)


# --- 3. the refused-write probe is small enough for MinIO's 503 to get through ---------------


class StandInS3Client:
    """Stand-in for the minio client: records every upload's declared and actual size."""

    def __init__(self) -> None:
        self.uploads: list[tuple[int, int]] = []

    def put_object(self, bucket: str, key: str, data: io.BytesIO, length: int, **options: Any) -> None:
        self.uploads.append((length, len(data.read())))


def test_the_failover_write_probe_sends_a_body_under_gos_discard_limit() -> None:
    client = StandInS3Client()
    live.put_write_probe(cast(Minio, client), "smoke-bucket", "smoke/failover/2-down.bin")
    [(declared, sent)] = client.uploads
    assert declared == sent == smoke.REFUSED_WRITE_BYTES
    assert sent < smoke.GO_POST_HANDLER_DISCARD_BYTES


# --- 4. a container counts as started once Docker says it runs again ---------------------------

FIRST_RUN = "2026-01-01T00:00:00.000000001Z"


class FakeDockerDaemon:
    """Stand-in for the docker CLI and its daemon, answering inspect, stop, start and exec as Docker does.

    A stop goes on in the daemon for `stop_lasts` further commands; with `interrupt_stop` the CLI
    is cut off by Ctrl-C meanwhile (the daemon finishes the stop regardless). A start of a
    container still running changes nothing (the daemon answers 304 Not Modified, the CLI exits 0).
    """

    def __init__(
        self,
        *names: str,
        ledger: Path | None = None,
        stop_lasts: int = 0,
        interrupt_stop: bool = False,
        start_does_nothing: bool = False,
        exec_outputs: dict[str, live.CommandResult] | None = None,
    ) -> None:
        self.states = {name: {"Status": "running", "Running": True, "StartedAt": FIRST_RUN} for name in names}
        self.ledger = ledger
        self.stop_lasts = stop_lasts
        self.interrupt_stop = interrupt_stop
        self.start_does_nothing = start_does_nothing
        self.exec_outputs = exec_outputs or {}
        self.stopping: dict[str, int] = {}
        self.runs = 1
        self.commands: list[str] = []
        self.ledger_seen: list[str] = []

    def __call__(self, *args: str, timeout: float) -> live.CommandResult:
        assert timeout > 0, f"docker {' '.join(args)} without a time limit"
        self.commands.append(" ".join(args))
        self.ledger_seen.append(self.ledger.read_text() if self.ledger and self.ledger.exists() else "")
        self.time_passes()
        verb = args[0]
        if verb == "exec":
            return self.exec_outputs.get(args[1], live.CommandResult(0, "", ""))
        name = args[-1]
        if name not in self.states:
            return live.CommandResult(1, "", f"Error: No such container: {name}\n")
        state = self.states[name]
        if verb == "inspect":
            return live.CommandResult(0, json.dumps([{"Name": f"/{name}", "State": state}]), "")
        if verb == "stop":
            self.stopping[name] = self.stop_lasts
            if self.interrupt_stop:
                raise KeyboardInterrupt
            self.time_passes(until_stopped=True)
        elif verb == "start" and not state["Running"] and not self.start_does_nothing:
            self.runs += 1
            state.update(Status="running", Running=True, StartedAt=f"2026-01-01T00:00:{self.runs:02d}.000000001Z")
        return live.CommandResult(0, f"{name}\n", "")

    def time_passes(self, until_stopped: bool = False) -> None:
        for name in list(self.stopping):
            self.stopping[name] -= 1
            if self.stopping[name] <= 0 or until_stopped:
                del self.stopping[name]
                self.states[name].update(Status="exited", Running=False)

    def settle(self) -> None:
        """Long enough later that every stop under way has ended."""
        self.time_passes(until_stopped=True)


def test_an_interrupted_docker_stop_ends_with_the_node_running_and_only_then_off_the_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    daemon = FakeDockerDaemon("minio1", ledger=ledger, stop_lasts=4, interrupt_stop=True)
    with pytest.raises(KeyboardInterrupt):
        with NodeOutage(ledger, report=quiet, sleep=no_sleep) as outage:
            outage.stop(live.DockerContainer("minio1", daemon))
    daemon.settle()
    state = daemon.states["minio1"]
    assert state["Running"] and state["StartedAt"] != FIRST_RUN, daemon.commands
    assert ledger.read_text() == ""
    last_inspect = max(index for index, command in enumerate(daemon.commands) if command.startswith("inspect"))
    assert set(daemon.ledger_seen[: last_inspect + 1]) == {"minio1\n"}, list(zip(daemon.commands, daemon.ledger_seen))


def test_a_container_docker_starts_but_that_does_not_run_stays_on_the_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    daemon = FakeDockerDaemon("minio1", ledger=ledger, start_does_nothing=True)
    with pytest.raises(RestartFailed, match="docker start minio1"):
        with NodeOutage(ledger, report=quiet, restart_timeout=1, poll_interval=0.25, sleep=no_sleep) as outage:
            outage.stop(live.DockerContainer("minio1", daemon))
    assert ledger.read_text() == "minio1\n"


def test_the_ledger_names_the_host_of_a_node_on_its_own_host(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    daemon = FakeDockerDaemon("minio2", ledger=ledger, start_does_nothing=True)
    with pytest.raises(RestartFailed, match="DOCKER_HOST=ssh://ops@node2 docker start minio2"):
        with NodeOutage(ledger, report=quiet, restart_timeout=1, poll_interval=0.25, sleep=no_sleep) as outage:
            outage.stop(live.DockerContainer("minio2", daemon, docker_host="ssh://ops@node2"))
    # what scripts/smoke reads when this process dies: the name, a tab, the endpoint to start it on
    assert ledger.read_text() == "minio2\tssh://ops@node2\n"


def test_a_plain_restart_is_one_stop_one_start_and_one_look(tmp_path: Path) -> None:
    daemon = FakeDockerDaemon("minio1")
    with NodeOutage(report=quiet, sleep=no_sleep) as outage:
        outage.stop(live.DockerContainer("minio1", daemon))
    assert daemon.commands == [
        "inspect --type container minio1",
        f"stop --time {live.STOP_GRACE_SECONDS} minio1",
        "start minio1",
        "inspect --type container minio1",
    ]


def test_node_health_is_read_with_curl_inside_the_node() -> None:
    starting = live.CommandResult(0, "HTTP/1.1 503 Service Unavailable\r\nX-Minio-Server-Status: iam-offline\r\n\r\n", "")
    refused = live.CommandResult(7, "", "curl: (7) Failed to connect to localhost port 9000: Connection refused\n")
    daemon = FakeDockerDaemon(exec_outputs={"minio2": starting, "minio3": refused})
    assert live.node_cluster_health("minio2", daemon) == HealthAnswer(503, server_status="iam-offline")
    assert daemon.commands[-1].startswith("exec minio2 curl ") and daemon.commands[-1].endswith("http://localhost:9000/minio/health/cluster")
    with pytest.raises(ConnectionError, match="Connection refused"):
        live.node_cluster_health("minio3", daemon)


# --- 5. every docker call is bounded ---------------------------------------------------------


@pytest.fixture
def hung_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in `docker` CLI on PATH that never answers, as with a hung daemon; short limits for the calls."""
    cli = tmp_path / "docker"
    cli.write_text("#!/bin/sh\nexec sleep 20\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for limit in ("DOCKER_TIMEOUT_SECONDS", "DOCKER_QUERY_TIMEOUT_SECONDS", "EXEC_MARGIN_SECONDS", "HTTP_TIMEOUT_SECONDS"):
        monkeypatch.setattr(live, limit, 1)


@pytest.mark.parametrize(
    ("call", "command"),
    [
        (lambda: live.inspect("minio1"), "`docker inspect --type container minio1`"),
        (lambda: live.in_container("minio-dev-edge-proxy").run("cat", "/etc/nginx/tls/server.crt"), "`docker exec minio-dev-edge-proxy cat"),
        (lambda: live.InStackHttp("minio-dev-prometheus", timeout=1).get("http://loki:3100/ready"), "`docker exec minio-dev-prometheus wget"),
        (lambda: live.node_cluster_health("minio1"), "`docker exec minio1 curl"),
        (lambda: live.DockerContainer("minio1").start(), "`docker start minio1`"),
        (lambda: live.DockerContainer("minio1").stop(), "`docker inspect --type container minio1`"),
    ],
    ids=["inspect", "exec", "in-stack-http", "node-health", "start", "stop"],
)
def test_a_hung_docker_daemon_fails_the_call_naming_the_command(hung_docker: None, call: Callable[[], object], command: str) -> None:
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome.append(error)

    worker = threading.Thread(target=attempt, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout=10)
    assert outcome, "the call to the hung docker CLI did not return within 10s"
    assert isinstance(outcome[0], AssertionError), outcome
    assert command in str(outcome[0]) and re.search(r"no answer within [12]s", str(outcome[0])), outcome[0]
    assert time.monotonic() - started < 8


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """The innermost function around each node (ast.walk meets outer functions first)."""
    enclosing: dict[ast.AST, str] = {}
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            enclosing.update((node, function.name) for node in ast.walk(function) if node is not function)
    return enclosing


def test_the_smoke_suite_reaches_docker_only_through_run_docker() -> None:
    strays = []
    for path in sorted(SMOKE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        enclosing = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                strays += [f"{path.name}: imports {module}" for module in modules if module.split(".")[0] == "testinfra"]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                if node.func.value.id == "subprocess" and enclosing.get(node) not in {"run_docker", "read_pulumi_outputs"}:
                    strays.append(f"{path.name}:{node.lineno}: subprocess.{node.func.attr} in {enclosing.get(node)}")
            elif isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) and node.elts[0].value == "docker":
                if enclosing.get(node) != "run_docker":
                    strays.append(f"{path.name}:{node.lineno}: a docker command line in {enclosing.get(node)}")
    assert not strays, strays


# --- 6. the S3 clients trust what the HTTP session trusts ------------------------------------


def test_s3_pool_and_http_session_trust_the_same_ca_bundle(tmp_path: Path) -> None:
    stack_ca = str(tmp_path / "stack-ca.pem")
    for verify, bundle in ((True, certifi.where()), (stack_ca, stack_ca)):
        assert live.http_session(verify).verify == bundle
        settings = live.pool(verify, retries=False).connection_pool_kw
        assert (settings["cert_reqs"], settings["ca_certs"]) == ("CERT_REQUIRED", bundle)
    assert live.http_session(False).verify is False
    assert live.pool(False, retries=False).connection_pool_kw["cert_reqs"] == "CERT_NONE"


def _certificate_authority(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA file, and a server TLS context for 127.0.0.1 whose certificate that CA signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("Stand-in CA", "Stand-in CA", ca_key, ca_key, ca=True)
    server = build("127.0.0.1", "Stand-in CA", server_key, ca_key, ca=False)
    ca_file, chain, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_file)
    return ca_file, context


def test_s3_pool_refuses_and_accepts_exactly_what_requests_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca_file, server_tls = _certificate_authority(tmp_path)
    # the system store (OpenSSL's default paths) trusts the stand-in's CA; certifi does not
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)

    def by_requests(url: str, verify: bool | str) -> str:
        try:
            with live.http_session(verify) as session:
                return str(live.get(session, url).status_code)
        except requests.exceptions.SSLError:
            return "refused"

    def by_s3_pool(url: str, verify: bool | str) -> str:
        try:
            return str(live.pool(verify, retries=False).request("GET", url).status)
        except urllib3.exceptions.HTTPError as error:
            assert "CERTIFICATE_VERIFY_FAILED" in str(error), error
            return "refused"

    with stand_in_server(lambda method, path: (200, {}, b"ok"), tls=server_tls) as (url, _):
        verdicts = {str(verify): (by_requests(url, verify), by_s3_pool(url, verify)) for verify in (True, str(ca_file))}
    assert verdicts == {"True": ("refused", "refused"), str(ca_file): ("200", "200")}


def test_the_admin_client_uses_the_loopback_admin_listener_and_checks_the_s3_host_name() -> None:
    from tests.unit.test_smoke_logic import outputs_for

    outputs = outputs_for(4, 2)
    outputs["endpoints"] |= {"s3": "https://storage.example.com:9443", "minioAdmin": "https://127.0.0.1:9444"}
    admin = live.admin_client(smoke.parse_outputs(outputs), certifi.where())
    # the public S3 listener refuses /minio/admin/: admin calls go to the listener on the host's loopback
    assert admin._url.netloc == "127.0.0.1:9444"
    assert admin._http.connection_pool_kw["assert_hostname"] == "storage.example.com"
    del outputs["endpoints"]["minioAdmin"]
    older = live.admin_client(smoke.parse_outputs(outputs), certifi.where())
    assert older._url.netloc == "storage.example.com:9443" and "assert_hostname" not in older._http.connection_pool_kw


def test_scripts_smoke_starts_each_left_over_container_on_its_own_host(tmp_path: Path) -> None:
    """The exit trap of scripts/smoke, run by bash against a docker stand-in that records its endpoint."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "${{DOCKER_HOST:-default}} ${{DOCKER_CONTEXT:-no-context}} $*" >> {calls}\n')
    docker.chmod(0o755)
    ledger = tmp_path / "ledger"
    ledger.write_text("minio-dev-keycloak\nminio-dev-minio2\tssh://ops@node2\n")
    script = ". scripts/lib/docker_host.sh; . scripts/lib/smoke_ledger.sh; restart_leftovers \"$1\""
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_CONTEXT": "remote"}
    environment.pop("DOCKER_HOST", None)
    subprocess.run(["bash", "-c", script, "bash", str(ledger)], cwd=ROOT, env=environment, check=True, capture_output=True)
    assert calls.read_text().splitlines() == [
        "default remote start minio-dev-keycloak",
        "ssh://ops@node2 no-context start minio-dev-minio2",
    ]
    assert not ledger.exists()
