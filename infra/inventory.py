"""What a stack would create on its Docker host, read from the Pulumi program itself.

The program runs in-process under Pulumi's mocks, offline, with throwaway secrets; a recording
monitor keeps every registration (inputs, resource options, which inputs were secret), and the
inventory is built from those registrations only, so its figures cannot drift from the program.
Operator inputs a stack still lacks (prod's edge.publicHost, tlsCertificate, tlsPrivateKey) are
filled with throwaway values and listed in `Inventory.assumed`: none of them changes a container,
port, network, volume or memory figure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]  # no stubs in the lock
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.config import PROJECT, StackConfig, read_stack_file, split_config, stack_file
from infra.config.edge import PROVIDED_TLS_KEYS, TLS_CERTIFICATE_KEY, TLS_PRIVATE_KEY_KEY
from infra.container import SERVICE_LABEL, STACK_LABEL
from infra.secrets import SECRET_CONFIG_KEYS, SECRET_SPECS, SecretValues

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Pulumi's marker of a secret value inside serialized properties
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

CONTAINER = "docker:index/container:Container"
DOCKER_PROVIDER = "pulumi:providers:docker"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
# a throwaway public host name for a prod stack whose operator has not set one yet
THROWAWAY_PUBLIC_HOST = "localhost"


# ---- running the program under mocks -------------------------------------------------------


@dataclass
class Registration:
    """One resource the program asked the engine for: its inputs (plus mocked computed outputs) and options."""

    type: str
    name: str
    inputs: dict[str, Any]
    secret_paths: set[str]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    replace_on_changes: list[str]
    dependencies: list[str]
    parent: str
    urn: str = ""
    ignore_changes: list[str] = field(default_factory=list)
    provider: str = ""
    """The provider reference ('urn::id') the resource is created through; '' for the default provider."""

    def uploads(self) -> dict[str, str]:
        """Files the container receives, by path; a secret Output is recorded inside Pulumi's secret envelope."""
        delivered = self.inputs.get("uploads") or []
        if isinstance(delivered, dict) and delivered.get(SECRET_SIG_KEY) == SECRET_SIG:
            delivered = delivered["value"]
        return {item["file"]: item["content"] for item in delivered}

    @property
    def urn_suffix(self) -> str:
        return f"{self.type}::{self.name}"


