"""Keycloak's own server distribution on loopback, run as the stack runs it, behind the real nginx.

The distribution is the one of the pinned image's version (`infra/config/images.py`), fetched
from Maven Central with Maven (`org.keycloak:keycloak-quarkus-dist:<version>:zip`) into the
git-ignored `.cache/keycloak/`, and unpacked there once per start command: Keycloak writes its
build (the augmentation for `start` or `start-dev`) into `lib/quarkus`, so keeping one tree per
command lets a later run reuse it. Each run gets a home folder of its own (its `conf/` and
`data/`), linked to that tree, holding the rendered `keycloak.conf` and the rendered realm at
`data/import/realm.json`, where the image has them under /opt/keycloak. Only addresses, ports
and the database are the lab's (`KeycloakRuntime`); in `start`, clustering is bound to loopback.

`python -m tests.lab.keycloak_lab` fetches the distribution (scripts/test runs it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from infra.config import StackConfig
from infra.config.images import KEYCLOAK
from infra.identity import (
    KEYCLOAK_ADMIN_USERNAME,
    POSTGRES_DATABASE,
    POSTGRES_USER,
    KeycloakRuntime,
    keycloak_command,
    render_keycloak_conf,
    render_realm,
)
from infra.secrets import SecretValues
from tests.conftest import IN_CI, ROOT, require_tool
from tests.lab.ops_servers import Postgres, free_port

KEYCLOAK_ADDRESS = "127.0.7.1"
POSTGRES_ADDRESS = "127.0.7.2"
CACHE_DIR = ROOT / ".cache" / "keycloak"
# Keycloak's supported-configurations guide: OpenJDK 17, 21 and 25
SUPPORTED_JAVA = (17, 21, 25)
# the first start builds (augments) the server and imports the realm: 1-2 minutes on 2 idle cores,
# up to 7 on a loaded machine
START_SECONDS = 600.0
STOP_SECONDS = 30.0
MAVEN_SECONDS = 600.0


def pinned_version() -> str:
    """The Keycloak version of the pinned image (its tag)."""
    return KEYCLOAK.reference.rsplit(":", 1)[1]


def _missing(message: str) -> None:
    import pytest

    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def java_major(java: str) -> int:
    """Major version `java -version` reports ('openjdk version "17.0.15"' -> 17)."""
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if found is None:
        raise RuntimeError(f"cannot read the Java version from: {result.stderr.strip()[:200]}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def require_java() -> str:
    java = require_tool("java")
    major = java_major(java)
    if major not in SUPPORTED_JAVA:
        _missing(f"Java {major} at {java}: Keycloak {pinned_version()} supports OpenJDK {', '.join(map(str, SUPPORTED_JAVA))}")
    return java


def distribution_zip(version: str) -> Path:
    return CACHE_DIR / f"keycloak-quarkus-dist-{version}.zip"


def fetch_distribution(version: str, mvn: str) -> Path:
    """The distribution zip, from the cache or else from Maven Central (through Maven's own repository cache)."""
    archive = distribution_zip(version)
    if archive.exists():
        return archive
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{version}:zip",
         f"-DoutputDirectory={CACHE_DIR}"],
        capture_output=True, text=True, timeout=MAVEN_SECONDS,
    )
    if result.returncode != 0 or not archive.exists():
        raise RuntimeError(
            f"Maven could not fetch org.keycloak:keycloak-quarkus-dist:{version}:zip "
            f"(exit {result.returncode}): {(result.stdout + result.stderr).strip()[-600:]}"
        )
    return archive


