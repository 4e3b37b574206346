"""The preflight against a stand-in docker CLI (tests/unit/fake_docker.py) answering from fixtures.

What the stack needs comes from the real inventory of the dev stack (the program under mocks),
so the subnets, ports and memory in these fixtures follow the program, never a copy of it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from infra import preflight
from infra.container import STACK_LABEL
from infra.inventory import Inventory, PublishedPort, inventory, stack_config
from infra.preflight import GIB, Report, check_host
from tests.conftest import ROOT
from tests.unit import fake_docker

MIB = 1024 * 1024
PLENTY = 500 * GIB


@pytest.fixture(scope="module")
def dev() -> Inventory:
    return inventory("dev")


@pytest.fixture(scope="module")
def port_keys() -> dict[int, str]:
    config, _, _ = stack_config("dev")
    return {port: f"edge.{key}" for key, port in config.edge.published_ports().items()}


def network(ident: str, name: str, subnet: str | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Id": ident, "Name": name, "Labels": labels or {}, "IPAM": {"Config": [{"Subnet": subnet}] if subnet else []}}


def container(
    ident: str, name: str, ports: tuple[PublishedPort, ...] = (), labels: dict[str, str] | None = None, running: bool = True
) -> dict[str, Any]:
    held: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        held.setdefault(f"{port.internal}/{port.protocol}", []).append({"HostIp": port.host_ip, "HostPort": str(port.external)})
    return {
        "Id": ident,
        "Name": f"/{name}",
        "Config": {"Labels": labels or {}},
        "State": {"Running": running},
        "NetworkSettings": {"Ports": held if running else {}},
    }


def proxy_ports(inv: Inventory) -> tuple[PublishedPort, ...]:
    return next(c.ports for c in inv.containers if c.ports)


def clean_host(inv: Inventory, root: Path, local: bool = True) -> dict[str, Any]:
    """A host with Docker's default networks, this stack already deployed once, and an unrelated container."""
    own = {STACK_LABEL: inv.prefix}
    proxy = next(c for c in inv.containers if c.ports)
    return {
        "server": {"Version": "28.2.2"},
        "info": {
            "Name": socket.gethostname() if local else "docker-desktop",
            "DockerRootDir": str(root),
            "MemTotal": 4 * inv.memory_mb * MIB,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        },
        "networks": [
            network("n-bridge", "bridge", "172.17.0.0/16"),
            network("n-host", "host", None),
            network("n-none", "none", None),
            *(network(f"n-own-{n.segment}", n.name, n.subnet, own) for n in inv.networks),
        ],
        "containers": [
            container("c-own-proxy", proxy.name, proxy.ports, own),
            container("c-other", "unrelated-web", (PublishedPort("0.0.0.0", 18080, 80),)),
        ],
    }


