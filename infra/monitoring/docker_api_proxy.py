"""The Docker API proxy: the one container that holds the Docker socket. The log agent reaches the
Docker API through it over monitoring-net and may make only the read calls it needs; the socket
itself, even mounted read-only, would give the agent the whole API, which is root on the host.

wollomatic/socket-proxy (MIT, Go standard library only, a from-scratch image with its own
healthcheck binary). It anchors every allow-list regex (`^...$`, Go regexp: RE2) and matches it
against the request's decoded path; a method without a list gets 405, a path no regex matches or a
caller outside `-allowfrom` gets 403 (cmd/socket-proxy/handlehttprequest.go, internal/config/config.go).

One proxy beside every agent: on the stack's own host, and on each node host (agent_hosts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_docker as docker

from infra.container import ContainerSpec, Healthcheck
from infra.monitoring.agent_hosts import AgentHost
from infra.tier import Tier

SERVICE = "docker-api-proxy"
PORT = 2375
DOCKER_API_URL = f"tcp://{SERVICE}:{PORT}"
# where the socket is mounted in the proxy's container
SOCKET_PATH = "/var/run/docker.sock"
NOBODY = 65534


@dataclass(frozen=True)
class AllowedCall:
    method: str
    path: str
    """RE2 over the request's path (no query), anchored by the proxy."""


# Docker's Go client negotiates the API version on /_ping, unversioned, HEAD first and GET when HEAD
# fails, then sends every call under /v<version> (moby client ping.go, client.go `getAPIPath`)
_VERSIONED = r"(/v[0-9]+\.[0-9]+)?"
# both agents name containers by the 64-hex id discovery lists, never by name
_CONTAINER_ID = "[0-9a-f]{64}"

# What Alloy's discovery.docker (Prometheus discovery/moby `refresh`) and loki.source.docker (tailer.go)
# call, and Promtail's docker_sd_configs (the same discovery) and docker target (target.go). Nothing else:
# no /events, /version, /info, no exec, attach, archive or export, and no method but HEAD and GET.
ALLOWED_CALLS: tuple[AllowedCall, ...] = (
    AllowedCall("HEAD", "/_ping"),
    AllowedCall("GET", "/_ping"),
    # discovery: the containers (the client adds the stack filter), and the networks for their meta labels
    AllowedCall("GET", f"{_VERSIONED}/containers/json"),
    AllowedCall("GET", f"{_VERSIONED}/networks"),
    # each discovered container: inspect (TTY, still running), then follow its logs
    AllowedCall("GET", f"{_VERSIONED}/containers/{_CONTAINER_ID}/json"),
    AllowedCall("GET", f"{_VERSIONED}/containers/{_CONTAINER_ID}/logs"),
)


def proxy_command(allow_from: str, listen_ip: str = "0.0.0.0", port: int = PORT, socket_path: str = SOCKET_PATH) -> list[str]:
    """socket-proxy's arguments (the image's entrypoint is the proxy); the lab runs the same on loopback."""
    return [
        f"-listenip={listen_ip}",
        f"-proxyport={port}",
        f"-socketpath={socket_path}",
        # its only caller (the default admits 127.0.0.1 only)
        f"-allowfrom={allow_from}",
        # 127.0.0.1:55555/health, which the image's /healthcheck asks; it dials the socket each time
        "-allowhealthcheck",
        # after a daemon restart the mounted socket can be a dead one: exit, and the restart policy mounts the live one
        "-watchdoginterval=60",
        "-stoponwatchdog",
        *(f"-allow{call.method}={call.path}" for call in ALLOWED_CALLS),
    ]


def add_docker_api_proxy(tier: Tier, client: str, host: AgentHost) -> docker.Container:
    """The proxy on `host`'s network only, at its fixed address, admitting `client` (a service with a fixed address there) only."""
    settings = tier.config.monitoring
    gid = host.socket_gid
    name = host.name(SERVICE)
    return tier.container(
        ContainerSpec(
            service=SERVICE,
            name=name,
            image=tier.image(f"{name}-image", settings.docker_api_proxy_image, provider=host.provider),
            command=proxy_command(allow_from=f"{host.address(client)}/32"),
            volumes=[
                # read-only limits the file, not the API behind it: that is what the allow-list is for
                docker.ContainerVolumeArgs(host_path=settings.docker_socket, container_path=SOCKET_PATH, read_only=True),
            ],
            networks=[host.attachment(SERVICE)],
            # connecting needs write permission on the socket: its group, or its owner (root), capabilities or not
            user=f"{NOBODY}:{gid}" if gid is not None else "0:0",
            # a from-scratch image: no shell, but the proxy's own probe
            healthcheck=Healthcheck(["CMD", "/healthcheck"]),
            memory_mb=settings.docker_api_proxy_memory_mb,
        ),
        provider=host.provider,
    )