def _unpack(archive: Path, into: Path) -> None:
    """Extract the zip keeping the executable bits (zipfile alone drops them)."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            target = Path(bundle.extract(member, into))
            mode = member.external_attr >> 16
            if mode and not member.is_dir():
                target.chmod(mode & 0o777)


def build_tree(version: str, command: str, archive: Path) -> Path:
    """The unpacked distribution that runs of `command` share (their build lands in its lib/quarkus)."""
    tree = CACHE_DIR / f"{version}-{command}"
    if (tree / "lib" / "quarkus-run.jar").exists():
        return tree
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-{command}-", dir=CACHE_DIR))
    try:
        _unpack(archive, staging)
        [top] = list(staging.iterdir())  # keycloak-<version>/
        shutil.rmtree(tree, ignore_errors=True)
        top.rename(tree)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def require_distribution(command: str) -> Path:
    """The shared tree for `command`; skips (fails under CI=true) without Maven or the distribution."""
    version = pinned_version()
    archive = distribution_zip(version)
    if not archive.exists():
        mvn = require_tool("mvn")
        try:
            archive = fetch_distribution(version, mvn)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            _missing(str(error))
    return build_tree(version, command, archive)


def create_keycloak_database(server: Postgres) -> None:
    """Keycloak's database and owner, as the postgres image creates them from POSTGRES_DB/POSTGRES_USER."""
    server.psql("postgres", f'CREATE ROLE "{POSTGRES_USER}" LOGIN')
    server.psql("postgres", f'CREATE DATABASE "{POSTGRES_DATABASE}" OWNER "{POSTGRES_USER}"')


