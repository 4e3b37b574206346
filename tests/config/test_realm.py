"""The rendered Keycloak realm and options: they parse, hold what MinIO's SSO needs, and match MinIO's OIDC settings."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from infra.config import ConfigError, StackConfig, parse_stack_config
from infra.config.identity import PASSWORD_POLICY
from infra.identity import CONSOLE_DEFAULT_SCOPES, identity_files, keycloak_files
from infra.secrets import SecretValues
from infra.storage import minio_files

STACKS = ["dev", "staging", "prod"]


def stack(name: str, **values: Any) -> StackConfig:
    return parse_stack_config(name, values)


def realm_of(config: StackConfig, secrets: SecretValues | None = None) -> dict[str, Any]:
    files = {f.path: f for f in keycloak_files(config, secrets or SecretValues.throwaway())}
    realm: dict[str, Any] = json.loads(files["keycloak/realm.json"].content)
    return realm


def minio_env(config: StackConfig) -> dict[str, str]:
    [config_env] = minio_files(config, SecretValues.throwaway())
    pairs = (line.split("=", 1) for line in config_env.content.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def keycloak_options(config: StackConfig) -> dict[str, str]:
    files = {f.path: f for f in keycloak_files(config, SecretValues.throwaway())}
    lines = files["keycloak/keycloak.conf"].content.splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def console_client(realm: dict[str, Any]) -> dict[str, Any]:
    [client] = [c for c in realm["clients"] if c["clientId"] == "minio-console"]
    return client


def policy_mapper(realm: dict[str, Any]) -> dict[str, Any]:
    mapper: dict[str, Any]
    [mapper] = console_client(realm)["protocolMappers"]
    return mapper


@pytest.mark.parametrize("name", STACKS)
def test_realm_holds_the_confidential_console_client_with_its_redirect_uris(name: str) -> None:
    realm = realm_of(stack(name))
    client = console_client(realm)
    assert realm["realm"] == "minio-platform"
    assert client["publicClient"] is False and client["clientAuthenticatorType"] == "client-secret"
    assert client["secret"] == "throwaway-minioConsoleClientSecret"
    assert client["standardFlowEnabled"] is True
    assert client["implicitFlowEnabled"] is False and client["directAccessGrantsEnabled"] is False
    assert client["redirectUris"] == [
        "https://localhost/minio-console/oauth_callback",
        "https://localhost/minio-console/*",
    ]
    assert client["webOrigins"] == ["https://localhost"]


def test_policy_mapper_puts_the_multivalued_policy_attribute_into_the_id_token() -> None:
    mapper = policy_mapper(realm_of(stack("dev")))
    assert mapper["protocolMapper"] == "oidc-usermodel-attribute-mapper"
    assert mapper["config"]["user.attribute"] == "policy" and mapper["config"]["claim.name"] == "policy"
    assert mapper["config"]["id.token.claim"] == "true"
    assert mapper["config"]["multivalued"] == "true" and mapper["config"]["aggregate.attrs"] == "true"


def test_realm_declares_no_client_scope_so_keycloak_creates_its_own_for_every_client() -> None:
    # a realm file with any clientScopes gets none of Keycloak's, and its built-in clients no default scopes
    # (shown by the lab's real import, tests/lab/test_keycloak_sso.py)
    realm = realm_of(stack("dev"))
    assert "clientScopes" not in realm and "defaultDefaultClientScopes" not in realm
    assert console_client(realm)["defaultClientScopes"] == list(CONSOLE_DEFAULT_SCOPES)
    assert "basic" in CONSOLE_DEFAULT_SCOPES  # Keycloak 25+ puts `sub` in tokens from this scope only


def test_user_profile_keeps_policy_and_lets_only_admins_edit_it() -> None:
    realm = realm_of(stack("dev"))
    [provider] = realm["components"]["org.keycloak.userprofile.UserProfileProvider"]
    profile = json.loads(provider["config"]["kc.user.profile.config"][0])
    [policy] = [a for a in profile["attributes"] if a["name"] == "policy"]
    assert policy["multivalued"] is True
    assert policy["permissions"]["edit"] == ["admin"]
    assert profile["unmanagedAttributePolicy"] == "ADMIN_EDIT"


@pytest.mark.parametrize(("name", "present"), [("dev", True), ("staging", True), ("prod", False)])
def test_bootstrap_console_admin_exists_on_dev_and_staging_only(name: str, present: bool) -> None:
    users = realm_of(stack(name))["users"]
    if not present:
        assert users == []
        return
    [user] = users
    assert user["username"] == "console-admin"
    assert user["attributes"] == {"policy": ["consoleAdmin"]}
    assert user["credentials"] == [{"type": "password", "value": "throwaway-keycloakBootstrapPassword", "temporary": False}]


def test_values_with_quotes_and_backslashes_stay_valid_json() -> None:
    hostile = replace(SecretValues.throwaway(), minio_console_client_secret='a"b\\c</script>', keycloak_bootstrap_password="p'\"\n")
    realm = realm_of(stack("dev"), hostile)
    assert console_client(realm)["secret"] == 'a"b\\c</script>'
    assert realm["users"][0]["credentials"][0]["value"] == "p'\"\n"


def test_realm_file_is_delivered_as_a_secret_at_keycloaks_import_path() -> None:
    files = {f.path: f for f in identity_files(stack("dev"), SecretValues.throwaway())}
    realm = files["keycloak/realm.json"]
    assert realm.secret and realm.target == "/opt/keycloak/data/import/realm.json"
    assert files["keycloak/keycloak.conf"].secret and files["postgres/password"].secret


@pytest.mark.parametrize("name", STACKS)
def test_minio_oidc_settings_match_the_realm(name: str) -> None:
    config = stack(name)
    env, realm = minio_env(config), realm_of(config)
    client = console_client(realm)
    assert env["MINIO_IDENTITY_OPENID_CLIENT_ID"] == client["clientId"]
    assert env["MINIO_IDENTITY_OPENID_CLIENT_SECRET"] == client["secret"]
    assert env["MINIO_IDENTITY_OPENID_CLAIM_NAME"] == policy_mapper(realm)["config"]["claim.name"]
    # Keycloak refuses a scope the client does not have (invalid_scope)
    assert set(env["MINIO_IDENTITY_OPENID_SCOPES"].split(",")) <= {"openid", *client["defaultClientScopes"]}
    assert env["MINIO_IDENTITY_OPENID_CONFIG_URL"] == (
        f"http://keycloak:8080/auth/realms/{realm['realm']}/.well-known/openid-configuration"
    )
    # the console's callback is MINIO_BROWSER_REDIRECT_URL + /oauth_callback
    assert f"{env['MINIO_BROWSER_REDIRECT_URL']}/oauth_callback" in client["redirectUris"]


def test_keycloak_serves_under_auth_at_the_public_url_behind_the_proxy() -> None:
    options = keycloak_options(stack("prod", edge={"publicHost": "storage.example.com", "httpsPort": 8443}))
    assert options["http-relative-path"] == "/auth"
    assert options["hostname"] == "https://storage.example.com:8443/auth"
    assert options["proxy-headers"] == "xforwarded"
    assert options["hostname-backchannel-dynamic"] == "true"
    assert options["health-enabled"] == "true" and options["http-management-relative-path"] == "/"
    assert options["db-url"] == "jdbc:postgresql://postgres:5432/keycloak"


@pytest.mark.parametrize(("settings", "seconds", "duration"), [({}, 3600, "60m"), ({"sessionMinutes": 480}, 28800, "480m")])
def test_console_session_length_is_one_setting_for_the_realm_and_minio(
    settings: dict[str, int], seconds: int, duration: str
) -> None:
    config = stack("staging", identity=settings)
    realm, env = realm_of(config), minio_env(config)
    # the console session ends with the ID token (MinIO's STS credentials expire with it); Keycloak cuts
    # every token at the SSO session's end, so that outlives the token by the code's lifespan
    assert console_client(realm)["attributes"]["access.token.lifespan"] == str(seconds)
    assert realm["ssoSessionIdleTimeout"] == realm["ssoSessionMaxLifespan"] == seconds + realm["accessCodeLifespan"]
    assert realm["accessCodeLifespan"] == 60
    assert env["MINIO_BROWSER_SESSION_DURATION"] == duration


def test_a_session_shorter_than_minios_sts_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"identity.sessionMinutes: Input should be greater than or equal to 15"):
        stack("dev", identity={"sessionMinutes": 5})


def test_realm_password_policy_is_the_one_the_bootstrap_password_is_checked_against() -> None:
    assert realm_of(stack("dev"))["passwordPolicy"] == PASSWORD_POLICY == "length(12) and notUsername"


def test_keycloak_listens_on_every_container_address_in_both_modes() -> None:
    # start-dev binds localhost unless it sees KC_RUN_IN_CONTAINER (keycloak#45691): stated, not inherited
    options = keycloak_options(stack("dev"))
    assert options["http-host"] == "0.0.0.0" and options["http-port"] == "8080"
    assert options["http-management-port"] == "9000"
