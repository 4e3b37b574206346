"""The Pulumi program under Pulumi's mocks: Keycloak and PostgreSQL, their networks, secrets, volume and ordering."""

from __future__ import annotations

import json

import pytest
from pulumi.errors import RunError

from infra.config.identity import (
    BOOTSTRAP_PASSWORD_KEY,
    DEFAULT_KEYCLOAK_IMAGE,
    DEFAULT_POSTGRES_IMAGE,
    password_policy_problem,
)
from infra.secrets import SECRET_SPECS
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


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("eleven-char", "is 11 characters long; the realm's password policy needs at least 12"),
        ("twelve-chars", None),
        ("console-admin", "equals the bootstrap username, which the realm's password policy (notUsername) refuses"),
        ("Console-Admin", "equals the bootstrap username, which the realm's password policy (notUsername) refuses"),
        # Keycloak counts Java chars (UTF-16 units): six emoji are twelve
        ("\U0001f600" * 6, None),
        ("\U0001f600" * 5 + "x", "is 11 characters long; the realm's password policy needs at least 12"),
    ],
)
def test_the_bootstrap_password_rule_is_the_realms_policy(password: str, refused: str | None) -> None:
    assert password_policy_problem(password, "console-admin") == refused


def test_the_rule_names_the_secret_key_the_operator_sets() -> None:
    assert SECRET_SPECS["keycloak_bootstrap_password"].key == BOOTSTRAP_PASSWORD_KEY


def test_a_supplied_bootstrap_password_the_realm_would_refuse_fails_before_any_resource_in_one_line() -> None:
    with pytest.raises(RunError) as error:
        deploy("dev", secrets={BOOTSTRAP_PASSWORD_KEY: "too-short"})
    [line] = [line for line in str(error.value).splitlines() if BOOTSTRAP_PASSWORD_KEY in line]
    assert line.endswith(
        "keycloakBootstrapPassword: the supplied password is 9 characters long; the realm's password policy needs "
        "at least 12; Keycloak would abort the realm import. Set a longer one with "
        "'pulumi config set --secret keycloakBootstrapPassword', or remove it to have one generated"
    )
    assert "too-short" not in str(error.value)
    assert pulumi_harness.last_monitor is not None and not pulumi_harness.last_monitor.registrations


def test_a_supplied_bootstrap_password_that_meets_the_policy_is_used() -> None:
    deployment = deploy("staging", secrets={BOOTSTRAP_PASSWORD_KEY: "long-enough-password"})
    assert "keycloakBootstrapPassword" in deployment.secret_outputs


def test_prod_creates_no_bootstrap_user_so_its_password_is_not_checked() -> None:
    deployment = deploy("prod", secrets={BOOTSTRAP_PASSWORD_KEY: "short"})
    assert "keycloakBootstrapPassword" not in deployment.outputs


def test_minio_and_the_realm_share_the_session_length(deployment: Deployment) -> None:
    minio = next(c for c in deployment.of_type(CONTAINER) if c.name.startswith("minio"))
    config_env = minio.uploads()["/etc/minio/config.env"]
    realm = json.loads(container(deployment, "keycloak").uploads()["/opt/keycloak/data/import/realm.json"])
    [client] = realm["clients"]
    assert "MINIO_BROWSER_SESSION_DURATION=60m" in config_env.splitlines()
    assert client["attributes"]["access.token.lifespan"] == str(60 * 60)
    assert realm["ssoSessionMaxLifespan"] == 60 * 60 + realm["accessCodeLifespan"]
