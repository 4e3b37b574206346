"""The smoke suite's pure logic: what a deployed stack should do, read from its own outputs.

Nothing here talks to Docker or the network, so all of it is unit-tested offline
(tests/unit/test_smoke_logic.py). Every expectation comes from the stack's outputs (layout and
its node-loss table, container names and networks, endpoints), never from constants such as 4.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Protocol, TypeVar

from infra.storage import API_PORT, CONSOLE_PORT, NODE_CA_FILE, node_name

NO_DEPLOYMENT = "no deployed stack: run scripts/smoke <stack> or pass --outputs FILE (environment SMOKE_OUTPUTS)"

# How scripts/smoke hands its choices to pytest; environment variables, because the project's
# test command runs pytest over every layer and a smoke-only command-line option would be unknown there.
ENV_OUTPUTS = "SMOKE_OUTPUTS"
"""Path of a JSON file holding `pulumi stack output --json --show-secrets`."""
ENV_STACK = "SMOKE_STACK"
"""Stack name: outputs are read with the Pulumi CLI when no file is given."""
ENV_FAILOVER = "SMOKE_FAILOVER"
"""'off' turns off every check that stops a container (failover, alerts)."""
ENV_PROD_CONSENT = "SMOKE_YES_ON_PROD"
"""'yes' allows the disruptive checks on a prod stack."""
ENV_LEDGER = "SMOKE_LEDGER"
"""File listing containers the suite has stopped and not yet restarted, for scripts/smoke's exit trap."""
ENV_CA_BUNDLE = "SMOKE_CA_BUNDLE"
"""PEM file to trust for the stack's TLS endpoints (default: the exported certificate, else the system's)."""

PULUMI_TIMEOUT_SECONDS = 120

# Keys of the `containers` output the suite addresses by role (names from infra/networks.py HOST_NUMBERS).
EDGE_PROXY = "edge-proxy"
PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
LOKI = "loki"
KEYCLOAK = "keycloak"
GRAFANA = "grafana"
# monitoring-net services answer only inside the stack: HTTP to them is sent from this container
IN_STACK_PROBE = PROMETHEUS

SECRET_PLACEHOLDER = "[secret]"