def _secret_paths(value: Any, path: str = "") -> set[str]:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return {path}
        return set().union(*(_secret_paths(v, f"{path}.{k}" if path else k) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(_secret_paths(v, f"{path}[{i}]") for i, v in enumerate(value)))
    return set()


class RecordingMonitor(MockMonitor):
    """Pulumi's mock monitor, keeping what the plain mocks API does not show: options and secret inputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object) if isinstance(request.object, struct_pb2.Struct) else {}
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    inputs=self.resources[response.urn].state if response.urn in self.resources else {},
                    secret_paths=_secret_paths(raw),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    replace_on_changes=list(request.replaceOnChanges),
                    dependencies=list(request.dependencies),
                    parent=request.parent,
                    urn=response.urn,
                    ignore_changes=list(request.ignoreChanges),
                    provider=request.provider,
                )
            )
        return response


class PlatformMocks(pulumi.runtime.Mocks):
    """Computed outputs the program reads; everything else echoes the inputs.

    `previous` plays the stack's last update: the outputs the engine's builtin provider would answer
    `pulumi:pulumi:readStackOutputs` with for this stack ({} for one never updated).
    """

    def __init__(self, previous: Mapping[str, Any] | None = None) -> None:
        self.previous = dict(previous or {})
        self.stack_reads: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"generated{digest[:int(args.inputs.get('length', 16)) - 9]}"
        elif args.typ == "random:index/randomBytes:RandomBytes":
            state["base64"] = "R0VORVJBVEVELUtFWS1GT1ItVEVTVFMtMDEyMzQ1Njc="
            state["hex"] = digest[:64]
        elif args.typ == REMOTE_IMAGE:
            state["imageId"] = f"sha256:{digest}"
            state["repoDigest"] = f"{args.inputs['name'].split(':')[0]}@sha256:{digest}"
        elif args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = f"-----BEGIN PRIVATE KEY-----\n{digest}\n-----END PRIVATE KEY-----\n"
            state["publicKeyPem"] = f"-----BEGIN PUBLIC KEY-----\n{digest}\n-----END PUBLIC KEY-----\n"
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state["certPem"] = f"-----BEGIN CERTIFICATE-----\n{digest}\n-----END CERTIFICATE-----\n"
        elif args.typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = f"-----BEGIN CERTIFICATE REQUEST-----\n{digest}\n-----END CERTIFICATE REQUEST-----\n"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "pulumi:pulumi:readStackOutputs":
            self.stack_reads.append(args.args["name"])
            return {"name": args.args["name"], "outputs": self.previous, "secretOutputNames": []}, []
        return {}, []


@dataclass
class ProgramRun:
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


class _WarningCollector(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


def run_program(
    stack: str, config: Mapping[str, str], secret_keys: Collection[str], monitor: RecordingMonitor | None = None
) -> ProgramRun:
    """Run infra.program.main for `stack` under mocks with `config` (full 'namespace:key' -> text).

    Raises what the program raises; `monitor.registrations` then shows what was registered before.
    """
    from infra import program

    monitor = monitor or RecordingMonitor(PlatformMocks())
    run = ProgramRun(monitor.registrations)
    # the program's pulumi.log warnings are kept on the run instead of going to the root logger
    logger = logging.getLogger(f"{__name__}.program")
    logger.propagate = False
    logger.handlers = [_WarningCollector(run.warnings)]
    # the local backend's organization, as the engine passes it to the language host
    pulumi.runtime.set_mocks(
        monitor.mocks, project=PROJECT, stack=stack, preview=False, logger=logger, monitor=monitor, organization="organization"
    )
    pulumi.runtime.set_all_config(dict(config), secret_keys=list(secret_keys))
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    async def resolve(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            run.outputs[key] = await output.future()
            if await output.is_secret():
                run.secret_outputs.add(key)

    # as the engine runs it: with the directory of `main` as working directory (pulumi/pulumi
    # pkg/engine/project.go `getPwdMain`), where provider plugins resolve relative paths too
    with contextlib.chdir(engine_working_directory()):
        _sync_await(run_pulumi_func(lambda: _sync_await(resolve(program.main()))))
    return run


def engine_working_directory() -> Path:
    """The directory of Pulumi.yaml's `main`, where the engine starts the program and its providers."""
    main = str(yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["main"])
    path = PROJECT_ROOT / main
    return path if path.is_dir() else path.parent


def config_text(value: Any) -> str:
    """Config as the language host hands it over: objects as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


@functools.cache
def throwaway_tls_secrets() -> dict[str, str]:
    """A self-signed certificate and key standing in for the operator's; generated once per process."""
    from infra.edge import throwaway_certificate

    material = throwaway_certificate(THROWAWAY_PUBLIC_HOST)
    return {TLS_CERTIFICATE_KEY: material.certificate, TLS_PRIVATE_KEY_KEY: material.key}


# ---- the inventory --------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str
    external: int
    internal: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.external}->{self.internal}/{self.protocol}"


@dataclass(frozen=True)
class NetworkAttachment:
    network: str
    """Docker name of the network."""
    ipv4_address: str | None


@dataclass(frozen=True)
class ContainerEntry:
    name: str
    """Docker name ('minio-dev-minio1')."""
    image: str
    """The pinned image reference the program pulls (or the tag it builds)."""
    memory_mb: int
    networks: tuple[NetworkAttachment, ...]
    ports: tuple[PublishedPort, ...]
    volumes: tuple[str, ...]
    """Docker names of the named volumes it mounts."""
    log_ceiling_mb: float
    """Most disk its json-file logs can take: max-size times max-file."""
    service: str = ""
    """Its io.minio-platform.service label ('minio', 'nginx')."""
    host_paths: tuple[str, ...] = ()
    """Host paths it mounts (bind mounts), which no destroy touches."""
    host: str | None = None
    """The Docker host it runs on (a node's storage.hosts dockerHost), None for the stack's own."""
    user: str = ""
    """`uid:gid` it runs as; empty for the image's own user."""


@dataclass(frozen=True, order=True)
class NetworkEntry:
    name: str
    subnet: str
    segment: str
    """Its segment key under `networks.` in the stack file ('storage'), or its resource name's stem ('minio1')."""
    host: str | None = None
    """The Docker host it is created on, None for the stack's own."""


@dataclass(frozen=True, order=True)
class VolumeEntry:
    name: str
    retained: bool
    """Protected and left on the host by `pulumi destroy`."""
    device: str | None = None
    """The host directory the volume binds (storage.drivePaths), None when Docker keeps its data."""
    host: str | None = None
    """The Docker host it is created on, None for the stack's own."""


