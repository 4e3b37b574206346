"""Runs the Pulumi program of a stack in-process under Pulumi's mocks and records every registration.

The recording monitor keeps what the program asked the engine for, including resource options
(protect, delete-before-replace, replace-on-changes) and which input paths were sent as secrets,
which the plain mocks API does not show.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra import program
from infra.config import PROJECT, read_stack_file
from infra.config.edge import TLS_CERTIFICATE_KEY, TLS_PRIVATE_KEY_KEY

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


@dataclass
class Registration:
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

    def uploads(self) -> dict[str, str]:
        """Files the container receives, by path; a secret Output is recorded inside Pulumi's secret envelope."""
        delivered = self.inputs.get("uploads") or []
        if isinstance(delivered, dict) and delivered.get(SECRET_SIG_KEY) == SECRET_SIG:
            delivered = delivered["value"]
        return {item["file"]: item["content"] for item in delivered}

    @property
    def urn_suffix(self) -> str:
        return f"{self.type}::{self.name}"


@dataclass
class Deployment:
    resources: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str, type_token: str | None = None) -> Registration:
        matches = [r for r in self.resources if r.name == name and (type_token is None or r.type == type_token)]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]

    def urn_of(self, registration: Registration) -> str:
        return next(urn for urn in _URNS if urn.endswith(f"::{registration.name}") and registration.type in urn)


_URNS: list[str] = []


def _secret_paths(value: Any, path: str = "") -> set[str]:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return {path}
        return set().union(*(_secret_paths(v, f"{path}.{k}" if path else k) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(_secret_paths(v, f"{path}[{i}]") for i, v in enumerate(value))) if value else set()
    return set()


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
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
                )
            )
            _URNS.append(response.urn)
        return response


class PlatformMocks(pulumi.runtime.Mocks):
    """Computed outputs the program reads; everything else echoes the inputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"generated{digest[:int(args.inputs.get('length', 16)) - 9]}"
        elif args.typ == "random:index/randomBytes:RandomBytes":
            state["base64"] = "R0VORVJBVEVELUtFWS1GT1ItVEVTVFMtMDEyMzQ1Njc="
            state["hex"] = digest[:64]
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"sha256:{digest}"
            state["repoDigest"] = f"{args.inputs['name'].split(':')[0]}@sha256:{digest}"
        elif args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = f"-----BEGIN PRIVATE KEY-----\n{digest}\n-----END PRIVATE KEY-----\n"
            state["publicKeyPem"] = f"-----BEGIN PUBLIC KEY-----\n{digest}\n-----END PUBLIC KEY-----\n"
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            state["certPem"] = f"-----BEGIN CERTIFICATE-----\n{digest}\n-----END CERTIFICATE-----\n"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def _config_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@functools.cache
def operator_tls_secrets() -> dict[str, str]:
    from infra.edge import throwaway_certificate

    material = throwaway_certificate("localhost")
    return {TLS_CERTIFICATE_KEY: material.certificate, TLS_PRIVATE_KEY_KEY: material.key}


def deploy(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    plain: Mapping[str, str] | None = None,
    operator_tls: bool = True,
) -> Deployment:
    """Run the program for `stack` (its Pulumi.<stack>.yaml plus `overrides`, keys without namespace).

    `secrets` are set as Pulumi secrets, `plain` as ordinary (unencrypted) config values.
    `operator_tls` also sets a throwaway tlsCertificate/tlsPrivateKey pair as secrets and
    edge.publicHost, as an operator must before deploying prod (whose TLS mode defaults to 'provided').
    Raises what the program raises; `last_monitor.registrations` then shows what was created.
    """
    values, _ = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    config = {key: _config_text(value) for key, value in values.items()}
    secrets = {**(operator_tls_secrets() if operator_tls else {}), **(secrets or {})}
    if operator_tls:
        # prod also wants its public host name set explicitly
        overrides = dict(overrides or {})
        edge = overrides.get("edge", values.get(f"{PROJECT}:edge") or {})
        overrides["edge"] = {"publicHost": "localhost", **edge}
    for key, value in {**(overrides or {}), **(plain or {}), **secrets}.items():
        config[f"{PROJECT}:{key}"] = _config_text(value)
    mocks = PlatformMocks()
    monitor = RecordingMonitor(mocks)
    global last_monitor
    last_monitor = monitor
    _URNS.clear()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys=[f"{PROJECT}:{key}" for key in secrets])
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    deployment = Deployment(monitor.registrations)

    async def resolve(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            deployment.outputs[key] = await output.future()
            if await output.is_secret():
                deployment.secret_outputs.add(key)

    _sync_await(run_pulumi_func(lambda: _sync_await(resolve(program.main()))))
    return deployment


last_monitor: RecordingMonitor | None = None
