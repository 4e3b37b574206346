"""The Pulumi program: stack config in, components wired, outputs exported."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Pulumi runs this file by path; make the project importable without installing it
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402
import pulumi_docker as docker  # noqa: E402

from infra.config import ConfigError, StackConfig, split_config  # noqa: E402
from infra.container import Naming  # noqa: E402
from infra.networks import Segments  # noqa: E402
from infra.secrets import SECRET_CONFIG_KEYS, PlatformSecrets  # noqa: E402
from infra.storage import API_PORT, MinioCluster  # noqa: E402


def load_config() -> tuple[StackConfig, set[str]]:
    """The validated stack config and the secret keys the operator supplied; fails before any resource."""
    from pulumi.runtime import config as runtime_config

    # the language host sets config in-process; older hosts pass it through PULUMI_CONFIG
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    encrypted = {key for key in values if runtime_config.is_config_secret(key)}
    encrypted |= set(runtime_config.get_config_secret_keys_env())
    config, supplied = split_config(pulumi.get_stack(), values, SECRET_CONFIG_KEYS, encrypted)
    for warning in config.warnings():
        pulumi.log.warn(warning)
    return config, set(supplied)


def describe_containers(containers: Mapping[str, docker.Container]) -> dict[str, Any]:
    """Each container's Docker name and networks, by its name in the stack: what the smoke suite checks."""
    return {
        name: {
            "name": container.name,
            "networks": container.networks_advanced.apply(lambda attached: sorted(n.name for n in attached or [])),
        }
        for name, container in containers.items()
    }


def main() -> dict[str, Any]:
    try:
        config, supplied = load_config()
    except ConfigError as error:
        # raised before any resource is registered, so a bad stack creates nothing
        raise pulumi.RunError(str(error)) from None

    naming = Naming(config.name)
    secrets = PlatformSecrets("secrets", supplied)
    segments = Segments("segments", config, naming)
    storage = MinioCluster("storage", config, naming, segments, secrets.values)

    layout = config.storage.layout()
    outputs: dict[str, Any] = {
        "environment": config.environment,
        "name": config.name,
        "layout": layout.as_dict(),
        "containers": describe_containers(storage.containers),
        "volumes": [volume.name for volume in storage.volumes],
        "networks": {segment: s.network.name for segment, s in segments.by_name.items()},
        "endpoints": {
            "s3": f"http://{config.edge.public_host}:{config.edge.s3_port}",
            "minioInternal": f"http://minio1:{API_PORT}",
        },
        "minioRootUser": secrets.outputs["minio_root_user"],
        "minioRootPassword": secrets.outputs["minio_root_password"],
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


if __name__ == "__main__":
    main()