@dataclass(frozen=True, order=True)
class ImageEntry:
    reference: str
    built: bool
    """Built on the Docker host from a Dockerfile rather than pulled."""
    host: str | None = None
    """The Docker host it is pulled or built on, None for the stack's own."""


@dataclass(frozen=True)
class Inventory:
    stack: str
    prefix: str
    """Value of the io.minio-platform.stack label on every object of the stack."""
    containers: tuple[ContainerEntry, ...]
    networks: tuple[NetworkEntry, ...]
    volumes: tuple[VolumeEntry, ...]
    images: tuple[ImageEntry, ...]
    assumed: tuple[str, ...] = ()
    """Operator inputs the stack lacks, filled with throwaway values for this inventory."""

    @property
    def hosts(self) -> tuple[str, ...]:
        """The Docker hosts besides the stack's own that something is created on (the node hosts), sorted."""
        everything: list[ContainerEntry | NetworkEntry | VolumeEntry | ImageEntry] = [
            *self.containers, *self.networks, *self.volumes, *self.images
        ]
        return tuple(sorted({entry.host for entry in everything if entry.host is not None}))

    def on_host(self, host: str | None) -> Inventory:
        """What the stack creates on `host` only (None: the stack's own host)."""
        return replace(
            self,
            containers=tuple(c for c in self.containers if c.host == host),
            networks=tuple(n for n in self.networks if n.host == host),
            volumes=tuple(v for v in self.volumes if v.host == host),
            images=tuple(i for i in self.images if i.host == host),
        )

    @property
    def memory_mb(self) -> int:
        return sum(container.memory_mb for container in self.containers)

    @property
    def ports(self) -> tuple[PublishedPort, ...]:
        return tuple(port for container in self.containers for port in container.ports)

    @property
    def log_ceiling_mb(self) -> float:
        return sum(container.log_ceiling_mb for container in self.containers)


def _size_mb(size: str) -> float:
    """A json-file log size ('20m', '512k', '1g') in MiB."""
    factor = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}
    unit = size[-1:].lower()
    return float(size[:-1]) * factor[unit] if unit in factor else float(size) / (1024 * 1024)


def _label(labels: list[dict[str, str]] | None, key: str) -> str | None:
    return next((item["value"] for item in labels or [] if item.get("label") == key), None)


def _hosts_of(registrations: list[Registration]) -> dict[str, str | None]:
    """The Docker host behind each provider reference ('urn::id') the program registered."""
    providers = {r.urn: r.inputs.get("host") for r in registrations if r.type == DOCKER_PROVIDER}
    # a provider reference is the provider's URN and its id, and a URN has '::' in it too
    return {r.provider: providers.get(r.provider.rpartition("::")[0]) for r in registrations if r.provider}