class OutputsError(ValueError):
    """Stack outputs the suite cannot use; lists every problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"stack outputs from {source} are not usable:\n{listing}")


REDACTED = "[redacted]"
# query parameters and JSON fields whose values are credentials: STS, SigV4 (query and Authorization header), OAuth 2.0 and OIDC
CREDENTIAL_FIELDS = (
    "WebIdentityToken",
    "Token",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "Signature",
    "Credential",
    "code",
    "code_verifier",
    "id_token",
    "access_token",
    "refresh_token",
    "client_secret",
    "password",
    "LDAPPassword",
)
_FIELD_NAMES = "|".join(re.escape(name) for name in sorted(CREDENTIAL_FIELDS, key=len, reverse=True))
# `name=value` in a URL, a form body or an Authorization header; not a longer name ending in one (`session_code`)
_CREDENTIAL_PARAMETER = re.compile(rf"(?<![\w-])({_FIELD_NAMES})=[^&\s\"'#<>,;]+", re.IGNORECASE)
_CREDENTIAL_JSON_FIELD = re.compile(rf"(\"(?:{_FIELD_NAMES})\"\s*:\s*)\"[^\"]*\"", re.IGNORECASE)
# any JWT (header and payload are base64url JSON, so both start with `eyJ`), wherever it stands
_JWT = re.compile(r"\beyJ[\w-]*\.eyJ[\w-]*\.[\w-]*")


def redact_tokens(text: str) -> str:
    """`text` with the value of every credential in it replaced: failure messages end up in CI logs.

    The SDK's error for a refused AssumeRoleWithWebIdentity names the request URL, which holds
    the ID token (`WebIdentityToken=`); presigned URLs hold a signature, OIDC redirects a code.
    """
    text = _CREDENTIAL_PARAMETER.sub(lambda match: f"{match.group(1)}={REDACTED}", text)
    text = _CREDENTIAL_JSON_FIELD.sub(lambda match: f'{match.group(1)}"{REDACTED}"', text)
    return _JWT.sub(REDACTED, text)


def mismatch(what: str, expected: object, seen: object) -> str:
    """The one shape of every failure message: what was checked, what was expected, what was seen (credentials redacted)."""
    return redact_tokens(f"{what}: expected {expected}, seen {seen}")


# ---------------------------------------------------------------------------------------------
# The quorum table


@dataclass(frozen=True)
class NodeLoss:
    """One row of the exported node-loss table: nodes 1..nodes_down stopped."""

    nodes_down: int
    reads: bool
    writes: bool


@dataclass(frozen=True)
class FailoverStage:
    """One step of the failover check: stop `stop_node`, then nodes 1..nodes_down are down."""

    nodes_down: int
    stop_node: int
    reads: bool
    writes: bool

    @property
    def cluster_status(self) -> int:
        """/minio/health/cluster answers 200 only with write quorum."""
        return 200 if self.writes else 503

    @property
    def cluster_read_status(self) -> int:
        return 200 if self.reads else 503

    def describe(self) -> str:
        nodes = "node 1" if self.nodes_down == 1 else f"nodes 1-{self.nodes_down}"
        can = "reads and writes" if self.writes else "reads only" if self.reads else "nothing"
        return f"{nodes} down ({can})"


@dataclass(frozen=True)
class Layout:
    """The first pool's figures (the failover test stops its nodes), and what every pool adds."""

    nodes: int
    drives_per_node: int
    set_size: int
    parity: int
    read_quorum: int
    write_quorum: int
    node_loss: tuple[NodeLoss, ...]
    total_nodes: int
    """Nodes of every pool: minio1 to minio<total_nodes>."""
    reported_quorums: tuple[int, int]
    """(write, read) as MinIO's cluster health reports them: the largest of any pool (erasureServerPools.Health)."""

    def expectation(self, nodes_down: int) -> NodeLoss:
        return self.node_loss[nodes_down]

    def failover_stages(self) -> list[FailoverStage]:
        """Stop nodes one by one while reads are still expected to survive, and check each row.

        The last stage is the first reads-only row when the table has one (writes lost, reads
        kept); the suite never stops a node that would take reads away.
        """
        stages = []
        for row in self.node_loss[1:]:
            if not row.reads:
                break
            stages.append(FailoverStage(row.nodes_down, row.nodes_down, row.reads, row.writes))
            if not row.writes:
                break
        return stages

    def nodes_tolerated(self, *, writes: bool) -> int:
        return max(row.nodes_down for row in self.node_loss if (row.writes if writes else row.reads))


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_layout(data: Any, problems: list[str]) -> Layout | None:
    if not isinstance(data, Mapping):
        problems.append(mismatch("layout", "an object (ErasureLayout.as_dict())", type(data).__name__))
        return None
    numbers: dict[str, int] = {}
    for key in ("nodes", "drivesPerNode", "setSize", "parity", "readQuorum", "writeQuorum"):
        value = _as_int(data.get(key))
        if value is None or value < 1:
            problems.append(mismatch(f"layout.{key}", "a positive integer", repr(data.get(key))))
        else:
            numbers[key] = value
    rows = data.get("nodeLoss")
    table: list[NodeLoss] = []
    if not isinstance(rows, list):
        problems.append(mismatch("layout.nodeLoss", "a list of {nodesDown, reads, writes}", repr(rows)))
    else:
        for index, row in enumerate(rows):
            if (
                not isinstance(row, Mapping)
                or _as_int(row.get("nodesDown")) != index
                or not isinstance(row.get("reads"), bool)
                or not isinstance(row.get("writes"), bool)
            ):
                problems.append(mismatch(f"layout.nodeLoss[{index}]", f"{{nodesDown: {index}, reads: bool, writes: bool}}", repr(row)))
                continue
            table.append(NodeLoss(index, row["reads"], row["writes"]))
    if len(numbers) < 6 or len(table) != len(rows or []):
        return None
    if len(table) != numbers["nodes"] + 1:
        problems.append(mismatch("layout.nodeLoss", f"{numbers['nodes'] + 1} rows (0 to {numbers['nodes']} nodes down)", len(table)))
        return None
    if not (table[0].reads and table[0].writes):
        problems.append(mismatch("layout.nodeLoss[0]", "reads and writes with every node up", table[0]))
        return None
    pools = parse_pools(data.get("pools", [data]), problems)
    if pools is None:
        return None
    return Layout(
        numbers["nodes"],
        numbers["drivesPerNode"],
        numbers["setSize"],
        numbers["parity"],
        numbers["readQuorum"],
        numbers["writeQuorum"],
        tuple(table),
        total_nodes=sum(nodes for nodes, _, _ in pools),
        reported_quorums=(max(write for _, write, _ in pools), max(read for _, _, read in pools)),
    )


