"""Containers keep only the privileges their image needs, and secret files are readable by their reader only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"
STACKS = ["dev", "staging", "prod"]

# what each image's own start-up needs back after every capability is dropped
CAPABILITIES = {
    # the nginx master binds 80/443, creates temp folders for its workers and switches to the nginx user
    "edge-proxy": {"CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"},
    # docker-library/postgres' entrypoint creates and chowns the data folder, then drops to postgres
    "postgres": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"},
}
# uid:gid each image runs as (its Dockerfile's USER), who must be able to read its secret files
SECRET_READERS = {
    "keycloak": "1000:0",
    "postgres": "70:70",
    "prometheus": "65534:65534",
    "alertmanager": "65534:65534",
    "grafana": "472:0",
    "backup": "70:70",
    "edge-proxy": "0:0",
    **{f"minio{n}": "0:0" for n in range(1, 5)},
}


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


def secret_values(deployment: Deployment) -> list[str]:
    return [str(deployment.outputs[key]) for key in deployment.secret_outputs if len(str(deployment.outputs[key])) >= 8]


def uploads(container: Any) -> list[dict[str, Any]]:
    delivered = container.inputs.get("uploads") or []
    return delivered["value"] if isinstance(delivered, dict) and "value" in delivered else delivered


def test_every_container_drops_every_capability_and_adds_back_only_what_its_image_needs(deployment: Deployment) -> None:
    for container in deployment.of_type(CONTAINER):
        capabilities = container.inputs["capabilities"]
        assert capabilities["drops"] == ["ALL"], container.name
        assert set(capabilities.get("adds") or []) == CAPABILITIES.get(container.name, set()), container.name


def test_files_holding_a_secret_are_0600_and_owned_by_the_user_the_image_runs_as(deployment: Deployment) -> None:
    secrets = secret_values(deployment)
    checked = 0
    for container in deployment.of_type(CONTAINER):
        for upload in uploads(container):
            # a literal secret, or a token signed with one (the Prometheus bearer JWT)
            holds_secret = any(secret in upload["content"] for secret in secrets) or upload["content"].startswith("eyJ")
            if holds_secret:
                checked += 1
                assert upload.get("permissions") == "0600", f"{container.name} {upload['file']}"
                owner = f"{upload.get('owner')}:{upload.get('group')}"
                assert owner == SECRET_READERS.get(container.name, "65534:65534"), f"{container.name} {upload['file']}"
    assert checked >= 10, "every tier delivers some secret file"
