"""Across every container of every stack: secrets travel only in secret uploads, never in plain inputs."""

from __future__ import annotations

import json

import pytest

from infra.secrets import SECRET_SPECS
from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


def secret_values(deployment: Deployment) -> dict[str, str]:
    """Every generated or supplied secret, by output name, as the mocks generated it."""
    values = {key: value for key, value in deployment.outputs.items() if key in deployment.secret_outputs and isinstance(value, str)}
    assert {"minioRootPassword", "postgresPassword", "grafanaAdminPassword", "minioConsoleClientSecret"} <= set(values)
    return values


def test_no_secret_appears_in_a_container_environment_command_or_labels(deployment: Deployment) -> None:
    secrets = secret_values(deployment)
    for container in deployment.of_type(CONTAINER):
        visible = json.dumps(
            {key: container.inputs.get(key) for key in ("envs", "command", "entrypoints", "labels", "healthcheck")}
        )
        leaked = [name for name, value in secrets.items() if value in visible]
        assert not leaked, f"{container.name} shows {leaked} in docker inspect"


def test_every_upload_that_holds_a_secret_is_sent_as_a_secret(deployment: Deployment) -> None:
    secrets = secret_values(deployment)
    carriers = 0
    for container in deployment.of_type(CONTAINER):
        uploads = json.dumps(container.inputs.get("uploads") or [])
        if any(value in uploads for value in secrets.values()):
            carriers += 1
            assert "uploads" in container.secret_paths, f"{container.name} uploads a secret in plain text"
    assert carriers >= 5


def test_every_secret_the_stack_exports_is_marked_secret(deployment: Deployment) -> None:
    exported = [spec.key for spec in SECRET_SPECS.values() if spec.key in deployment.outputs]
    assert len(exported) >= 6
    assert [key for key in exported if key not in deployment.secret_outputs] == []