def parse_pools(data: Any, problems: list[str]) -> list[tuple[int, int, int]] | None:
    """(nodes, write quorum, read quorum) of each pool of `layout.pools`."""
    if not isinstance(data, list) or not data:
        problems.append(mismatch("layout.pools", "a list of pools (ClusterLayout.as_dict())", repr(data)))
        return None
    pools = []
    for index, pool in enumerate(data):
        figures = [_as_int(pool.get(key)) if isinstance(pool, Mapping) else None for key in ("nodes", "writeQuorum", "readQuorum")]
        if any(value is None or value < 1 for value in figures):
            problems.append(mismatch(f"layout.pools[{index}]", "{nodes, writeQuorum, readQuorum} as positive integers", repr(pool)))
            return None
        pools.append((figures[0], figures[1], figures[2]))
    return pools


# ---------------------------------------------------------------------------------------------
# The outputs


@dataclass(frozen=True)
class NodeHost:
    """A Docker host of a MinIO node's own (`nodeHosts`, from `storage.hosts`)."""

    docker_host: str
    """Its Docker endpoint (`ssh://ops@node2`): every docker call about a container there goes to it."""
    address: str
    """Its private address, the one the node publishes its ports on."""


@dataclass(frozen=True)
class ContainerInfo:
    key: str
    """Its name in the stack (`minio1`, `prometheus`)."""
    name: str
    """Its Docker name."""
    networks: frozenset[str]
    host: NodeHost | None = None
    """The node host it runs on; None: the stack's own host (the Docker endpoint the suite was given)."""
    tls: bool = False
    """A MinIO node serving HTTPS with a certificate from the stack's CA (nodes on hosts of their own)."""

    @property
    def docker_host(self) -> str | None:
        return self.host.docker_host if self.host else None


@dataclass(frozen=True)
class StackOutputs:
    name: str
    environment: str
    layout: Layout
    containers: dict[str, ContainerInfo]
    networks: dict[str, str]
    endpoints: dict[str, str]
    raw: dict[str, Any] = field(repr=False)

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    def node(self, index: int) -> ContainerInfo:
        """MinIO node `index` (1-based), as the storage tier names it."""
        return self.containers[node_name(index)]

    def minio_nodes(self) -> list[ContainerInfo]:
        return [self.node(index) for index in range(1, self.layout.total_nodes + 1)]

    def container(self, key: str) -> ContainerInfo:
        if key not in self.containers:
            raise AssertionError(mismatch(f"containers output of stack {self.name}", f"a container {key!r}", sorted(self.containers)))
        return self.containers[key]

    def endpoint(self, key: str) -> str:
        value = self.endpoints.get(key)
        if not isinstance(value, str) or not value:
            raise AssertionError(mismatch(f"endpoints output of stack {self.name}", f"an endpoint {key!r}", sorted(self.endpoints)))
        return value.rstrip("/")

    def optional_endpoint(self, key: str) -> str | None:
        """An endpoint that stacks deployed before it existed lack."""
        value = self.endpoints.get(key)
        return value.rstrip("/") if isinstance(value, str) and value else None

    def value(self, key: str) -> str:
        """A top-level output (secrets included); fails naming the key when the stack lacks it."""
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            raise AssertionError(mismatch(f"outputs of stack {self.name}", f"a non-empty output {key!r}", sorted(self.raw)))
        return value

    def optional(self, key: str) -> str | None:
        value = self.raw.get(key)
        return value if isinstance(value, str) and value else None


REQUIRED_SECRETS = ("minioRootUser", "minioRootPassword")


def parse_node_hosts(data: Any, problems: list[str]) -> dict[str, NodeHost]:
    """The nodes on hosts of their own, by node name; absent (stacks deployed before `nodeHosts`) is one host."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        problems.append(mismatch("nodeHosts", "{minioN: {dockerHost, address} or null}", repr(data)))
        return {}
    hosts: dict[str, NodeHost] = {}
    for node, entry in data.items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(key), str) and entry[key] for key in ("dockerHost", "address")):
            problems.append(mismatch(f"nodeHosts.{node}", "{dockerHost: str, address: str} or null", repr(entry)))
            continue
        hosts[str(node)] = NodeHost(entry["dockerHost"], entry["address"])
    return hosts


def nodes_speak_tls(command: Any) -> bool:
    """Whether the exported server command (`minioCommand`) names the nodes with https://."""
    return isinstance(command, list) and any(isinstance(argument, str) and argument.startswith("https://") for argument in command)


