"""`plan` says which Docker host each node runs on, and so what losing a host loses: a table of the node
hosts on a stack with storage.hosts, and on a one-host stack that every node shares that host."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config.storage import GATEWAY_PORT
from infra.plan import Plan, plan
from tests.unit.multi_host_stack import DRIVE_PATHS, HOSTS, MAIN_HOST_ADDRESS, on_hosts

ONE_HOST = "hosts: every node runs on the stack's own Docker host, so losing that host loses the whole cluster"
HOST_IS_NODE = "  with one node per host, losing a host is losing its node: the node counts below are host counts"


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan("dev", on_hosts(tmp_path_factory.mktemp("stack")))


def test_a_four_host_plan_has_a_row_per_node_host_with_its_drive_directories(spread: Plan) -> None:
    lines = spread.lines()
    start = lines.index("hosts (storage.hosts): one MinIO node per Docker host, the rest of the stack on its own host:")
    header, *rows = lines[start + 1 : start + 6]
    assert header.split() == ["node", "dockerHost", "address", "containers", "memory", "drives"]
    for node, (row, host) in enumerate(zip(rows, HOSTS, strict=True), start=1):
        there = spread.inventory.on_host(host["dockerHost"])
        drives = ", ".join(DRIVE_PATHS[2 * (node - 1) : 2 * node])
        assert row.split(maxsplit=6) == [
            f"minio{node}", host["dockerHost"], host["address"], str(len(there.containers)), str(there.memory_mb), "MiB", f"2: {drives}"
        ]
    assert lines[start + 6] == HOST_IS_NODE
    # the quorum table follows, its node counts now host counts
    assert lines[start + 8].startswith("erasure layout of pool 1 (minio1..4)")
    assert ONE_HOST not in "\n".join(lines)


def test_a_four_host_plan_sizes_the_stacks_own_host_without_the_nodes(spread: Plan) -> None:
    own = spread.inventory.on_host(None)
    assert spread.sizing.memory_mb == own.memory_mb < spread.inventory.memory_mb
    assert f"memory of the stack's own host: the limits add up to {own.memory_mb} MiB" in "\n".join(spread.lines())
    assert spread.lines()[0].endswith("images on 5 Docker hosts; nothing is created")


def test_a_four_host_plan_routes_each_nodes_ports_on_its_address_and_the_gateway_on_the_main_host(spread: Plan) -> None:
    routes = {(r.host_ip, r.host_port): r for r in spread.ports}
    for index, host in enumerate(HOSTS):
        for port in (9000, 9001):
            route = routes[(host["address"], port)]
            assert route.container == f"{spread.inventory.prefix}-minio{index + 1}" and route.setting == f"storage.hosts[{index}].address"
    assert routes[(MAIN_HOST_ADDRESS, GATEWAY_PORT)].setting == "storage.mainHostAddress"
    assert [row["dockerHost"] for row in spread.as_dict()["nodeHosts"]] == [host["dockerHost"] for host in HOSTS]
    assert spread.as_dict()["nodeHosts"][2]["drives"] == DRIVE_PATHS[4:6]


def test_a_one_host_plan_says_every_node_shares_that_host() -> None:
    planned = plan("dev")
    lines = planned.lines()
    [statement] = [line for line in lines if line.startswith("hosts: ")]
    assert statement == f"{ONE_HOST}, whatever the node counts below; storage.hosts gives each node a host of its own"
    assert lines[lines.index(statement) + 2].startswith("erasure layout of pool 1")
    assert planned.node_hosts == () and planned.as_dict()["nodeHosts"] == []
    assert HOST_IS_NODE not in lines


def test_a_four_host_plan_without_drive_paths_says_docker_keeps_the_drives(tmp_path: Path) -> None:
    planned = plan("dev", on_hosts(tmp_path, drive_paths=False))
    rows = [line for line in planned.lines() if line.startswith("  minio") and "ssh://ops@node" in line]
    assert len(rows) == 4 and all(row.endswith("  2 (Docker volumes)") for row in rows)
