"""The Docker API proxy: the only container with the Docker socket, and an allow-list that lets the log
agent read and nothing else.

The allow-list is checked as socket-proxy checks it, from the arguments the program registers: each
`-allow<METHOD>=<regex>` compiled as `^<regex>$` with RE2 (Go's regexp syntax; google-re2), matched
against the request's decoded path; no list for the method answers 405, no matching regex 403
(wollomatic/socket-proxy cmd/socket-proxy/handlehttprequest.go, internal/config/config.go
`compileRegexp`). tests/lab/test_docker_api_proxy.py runs the proxy itself.
"""

from __future__ import annotations

from typing import Any

import pytest
import re2

from infra.monitoring.docker_api_proxy import ALLOWED_CALLS, PORT, SERVICE
from infra.networks import host_address
from tests.unit.pulumi_harness import Deployment, Registration, deploy

CONTAINER = "docker:index/container:Container"
STACKS = ["dev", "staging", "prod"]
DOCKER_SOCKET = "/var/run/docker.sock"
API = "/v1.52"
ID = "4f1c2a9d" * 8

# every call the agents make: Docker's Go client pings unversioned, then sends the rest under /v<version>
AGENT_CALLS = [
    ("HEAD", "/_ping"),
    ("GET", "/_ping"),
    ("GET", f"{API}/containers/json"),
    ("GET", "/containers/json"),
    ("GET", f"{API}/networks"),
    ("GET", f"{API}/containers/{ID}/json"),
    ("GET", f"{API}/containers/{ID}/logs"),
]
# (method, decoded path, the proxy's answer)
REFUSED = [
    # writes: no list for the method at all
    ("POST", f"{API}/containers/create", 405),
    ("POST", f"{API}/containers/{ID}/exec", 405),
    ("POST", f"{API}/exec/{ID}/start", 405),
    ("POST", f"{API}/containers/{ID}/start", 405),
    ("POST", f"{API}/containers/{ID}/attach", 405),
    ("POST", f"{API}/images/create", 405),
    ("POST", f"{API}/build", 405),
    ("PUT", f"{API}/containers/{ID}/archive", 405),
    ("DELETE", f"{API}/containers/{ID}", 405),
    ("POST", "/_ping", 405),
    # reads the agents never make: files out of containers, a GET that writes stdin, the host's inventory
    ("GET", f"{API}/containers/{ID}/archive", 403),
    ("GET", f"{API}/containers/{ID}/export", 403),
    ("GET", f"{API}/containers/{ID}/attach/ws", 403),
    ("GET", f"{API}/containers/{ID}/top", 403),
    ("GET", f"{API}/containers/{ID}/stats", 403),
    ("GET", f"{API}/images/json", 403),
    ("GET", f"{API}/info", 403),
    ("GET", f"{API}/version", 403),
    ("GET", f"{API}/events", 403),
    ("GET", f"{API}/secrets", 403),
    ("GET", f"{API}/volumes", 403),
    ("GET", f"{API}/networks/{ID}", 403),
    ("HEAD", f"{API}/containers/json", 403),
    # near misses: by name rather than id, other path shapes around the allowed ones
    ("GET", f"{API}/containers/minio-dev-keycloak/json", 403),
    ("GET", f"{API}/containers/{ID[:12]}/logs", 403),
    ("GET", f"{API}/containers/{ID}/json/../archive", 403),
    ("GET", f"{API}/containers/../images/json", 403),
    ("GET", f"{API}/containers/{ID}/logs/", 403),
    ("GET", f"{API}/containers/json\n", 403),
    ("GET", "//containers/json", 403),
    ("GET", f"/x{API}/containers/json", 403),
    ("GET", f"{API}/_ping", 403),
]


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


def proxy(deployment: Deployment) -> Registration:
    return deployment.named(SERVICE, CONTAINER)


AllowList = dict[str, list[Any]]


def flags(registration: Registration) -> list[tuple[str, str]]:
    """The proxy's arguments as (flag, value) pairs, '' for a switch."""
    pairs = []
    for arg in registration.inputs["command"]:
        name, _, value = arg.removeprefix("-").partition("=")
        pairs.append((name, value))
    return pairs


def allow_list(registration: Registration) -> AllowList:
    """The proxy's table: method -> regexes, each anchored the way socket-proxy anchors it."""
    table: AllowList = {}
    for name, value in flags(registration):
        method = name.removeprefix("allow")
        if name.startswith("allow") and method.isupper():
            table.setdefault(method, []).append(re2.compile(f"^{value}$"))
    return table