def place_containers(
    containers: Mapping[str, ContainerInfo], node_hosts: Mapping[str, NodeHost], nodes: Sequence[str], tls: bool
) -> dict[str, ContainerInfo]:
    """Each container with the host it runs on and, for a node, the scheme it serves.

    A node runs on its `nodeHosts` entry; any other container on a node host's network (its log
    agent) runs there too, since a bridge network is one host's.
    """
    host_of_network = {network: node_hosts[key] for key, info in containers.items() if key in node_hosts for network in info.networks}
    placed = {}
    for key, info in containers.items():
        hosts = {host_of_network[network] for network in info.networks if network in host_of_network}
        host = node_hosts.get(key) or (hosts.pop() if len(hosts) == 1 else None)
        placed[key] = replace(info, host=host, tls=tls and key in nodes)
    return placed


def _hidden_secrets(data: Any, path: str = "") -> list[str]:
    if data == SECRET_PLACEHOLDER:
        return [path or "(root)"]
    if isinstance(data, Mapping):
        return [hidden for key, value in data.items() for hidden in _hidden_secrets(value, f"{path}.{key}" if path else str(key))]
    if isinstance(data, list):
        return [hidden for index, value in enumerate(data) for hidden in _hidden_secrets(value, f"{path}[{index}]")]
    return []


def parse_outputs(data: Any, source: str = "outputs") -> StackOutputs:
    """Typed outputs of `pulumi stack output --json --show-secrets`; raise OutputsError listing every problem."""
    if not isinstance(data, Mapping):
        raise OutputsError(source, [mismatch("outputs", "a JSON object", type(data).__name__)])
    problems: list[str] = []
    hidden = _hidden_secrets(data)
    if hidden:
        problems.append(
            mismatch("secret outputs", "their values (read them with --show-secrets)", f"{SECRET_PLACEHOLDER} at {', '.join(hidden)}")
        )
    for key in ("name", "environment", *REQUIRED_SECRETS):
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append(mismatch(key, "a non-empty string", repr(data.get(key)) if key not in REQUIRED_SECRETS else "nothing"))
    layout = parse_layout(data.get("layout"), problems)

    containers: dict[str, ContainerInfo] = {}
    raw_containers = data.get("containers")
    if not isinstance(raw_containers, Mapping) or not raw_containers:
        problems.append(mismatch("containers", "{name-in-stack: {name, networks}}", repr(raw_containers)))
    else:
        for key, entry in raw_containers.items():
            if (
                not isinstance(entry, Mapping)
                or not isinstance(entry.get("name"), str)
                or not isinstance(entry.get("networks"), list)
                or not all(isinstance(network, str) for network in entry["networks"])
            ):
                problems.append(mismatch(f"containers.{key}", "{name: str, networks: [str]}", repr(entry)))
                continue
            containers[key] = ContainerInfo(key, entry["name"], frozenset(entry["networks"]))
    node_hosts = parse_node_hosts(data.get("nodeHosts"), problems)
    if layout is not None and containers:
        nodes = [node_name(index) for index in range(1, layout.total_nodes + 1)]
        missing = [node for node in nodes if node not in containers]
        if missing:
            problems.append(mismatch("containers", f"every MinIO node of the layout ({layout.total_nodes})", f"no entry for {', '.join(missing)}"))
        containers = place_containers(containers, node_hosts, nodes, nodes_speak_tls(data.get("minioCommand")))

    networks = data.get("networks")
    if not isinstance(networks, Mapping):
        problems.append(mismatch("networks", "{segment: docker network name}", repr(networks)))
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, Mapping) or not isinstance(endpoints.get("s3"), str):
        problems.append(mismatch("endpoints", "an object with at least 's3'", repr(endpoints)))

    if problems or layout is None or not isinstance(networks, Mapping) or not isinstance(endpoints, Mapping):
        raise OutputsError(source, problems)
    return StackOutputs(
        name=data["name"],
        environment=data["environment"],
        layout=layout,
        containers=containers,
        networks={str(k): str(v) for k, v in networks.items()},
        endpoints={str(k): str(v) for k, v in endpoints.items() if isinstance(v, str)},
        raw=dict(data),
    )


def load_outputs_file(path: Path) -> StackOutputs:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise OutputsError(str(path), [f"cannot read it: {error.strerror}"]) from None
    except json.JSONDecodeError as error:
        raise OutputsError(str(path), [f"not JSON ({error.msg} at line {error.lineno})"]) from None
    return parse_outputs(data, str(path))


