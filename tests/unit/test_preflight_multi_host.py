"""The preflight of a stack whose nodes run on hosts of their own (storage.hosts), against a stand-in
docker CLI that answers as five daemons: the stack's own host and one per node (tests/unit/fake_docker.py).

Each host is judged on what the program puts there (the inventory of the dev stack on four hosts),
and each finding names its host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import PROJECT, StackConfig
from infra.container import STACK_LABEL
from infra.inventory import Inventory, PublishedPort, inventory, stack_config
from infra.preflight import GIB, Report, check_host
from tests.conftest import ROOT
from tests.unit import fake_docker
from tests.unit.multi_host_stack import DRIVE_PATHS, HOSTS, STORAGE_ON_HOSTS, dev_stack_file, on_hosts

MIB = 1024 * 1024
OWN_ENDPOINT = "unix:///var/run/docker.sock"


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return on_hosts(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="module")
def spread(stack_file: Path) -> tuple[Inventory, StackConfig]:
    config, _, _ = stack_config("dev", stack_file)
    return inventory("dev", stack_file), config


def container(ident: str, name: str, ports: tuple[PublishedPort, ...] = (), labels: dict[str, str] | None = None) -> dict[str, Any]:
    held: dict[str, list[dict[str, str]]] = {}
    for port in ports:
        held.setdefault(f"{port.internal}/{port.protocol}", []).append({"HostIp": port.host_ip, "HostPort": str(port.external)})
    return {"Id": ident, "Name": f"/{name}", "Config": {"Labels": labels or {}}, "State": {"Running": True}, "NetworkSettings": {"Ports": held}}


def daemon(inv: Inventory, name: str, host_paths: dict[str, int] | None = None) -> dict[str, Any]:
    """A daemon that has what the stack put on it already (its networks and containers) and room for it."""
    own = {STACK_LABEL: inv.prefix}
    return {
        "server": {"Version": "28.2.2"},
        "info": {"Name": name, "DockerRootDir": "/var/lib/docker", "MemTotal": 4 * inv.memory_mb * MIB, "Driver": "overlay2"},
        "networks": [
            {"Id": "n-bridge", "Name": "bridge", "Labels": {}, "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}},
            *({"Id": f"n-{n.name}", "Name": n.name, "Labels": own, "IPAM": {"Config": [{"Subnet": n.subnet}]}} for n in inv.networks),
        ],
        "containers": [container(f"c-{c.name}", c.name, c.ports, own) for c in inv.containers],
        "host_paths": host_paths or {},
    }


def five_daemons(inv: Inventory) -> dict[str, Any]:
    """The stack's own host (the top-level fixture) and each node's host, every drive directory on a disk of its own."""
    fixture = daemon(inv.on_host(None), "main")
    fixture["daemons"] = {
        host["dockerHost"]: daemon(
            inv.on_host(host["dockerHost"]), f"node{node}",
            {path: 2049 + drive for drive, path in enumerate(DRIVE_PATHS[2 * (node - 1) : 2 * node])},
        )
        for node, host in enumerate(HOSTS, start=1)
    }
    return fixture


def check(fixture: dict[str, Any], spread: tuple[Inventory, StackConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Report:
    inv, config = spread
    fake_docker.install(tmp_path / "bin", fixture)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    port_keys = {port: f"edge.{key}" for key, port in config.edge.published_ports().items()}
    return check_host(inv, port_keys, {}, timeout=10, free_bytes=lambda _: 500 * GIB, hosts=config.storage.hosts or ())


def problems(report: Report) -> list[str]:
    return [finding.text for finding in report.problems]


def node_label(node: int) -> str:
    return f"minio{node}'s host {HOSTS[node - 1]['dockerHost']} (storage.hosts[{node - 1}])"


def test_every_node_host_is_in_the_inventory(spread: tuple[Inventory, StackConfig]) -> None:
    inv, _ = spread
    assert inv.hosts == tuple(sorted(host["dockerHost"] for host in HOSTS))
    for node, host in enumerate(HOSTS, start=1):
        there = inv.on_host(host["dockerHost"])
        assert f"{inv.prefix}-minio{node}" in {c.name for c in there.containers}
        assert {f"{inv.prefix}-minio{node}-data1", f"{inv.prefix}-minio{node}-data2"} <= {v.name for v in there.volumes}
        assert [n.name for n in there.networks] == [f"{inv.prefix}-minio{node}-net"]
        others = {f"minio{other}" for other in range(1, 5) if other != node}
        names = [c.name for c in there.containers] + [v.name for v in there.volumes]
        assert not [name for name in names if others & set(name.split("-"))]
        assert there.images, "the node's image is pulled on its host"
    own = inv.on_host(None)
    assert not [c for c in own.containers if c.service == "minio"] and not [v for v in own.volumes if v.device]


def test_four_clean_hosts_pass_and_every_finding_names_its_host(
    tmp_path: Path, spread: tuple[Inventory, StackConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, _ = spread
    report = check(five_daemons(inv), spread, tmp_path, monkeypatch)
    assert report.problems == [] and report.warnings == []
    assert [t.endpoint for t in report.node_hosts] == [host["dockerHost"] for host in HOSTS]
    labels = [f"the stack's own host {OWN_ENDPOINT}", *(node_label(node) for node in range(1, 5))]
    assert all(any(f.text.startswith(f"{label}: ") for label in labels) for f in report.findings), report.findings
    for node in range(1, 5):
        about = [f.text.removeprefix(f"{node_label(node)}: ") for f in report.findings if f.text.startswith(node_label(node))]
        assert "Docker Engine 28.2.2 (the preflight asks for 20.10 or newer)" in about
        # memory of what runs there, not of the whole stack
        memory = inv.on_host(HOSTS[node - 1]["dockerHost"]).memory_mb
        assert f"memory: the stack's limits add up to {memory} MiB of the host's {4 * memory} MiB" in about
        assert "storage.drivePaths: the 2 drive directories exist, each on a filesystem of its own" in about
    own = inv.on_host(None).memory_mb
    assert f"the stack's own host {OWN_ENDPOINT}: memory: the stack's limits add up to {own} MiB of the host's {4 * own} MiB" in [
        f.text for f in report.findings
    ]


def test_an_unreachable_node_host_is_a_problem_naming_it_and_its_key(
    tmp_path: Path, spread: tuple[Inventory, StackConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = five_daemons(spread[0])
    del fixture["daemons"]["ssh://ops@node2"]
    [problem] = problems(check(fixture, spread, tmp_path, monkeypatch))
    assert problem.startswith(f"{node_label(2)}: `docker version` failed against ssh://ops@node2 (error during connect: ")
    assert problem.endswith(
        "check that Docker Engine runs on that host and that this machine reaches it, or correct storage.hosts[1].dockerHost "
        "and run the preflight again"
    )


def test_a_drive_directory_missing_on_node_3s_host_is_a_problem_naming_that_host(
    tmp_path: Path, spread: tuple[Inventory, StackConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = five_daemons(spread[0])
    # the directory exists elsewhere (on the stack's own host, and on node 4's), but not where minio3 runs
    del fixture["daemons"]["ssh://ops@node3"]["host_paths"]["/srv/disk3b/minio"]
    fixture["host_paths"] = {path: 3000 + index for index, path in enumerate(DRIVE_PATHS)}
    fixture["daemons"]["ssh://ops@node4"]["host_paths"]["/srv/disk3b/minio"] = 4000
    assert problems(check(fixture, spread, tmp_path, monkeypatch)) == [
        f"{node_label(3)}: storage.drivePaths: /srv/disk3b/minio does not exist on the Docker host (ssh://ops@node3); mount the "
        "drive's disk there and create the directory (the drives after it are checked once it exists)"
    ]


def test_a_port_taken_on_a_node_hosts_address_is_a_problem_on_that_host_only(
    tmp_path: Path, spread: tuple[Inventory, StackConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, _ = spread
    fixture = five_daemons(inv)
    taken = PublishedPort("0.0.0.0", 9000, 80)
    # not this stack's, on node 2's host; the same on the stack's own host is no clash, no node publishes there
    fixture["daemons"]["ssh://ops@node2"]["containers"].append(container("c-web", "web", (taken,)))
    fixture["containers"].append(container("c-web", "web", (taken,)))
    assert problems(check(fixture, spread, tmp_path, monkeypatch)) == [
        f"{node_label(2)}: port 10.0.0.12:9000/tcp that {inv.prefix}-minio2 publishes is held by container 'web' (0.0.0.0:9000), "
        "which is not this stack's; stop that container, or set storage.hosts[1].address to another address of that host "
        "in Pulumi.dev.yaml"
    ]


def test_a_node_name_is_taken_only_on_the_nodes_own_host(
    tmp_path: Path, spread: tuple[Inventory, StackConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    inv, _ = spread
    fixture = five_daemons(inv)
    name = f"{inv.prefix}-minio1"
    # minio1 runs on node 1's host: a foreign container of its name on the stack's own host is in nobody's way
    fixture["containers"].append(container("c-squatter", name))
    assert problems(check(fixture, spread, tmp_path, monkeypatch)) == []
    fixture["daemons"]["ssh://ops@node1"]["containers"] = [container("c-squatter", name)]
    [problem] = problems(check(fixture, spread, tmp_path, monkeypatch))
    assert problem.startswith(f"{node_label(1)}: the container name {name} is taken by a container that is not this stack's")


def test_the_command_line_checks_all_five_hosts_and_counts_their_problems(
    tmp_path: Path, spread: tuple[Inventory, StackConfig], stack_file: Path
) -> None:
    fixture = five_daemons(spread[0])
    del fixture["daemons"]["ssh://ops@node4"]
    fake_docker.install(tmp_path / "bin", fixture)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKER_CONTEXT", None)
    result = subprocess.run(
        [sys.executable, "-m", "infra", "preflight", "--stack", "dev", "--config-file", str(stack_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"preflight of stack 'dev' on {OWN_ENDPOINT} (docker context 'default') and the 4 node hosts of storage.hosts:"
    assert [line for line in lines if line.startswith("  problem: ")] == [
        line for line in lines if line.startswith(f"  problem: {node_label(4)}: `docker version` failed against ssh://ops@node4")
    ] != []
    assert result.stderr.splitlines() == [
        f"error: the preflight found 1 problem(s) on {OWN_ENDPOINT} and the 4 node hosts of storage.hosts; "
        "fix them and run scripts/preflight dev again (nothing was changed)"
    ]


@pytest.fixture(scope="module")
def socket_groups(tmp_path_factory: pytest.TempPathFactory) -> tuple[Inventory, StackConfig]:
    """The stack's Docker sockets in group 988 (monitoring.dockerSocketGid), minio3's host's in 990."""
    folder = tmp_path_factory.mktemp("stack")
    hosts = [dict(host) for host in HOSTS]
    hosts[2]["dockerSocketGid"] = 990
    stack_file = dev_stack_file(folder, **{**STORAGE_ON_HOSTS, "hosts": hosts})
    document = yaml.safe_load(stack_file.read_text())
    document["config"][f"{PROJECT}:monitoring"] = {"dockerSocketGid": 988}
    stack_file.write_text(yaml.safe_dump(document))
    config, _, _ = stack_config("dev", stack_file)
    return inventory("dev", stack_file), config