def answer(table: AllowList, method: str, path: str) -> int:
    """What socket-proxy answers a caller it admits: 405 without a list for the method, 403 without a match."""
    if method not in table:
        return 405
    return 200 if any(regex.search(path) for regex in table[method]) else 403


@pytest.fixture(scope="module")
def rendered_allow_list() -> AllowList:
    return allow_list(proxy(deploy("dev")))


@pytest.mark.parametrize(("method", "path"), AGENT_CALLS, ids=lambda value: str(value))
def test_every_call_the_agents_make_is_passed(rendered_allow_list: AllowList, method: str, path: str) -> None:
    assert answer(rendered_allow_list, method, path) == 200


@pytest.mark.parametrize(("method", "path", "status"), REFUSED, ids=lambda value: repr(value))
def test_writes_and_every_other_read_are_refused(
    rendered_allow_list: AllowList, method: str, path: str, status: int
) -> None:
    assert answer(rendered_allow_list, method, path) == status


def test_only_head_and_get_have_a_list() -> None:
    assert {call.method for call in ALLOWED_CALLS} == {"HEAD", "GET"}
    # every regex is valid RE2 as written: socket-proxy exits at start on an invalid one
    for call in ALLOWED_CALLS:
        re2.compile(f"^{call.path}$")


def test_the_proxy_alone_mounts_the_docker_socket_read_only(deployment: Deployment) -> None:
    holders = {
        container.name: volume
        for container in deployment.of_type(CONTAINER)
        for volume in container.inputs.get("volumes") or []
        if volume.get("hostPath") == DOCKER_SOCKET or volume.get("containerPath") == DOCKER_SOCKET
    }
    assert holders == {SERVICE: {"hostPath": DOCKER_SOCKET, "containerPath": DOCKER_SOCKET, "readOnly": True}}
    assert proxy(deployment).inputs["volumes"] == [holders[SERVICE]]
    assert ("socketpath", DOCKER_SOCKET) in flags(proxy(deployment))


def test_the_proxy_sits_on_monitoring_net_only_at_its_fixed_address(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    [attachment] = proxy(deployment).inputs["networksAdvanced"]
    assert attachment["name"] == f"{prefix}-monitoring-net"
    assert attachment["aliases"] == [SERVICE]
    assert attachment["ipv4Address"] == host_address(deployment.subnet("monitoring"), SERVICE)
    assert not proxy(deployment).inputs.get("ports")
    assert ("listenip", "0.0.0.0") in flags(proxy(deployment)) and ("proxyport", str(PORT)) in flags(proxy(deployment))


def test_the_proxy_admits_the_deployed_agent_s_address_only(deployment: Deployment) -> None:
    [agent] = deployment.named("alloy", CONTAINER).inputs["networksAdvanced"]
    assert [value for name, value in flags(proxy(deployment)) if name == "allowfrom"] == [f"{agent['ipv4Address']}/32"]
    with_promtail = deploy(deployment.outputs["environment"], overrides={"monitoring": {"logAgent": "promtail"}})
    [promtail] = with_promtail.named("promtail", CONTAINER).inputs["networksAdvanced"]
    assert [value for name, value in flags(proxy(with_promtail)) if name == "allowfrom"] == [f"{promtail['ipv4Address']}/32"]
    assert promtail["ipv4Address"] != agent["ipv4Address"]


def test_the_proxy_keeps_no_privilege_and_checks_its_socket_for_health(deployment: Deployment) -> None:
    registration = proxy(deployment)
    assert registration.inputs["capabilities"] == {"drops": ["ALL"]}
    assert registration.inputs["securityOpts"] == ["no-new-privileges:true"]
    # unset dockerSocketGid: UID 0, the socket's owner, which may connect without any capability
    assert registration.inputs["user"] == "0:0"
    # the image is from scratch: its own probe binary, which asks the proxy to dial the socket
    assert registration.inputs["healthcheck"]["tests"] == ["CMD", "/healthcheck"]
    assert ("allowhealthcheck", "") in flags(registration)
    assert registration.inputs["memory"] == registration.inputs["memorySwap"] == 64


def test_with_the_socket_s_group_the_proxy_runs_as_nobody() -> None:
    deployment = deploy("dev", overrides={"monitoring": {"dockerSocketGid": 988, "dockerSocket": "/run/docker.sock"}})
    assert proxy(deployment).inputs["user"] == "65534:988"
    # the host's socket, wherever it is, is the proxy's /var/run/docker.sock
    assert proxy(deployment).inputs["volumes"] == [{"hostPath": "/run/docker.sock", "containerPath": DOCKER_SOCKET, "readOnly": True}]
