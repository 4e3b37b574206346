"""Runs the Pulumi program of a stack in-process under Pulumi's mocks and records every registration.

The recording monitor and the mocks live in infra/inventory.py, which lists a stack's containers,
ports and volumes from the very same run; this module adds what tests need on top: config
overrides, operator inputs, and lookups by name and type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.config import PROJECT, read_stack_file
from infra.inventory import (
    NETWORK,
    PlatformMocks,
    RecordingMonitor,
    Registration,
    config_text,
    engine_working_directory,
    run_program,
    throwaway_tls_secrets,
)

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Deployment", "Registration", "deploy", "engine_working_directory", "last_monitor", "operator_tls_secrets"]

# a throwaway tlsCertificate/tlsPrivateKey pair, as an operator must set them on prod
operator_tls_secrets = throwaway_tls_secrets


@dataclass
class Deployment:
    resources: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str, type_token: str | None = None) -> Registration:
        matches = [r for r in self.resources if r.name == name and (type_token is None or r.type == type_token)]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]

    def subnet(self, segment: str) -> str:
        """The subnet the program gave the stack's `segment` network ('storage', 'edge', ...)."""
        network = self.named(f"{segment}-net", NETWORK)
        return str(network.inputs["ipamConfigs"][0]["subnet"])

    def urn_of(self, registration: Registration) -> str:
        return registration.urn


def deploy(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    plain: Mapping[str, str] | None = None,
    operator_tls: bool = True,
    previous: Mapping[str, Any] | None = None,
) -> Deployment:
    """Run the program for `stack` (its Pulumi.<stack>.yaml plus `overrides`, keys without namespace).

    `secrets` are set as Pulumi secrets, `plain` as ordinary (unencrypted) config values.
    `operator_tls` also sets a throwaway tlsCertificate/tlsPrivateKey pair as secrets and
    edge.publicHost, as an operator must before deploying prod (whose TLS mode defaults to 'provided').
    `previous` are the outputs of the stack's last update, as the engine would read them back ({}:
    never updated).
    Raises what the program raises; `last_monitor.registrations` then shows what was created.
    """
    values, _ = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    config = {key: config_text(value) for key, value in values.items()}
    secrets = {**(operator_tls_secrets() if operator_tls else {}), **(secrets or {})}
    if operator_tls:
        # prod also wants its public host name set explicitly
        overrides = dict(overrides or {})
        edge = overrides.get("edge", values.get(f"{PROJECT}:edge") or {})
        overrides["edge"] = {"publicHost": "localhost", **edge}
    for key, value in {**(overrides or {}), **(plain or {}), **secrets}.items():
        config[f"{PROJECT}:{key}"] = config_text(value)
    monitor = RecordingMonitor(PlatformMocks(previous))
    global last_monitor
    last_monitor = monitor
    # as the engine runs it: with the directory of `main` as working directory (pulumi/pulumi
    # pkg/engine/project.go `getPwdMain`), where provider plugins resolve relative paths too
    with contextlib.chdir(engine_working_directory()):
        run = run_program(stack, config, [f"{PROJECT}:{key}" for key in secrets], monitor)
    return Deployment(run.registrations, run.outputs, run.secret_outputs, run.warnings)


def engine_working_directory() -> Path:
    """The directory of Pulumi.yaml's `main`, where the engine starts the program and its providers."""
    main = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["main"]
    path = ROOT / main
    return path if path.is_dir() else path.parent


last_monitor: RecordingMonitor | None = None