def read_pulumi_outputs(stack: str, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> StackOutputs:
    """Outputs straight from the Pulumi CLI: secrets stay in memory, never in a file."""
    command = ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack]
    source = f"`{' '.join(command)}`"
    try:
        result = run(command, capture_output=True, text=True, timeout=PULUMI_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise OutputsError(source, ["the Pulumi CLI is not on PATH (scripts/deploy installs it into ~/.pulumi/bin)"]) from None
    except subprocess.TimeoutExpired:
        raise OutputsError(source, [f"no answer within {PULUMI_TIMEOUT_SECONDS}s"]) from None
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise OutputsError(source, [f"exit status {result.returncode}: {last_line}"])
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise OutputsError(source, [f"not JSON ({error.msg})"]) from None
    return parse_outputs(data, source)


def deployment_from_environment(environ: Mapping[str, str] = os.environ) -> StackOutputs | None:
    """The deployment the suite was pointed at, or None (then every smoke test skips with NO_DEPLOYMENT)."""
    if environ.get(ENV_OUTPUTS):
        return load_outputs_file(Path(environ[ENV_OUTPUTS]))
    if environ.get(ENV_STACK):
        return read_pulumi_outputs(environ[ENV_STACK])
    return None


# ---------------------------------------------------------------------------------------------
# Consent for checks that stop containers


@dataclass(frozen=True)
class Disruption:
    allowed: bool
    reason: str


def disruption_policy(stack: StackOutputs, environ: Mapping[str, str] = os.environ) -> Disruption:
    """Failover and alert checks stop MinIO nodes: off on request, and on prod only with explicit consent."""
    if environ.get(ENV_FAILOVER, "on").lower() in {"off", "0", "no", "false"}:
        return Disruption(False, "failover and alert checks turned off (--no-failover)")
    if stack.is_prod and environ.get(ENV_PROD_CONSENT, "").lower() != "yes":
        return Disruption(
            False,
            f"stack {stack.name} is prod: failover and alert checks stop MinIO nodes; "
            "rerun with --yes-on-prod to allow them, or --no-failover to silence this",
        )
    return Disruption(True, f"{stack.environment} stack: disruptive checks allowed")


# ---------------------------------------------------------------------------------------------
# Bounded waiting

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was expected and what was last seen."""


def describe_seen(value: object) -> str:
    """What a check saw, for its failure message: short, and with any credential in it redacted."""
    if isinstance(value, BaseException):
        return redact_tokens(f"{type(value).__name__}: {value}")
    text = redact_tokens(repr(value) if not isinstance(value, str) else value)
    return text if len(text) <= 600 else text[:600] + "..."


def wait_for(
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    what: str,
    expected: str,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `probe` until `accept` takes its result; bounded in time and in attempts.

    A probe that raises an ordinary exception counts as a failed attempt (the exception is what
    was seen); KeyboardInterrupt and other BaseExceptions pass straight through.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError("timeout and interval must be positive")
    max_attempts = math.ceil(timeout / interval) + 1
    deadline = clock() + timeout
    seen: object = "nothing (no attempt made)"
    for attempt in range(1, max_attempts + 1):
        try:
            result = probe()
        except Exception as error:  # noqa: BLE001 - a failed attempt; reported as what was seen
            seen = error
        else:
            if accept(result):
                return result
            seen = result
        remaining = deadline - clock()
        if remaining <= 0 or attempt == max_attempts:
            break
        sleep(min(interval, remaining))
    raise WaitTimeout(
        f"{what}: expected {expected} within {timeout:g}s, seen {describe_seen(seen)} "
        f"(last of {attempt} attempt{'s' if attempt != 1 else ''})"
    )


# ---------------------------------------------------------------------------------------------
# Stopping containers safely


# a stop still under way when the start came ends within its grace period; then the start is made again
RESTART_TIMEOUT_SECONDS = 120
RESTART_POLL_SECONDS = 2.0


class ContainerHandle(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def docker_host(self) -> str | None:
        """The Docker endpoint it runs on; None: the stack's own."""
        ...

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def is_running(self) -> bool:
        """Whether the container runs again since the stop (not merely still running while it stops)."""
        ...


class RestartFailed(AssertionError):
    """A container the suite stopped could not be started again: the operator must act."""


def _note(message: str) -> None:
    print(f"smoke: {message}", file=sys.stderr, flush=True)


class NodeOutage:
    """Stops containers on request; leaving the block, however it is left, starts every one of them.

    Leaving includes a failed check, KeyboardInterrupt and SIGTERM (turned into KeyboardInterrupt
    while containers are down). While restarting, a further Ctrl-C is held back until every
    container has been started. A container counts as started once it reports itself running
    again, within a bound: a `docker stop` cut short by Ctrl-C goes on in the daemon, and a
    `docker start` that comes meanwhile changes nothing. A ledger file, when given, always lists
    the containers not yet running again, so that scripts/smoke can start them even if this
    process is killed outright.
    """

    def __init__(
        self,
        ledger: Path | None = None,
        report: Callable[[str], None] = _note,
        *,
        restart_timeout: float = RESTART_TIMEOUT_SECONDS,
        poll_interval: float = RESTART_POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.report = report
        self.restart_timeout = restart_timeout
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.stopped: list[ContainerHandle] = []
        self.restarted: list[str] = []
        self._previous_sigterm: Any = None
        self._sigterm_installed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> NodeOutage:
        """With the ledger file scripts/smoke names, if any."""
        return cls(Path(environ[ENV_LEDGER]) if environ.get(ENV_LEDGER) else None)

    def __enter__(self) -> NodeOutage:
        return self

    def stop(self, handle: ContainerHandle) -> None:
        # recorded before the stop: a stop that fails half-way still gets a start
        self.stopped.append(handle)
        self._write_ledger()
        self._install_sigterm()
        self.report(f"stopping {handle.name}")
        handle.stop()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        failures: list[str] = []
        # from here on an interrupt is held back, not raised: first put back the handler stop() replaced
        self._restore_sigterm()
        with _interrupts_held(self.report) as interrupted:
            for handle in list(reversed(self.stopped)):
                try:
                    self.report(f"starting {handle.name}")
                    handle.start()
                    wait_for(
                        handle.is_running,
                        bool,
                        what=f"{handle.name} after docker start",
                        expected="running again",
                        timeout=self.restart_timeout,
                        interval=self.poll_interval,
                        sleep=self.sleep,
                    )
                except BaseException as start_error:  # noqa: BLE001 - keep starting the others
                    failures.append(f"{handle.name}: {describe_seen(start_error)}")
                else:
                    self.restarted.append(handle.name)
                    self.stopped.remove(handle)
                    self._write_ledger()
        if failures:
            raise RestartFailed(
                mismatch("restarting the containers the smoke suite stopped", "every one running again", "; ".join(failures))
                + f"\nstart them by hand: {start_commands(self.stopped)}"
            )
        if interrupted:
            raise KeyboardInterrupt

    def _write_ledger(self) -> None:
        if self.ledger is not None:
            # one per line: the name, and after a tab the Docker endpoint of a container on a node's own host
            self.ledger.write_text(
                "".join(f"{handle.name}\t{handle.docker_host}\n" if handle.docker_host else f"{handle.name}\n" for handle in self.stopped)
            )

    def _install_sigterm(self) -> None:
        if self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum} while containers were stopped")

        self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt)
        self._sigterm_installed = True

    def _restore_sigterm(self) -> None:
        if self._sigterm_installed:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._sigterm_installed = False


