"""The Pulumi program under Pulumi's mocks: Keycloak and PostgreSQL, their networks, secrets, volume and ordering."""

from __future__ import annotations


import pytest

from infra.config.identity import DEFAULT_KEYCLOAK_IMAGE, DEFAULT_POSTGRES_IMAGE
from infra.networks import host_address
from tests.unit import pulumi_harness
from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/remoteImage:RemoteImage"
STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


def container(deployment: Deployment, name: str) -> pulumi_harness.Registration:
    return deployment.named(name, CONTAINER)


def networks(registration: pulumi_harness.Registration) -> dict[str, str | None]:
    return {n["name"]: n.get("ipv4Address") for n in registration.inputs["networksAdvanced"]}


def test_keycloak_sits_on_storage_and_database_only(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    assert networks(container(deployment, "keycloak")) == {
        f"{prefix}-storage-net": host_address(deployment.subnet("storage"), "keycloak"),
        f"{prefix}-database-net": host_address(deployment.subnet("database"), "keycloak"),
    }


def test_postgres_sits_on_database_only(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    assert networks(container(deployment, "postgres")) == {
        f"{prefix}-database-net": host_address(deployment.subnet("database"), "postgres")
    }


def test_every_minio_node_starts_after_keycloak(deployment: Deployment) -> None:
    keycloak_urn = deployment.urn_of(container(deployment, "keycloak"))
    nodes = [c for c in deployment.of_type(CONTAINER) if c.name.startswith("minio")]
    assert len(nodes) == 4
    for node in nodes:
        assert keycloak_urn in node.dependencies


def test_keycloak_starts_after_postgres_and_waits_until_healthy(deployment: Deployment) -> None:
    keycloak = container(deployment, "keycloak")
    assert deployment.urn_of(container(deployment, "postgres")) in keycloak.dependencies
    assert keycloak.inputs["wait"] is True


def test_passwords_and_client_secret_are_secret_outputs(deployment: Deployment) -> None:
    for key in ("postgresPassword", "keycloakAdminPassword", "minioConsoleClientSecret"):
        assert key in deployment.secret_outputs, key


def test_bootstrap_user_password_is_a_secret_output_on_dev_and_staging_only(deployment: Deployment) -> None:
    if deployment.outputs["environment"] == "prod":
        assert "keycloakBootstrapPassword" not in deployment.outputs
    else:
        assert "keycloakBootstrapPassword" in deployment.secret_outputs
        assert deployment.outputs["keycloakBootstrapUser"] == "console-admin"


def test_keycloak_and_postgres_receive_their_files_as_secret_uploads(deployment: Deployment) -> None:
    keycloak, postgres = container(deployment, "keycloak"), container(deployment, "postgres")
    assert "uploads" in keycloak.secret_paths and "uploads" in postgres.secret_paths
    assert set(keycloak.uploads()) == {
        "/opt/keycloak/conf/keycloak.conf", "/opt/keycloak/data/import/realm.json",
    }
    assert set(postgres.uploads()) == {"/run/secrets/postgres-password"}
    assert "POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password" in postgres.inputs["envs"]
    assert not any("PASSWORD=" in env for env in postgres.inputs["envs"])


def test_keycloak_runs_production_mode_on_prod_and_dev_mode_elsewhere(deployment: Deployment) -> None:
    expected = "start" if deployment.outputs["environment"] == "prod" else "start-dev"
    assert container(deployment, "keycloak").inputs["command"] == [expected, "--import-realm"]


def test_healthchecks_use_tools_inside_the_images(deployment: Deployment) -> None:
    keycloak_test = container(deployment, "keycloak").inputs["healthcheck"]["tests"]
    assert keycloak_test[:3] == ["CMD", "bash", "-c"] and "/dev/tcp/127.0.0.1/9000" in keycloak_test[3]
    assert "/health/ready" in keycloak_test[3]
    postgres_test = container(deployment, "postgres").inputs["healthcheck"]["tests"]
    assert postgres_test[:2] == ["CMD", "pg_isready"] and "127.0.0.1" in postgres_test


def test_postgres_data_volume_is_protected_and_retained_on_prod_only(deployment: Deployment) -> None:
    keep = deployment.outputs["environment"] == "prod"
    volume = deployment.named("postgres-data", VOLUME)
    assert (volume.protect, volume.retain_on_delete) == (keep, keep)
    mounts = container(deployment, "postgres").inputs["volumes"]
    assert mounts == [{"containerPath": "/var/lib/postgresql/data", "volumeName": volume.inputs["name"]}]
    assert volume.inputs["name"] in deployment.outputs["volumes"]


def test_images_are_the_pinned_defaults(deployment: Deployment) -> None:
    names = {image.name: image.inputs["name"] for image in deployment.of_type(IMAGE)}
    assert names["keycloak-image"] == DEFAULT_KEYCLOAK_IMAGE
    assert names["postgres-image"] == DEFAULT_POSTGRES_IMAGE


def test_containers_output_lists_identity_and_edge_with_their_networks(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    described = deployment.outputs["containers"]
    assert described["keycloak"]["networks"] == sorted([f"{prefix}-database-net", f"{prefix}-storage-net"])
    assert described["postgres"]["networks"] == [f"{prefix}-database-net"]
    assert described["edge-proxy"]["networks"] == sorted(
        [f"{prefix}-edge-net", f"{prefix}-monitoring-net", f"{prefix}-storage-net"]
    )