@dataclass
class LabKeycloak:
    """Keycloak running `keycloak_command(config)` with the rendered keycloak.conf and realm, on loopback."""

    root: Path
    config: StackConfig
    secrets: SecretValues
    database: Postgres
    runtime: KeycloakRuntime = field(init=False)
    process: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0

    def __post_init__(self) -> None:
        http_port = free_port(KEYCLOAK_ADDRESS)
        management_port = free_port(KEYCLOAK_ADDRESS)
        while management_port == http_port:
            management_port = free_port(KEYCLOAK_ADDRESS)
        self.runtime = KeycloakRuntime(
            http_host=KEYCLOAK_ADDRESS,
            http_port=http_port,
            management_port=management_port,
            db_host=self.database.host,
            db_port=self.database.port,
        )

    @property
    def command(self) -> list[str]:
        return keycloak_command(self.config)

    @property
    def endpoint(self) -> str:
        """host:port of the HTTP listener, as the proxy's upstream."""
        return f"{KEYCLOAK_ADDRESS}:{self.runtime.http_port}"

    @property
    def base_url(self) -> str:
        """Keycloak reached directly, as MinIO does on storage-net."""
        return f"http://{self.endpoint}/auth"

    @property
    def management_url(self) -> str:
        return f"http://{KEYCLOAK_ADDRESS}:{self.runtime.management_port}"

    @property
    def log_file(self) -> Path:
        return self.root / "keycloak.log"

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_file.read_text(errors="replace")[-characters:] if self.log_file.exists() else ""

    def _home(self, tree: Path) -> Path:
        """A home of its own: bin copied (kc.sh finds its home from where it lies), the rest linked."""
        home = self.root / "home"
        shutil.copytree(tree / "bin", home / "bin")
        for shared in ("lib", "providers", "themes"):
            (home / shared).symlink_to(tree / shared, target_is_directory=True)
        shutil.copytree(tree / "conf", home / "conf")
        (home / "conf" / "keycloak.conf").write_text(render_keycloak_conf(self.config, self.secrets, self.runtime))
        (home / "data" / "import").mkdir(parents=True)
        (home / "data" / "import" / "realm.json").write_text(render_realm(self.config, self.secrets))
        return home

    def start(self) -> LabKeycloak:
        java = require_java()
        tree = require_distribution(self.command[0])
        home = self._home(tree)
        extra: list[str] = []
        if self.command[0] == "start":
            # production mode clusters (JGroups over the database): keep its transport on loopback too
            extra = [f"--cache-embedded-network-bind-address={KEYCLOAK_ADDRESS}",
                     f"--cache-embedded-network-bind-port={free_port(KEYCLOAK_ADDRESS)}"]
        environment = {key: value for key, value in os.environ.items() if not key.startswith(("KC_", "KEYCLOAK_"))}
        environment["JAVA"] = java
        began = time.monotonic()
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [str(home / "bin" / "kc.sh"), *self.command, *extra],
                stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=home, start_new_session=True,
            )
        self.wait_until_ready(began)
        self.started_in = time.monotonic() - began
        return self

    def wait_until_ready(self, began: float) -> None:
        deadline = began + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"Keycloak exited with {self.process.returncode} before it was ready:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.management_url}/health/ready", timeout=2).status_code == 200:
                    return
            time.sleep(1)
        raise TimeoutError(f"Keycloak not ready after {START_SECONDS:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # kc.sh runs the build, then execs java: signal the whole session it leads
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)

    def session_pids(self) -> set[int]:
        """kc.sh and the java it starts (a child, or itself after a rebuild): the session kc.sh leads."""
        assert self.process is not None
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == self.process.pid:  # field 6 of stat: the session id
                    pids.add(int(stat.parent.name))
        return pids

    def listening_sockets(self) -> set[str]:
        """'address:port' of every TCP and UDP socket the server listens on (from `ss`)."""
        ss = require_tool("ss")
        table = subprocess.run([ss, "-H", "-l", "-n", "-t", "-u", "-p"], capture_output=True, text=True, timeout=30).stdout
        pids = self.session_pids()
        sockets = set()
        for line in table.splitlines():
            if any(f"pid={pid}," in line for pid in pids):
                host, port = line.split()[4].rsplit(":", 1)
                sockets.add(f"{host.strip('[]').removeprefix('::ffff:')}:{port}")
        return sockets

    def binds_loopback_only(self) -> bool:
        """Every listening socket on 127.0.0.0/8, HTTP and management on the lab address."""
        sockets = self.listening_sockets()
        wanted = {f"{KEYCLOAK_ADDRESS}:{self.runtime.http_port}", f"{KEYCLOAK_ADDRESS}:{self.runtime.management_port}"}
        loopback = ipaddress.ip_network("127.0.0.0/8")
        return wanted <= sockets and all(ipaddress.ip_address(s.rsplit(":", 1)[0]) in loopback for s in sockets)

    def admin_token(self) -> str:
        """A master-realm token of the bootstrap admin, asked of Keycloak directly (the proxy admits nobody to master)."""
        answer = requests.post(
            f"{self.base_url}/realms/master/protocol/openid-connect/token",
            data={"grant_type": "password", "client_id": "admin-cli", "username": KEYCLOAK_ADMIN_USERNAME,
                  "password": self.secrets.keycloak_admin_password},
            timeout=30,
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Keycloak's admin REST API for the stack's realm (`path` below /admin/realms/<realm>)."""
        url = f"{self.base_url}/admin/realms/{self.config.identity.realm}{path}"
        headers = {"Authorization": f"Bearer {self.admin_token()}"}
        return requests.request(method, url, headers=headers, timeout=30, **kwargs)


@contextlib.contextmanager
def running_keycloak(root: Path, config: StackConfig, secrets: SecretValues, database: Postgres) -> Iterator[LabKeycloak]:
    keycloak = LabKeycloak(root, config, secrets, database)
    try:
        yield keycloak.start()
    finally:
        keycloak.stop()


@contextlib.contextmanager
def lab_folder(prefix: str) -> Iterator[Path]:
    """A folder of its own for the module's servers: pytest's numbered temporary folders are pruned by
    any other pytest run on the machine, and a Keycloak start outlasts a few of those."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    """Fetch the pinned version's distribution into the cache (the test command's Maven step)."""
    version = pinned_version()
    mvn = shutil.which("mvn")
    if mvn is None:
        print("mvn is not installed: the Keycloak lab tests will skip (fail under CI=true)", file=sys.stderr)
        return 1
    archive = fetch_distribution(version, mvn)
    for command in ("start", "start-dev"):
        build_tree(version, command, archive)
    print(f"Keycloak {version}: {archive.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