def start_commands(handles: Sequence[ContainerHandle]) -> str:
    """The `docker start` that brings `handles` back, one per Docker host."""
    by_host: dict[str | None, list[str]] = {}
    for handle in handles:
        by_host.setdefault(handle.docker_host, []).append(handle.name)
    return "; ".join(
        f"{f'DOCKER_HOST={host} ' if host else ''}docker start {' '.join(names)}" for host, names in by_host.items()
    )


@contextmanager
def _interrupts_held(report: Callable[[str], None]) -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back inside the block; the list it yields says whether one came."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        report("interrupt received: finishing the restart of every stopped container first")

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------------------------
# Reading answers of the stack's services

# Go's net/http reads at most this much of a body its handler left unread (net/http
# maxPostHandlerReadBytes), and closes the connection when more is left
GO_POST_HANDLER_DISCARD_BYTES = 256 << 10
# a write MinIO refuses unread (lost write quorum) must stay under that limit: else MinIO closes
# the connection mid-upload and nginx answers 502 instead of passing MinIO's 503 on
REFUSED_WRITE_BYTES = 4 * 1024


@dataclass(frozen=True, repr=False)
class HealthAnswer:
    """One answer of a MinIO health endpoint, with what a node still starting says about itself."""

    status: int
    server_status: str | None = None
    """Header x-minio-server-status: offline, bucket-metadata-offline or iam-offline while a node starts."""
    error_code: str | None = None
    """An S3 error code in the body, such as XMinioServerNotInitialized."""
    write_quorum: str | None = None
    read_quorum: str | None = None

    @property
    def healthy(self) -> bool:
        return self.status == 200

    def __repr__(self) -> str:
        notes = [note for note in (self.server_status, self.error_code) if note]
        return f"{self.status} ({', '.join(notes)})" if notes else str(self.status)


