"""Real servers for the operations command line's lab tests, on loopback.

- PostgreSQL (Debian's server binaries), trust authentication on its own 127.0.5.x address.
- SeaweedFS's S3 gateway as a STAND-IN for MinIO: a real S3 server that enforces SigV4 with an
  identities file; nothing it does is reported as MinIO behaviour. It has no MinIO admin API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minio import Minio

from tests.conftest import ROOT, require_tool

STANDIN_ACCESS_KEY = "opsadmin"
STANDIN_SECRET_KEY = "stand-in-secret-key-0123456789"
# the CLI's own user, as the stack's outputs name it (access key ops-admin, secret opsAdminSecretKey)
OPS_ADMIN_SECRET_KEY = "stand-in-ops-admin-secret-0123"


def free_port(host: str, also_plus: int = 0) -> int:
    """A port free on `host` (and, when asked, `port + also_plus` too: SeaweedFS puts gRPC at +10000)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port + also_plus > 65535:
            continue
        if also_plus:
            with socket.socket() as second:
                try:
                    second.bind((host, port + also_plus))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no free port on {host}")


def wait_until(check: object, what: str, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until `check()` is true; a `process` that exits meanwhile ends the wait at once."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it came up (last error: {last})")
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last = error
        time.sleep(0.3)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f}s (last error: {last})")


@dataclass(frozen=True)
class S3StandIn:
    url: str
    access_key: str
    secret_key: str

    def client(self, secret_key: str | None = None) -> Minio:
        return Minio(self.url.removeprefix("http://"), self.access_key, secret_key or self.secret_key, secure=False)

    def environ(self) -> dict[str, str]:
        return {"OPS_ENDPOINT": self.url, "OPS_ACCESS_KEY": self.access_key, "OPS_SECRET_KEY": self.secret_key}


# `weed` puts each gRPC service on a Unix socket named by its port under /tmp, whatever TMPDIR says
# (weed/pb's ServeGrpcOnLocalSocket), and in-process dials to that port go through the socket. Two
# servers alive at once on one port number, even on different addresses, would talk to each other.
WEED_SOCKET_KINDS = ("master-grpc", "volume-grpc", "filer-grpc", "s3-grpc")
_weed_ports_in_use: set[int] = set()


def weed_ports(host: str, count: int) -> list[int]:
    """Distinct ports free on `host` and on 127.0.0.1 (weed listens there too), unused by any weed
    server this process runs and without a left-over /tmp socket; reserved until released."""
    chosen: list[int] = []
    with contextlib.ExitStack() as held:
        for _ in range(count * 50):
            probe = held.enter_context(socket.socket())
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
            if port in _weed_ports_in_use or any(Path(f"/tmp/seaweedfs-{kind}-{port}.sock").exists() for kind in WEED_SOCKET_KINDS):
                continue
            if host != "127.0.0.1":
                loopback = held.enter_context(socket.socket())
                try:
                    loopback.bind(("127.0.0.1", port))
                except OSError:
                    continue
            chosen.append(port)
            if len(chosen) == count:
                _weed_ports_in_use.update(chosen)
                return chosen
    raise RuntimeError(f"no {count} free ports for a weed server on {host}")


def release_weed_ports(ports: list[int]) -> None:
    """After the server has exited: its sockets go, and its ports may be chosen again."""
    for port in ports:
        for kind in WEED_SOCKET_KINDS:
            Path(f"/tmp/seaweedfs-{kind}-{port}.sock").unlink(missing_ok=True)
        _weed_ports_in_use.discard(port)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def seaweedfs_s3(host: str) -> Iterator[S3StandIn]:
    weed = shutil.which("weed") or str(ROOT / ".venv" / "bin" / "weed")
    if not os.access(weed, os.X_OK):
        require_tool("weed")
    workdir = Path(tempfile.mkdtemp(prefix="s3-standin-"))
    identities = {
        "identities": [
            {
                "name": "ops",
                "credentials": [{"accessKey": STANDIN_ACCESS_KEY, "secretKey": STANDIN_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "ops-admin",
                "credentials": [{"accessKey": "ops-admin", "secretKey": OPS_ADMIN_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identities))
    (workdir / "data").mkdir()
    (workdir / "tmp").mkdir()
    ports = weed_ports(host, 8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    command = [
        weed, "server", f"-ip={host}", f"-ip.bind={host}", f"-dir={workdir / 'data'}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={workdir / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=256", "-volume.max=30",
    ]
    log_path = workdir / "weed.log"
    log = log_path.open("wb")
    # its own TMPDIR keeps weed's glog files with the rest of its throwaway state
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(workdir / "tmp")})
    server = S3StandIn(f"http://{host}:{s3}", STANDIN_ACCESS_KEY, STANDIN_SECRET_KEY)
    try:
        probe = server.client()
        # a loaded CI machine can take a while to bring master, volume, filer and gateway up
        try:
            wait_until(lambda: probe.list_buckets() is not None, "SeaweedFS S3 stand-in", timeout=150, process=process)
        except (TimeoutError, RuntimeError) as error:
            raise type(error)(f"{error}; its log ends:\n{log_tail(log_path)}") from None
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        release_weed_ports(ports)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    bin_dir: str
    user: str = "postgres"

    def psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [f"{self.bin_dir}/psql", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True, check=True, timeout=600,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{name}"')

    def cli_args(self, database: str) -> list[str]:
        return ["--database", database, "--pg-host", self.host, "--pg-port", str(self.port),
                "--pg-user", self.user, "--pg-bin-dir", self.bin_dir]


def _server_user() -> dict[str, str]:
    """initdb and postgres refuse to run as root: run them as Debian's postgres user (signals reach them directly)."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@contextmanager
def postgres_server(host: str) -> Iterator[Postgres]:
    initdb = require_tool("initdb")
    bin_dir = str(Path(initdb).resolve().parent)  # Debian keeps psql and pg_dump beside it
    workdir = Path(tempfile.mkdtemp(prefix="pg-lab-"))
    data = workdir / "data"
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120, cwd=workdir, **_server_user(),  # type: ignore[call-overload]
    )
    port = free_port(host)
    process = subprocess.Popen(
        [f"{bin_dir}/postgres", "-D", str(data), "-h", host, "-p", str(port), "-k", str(workdir),
         "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir, **_server_user(),  # type: ignore[call-overload]
    )
    server = Postgres(host, port, bin_dir)
    try:
        wait_until(lambda: server.psql("postgres", "SELECT 1") == "1", "PostgreSQL")
        yield server
    finally:
        process.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away, skip the checkpoint
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def run_ops(args: list[str], environ: dict[str, str], timeout: float = 600, preexec: object = None) -> subprocess.CompletedProcess[str]:
    """scripts/ops's Python entry point in a child process (the venv already exists in tests)."""
    env = {**os.environ, **environ}
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "opscli", *args],
        capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=preexec,  # type: ignore[arg-type]
    )
