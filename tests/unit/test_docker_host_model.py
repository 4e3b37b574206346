"""What the Docker daemon decides, modelled from its source, checked against what the program registers.

Mocks echo the inputs back; the daemon does not. These tests hold the program to the daemon's
rules: how it hands out addresses, what one host can hold when several stacks share it, and
what the provider reads back after the daemon has filled in its defaults.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Any

import pytest

from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module")
def deployments() -> dict[str, Deployment]:
    return {stack: deploy(stack) for stack in STACKS}


def dynamic_pool(ipam: dict[str, Any]) -> set[ipaddress.IPv4Address]:
    """Where libnetwork's allocator (ipam/allocator.go `getAddress`) takes an address for a container
    that asks for none: the network's ip_range if it has one, else the whole subnet."""
    pool = ipaddress.IPv4Network(ipam.get("ipRange") or ipam["subnet"])
    return set(pool.hosts())


@pytest.mark.parametrize("stack", STACKS)
def test_no_container_can_be_given_a_fixed_address_or_the_gateway_dynamically(
    deployments: dict[str, Deployment], stack: str
) -> None:
    deployment = deployments[stack]
    for network in deployment.of_type(NETWORK):
        [ipam] = network.inputs["ipamConfigs"]
        subnet = ipaddress.IPv4Network(ipam["subnet"])
        fixed = {
            ipaddress.IPv4Address(attachment["ipv4Address"])
            for container in deployment.of_type(CONTAINER)
            for attachment in container.inputs["networksAdvanced"]
            if attachment["name"] == network.inputs["name"] and attachment.get("ipv4Address")
        }
        # without an explicit gateway, libnetwork takes it from the ip_range, where a dynamic container could follow
        gateway = ipaddress.IPv4Address(ipam["gateway"])
        assert fixed and all(address in subnet for address in fixed | {gateway})
        assert not (fixed | {gateway}) & dynamic_pool(ipam), f"{network.inputs['name']}: dynamic pool overlaps fixed addresses"
        assert len(dynamic_pool(ipam)) >= 32, "room for the containers that join without a fixed address"


def test_a_subnet_too_small_for_the_fixed_block_and_the_dynamic_range_is_refused() -> None:
    from infra.config import ConfigError, parse_stack_config

    with pytest.raises(ConfigError, match=r"networks.storage.subnet: '172.30.0.0/26' is too small: use a /25 or larger"):
        parse_stack_config("dev", {"networks": {"storage": {"subnet": "172.30.0.0/26"}}})


def published_ports(deployment: Deployment) -> set[tuple[str, int]]:
    return {
        (port["ip"], int(port["external"]))
        for container in deployment.of_type(CONTAINER)
        for port in container.inputs.get("ports") or []
    }


def docker_names(deployment: Deployment) -> set[str]:
    return {r.inputs["name"] for r in deployment.resources if r.type in {CONTAINER, VOLUME, NETWORK}}


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(STACKS, 2)))
def test_the_shipped_stacks_share_one_host(deployments: dict[str, Deployment], first: str, second: str) -> None:
    a, b = deployments[first], deployments[second]
    # Docker refuses a network whose subnet overlaps another one on the same host
    for net_a, net_b in itertools.product(a.of_type(NETWORK), b.of_type(NETWORK)):
        subnet_a = ipaddress.IPv4Network(net_a.inputs["ipamConfigs"][0]["subnet"])
        subnet_b = ipaddress.IPv4Network(net_b.inputs["ipamConfigs"][0]["subnet"])
        assert not subnet_a.overlaps(subnet_b), f"{first} {net_a.inputs['name']} overlaps {second} {net_b.inputs['name']}"
    # container, volume and network names are one namespace each per host
    assert not docker_names(a) & docker_names(b)
    # a port bound on 0.0.0.0 takes it on every address
    for (ip_a, port_a), (ip_b, port_b) in itertools.product(published_ports(a), published_ports(b)):
        same_address = ip_a == ip_b or "0.0.0.0" in (ip_a, ip_b)
        assert not (same_address and port_a == port_b), f"{first} and {second} both publish {port_a}"


# ---- the second `up`: what the provider reads back after the daemon has had its say -------------

def go_duration(text: str) -> str:
    """How Go's time.Duration.String() prints a whole number of seconds: '1m30s', '1h0m0s', '10s'."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert match and text, f"{text!r} is not a duration of whole seconds"
    total = int(match[1] or 0) * 3600 + int(match[2] or 0) * 60 + int(match[3] or 0)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def read_back(declared: dict[str, Any]) -> dict[str, Any]:
    """The container's state after create and read on a stock daemon, for the fields the daemon fills
    in or normalises (terraform-provider-docker v4.x internal/provider/resource_docker_container_funcs.go
    `resourceDockerContainerRead`, which create also ends with):
    - memorySwap: moby daemon/daemon_unix.go `adaptContainerSettings` stores twice the memory when
      only memory is given; read back in MB, not Computed, no diff suppression;
    - healthcheck durations: stored as nanoseconds, read back with Go's Duration.String();
    - user: the image's USER when unset, but a DiffSuppressFunc hides that; labels and envs (image
      LABEL and ENV merged by daemon/commit.go `merge`) are deliberately not read back, nor are
      networks_advanced, volumes or uploads of a managed container.
    """
    state = dict(declared)
    memory = declared.get("memory") or 0
    if memory > 0 and not declared.get("memorySwap"):
        state["memorySwap"] = 2 * memory
    health = dict(declared["healthcheck"])
    for key in ("interval", "timeout", "startPeriod"):
        health[key] = go_duration(health[key])
    state["healthcheck"] = health
    return state


@pytest.mark.parametrize("stack", STACKS)
def test_a_second_up_reads_back_what_every_container_declares(deployments: dict[str, Deployment], stack: str) -> None:
    for container in deployments[stack].of_type(CONTAINER):
        declared = container.inputs
        state = read_back(declared)
        changed = sorted(key for key in state if state[key] != declared.get(key) and key not in container.ignore_changes)
        assert not changed, f"{container.name}: a second up would update {changed}"


@pytest.mark.parametrize("stack", STACKS)
def test_swap_is_declared_and_a_host_without_swap_accounting_is_ignored_on_purpose(
    deployments: dict[str, Deployment], stack: str
) -> None:
    for container in deployments[stack].of_type(CONTAINER):
        assert container.inputs["memorySwap"] == container.inputs["memory"], f"{container.name}: no swap beyond its memory"
        # daemon_unix.go `verifyPlatformContainerResources` stores -1 where the kernel cannot limit swap
        assert "memorySwap" in container.ignore_changes
