"""The smoke suite's hands on a live stack: the docker CLI, HTTP and S3 clients.

Each call is bounded: every docker command (inspect, exec, stop, start) goes through
`run_docker` with a time limit, in-container HTTP also with the tool's own timeout, HTTP and S3
clients with connect/read timeouts. A docker call about a container on a node host of its own
(`storage.hosts`) goes to that host's Docker endpoint (`docker_for`); every other to the stack's own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import certifi
import requests
import urllib3
from minio import Minio
from minio.credentials.credentials import Credentials
from minio.credentials.providers import Provider, StaticProvider, WebIdentityProvider
from minio.minioadmin import MinioAdmin

from tests.smoke.stack import (
    REFUSED_WRITE_BYTES,
    ContainerInfo,
    StackOutputs,
    HealthAnswer,
    curl_health_answer,
    describe_seen,
    health_answer,
    mismatch,
    node_curl,
    wait_for,
    wget_status,
)

STOP_GRACE_SECONDS = 30
DOCKER_TIMEOUT_SECONDS = 120
"""For `docker stop` (which waits up to STOP_GRACE_SECONDS) and `docker start`."""
DOCKER_QUERY_TIMEOUT_SECONDS = 30
"""For `docker inspect`: the daemon answers at once unless it hangs."""
EXEC_MARGIN_SECONDS = 15
"""What `docker exec` may take on top of the command's own time limit."""
HTTP_TIMEOUT_SECONDS = 15
S3_TIMEOUT_SECONDS = 60


# ---------------------------------------------------------------------------------------------
# Docker


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


class DockerCli(Protocol):
    def __call__(self, *args: str, timeout: float) -> CommandResult: ...


def run_docker(*args: str, timeout: float, endpoint: str | None = None) -> CommandResult:
    """Run the docker CLI; the one place the suite calls Docker.

    Without `endpoint` it talks to the daemon DOCKER_HOST/DOCKER_CONTEXT name (the stack's own host);
    with one, to that endpoint. A hung daemon fails the check that asked, naming the command, instead
    of hanging the suite.
    """
    command = ["docker", *args]
    shown = f"`{' '.join(command)}`" + (f" on {endpoint}" if endpoint else "")
    environment = None if endpoint is None else docker_environment(endpoint)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=environment
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{shown}: no answer within {timeout:g}s (is the Docker daemon hung?)") from None
    except FileNotFoundError:
        raise AssertionError(f"{shown}: the docker CLI is not on PATH") from None
    return CommandResult(result.returncode, result.stdout, result.stderr)


