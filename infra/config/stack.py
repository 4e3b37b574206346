"""The whole configuration of one stack, validated in one pass before any resource exists."""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails

from infra.config.base import DnsLabel, Settings, is_private
from infra.config.buckets import DEFAULT_CATALOGUE, BackupSettings, BucketCatalogue, backup_bucket_problem
from infra.config.edge import EdgeSettings
from infra.config.identity import IdentitySettings
from infra.config.monitoring import MonitoringSettings
from infra.config.network import NetworkSettings
from infra.config.replication import Replication, ReplicationSettings
from infra.config.runtime import ContainerSettings
from infra.config.storage import GATEWAY_PORT, StorageSettings

PROJECT = "minio-platform"
ENVIRONMENTS = ("dev", "staging", "prod")
# namespaces a stack file may hold besides the project's: Pulumi's own and the program's providers
# (pyproject.toml's pulumi-* dependencies); their keys are read by their owners, not validated here
OTHER_NAMESPACES = ("pulumi", "docker", "random", "tls")
# a namespace at least this similar to PROJECT (difflib's ratio) is taken for a misspelling of it
TYPO_SIMILARITY = 0.7

Environment = Literal["dev", "staging", "prod"]


class StackConfig(Settings):
    environment: Environment
    name: DnsLabel
    containers: ContainerSettings = ContainerSettings()
    storage: StorageSettings = StorageSettings()
    # validated even when left out, so storage.hosts are checked against the default subnets
    networks: NetworkSettings = Field(default_factory=NetworkSettings, validate_default=True)
    edge: EdgeSettings = EdgeSettings()
    identity: IdentitySettings = IdentitySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    buckets: BucketCatalogue = Field(default_factory=lambda: dict(DEFAULT_CATALOGUE))
    # validated even when left out, so a catalogue without the default backup bucket is caught
    backup: BackupSettings = Field(default_factory=BackupSettings, validate_default=True)
    replication: Replication = None

    @field_validator("networks")
    @classmethod
    def _hosts_outside_the_segments(cls, networks: NetworkSettings, info: ValidationInfo) -> NetworkSettings:
        storage = info.data.get("storage")
        if storage is None or storage.hosts is None:
            return networks
        addresses = [(f"storage.hosts[{index}].address", host.address) for index, host in enumerate(storage.hosts)]
        if storage.main_host_address:
            addresses.append(("storage.mainHostAddress", storage.main_host_address))
        for segment, settings in networks.segments().items():
            for key, address in addresses:
                if ipaddress.IPv4Address(address) in ipaddress.IPv4Network(settings.subnet):
                    raise ValueError(
                        f"{segment}.subnet {settings.subnet} holds {key} {address}: a container network on the same "
                        "range would hide that host; choose a subnet apart from the hosts' network"
                    )
        return networks

    @field_validator("edge")
    @classmethod
    def _edge_ports_leave_the_gateway_free(cls, edge: EdgeSettings, info: ValidationInfo) -> EdgeSettings:
        storage = info.data.get("storage")
        if storage is None or not storage.multi_host:
            return edge
        clash = [key for key, port in edge.published_ports().items() if port == GATEWAY_PORT]
        if clash:
            raise ValueError(
                f"{clash[0]} {GATEWAY_PORT} is the port of the gateway listener the node hosts reach "
                "(storage.hosts): choose another"
            )
        return edge

    @field_validator("backup")
    @classmethod
    def _backup_bucket_is_catalogued(cls, backup: BackupSettings, info: ValidationInfo) -> BackupSettings:
        if "buckets" not in info.data:
            return backup  # the catalogue itself is invalid and already reported
        problem = backup_bucket_problem(backup, info.data["buckets"])
        if problem:
            raise ValueError(f"bucket {problem}")
        return backup

    @property
    def needs_kms(self) -> bool:
        """Some bucket encrypts its objects, so MinIO needs a KMS key."""
        return any(bucket.encryption for bucket in self.buckets.values())

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def keep_data_on_destroy(self) -> bool:
        keep = self.storage.keep_data_on_destroy
        return self.is_prod if keep is None else keep

    def missing_operator_inputs(self, supplied: Collection[str]) -> list[str]:
        """What only the operator can give and has not (prod's host and certificate, the mirror target's keys)."""
        missing = self.edge.missing_operator_inputs(self.environment, supplied)
        if self.replication is not None:
            missing += ReplicationSettings.missing_operator_inputs(supplied)
        return missing

    def warnings(self) -> list[str]:
        """Accepted but risky values, for the operator to read before deploying."""
        return [
            *(
                f"networks.{segment}.subnet {settings.subnet} is not private address space (RFC 1918): "
                "containers cannot reach real hosts in that range, and any traffic meant for them stays local"
                for segment, settings in self.networks.segments().items()
                if not is_private(settings.subnet)
            ),
            *self.monitoring.warnings(),
        ]