def inventory_of(stack: str, registrations: list[Registration], assumed: Collection[str] = ()) -> Inventory:
    """The inventory of what `registrations` would create."""
    hosts = _hosts_of(registrations)

    def host(r: Registration) -> str | None:
        return hosts.get(r.provider) if r.provider else None

    images = {r.inputs["imageId"]: r for r in registrations if r.type == REMOTE_IMAGE}
    containers = []
    prefixes = set()
    for r in (r for r in registrations if r.type == CONTAINER):
        inputs = r.inputs
        prefixes.add(_label(inputs.get("labels"), STACK_LABEL))
        log_opts = inputs.get("logOpts") or {}
        containers.append(
            ContainerEntry(
                name=inputs["name"],
                image=images[inputs["image"]].inputs["name"] if inputs["image"] in images else inputs["image"],
                memory_mb=int(inputs.get("memory") or 0),
                networks=tuple(
                    NetworkAttachment(item["name"], item.get("ipv4Address")) for item in inputs.get("networksAdvanced") or []
                ),
                ports=tuple(
                    PublishedPort(item.get("ip", "0.0.0.0"), int(item["external"]), int(item["internal"]), item.get("protocol", "tcp"))
                    for item in inputs.get("ports") or []
                ),
                volumes=tuple(item["volumeName"] for item in inputs.get("volumes") or [] if item.get("volumeName")),
                log_ceiling_mb=_size_mb(log_opts["max-size"]) * int(log_opts.get("max-file", 1)) if "max-size" in log_opts else 0.0,
                service=_label(inputs.get("labels"), SERVICE_LABEL) or "",
                host_paths=tuple(item["hostPath"] for item in inputs.get("volumes") or [] if item.get("hostPath")),
                host=host(r),
                user=inputs.get("user") or "",
            )
        )
    if len(prefixes) != 1 or None in prefixes:
        raise ValueError(f"stack {stack!r}: containers carry {STACK_LABEL} values {sorted(map(str, prefixes))}, expected exactly one")

    def by_name_and_host(entry: NetworkEntry | VolumeEntry | ImageEntry) -> tuple[str, str]:
        # the same image is pulled on several hosts; None (the stack's own host) sorts first
        return (entry.reference if isinstance(entry, ImageEntry) else entry.name), entry.host or ""

    return Inventory(
        stack=stack,
        prefix=str(prefixes.pop()),
        containers=tuple(sorted(containers, key=lambda c: c.name)),
        networks=tuple(
            sorted(
                (
                    NetworkEntry(r.inputs["name"], r.inputs["ipamConfigs"][0]["subnet"], r.name.removesuffix("-net"), host(r))
                    for r in registrations
                    if r.type == NETWORK
                ),
                key=by_name_and_host,
            )
        ),
        volumes=tuple(
            sorted(
                (
                    VolumeEntry(r.inputs["name"], r.retain_on_delete, (r.inputs.get("driverOpts") or {}).get("device"), host(r))
                    for r in registrations
                    if r.type == VOLUME
                ),
                key=by_name_and_host,
            )
        ),
        images=tuple(
            sorted(
                {ImageEntry(r.inputs["name"], "build" in r.inputs, host(r)) for r in registrations if r.type == REMOTE_IMAGE},
                key=by_name_and_host,
            )
        ),
        assumed=tuple(assumed),
    )


def stack_config(stack: str, config_file: Path | None = None) -> tuple[StackConfig, dict[str, Any], set[str]]:
    """The validated config of a stack file, its raw values and the keys stored encrypted; raises ConfigError
    (a StackFileError when the file is missing or not YAML)."""
    values, encrypted = read_stack_file(stack_file(stack, PROJECT_ROOT, config_file))
    config, _ = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    return config, values, encrypted


@dataclass
class OfflineRun:
    """The program of a stack run offline: its config, what it registered and exported, and what was assumed."""

    config: StackConfig
    values: dict[str, Any]
    """The stack file's raw config values, by full key."""
    run: ProgramRun
    assumed: tuple[str, ...]
    """Operator inputs the stack lacks, filled with throwaway values."""


def offline_run(stack: str, config_file: Path | None = None) -> OfflineRun:
    """Run the program of `stack` offline, as `pulumi up` would, without Docker or the Pulumi CLI.

    Secrets the stack file holds encrypted are replaced by throwaway values (nothing here can
    decrypt them, and no figure depends on them); missing operator inputs are assumed, and named.
    """
    config, values, encrypted = stack_config(stack, config_file)
    throwaway_values = SecretValues.throwaway()
    throwaway = {spec.key: getattr(throwaway_values, attribute) for attribute, spec in SECRET_SPECS.items()}
    text = {key: config_text(value) for key, value in values.items() if key not in encrypted}
    secrets: dict[str, str] = {}
    for full_key in encrypted:
        namespace, _, key = full_key.partition(":")
        if namespace == PROJECT:
            secrets[key] = throwaway_tls_secrets()[key] if key in PROVIDED_TLS_KEYS else throwaway[key]
    assumed = []
    for problem in config.missing_operator_inputs(set(secrets)):
        key = problem.split(":", 1)[0]
        assumed.append(key)
        if key == "edge.publicHost":
            edge = json.loads(text.get(f"{PROJECT}:edge", "{}"))
            text[f"{PROJECT}:edge"] = json.dumps({**edge, "publicHost": THROWAWAY_PUBLIC_HOST})
        else:
            secrets[key] = throwaway_tls_secrets()[key] if key in PROVIDED_TLS_KEYS else throwaway[key]
    for key, value in secrets.items():
        text[f"{PROJECT}:{key}"] = value
    run = run_program(stack, text, [f"{PROJECT}:{key}" for key in secrets])
    return OfflineRun(config, values, run, tuple(assumed))


def inventory(stack: str, config_file: Path | None = None) -> Inventory:
    """Run the program of `stack` offline (`offline_run`) and list what it would create."""
    offline = offline_run(stack, config_file)
    return inventory_of(stack, offline.run.registrations, offline.assumed)