def health_answer(status: int, headers: Mapping[str, str], body: str = "") -> HealthAnswer:
    lower = {key.lower(): value for key, value in headers.items()}
    code = re.search(r"<Code>([^<]+)</Code>", body)
    return HealthAnswer(
        status,
        lower.get("x-minio-server-status"),
        code.group(1) if code else None,
        lower.get("x-minio-write-quorum"),
        lower.get("x-minio-read-quorum"),
    )


def node_curl(*options: str, path: str, tls: bool) -> list[str]:
    """curl asking a MinIO node's own API from inside its container: over HTTPS on a node host, trusting
    the stack's CA as the node itself does (its certificate names localhost)."""
    trust = ["--cacert", NODE_CA_FILE] if tls else []
    return ["curl", *options, *trust, f"{'https' if tls else 'http'}://localhost:{API_PORT}{path}"]


def node_published_ports(node: ContainerInfo) -> list[str]:
    """What a MinIO node publishes, as `HostIp:HostPort->port/tcp`: nothing on the stack's own host (the
    proxy reaches it on storage-net); on a host of its own its API and console, on its private address only."""
    if node.host is None:
        return []
    return sorted(f"{node.host.address}:{port}->{port}/tcp" for port in (API_PORT, CONSOLE_PORT))


def curl_health_answer(output: str) -> HealthAnswer | None:
    """The health answer in the output of `curl -i` (status line, headers, blank line, body); None if it holds no HTTP answer."""
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    lines = head.strip().splitlines()
    status = re.match(r"HTTP/[0-9.]+ (\d{3})", lines[0]) if lines else None
    if status is None:
        return None
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return health_answer(int(status.group(1)), {key.strip(): value.strip() for key, value in headers.items()}, body)


def wget_status(stderr: str) -> int | None:
    """Final HTTP status of a busybox `wget -S` run (headers go to stderr; redirects print several)."""
    statuses = re.findall(r"^\s*HTTP/[0-9.]+ (\d{3})", stderr, flags=re.MULTILINE)
    if statuses:
        return int(statuses[-1])
    error = re.search(r"server returned error: HTTP/[0-9.]+ (\d{3})", stderr)
    return int(error.group(1)) if error else None


def targets_not_up(answer: Mapping[str, Any]) -> list[str]:
    """Active Prometheus targets (from /api/v1/targets) whose health is not 'up', with their last error."""
    targets = answer.get("data", {}).get("activeTargets", [])
    return [
        f"{target.get('labels', {}).get('job', '?')} {target.get('scrapeUrl', '?')}: "
        f"{target.get('health', '?')} {target.get('lastError', '')}".rstrip()
        for target in targets
        if target.get("health") != "up"
    ]


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go/Prometheus duration such as '15s', '1m30s', '500ms', '1h'."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text.strip():
        raise ValueError(f"{text!r} is not a duration such as 15s or 1m30s")
    return sum(float(number) * units[unit] for number, unit in parts)


@dataclass(frozen=True)
class AlertTiming:
    """How long an alerting rule takes to fire and to clear, as Prometheus reports the loaded rule."""

    hold: float
    """Its `for`: seconds the condition must hold before firing."""
    evaluation: float
    """Its group's evaluation interval."""
    keep_firing: float
    """Its `keep_firing_for`: seconds it stays firing after the condition clears."""


def alert_rule(answer: Mapping[str, Any], name: str) -> AlertTiming | None:
    """Timing of alerting rule `name` from Prometheus /api/v1/rules (durations there are in seconds)."""
    for group in answer.get("data", {}).get("groups", []):
        for rule in group.get("rules", []):
            if rule.get("type") == "alerting" and rule.get("name") == name:
                return AlertTiming(float(rule.get("duration", 0)), float(group.get("interval", 0)), float(rule.get("keepFiringFor", 0)))
    return None


def scrape_interval(answer: Mapping[str, Any], job: str) -> float | None:
    """Scrape interval of `job` from Prometheus /api/v1/targets (the longest, if its targets differ)."""
    intervals = [
        go_duration_seconds(target["scrapeInterval"])
        for target in answer.get("data", {}).get("activeTargets", [])
        if target.get("labels", {}).get("job") == job and target.get("scrapeInterval")
    ]
    return max(intervals) if intervals else None


