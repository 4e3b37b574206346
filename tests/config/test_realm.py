"""The rendered Keycloak realm and options: they parse, hold what MinIO's SSO needs, and match MinIO's OIDC settings."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from infra.config import StackConfig, parse_stack_config
from infra.identity import identity_files, keycloak_files
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


def scope(realm: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in realm["clientScopes"] if s["name"] == name]
    return found


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
    realm = realm_of(stack("dev"))
    [mapper] = scope(realm, "minio-authorization")["protocolMappers"]
    assert mapper["protocolMapper"] == "oidc-usermodel-attribute-mapper"
    assert mapper["config"]["user.attribute"] == "policy" and mapper["config"]["claim.name"] == "policy"
    assert mapper["config"]["id.token.claim"] == "true"
    assert mapper["config"]["multivalued"] == "true" and mapper["config"]["aggregate.attrs"] == "true"
    assert "minio-authorization" in console_client(realm)["defaultClientScopes"]


def test_client_scopes_include_the_built_ins_an_import_would_otherwise_lose() -> None:
    realm = realm_of(stack("dev"))
    names = {s["name"] for s in realm["clientScopes"]}
    assert {"basic", "profile", "email", "minio-authorization"} <= names
    assert [m["protocolMapper"] for m in scope(realm, "basic")["protocolMappers"]][0] == "oidc-sub-mapper"
    # every scope the client asks for is declared in the realm
    assert set(console_client(realm)["defaultClientScopes"]) <= names


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
    [mapper] = scope(realm, "minio-authorization")["protocolMappers"]
    assert env["MINIO_IDENTITY_OPENID_CLAIM_NAME"] == mapper["config"]["claim.name"]
    declared = {s["name"] for s in realm["clientScopes"]} | {"openid"}
    assert set(env["MINIO_IDENTITY_OPENID_SCOPES"].split(",")) <= declared
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