def with_sockets(fixture: dict[str, Any], groups: dict[str, int]) -> dict[str, Any]:
    """Each daemon's /var/run/docker.sock in its group, by endpoint ('own' for the stack's own host)."""
    fixture["socket_groups"] = {"/var/run/docker.sock": groups["own"]}
    for endpoint, node in fixture["daemons"].items():
        node["socket_groups"] = {"/var/run/docker.sock": groups[endpoint]}
    return fixture


def test_each_hosts_docker_socket_is_checked_against_its_own_group(
    tmp_path: Path, socket_groups: tuple[Inventory, StackConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    groups = {"own": 988, **{host["dockerHost"]: 988 for host in HOSTS}, HOSTS[2]["dockerHost"]: 990}
    report = check(with_sockets(five_daemons(socket_groups[0]), groups), socket_groups, tmp_path, monkeypatch)
    assert report.problems == [] and report.warnings == []
    assert f"{node_label(3)}: docker socket: /var/run/docker.sock belongs to group 990, which the Docker API proxy runs in" in [
        f.text for f in report.findings
    ]

    # minio2's host's docker group is another: the key to set is that host's
    wrong = with_sockets(five_daemons(socket_groups[0]), {**groups, HOSTS[1]["dockerHost"]: 977})
    assert problems(check(wrong, socket_groups, tmp_path, monkeypatch)) == [
        f"{node_label(2)}: /var/run/docker.sock on the Docker host ({HOSTS[1]['dockerHost']}) belongs to group 977, but the "
        "Docker API proxy there runs in group 988: it could not connect, and the log agent behind it would ship nothing; "
        "set storage.hosts[1].dockerSocketGid to 977"
    ]