def target_jobs(answer: Mapping[str, Any]) -> dict[str, int]:
    """Number of active Prometheus targets per job."""
    jobs: dict[str, int] = {}
    for target in answer.get("data", {}).get("activeTargets", []):
        job = target.get("labels", {}).get("job") or target.get("scrapePool", "?")
        jobs[job] = jobs.get(job, 0) + 1
    return jobs


def prometheus_alerts(answer: Mapping[str, Any], name: str, state: str = "firing") -> list[dict[str, Any]]:
    """Alerts called `name` in `state` from Prometheus /api/v1/alerts."""
    return [
        alert
        for alert in answer.get("data", {}).get("alerts", [])
        if alert.get("labels", {}).get("alertname") == name and alert.get("state") == state
    ]


def alertmanager_alerts(answer: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """Active alerts called `name` from Alertmanager /api/v2/alerts."""
    return [
        alert
        for alert in answer
        if alert.get("labels", {}).get("alertname") == name and alert.get("status", {}).get("state", "active") == "active"
    ]


def loki_lines(answer: Mapping[str, Any]) -> list[tuple[dict[str, str], str]]:
    """(labels, line) of every entry in a Loki query_range answer of type streams."""
    return [
        (dict(stream.get("stream", {})), value[1])
        for stream in answer.get("data", {}).get("result", [])
        for value in stream.get("values", [])
    ]


def hidden_literal_pattern(secret: str) -> str:
    """An RE2 pattern matching exactly `secret` that does not contain it as text.

    Loki logs every query it runs (and ships its own logs to itself): searching for a secret
    verbatim would plant the secret in the very logs being checked. The first character goes in
    a class, so the query text never holds the literal; written for a LogQL backtick string.
    """
    if not secret or "`" in secret:
        raise ValueError("the secret must be non-empty and hold no backtick")

    def literal(character: str) -> str:
        # RE2 takes a backslash before ASCII punctuation only
        return "\\" + character if character in string.punctuation else character

    return f"[{literal(secret[0])}]" + "".join(literal(character) for character in secret[1:])


class PatternStream:
    """`size` bytes of a repeating block, hashed as they are read: a large upload without holding it in memory."""

    def __init__(self, size: int, block: bytes) -> None:
        if not block:
            raise ValueError("the block must not be empty")
        self.remaining = size
        self.block = block
        self.offset = 0
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        out = bytearray()
        while len(out) < size:
            start = self.offset % len(self.block)
            piece = self.block[start : start + size - len(out)]
            out += piece
            self.offset += len(piece)
        self.remaining -= size
        self.sha256.update(out)
        return bytes(out)


class _LoginForms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.password_form: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.action = attributes.get("action")
        elif tag == "input" and attributes.get("name") == "password" and self.password_form is None:
            self.password_form = self.action


def login_form_action(page: str) -> str | None:
    """Where a login page posts its credentials: the action of the form holding the password field."""
    forms = _LoginForms()
    forms.feed(page)
    return forms.password_form


def pkce_pair(verifier: str) -> tuple[str, str]:
    """(verifier, S256 challenge) for an authorization-code login (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, for reporting what it holds; its signature is MinIO's to check."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def is_self_signed(pem: str) -> bool:
    """Whether a PEM certificate signed itself (then it is its own trust anchor, as the dev and staging proxies' are)."""
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(pem.encode())
    return certificate.issuer == certificate.subject


def multipart_parts(etag: str) -> int:
    """Number of parts in an S3 multipart ETag ('"<md5>-<parts>"'); 1 for a single PUT."""
    match = re.fullmatch(r'"?[0-9a-fA-F]{32}-(\d+)"?', etag.strip())
    return int(match.group(1)) if match else 1


def policy_buckets(policy: Mapping[str, Any], action_prefix: str = "s3:") -> set[str]:
    """Bucket names (or '*') the Allow statements of an IAM policy grant `action_prefix` actions on."""
    buckets: set[str] = set()
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(action == "*" or action.startswith(action_prefix) for action in actions):
            continue
        resources = statement.get("Resource", [])
        for resource in [resources] if isinstance(resources, str) else resources:
            if resource.startswith("arn:aws:s3:::"):
                buckets.add(resource.removeprefix("arn:aws:s3:::").split("/", 1)[0])
    return buckets