class ConfigError(ValueError):
    """Every problem of a stack's configuration, each naming its key path."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        if len(problems) == 1:
            super().__init__(f"stack {stack!r} has 1 configuration error: {problems[0]}")
            return
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"stack {stack!r} has {len(problems)} configuration error(s):\n{listing}")


def _describe(error: ErrorDetails) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(stack)"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key (check its spelling against the README's configuration reference)"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    if error["type"] == "value_error":
        return f"{path}: {error['msg'].removeprefix('Value error, ')}"
    return f"{path}: {error['msg']} (got {error['input']!r})"


def parse_stack_config(stack: str, values: Mapping[str, Any]) -> StackConfig:
    """Validate namespace-free config values of a stack; raise ConfigError listing every problem."""
    data = dict(values)
    if "environment" not in data and stack in ENVIRONMENTS:
        data["environment"] = stack
    data.setdefault("name", f"minio-{stack}".lower())
    try:
        return StackConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(stack, [_describe(detail) for detail in error.errors()]) from None


def _decode(value: Any) -> Any:
    """Pulumi hands objects to the program as JSON text; plain strings stay as they are."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def split_config(
    stack: str, values: Mapping[str, Any], secret_keys: frozenset[str], supplied_as_secret: set[str]
) -> tuple[StackConfig, dict[str, Any]]:
    """Separate this project's keys into settings and operator-supplied secrets, then validate.

    `values` maps 'minio-platform:key' to the raw value; a key in `secret_keys` must have been set
    with `pulumi config set --secret`. Keys of other namespaces ('docker:host') are left to their
    owners, except those `namespace_problem` finds meant for this project.
    """
    settings: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    problems: list[str] = []
    for full_key, value in values.items():
        namespace, _, key = full_key.partition(":")
        if namespace != PROJECT:
            problem = namespace_problem(full_key)
            if problem:
                problems.append(problem)
            continue
        if key in secret_keys:
            if full_key not in supplied_as_secret:
                problems.append(f"{key}: stored in plain text; set it with 'pulumi config set --secret {key}'")
            secrets[key] = value
        else:
            settings[key] = _decode(value)
    try:
        config = parse_stack_config(stack, settings)
    except ConfigError as error:
        raise ConfigError(stack, problems + error.problems) from None
    if problems:
        raise ConfigError(stack, problems)
    return config, secrets


def namespace_problem(full_key: str) -> str | None:
    """Why a key outside the project's namespace looks meant for it, or None if it belongs elsewhere.

    A key without a namespace, or under one that resembles `minio-platform` (a misspelling, or one
    of its two words), would be ignored by the program: a 3-node layout under `minio-platfrom:storage`
    would deploy the default 4 nodes. Pulumi's and the providers' namespaces, and any other, are
    left alone.
    """
    namespace, colon, key = full_key.partition(":")
    if not colon:
        return f"{full_key}: key without a namespace, so the program never reads it; write it as {PROJECT}:{full_key}"
    if namespace in OTHER_NAMESPACES:
        return None
    similar = difflib.SequenceMatcher(None, namespace.lower(), PROJECT).ratio() >= TYPO_SIMILARITY
    if similar or namespace.lower() in PROJECT.split("-"):
        return (
            f"{full_key}: namespace {namespace!r} is not this project's, so the program never reads it; "
            f"write it as {PROJECT}:{key}"
        )
    return None


class StackFileError(ConfigError):
    """A stack file that cannot be found, read or parsed: one line naming the file (and where in it)."""

    def __init__(self, stack: str, message: str) -> None:
        ValueError.__init__(self, message)
        self.stack = stack
        self.problems = [message]


def known_stacks(project_root: Path) -> list[str]:
    """The stacks that have a stack file in `project_root`: the shipped ones first, in their order."""
    names = [path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in project_root.glob("Pulumi.*.yaml")]
    return sorted(names, key=lambda name: (ENVIRONMENTS.index(name) if name in ENVIRONMENTS else len(ENVIRONMENTS), name))


def stack_file(stack: str, project_root: Path, config_file: Path | None = None) -> Path:
    """The stack file to read for `stack`: `config_file`, else Pulumi.<stack>.yaml; raises StackFileError naming the stacks there are."""
    if config_file is not None:
        if not config_file.is_file():
            raise StackFileError(stack, f"stack file {config_file} does not exist")
        return config_file
    path = project_root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = ", ".join(known_stacks(project_root)) or "none"
        raise StackFileError(
            stack,
            f"no configuration for stack {stack!r}: {path} does not exist; the stacks here are {stacks} "
            f"(a new stack starts as a copy of one of their files)",
        )
    return path


def read_stack_file(path: Path) -> tuple[dict[str, Any], set[str]]:
    """The config block of a Pulumi.<stack>.yaml: values by full key, and the keys stored encrypted.

    Raises StackFileError for a file that cannot be read or is not YAML (with line and column).
    """
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise StackFileError(stack, f"cannot read stack file {path}: {error.strerror}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise StackFileError(stack, f"{where}: not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise StackFileError(stack, f"{path}: not valid YAML: {error}") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(config, dict | None):
        raise StackFileError(stack, f"{path}: a stack file is a mapping whose 'config' maps keys like {PROJECT}:storage to values")
    values: dict[str, Any] = {str(key): value for key, value in (config or {}).items()}
    encrypted = {key for key, value in values.items() if isinstance(value, dict) and set(value) == {"secure"}}
    return values, encrypted
