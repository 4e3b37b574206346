"""The smoke suite's hands on a live stack: Docker (through pytest-testinfra), HTTP and S3 clients.

Each call is bounded: `docker stop/start` with subprocess time limits, in-container HTTP with
the tool's own timeout, HTTP and S3 clients with connect/read timeouts.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import testinfra
import urllib3
from minio import Minio
from minio.credentials.providers import Provider, StaticProvider
from minio.minioadmin import MinioAdmin

from tests.smoke.stack import describe_seen, mismatch, wget_status

STOP_GRACE_SECONDS = 30
DOCKER_TIMEOUT_SECONDS = 120
HTTP_TIMEOUT_SECONDS = 15
S3_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class DockerContainer:
    """A stack container, stopped and started with the docker CLI (it honours DOCKER_HOST/DOCKER_CONTEXT)."""

    name: str

    def _docker(self, *args: str) -> None:
        try:
            result = subprocess.run(
                ["docker", *args, self.name], capture_output=True, text=True, timeout=DOCKER_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"docker {args[0]} {self.name}: no answer within {DOCKER_TIMEOUT_SECONDS}s") from None
        if result.returncode != 0:
            raise AssertionError(mismatch(f"docker {args[0]} {self.name}", "exit status 0", f"{result.returncode}: {result.stderr.strip()}"))

    def stop(self) -> None:
        self._docker("stop", "--time", str(STOP_GRACE_SECONDS))

    def start(self) -> None:
        self._docker("start")


def inspect(name: str) -> dict[str, Any]:
    """`docker inspect` of one container, through testinfra's docker module."""
    result: dict[str, Any] = testinfra.get_host("local://").docker(name).inspect()
    return result


def in_container(name: str) -> Any:
    """A testinfra host whose commands run inside the container (`docker exec`)."""
    return testinfra.get_host(f"docker://{name}")


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
        result = in_container(self.container).run("wget -S -O - -T %s %s", str(self.timeout), full)
        status = wget_status(result.stderr)
        if status is None:
            raise ConnectionError(f"GET {url} from {self.container}: no HTTP answer ({result.stderr.strip()[-300:]})")
        return Answer(status, result.stdout, {})


def http_session(verify: bool | str) -> requests.Session:
    session = requests.Session()
    session.verify = verify
    return session


def get(session: requests.Session, url: str, **kwargs: Any) -> requests.Response:
    return session.get(url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)


def status_of(session: requests.Session, url: str) -> int | str:
    """Status code of a GET, or what went wrong; for polling loops and messages."""
    try:
        return get(session, url).status_code
    except requests.RequestException as error:
        return describe_seen(error)


def pool(verify: bool | str, *, retries: bool) -> urllib3.PoolManager:
    """The S3 clients' HTTP pool; with retries off a 503 SlowDown reaches the caller as it came."""
    tls: dict[str, Any] = {}
    if verify is False:
        tls = {"cert_reqs": "CERT_NONE"}
    elif isinstance(verify, str):
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": verify}
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


def admin_client(endpoint: str, verify: bool | str, access_key: str, secret_key: str) -> MinioAdmin:
    url = urlsplit(endpoint)
    return MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(access_key, secret_key),
        secure=url.scheme == "https",
        http_client=pool(verify, retries=True),
    )