def docker_environment(endpoint: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The docker CLI's environment for `endpoint`: DOCKER_HOST set, and no DOCKER_CONTEXT to pick another daemon."""
    return {**{key: value for key, value in environ.items() if key != "DOCKER_CONTEXT"}, "DOCKER_HOST": endpoint}


def docker_on(endpoint: str | None) -> DockerCli:
    """The docker CLI bound to `endpoint`; None: the stack's own host, exactly as `run_docker`."""
    if endpoint is None:
        return run_docker

    def on_endpoint(*args: str, timeout: float) -> CommandResult:
        return run_docker(*args, timeout=timeout, endpoint=endpoint)

    return on_endpoint


def docker_for(container: ContainerInfo) -> DockerCli:
    """The docker CLI of the host `container` runs on."""
    return docker_on(container.docker_host)


def _checked(docker: DockerCli, *args: str, timeout: float) -> CommandResult:
    result = docker(*args, timeout=timeout)
    if result.rc != 0:
        raise AssertionError(mismatch(f"`docker {' '.join(args)}`", "exit status 0", f"{result.rc}: {result.stderr.strip()}"))
    return result


def inspect(name: str, docker: DockerCli = run_docker) -> dict[str, Any]:
    """`docker inspect` of one container."""
    result = _checked(docker, "inspect", "--type", "container", name, timeout=DOCKER_QUERY_TIMEOUT_SECONDS)
    inspected: list[dict[str, Any]] = json.loads(result.stdout)
    return inspected[0]


def inspect_container(container: ContainerInfo) -> dict[str, Any]:
    """`docker inspect` of a stack container, on the host it runs on."""
    return inspect(container.name, docker_for(container))


class DockerContainer:
    """A stack container, stopped and started with the docker CLI."""

    def __init__(self, name: str, docker: DockerCli = run_docker, docker_host: str | None = None) -> None:
        self.name = name
        self.docker = docker
        self.docker_host = docker_host
        """The endpoint `docker` talks to, for the restart hint; None: the stack's own host."""
        self.stopped_run: str | None = None
        """State.StartedAt of the run the stop ended: a run with the same start is not a restart."""

    @classmethod
    def of(cls, container: ContainerInfo) -> DockerContainer:
        """A stack container, stopped and started on the host it runs on."""
        return cls(container.name, docker_for(container), container.docker_host)

    def stop(self) -> None:
        self.stopped_run = inspect(self.name, self.docker)["State"].get("StartedAt")
        _checked(self.docker, "stop", "--time", str(STOP_GRACE_SECONDS), self.name, timeout=DOCKER_TIMEOUT_SECONDS)

    def start(self) -> None:
        _checked(self.docker, "start", self.name, timeout=DOCKER_TIMEOUT_SECONDS)

    def is_running(self) -> bool:
        state = inspect(self.name, self.docker)["State"]
        if not state.get("Running"):
            # a stop still under way when `docker start` came (it changed nothing then) has ended since
            self.start()
            return False
        return self.stopped_run is None or state.get("StartedAt") != self.stopped_run


class InContainer:
    """Commands run inside a container (`docker exec`), given as argument lists: no shell, no quoting."""

    def __init__(self, name: str, docker: DockerCli = run_docker) -> None:
        self.name = name
        self.docker = docker

    @classmethod
    def of(cls, container: ContainerInfo) -> InContainer:
        """Commands inside a stack container, on the host it runs on."""
        return cls(container.name, docker_for(container))

    def run(self, *argv: str, timeout: float | None = None) -> CommandResult:
        """`timeout` is the command's own limit, if it has one; the exec gets a margin on top."""
        return self.docker("exec", self.name, *argv, timeout=(timeout or 0) + EXEC_MARGIN_SECONDS)


def in_container(name: str) -> InContainer:
    return InContainer(name)


def node_cluster_health(name: str, docker: DockerCli = run_docker, *, tls: bool = False) -> HealthAnswer:
    """/minio/health/cluster of one MinIO node, asked from inside its container (on the stack's own host a node publishes no port).

    `tls`: the node serves HTTPS (on a host of its own), with a certificate from the stack's CA.
    """
    result = InContainer(name, docker).run(
        *node_curl("-sS", "-i", "--max-time", str(HTTP_TIMEOUT_SECONDS), path="/minio/health/cluster", tls=tls),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    answer = curl_health_answer(result.stdout)
    if answer is None:
        raise ConnectionError(f"/minio/health/cluster in {name}: no HTTP answer ({result.stderr.strip()[-300:]})")
    return answer


def node_health(node: ContainerInfo) -> HealthAnswer:
    """node_cluster_health of a node of the outputs: on its own host, in the scheme it serves."""
    return node_cluster_health(node.name, docker_for(node), tls=node.tls)


def wait_until_every_node_healthy(
    names: Sequence[str],
    *,
    timeout: float,
    interval: float = 5,
    probe: Callable[[str], HealthAnswer] = node_cluster_health,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, HealthAnswer]:
    """Every node's own /minio/health/cluster answers 200; a node still starting answers 503 (iam-offline) meanwhile."""
    return wait_for(
        lambda: {name: probe(name) for name in names},
        lambda answers: all(answer.healthy for answer in answers.values()),
        what="/minio/health/cluster on every MinIO node",
        expected="200 from each",
        timeout=timeout,
        interval=interval,
        sleep=sleep,
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class InStackHttp:
    """HTTP GET sent from inside a stack container, for services that publish no port.

    Uses busybox wget, which the Prometheus and Alertmanager images carry.
    """

    def __init__(self, container: str, timeout: int = HTTP_TIMEOUT_SECONDS) -> None:
        self.container = container
        self.timeout = timeout

    def get(self, url: str, **params: str) -> Answer:
        full = f"{url}?{urlencode(params)}" if params else url
        result = in_container(self.container).run("wget", "-S", "-O", "-", "-T", str(self.timeout), full, timeout=self.timeout)
        status = wget_status(result.stderr)
        if status is None:
            raise ConnectionError(f"GET {url} from {self.container}: no HTTP answer ({result.stderr.strip()[-300:]})")
        return Answer(status, result.stdout, {})


# ---------------------------------------------------------------------------------------------
# HTTP and S3


def trusted_ca_bundle(verify: bool | str) -> str | None:
    """The CA file both the HTTP session and the S3 clients trust: the one given, else certifi's; None: no verification.

    The minio SDK's urllib3 pool would otherwise use the system store while requests uses certifi.
    """
    if verify is False:
        return None
    return verify if isinstance(verify, str) else certifi.where()


def http_session(verify: bool | str) -> requests.Session:
    session = requests.Session()
    bundle = trusted_ca_bundle(verify)
    session.verify = bundle if bundle is not None else False
    return session


def get(session: requests.Session, url: str, **kwargs: Any) -> requests.Response:
    return session.get(url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)


def status_of(session: requests.Session, url: str) -> int | str:
    """Status code of a GET, or what went wrong; for polling loops and messages."""
    try:
        return get(session, url).status_code
    except requests.RequestException as error:
        return describe_seen(error)


def cluster_health(session: requests.Session, s3: str) -> tuple[HealthAnswer, HealthAnswer]:
    """(/minio/health/cluster, /minio/health/cluster/read) through the proxy."""
    answers = [get(session, f"{s3}/minio/health/{path}") for path in ("cluster", "cluster/read")]
    cluster, cluster_read = (health_answer(answer.status_code, dict(answer.headers), answer.text) for answer in answers)
    return cluster, cluster_read


def wait_until_cluster_healthy(
    session: requests.Session, s3: str, *, timeout: float, interval: float = 3
) -> tuple[HealthAnswer, HealthAnswer]:
    """Both cluster health answers are 200; a node still starting answers 503 (iam-offline) meanwhile."""
    return wait_for(
        lambda: cluster_health(session, s3),
        lambda answers: all(answer.healthy for answer in answers),
        what="(/minio/health/cluster, /cluster/read) through the proxy",
        expected="200 from both",
        timeout=timeout,
        interval=interval,
    )


def pool(verify: bool | str, *, retries: bool, certificate_name: str | None = None) -> urllib3.PoolManager:
    """The S3 clients' HTTP pool; with retries off a 503 SlowDown reaches the caller as it came.
    `certificate_name`: the name to check the certificate against, when it is not the address dialled."""
    bundle = trusted_ca_bundle(verify)
    tls: dict[str, Any] = {"cert_reqs": "CERT_NONE"} if bundle is None else {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}
    if bundle is not None and certificate_name:
        tls["assert_hostname"] = certificate_name
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=S3_TIMEOUT_SECONDS),
        retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]) if retries else False,
        maxsize=10,
        **tls,
    )