def check(
    fixture: dict[str, Any],
    inv: Inventory,
    port_keys: dict[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    free: int = PLENTY,
    stack_values: dict[str, Any] | None = None,
) -> Report:
    fake_docker.install(tmp_path / "bin", fixture)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return check_host(inv, port_keys, stack_values or {}, timeout=10, free_bytes=lambda _: free)


def problems(report: Report) -> list[str]:
    return [finding.text for finding in report.problems]


def run_preflight(tmp_path: Path, fixture: dict[str, Any], *extra: str, stack: str = "dev") -> subprocess.CompletedProcess[str]:
    fake_docker.install(tmp_path / "bin", fixture)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run(
        [sys.executable, "-m", "infra", "preflight", "--stack", stack, *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_clean_host_passes_with_the_stacks_own_networks_and_ports_in_place(tmp_path: Path, dev: Inventory) -> None:
    result = run_preflight(tmp_path, clean_host(dev, tmp_path, local=False))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "preflight of stack 'dev' on unix:///var/run/docker.sock (docker context 'default'):"
    assert "  info: Docker Engine 28.2.2 (the preflight asks for 20.10 or newer)" in lines
    assert not [line for line in lines if "problem:" in line or "warning:" in line]
    assert lines[-1] == "preflight of stack 'dev': no problems, 0 warning(s)"


def test_an_engine_older_than_20_10_is_a_problem(tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    host = clean_host(dev, tmp_path) | {"server": {"Version": "19.03.15"}}
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == [
        "Docker Engine 19.03.15 is older than 20.10, the first release that applies memory limits on cgroup v2 hosts; "
        "upgrade Docker Engine (https://docs.docker.com/engine/install/) and run the preflight again"
    ]
    host["server"] = {"Version": "20.10.24+dfsg1"}
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == []


def test_a_subnet_of_a_foreign_network_is_a_problem_but_the_stacks_own_is_not(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = clean_host(dev, tmp_path)
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == [], "the stack's own networks share its subnets"
    storage = next(n for n in dev.networks if n.segment == "storage")
    wider = str(ipaddress.ip_network(storage.subnet).supernet(new_prefix=16))
    host["networks"].append(network("n-other", "other-project_default", wider, {STACK_LABEL: "minio-other"}))
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == [
        f"subnet {storage.subnet} of {storage.name} overlaps {wider} of network 'other-project_default', which is not this "
        "stack's, and Docker refuses overlapping networks; set networks.storage.subnet in Pulumi.dev.yaml to a free range, "
        "or remove that network"
    ]


def test_a_port_held_by_a_foreign_container_is_a_problem_but_by_the_stacks_own_is_not(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = clean_host(dev, tmp_path)
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == [], "the stack's own proxy holds its ports"
    first = proxy_ports(dev)[0]
    taken = PublishedPort("0.0.0.0", first.external, 8443)
    host["containers"] += [
        container("c-web", "web", (taken,)),
        # a stopped container holds no port
        container("c-stopped", "old-web", (taken,), running=False),
    ]
    [problem] = problems(check(host, dev, port_keys, tmp_path, monkeypatch))
    proxy = next(c for c in dev.containers if c.ports)
    assert problem == (
        f"port {first.host_ip}:{first.external}/tcp that {proxy.name} publishes is held by container 'web' "
        f"(0.0.0.0:{first.external}), which is not this stack's; stop that container, or set {port_keys[first.external]} "
        "(or edge.bindAddress) in Pulumi.dev.yaml"
    )


def test_a_container_name_taken_by_a_foreign_container_is_a_problem(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = clean_host(dev, tmp_path)
    name = dev.containers[0].name
    host["containers"].append(container("c-squatter", name, running=False))
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == [
        f"the container name {name} is taken by a container that is not this stack's (no {STACK_LABEL}={dev.prefix} label), "
        f"and Docker names are unique; remove or rename it (docker rm -f {name}), or give the stack another name"
    ]


def test_memory_limits_over_the_hosts_memory_are_a_problem_and_over_80_percent_a_warning(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = clean_host(dev, tmp_path)
    host["info"]["MemTotal"] = (dev.memory_mb - 1) * MIB
    assert problems(check(host, dev, port_keys, tmp_path, monkeypatch)) == [
        f"the stack's container memory limits add up to {dev.memory_mb} MiB, more than the host's {dev.memory_mb - 1} MiB "
        "(MemTotal); lower storage.memoryMb and the other memoryMb settings in Pulumi.dev.yaml, or deploy to a host with more memory"
    ]
    host["info"]["MemTotal"] = int(dev.memory_mb / 0.9) * MIB
    report = check(host, dev, port_keys, tmp_path, monkeypatch)
    assert report.problems == []
    assert [w.text.split(",")[0] for w in report.warnings] == [f"the stack's container memory limits add up to {dev.memory_mb} MiB"]


def test_low_disk_under_a_local_docker_root_is_a_problem_and_little_headroom_a_warning(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = clean_host(dev, tmp_path)
    [problem] = problems(check(host, dev, port_keys, tmp_path, monkeypatch, free=2 * GIB))
    logs = sum(c.log_ceiling_mb for c in dev.containers) / 1024
    assert problem == (
        f"only 2.0 GiB is free under {tmp_path}, where the stack's {len(dev.volumes)} volumes go, and it needs about "
        f"{preflight.IMAGE_DISK_ALLOWANCE_GIB + logs:.1f} GiB for images and logs; free space there, or move Docker's data-root to a larger disk"
    )
    report = check(host, dev, port_keys, tmp_path, monkeypatch, free=12 * GIB)
    assert report.problems == [] and len(report.warnings) == 1 and "less than 20 GiB for MinIO data" in report.warnings[0].text


def test_free_disk_is_measured_where_the_local_daemon_keeps_its_data(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker.install(tmp_path / "bin", clean_host(dev, tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    measured: list[str] = []
    check_host(dev, port_keys, {}, timeout=10, free_bytes=lambda path: measured.append(path) or PLENTY)
    assert measured == [str(tmp_path)]


def test_free_disk_of_a_daemon_elsewhere_is_reported_as_not_measurable(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = check(clean_host(dev, tmp_path, local=False), dev, port_keys, tmp_path, monkeypatch, free=0)
    assert report.problems == []
    assert any(f.text.startswith(f"free disk under {tmp_path} on unix:///var/run/docker.sock cannot be measured from here") for f in report.findings)


def test_a_daemon_that_does_not_answer_is_one_sentence_and_exit_1(tmp_path: Path, dev: Inventory) -> None:
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    result = run_preflight(tmp_path, clean_host(dev, tmp_path) | {"down": down})
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [
        f"  problem: `docker version` failed against unix:///var/run/docker.sock ({down}); "
        "start Docker Engine (or point DOCKER_HOST at one) and run the preflight again"
    ]
    assert result.stderr.splitlines() == [
        "error: the preflight found 1 problem(s) on unix:///var/run/docker.sock; fix them and run scripts/preflight dev again (nothing was changed)"
    ]


def test_a_hanging_daemon_is_given_up_on_after_the_timeout_with_a_sentence(tmp_path: Path, dev: Inventory) -> None:
    started = time.monotonic()
    result = run_preflight(tmp_path, clean_host(dev, tmp_path) | {"hang": True}, "--timeout", "1")
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    assert (
        "  problem: the Docker daemon at unix:///var/run/docker.sock did not answer `docker version` within 1 s; "
        "check that it is running and reachable (systemctl status docker, or start Docker Desktop), then run the preflight again"
    ) in result.stdout.splitlines()


def test_every_problem_is_reported_in_one_run(tmp_path: Path, dev: Inventory) -> None:
    host = clean_host(dev, tmp_path, local=False)
    host["server"] = {"Version": "19.03.15"}
    host["info"]["MemTotal"] = 1024 * MIB
    storage = next(n for n in dev.networks if n.segment == "storage")
    host["networks"].append(network("n-other", "other", storage.subnet))
    host["containers"].append(container("c-web", "web", proxy_ports(dev)[:1]))
    result = run_preflight(tmp_path, host)
    assert result.returncode == 1
    found = [line for line in result.stdout.splitlines() if line.startswith("  problem: ")]
    port = proxy_ports(dev)[0]
    assert [line.split()[1:3] for line in found] == [
        ["Docker", "Engine"],
        ["subnet", storage.subnet],
        ["port", f"{port.host_ip}:{port.external}/tcp"],
        ["the", "stack's"],
    ]


def test_the_containerd_image_store_is_a_problem_only_for_the_legacy_builder_on_an_engine_before_the_fix(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert any(image.built for image in dev.images), "the dev stack builds its backup image"
    host = clean_host(dev, tmp_path)
    host["info"] |= {
        "Driver": "overlayfs",
        "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
        "ServerVersion": "27.4.1",
    }
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    report = check(host, dev, port_keys, tmp_path, monkeypatch)
    assert report.problems == [] and report.warnings == []
    assert any("is built with buildx, which works with it" in f.text for f in report.findings)
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    [problem] = check(host, dev, port_keys, tmp_path, monkeypatch).problems
    assert problem.text.startswith("DOCKER_BUILDKIT=0 makes the docker provider build ") and "moby#47717" in problem.text
    host["info"]["ServerVersion"] = "27.5.0"
    assert check(host, dev, port_keys, tmp_path, monkeypatch).problems == []
    host["info"] |= {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}
    report = check(host, dev, port_keys, tmp_path, monkeypatch)
    assert report.problems == [] and "image store: classic (overlay2)" in [f.text for f in report.findings]


def test_the_docker_host_is_the_one_the_docker_provider_would_use(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "calls.jsonl"
    host = clean_host(dev, tmp_path) | {
        "log": str(log),
        "context": {"Name": "colima", "Endpoints": {"docker": {"Host": f"unix://{tmp_path}/colima.sock"}}},
        "contexts": [{"Name": "storage-1", "Endpoints": {"docker": {"Host": "ssh://ops@storage-1"}}}],
    }

    def target(stack_values: dict[str, Any] | None = None) -> tuple[str, str]:
        report = check(host, dev, port_keys, tmp_path, monkeypatch, stack_values=stack_values)
        return report.target.endpoint, report.target.source

    assert target() == (f"unix://{tmp_path}/colima.sock", "docker context 'colima'")
    assert target({"docker:host": "tcp://10.0.0.5:2376"}) == ("tcp://10.0.0.5:2376", "docker:host in the stack file")
    seen = [line for line in log.read_text().splitlines() if '"version"' in line]
    assert '"DOCKER_HOST": "tcp://10.0.0.5:2376"' in seen[-1], "the CLI talks to the daemon the provider will use"
    # the provider's docker:context (or DOCKER_CONTEXT) overrides its host
    assert target({"docker:context": "storage-1", "docker:host": "tcp://10.0.0.5:2376"}) == (
        "ssh://ops@storage-1", "docker:context in the stack file 'storage-1'"
    )
    assert '"DOCKER_HOST": null' in log.read_text().splitlines()[-1], "the CLI uses the context itself, TLS and all"
    report = check(host, dev, port_keys, tmp_path, monkeypatch, stack_values={"docker:context": "nosuch"})
    assert problems(report) == [
        "the docker context 'nosuch' (docker:context in the stack file) cannot be read; "
        "list the contexts with `docker context ls` and fix the name"
    ]
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.6:2376")
    report = check_host(dev, port_keys, {}, timeout=10, free_bytes=lambda _: PLENTY)
    assert (report.target.endpoint, report.target.source) == ("tcp://10.0.0.6:2376", "DOCKER_HOST")


def test_without_the_docker_cli_the_preflight_says_what_to_install(
    tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    report = check_host(dev, port_keys, {}, timeout=10)
    assert problems(report) == [
        "the docker command line is not installed here, and the preflight reads the Docker host through it; "
        "install the Docker CLI (https://docs.docker.com/engine/install/) and run the preflight again"
    ]


def test_prod_without_its_operator_inputs_is_checked_with_throwaway_values_and_says_so(tmp_path: Path) -> None:
    prod = inventory("prod")
    result = run_preflight(tmp_path, clean_host(prod, tmp_path, local=False), stack="prod")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "  info: Pulumi.prod.yaml does not set edge.publicHost, tlsCertificate, tlsPrivateKey yet; the preflight assumed "
        "throwaway values (no figure it checks depends on them), the deploy will ask for them"
    ) in result.stdout.splitlines()


# --- drives on their own disks (storage.drivePaths) ---------------------------------------------

DRIVE_PATHS = [f"/srv/disk{node}{drive}/minio" for node in range(1, 5) for drive in "ab"]


@pytest.fixture(scope="module")
def on_disks(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    source = ROOT / "Pulumi.dev.yaml"
    stack_file = tmp_path_factory.mktemp("stack") / "Pulumi.dev.yaml"
    text = source.read_text().replace("    drivesPerNode: 2\n", "    drivesPerNode: 2\n    drivePaths: [" + ", ".join(DRIVE_PATHS) + "]\n", 1)
    assert text != source.read_text(), "the dev stack file no longer has the line this fixture extends"
    stack_file.write_text(text)
    return inventory("dev", stack_file)


def test_drive_directories_on_disks_of_their_own_pass(tmp_path: Path, on_disks: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = {**clean_host(on_disks, tmp_path), "host_paths": {path: 2049 + index for index, path in enumerate(DRIVE_PATHS)}}
    report = check(fixture, on_disks, port_keys, tmp_path, monkeypatch)
    assert "storage.drivePaths: the 8 drive directories exist, each on a filesystem of its own" in [f.text for f in report.findings]
    assert not report.problems and not report.warnings


def test_a_missing_drive_directory_is_a_problem_naming_it(tmp_path: Path, on_disks: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    host_paths = {path: 2049 + index for index, path in enumerate(DRIVE_PATHS) if path != DRIVE_PATHS[5]}
    report = check({**clean_host(on_disks, tmp_path), "host_paths": host_paths}, on_disks, port_keys, tmp_path, monkeypatch)
    assert problems(report) == [
        f"storage.drivePaths: {DRIVE_PATHS[5]} does not exist on the Docker host (unix:///var/run/docker.sock); mount the drive's "
        "disk there and create the directory (the drives after it are checked once it exists)"
    ]


def test_drive_directories_sharing_a_filesystem_are_a_warning_naming_them(tmp_path: Path, on_disks: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # minio1's two drives on one disk, the rest apart
    host_paths = {path: 2049 + index for index, path in enumerate(DRIVE_PATHS)} | {DRIVE_PATHS[1]: 2049}
    report = check({**clean_host(on_disks, tmp_path), "host_paths": host_paths}, on_disks, port_keys, tmp_path, monkeypatch)
    assert [f.text for f in report.warnings] == [
        f"storage.drivePaths: {DRIVE_PATHS[0]}, {DRIVE_PATHS[1]} are on one filesystem: losing that disk loses all of those drives "
        "at once, so this layout survives no disk loss; give each drive a directory on a disk of its own"
    ]
    assert not report.problems


def test_without_drive_paths_the_preflight_runs_no_container(tmp_path: Path, dev: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    check({**clean_host(dev, tmp_path), "log": str(log)}, dev, port_keys, tmp_path, monkeypatch)
    assert not [line for line in log.read_text().splitlines() if '"run"' in line]


@pytest.fixture(scope="module")
def with_socket_group(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    source = ROOT / "Pulumi.dev.yaml"
    stack_file = tmp_path_factory.mktemp("stack") / "Pulumi.dev.yaml"
    text = source.read_text().replace("  minio-platform:backup:\n", "  minio-platform:monitoring:\n    dockerSocketGid: 988\n  minio-platform:backup:\n", 1)
    assert text != source.read_text(), "the dev stack file no longer has the line this fixture extends"
    stack_file.write_text(text)
    return inventory("dev", stack_file)


def test_the_docker_socket_owned_by_the_configured_group_passes(
    tmp_path: Path, with_socket_group: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = {**clean_host(with_socket_group, tmp_path), "socket_groups": {"/var/run/docker.sock": 988}}
    report = check(fixture, with_socket_group, port_keys, tmp_path, monkeypatch)
    assert "docker socket: /var/run/docker.sock belongs to group 988, which the Docker API proxy runs in" in [f.text for f in report.findings]
    assert not report.problems and not report.warnings


def test_a_docker_socket_of_another_group_is_a_problem_naming_the_key_and_the_group(
    tmp_path: Path, with_socket_group: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = {**clean_host(with_socket_group, tmp_path), "socket_groups": {"/var/run/docker.sock": 999}}
    report = check(fixture, with_socket_group, port_keys, tmp_path, monkeypatch)
    assert problems(report) == [
        "/var/run/docker.sock on the Docker host (unix:///var/run/docker.sock) belongs to group 999, but the Docker API proxy "
        "there runs in group 988: it could not connect, and the log agent behind it would ship nothing; set "
        "monitoring.dockerSocketGid to 999"
    ]


def test_a_missing_docker_socket_is_a_problem_naming_it(
    tmp_path: Path, with_socket_group: Inventory, port_keys: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = check(clean_host(with_socket_group, tmp_path), with_socket_group, port_keys, tmp_path, monkeypatch)
    assert problems(report) == [
        "monitoring.dockerSocket: /var/run/docker.sock does not exist on the Docker host (unix:///var/run/docker.sock); "
        "give the path of its Docker API socket"
    ]