def s3_client(
    endpoint: str,
    verify: bool | str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    credentials: Provider | None = None,
    retries: bool = True,
) -> Minio:
    url = urlsplit(endpoint)
    return Minio(
        url.netloc,
        access_key=access_key,
        secret_key=secret_key,
        credentials=credentials,
        secure=url.scheme == "https",
        http_client=pool(verify, retries=retries),
    )


def admin_client(stack: StackOutputs, verify: bool | str) -> MinioAdmin:
    """Root's admin client on the proxy's loopback-only admin listener (`endpoints.minioAdmin`): the
    public S3 listener refuses /minio/admin/. It is the same proxy, so its certificate names the S3 host."""
    url = urlsplit(stack.optional_endpoint("minioAdmin") or stack.endpoint("s3"))
    s3_host = urlsplit(stack.endpoint("s3")).hostname
    return MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(stack.value("minioRootUser"), stack.value("minioRootPassword")),
        secure=url.scheme == "https",
        http_client=pool(verify, retries=True, certificate_name=s3_host if url.hostname != s3_host else None),
    )


def web_identity_credentials(sts_endpoint: str, id_token: str, verify: bool | str) -> Credentials:
    """Temporary S3 credentials for an OIDC ID token, from MinIO's STS (AssumeRoleWithWebIdentity).

    A refusal fails with the token redacted: the SDK's error names the request URL, and the URL holds the token.
    """
    provider = WebIdentityProvider(
        jwt_provider_func=lambda: {"id_token": id_token},
        sts_endpoint=sts_endpoint,
        http_client=pool(verify, retries=False),
    )
    try:
        return provider.retrieve()
    except Exception as error:  # noqa: BLE001 - ValueError for a refusal, urllib3's errors otherwise: each may name the URL
        raise AssertionError(mismatch("AssumeRoleWithWebIdentity at MinIO's STS", "temporary credentials", describe_seen(error))) from None


def put_random(client: Minio, bucket: str, key: str, size: int) -> str:
    """Upload `size` random bytes; their sha256."""
    body = secrets.token_bytes(size)
    client.put_object(bucket, key, io.BytesIO(body), len(body))
    return hashlib.sha256(body).hexdigest()


def put_write_probe(client: Minio, bucket: str, key: str) -> str:
    """The write the failover check expects MinIO to refuse without write quorum: REFUSED_WRITE_BYTES, so the 503 gets through."""
    return put_random(client, bucket, key, REFUSED_WRITE_BYTES)
