"""Console SSO against the real Keycloak: the pinned version's distribution, run with `start-dev` as dev
and staging run it, with the rendered keycloak.conf and realm, on Debian's PostgreSQL, behind Debian's
nginx running the rendered edge configuration (TLS on, Keycloak as its /auth/ upstream).

A recording HTTP server stands in for the MinIO console at the redirect URI (it is not MinIO): the
tests show what Keycloak hands the console, never what MinIO does with it. Keycloak starts once for
the module (its first start builds the server and imports the realm, 1-2 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import secrets as random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from infra.config import StackConfig
from infra.config.identity import password_policy_problem
from infra.edge import ProxyUpstreams
from infra.identity import (
    CONSOLE_CLIENT_ID,
    CONSOLE_DEFAULT_SCOPES,
    MINIO_SCOPES,
    minio_openid,
    render_realm,
)
from infra.secrets import SecretValues
from tests.conftest import require_tool
from tests.lab.keycloak_lab import POSTGRES_ADDRESS, LabKeycloak, create_keycloak_database, lab_folder, running_keycloak
from tests.lab.ops_servers import postgres_server
from tests.lab.proxy_lab import WEB_STAND_IN_ADDRESS, LabProxy, RecordingStandIn, lab_stack, recording_stand_in, running_proxy
from tests.smoke.stack import StackOutputs, login_form_action, parse_layout, pkce_pair, unverified_claims
from tests.smoke.test_identity import keycloak_id_token

pytestmark = pytest.mark.lab

BUILT_IN_CLIENTS = ("account", "account-console", "admin-cli", "broker", "realm-management", "security-admin-console")
BROWSER_SECONDS = 60.0


@dataclass
class SsoLab:
    config: StackConfig
    secrets: SecretValues
    keycloak: LabKeycloak
    proxy: LabProxy
    console: RecordingStandIn
    """Stands in for the MinIO console behind /minio-console/: records the redirect it receives."""

    @property
    def realm(self) -> str:
        return self.config.identity.realm

    @property
    def urls(self) -> Any:
        return self.config.edge.public_urls(self.config.environment)

    @property
    def issuer(self) -> str:
        return f"{self.urls.keycloak}/realms/{self.realm}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.urls.console}/oauth_callback"

    @property
    def certificate(self) -> str:
        """The lab proxy's self-signed certificate: what every HTTPS client here trusts."""
        return str(self.proxy.root / "tls" / "server.crt")

    def browser(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.certificate
        return session

    def stack_outputs(self) -> StackOutputs:
        """What the smoke suite reads from a deployed stack, for this lab."""
        return StackOutputs(
            name=self.config.name,
            environment=self.config.environment,
            layout=parse_layout(self.config.storage.layout().as_dict(), []),  # type: ignore[arg-type]
            containers={},
            networks={},
            endpoints={"keycloakIssuer": self.issuer, "console": self.urls.console},
            raw={
                "keycloakBootstrapUser": self.config.identity.bootstrap_username,
                "keycloakBootstrapPassword": self.secrets.keycloak_bootstrap_password,
                "minioConsoleClientSecret": self.secrets.minio_console_client_secret,
            },
        )


def lab_secrets() -> SecretValues:
    # fresh values, one with the characters keycloak.conf and realm.json must escape
    return replace(
        SecretValues.throwaway(),
        minio_console_client_secret=random.token_urlsafe(32),
        keycloak_admin_password=random.token_urlsafe(24) + "\\x",
        keycloak_bootstrap_password=random.token_urlsafe(24) + '"q',
    )


@pytest.fixture(scope="module")
def sso() -> Iterator[SsoLab]:
    config = lab_stack(tls=True)
    values = lab_secrets()
    with pytest.MonkeyPatch.context() as environment:
        # requests lets these override a session's own `verify`, and so the lab certificate
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            environment.delenv(name, raising=False)
        yield from _running_lab(config, values)


def _running_lab(config: StackConfig, values: SecretValues) -> Iterator[SsoLab]:
    with lab_folder("keycloak-sso-") as root, postgres_server(POSTGRES_ADDRESS) as database, recording_stand_in(
        WEB_STAND_IN_ADDRESS
    ) as console:
        create_keycloak_database(database)
        (root / "keycloak").mkdir()
        (root / "nginx").mkdir()
        with running_keycloak(root / "keycloak", config, values, database) as keycloak:
            upstreams = ProxyUpstreams(
                s3=(console.endpoint,), console=(console.endpoint,), keycloak=keycloak.endpoint, grafana=console.endpoint
            )
            with running_proxy(root / "nginx", config, upstreams) as proxy:
                yield SsoLab(config, values, keycloak, proxy, console)


def authorization_code(
    sso: SsoLab, client_id: str = CONSOLE_CLIENT_ID, redirect_uri: str | None = None, scope: str = " ".join(MINIO_SCOPES)
) -> tuple[str, str, str]:
    """(code, PKCE verifier, redirect URI) from the bootstrap user's password login through the proxy."""
    redirect_uri = redirect_uri or sso.redirect_uri
    verifier, challenge = pkce_pair(random.token_urlsafe(48))
    state = random.token_urlsafe(16)
    browser = sso.browser()
    page = browser.get(
        f"{sso.issuer}/protocol/openid-connect/auth",
        params={"client_id": client_id, "response_type": "code", "scope": scope, "redirect_uri": redirect_uri,
                "state": state, "code_challenge": challenge, "code_challenge_method": "S256"},
        timeout=30,
    )
    action = login_form_action(page.text)
    assert page.status_code == 200 and action, f"{page.status_code}: {page.text[:300]}"
    answer = browser.post(
        action,
        data={"username": sso.config.identity.bootstrap_username, "password": sso.secrets.keycloak_bootstrap_password},
        allow_redirects=False,
        timeout=30,
    )
    location = answer.headers.get("Location", "")
    assert answer.status_code == 302 and location.startswith(redirect_uri), f"{answer.status_code} {answer.text[:300]}"
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return query["code"][0], verifier, redirect_uri


def exchange(sso: SsoLab, code: str, verifier: str, redirect_uri: str, **client: str) -> requests.Response:
    return sso.browser().post(
        f"{sso.issuer}/protocol/openid-connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier, **client},
        timeout=30,
    )


def console_credentials(sso: SsoLab) -> dict[str, str]:
    return {"client_id": CONSOLE_CLIENT_ID, "client_secret": sso.secrets.minio_console_client_secret}


# ---------------------------------------------------------------------------------------------
# The server and the realm as imported


def test_start_dev_comes_up_with_the_rendered_options(sso: SsoLab) -> None:
    log = sso.keycloak.log_file.read_text()
    assert sso.keycloak.command == ["start-dev", "--import-realm"]
    assert "Running the server in development mode" in log
    assert f"Listening on: http://{sso.keycloak.endpoint}." in log
    assert f"Management interface listening on {sso.keycloak.management_url}." in log
    assert "Profile dev activated" in log and f"Realm '{sso.realm}' imported" in log
    assert sso.keycloak.binds_loopback_only(), sso.keycloak.listening_sockets()


def test_health_answers_at_the_management_port_root_not_under_auth(sso: SsoLab) -> None:
    assert requests.get(f"{sso.keycloak.management_url}/health/ready", timeout=10).status_code == 200
    assert requests.get(f"{sso.keycloak.management_url}/metrics", timeout=10).status_code == 200
    assert requests.get(f"{sso.keycloak.base_url}/health/ready", timeout=10).status_code == 404


def test_realm_imports_the_console_client_its_policy_mapper_and_the_bootstrap_user(sso: SsoLab) -> None:
    declared = json.loads(render_realm(sso.config, sso.secrets))
    [wanted] = declared["clients"]
    [client] = sso.keycloak.admin("GET", "/clients", params={"clientId": CONSOLE_CLIENT_ID}).json()
    assert client["publicClient"] is False and client["standardFlowEnabled"] is True
    assert client["directAccessGrantsEnabled"] is False and client["implicitFlowEnabled"] is False
    assert sorted(client["redirectUris"]) == sorted(wanted["redirectUris"])
    assert client["webOrigins"] == wanted["webOrigins"]
    assert sorted(client["defaultClientScopes"]) == sorted(CONSOLE_DEFAULT_SCOPES)
    assert [(m["name"], m["protocolMapper"], m["config"]) for m in client["protocolMappers"]] == [
        (m["name"], m["protocolMapper"], m["config"]) for m in wanted["protocolMappers"]
    ]
    assert client["attributes"]["access.token.lifespan"] == str(sso.config.identity.session_seconds)
    secret = sso.keycloak.admin("GET", f"/clients/{client['id']}/client-secret").json()
    assert secret["value"] == sso.secrets.minio_console_client_secret

    [user] = sso.keycloak.admin("GET", "/users", params={"username": sso.config.identity.bootstrap_username, "exact": "true"}).json()
    assert user["attributes"]["policy"] == ["consoleAdmin"]
    profile = sso.keycloak.admin("GET", "/users/profile").json()
    [policy] = [attribute for attribute in profile["attributes"] if attribute["name"] == "policy"]
    assert policy["multivalued"] is True and policy["permissions"]["edit"] == ["admin"]

    realm = sso.keycloak.admin("GET", "").json()
    assert realm["passwordPolicy"] == declared["passwordPolicy"]
    assert realm["ssoSessionIdleTimeout"] == realm["ssoSessionMaxLifespan"] == declared["ssoSessionMaxLifespan"]
    assert realm["accessCodeLifespan"] == declared["accessCodeLifespan"]


@pytest.mark.parametrize("client_id", BUILT_IN_CLIENTS)
def test_built_in_clients_get_keycloaks_own_default_scopes(sso: SsoLab, client_id: str) -> None:
    [client] = sso.keycloak.admin("GET", "/clients", params={"clientId": client_id}).json()
    assert {"basic", "profile", "email", "roles", "web-origins", "acr"} <= set(client["defaultClientScopes"])


def test_the_account_console_login_works_with_its_built_in_scopes(sso: SsoLab) -> None:
    # public client with PKCE; its token must carry `sub` (scope basic) and audience `account` (scope roles)
    account = f"{sso.issuer}/account/"
    code, verifier, redirect = authorization_code(sso, client_id="account-console", redirect_uri=account, scope="openid")
    tokens = exchange(sso, code, verifier, redirect, client_id="account-console")
    assert tokens.status_code == 200, tokens.text
    claims = unverified_claims(tokens.json()["access_token"])
    # imported users get no role unless the file names one: the realm's default roles grant manage-account
    assert claims["sub"] and "account" in claims["aud"]
    assert "manage-account" in claims["resource_access"]["account"]["roles"]
    me = sso.browser().get(account, headers={"Authorization": f"Bearer {tokens.json()['access_token']}",
                                              "Accept": "application/json"}, timeout=30)
    assert me.status_code == 200 and me.json()["username"] == sso.config.identity.bootstrap_username


# ---------------------------------------------------------------------------------------------
# Discovery, as MinIO and as a browser see it


def test_discovery_as_minio_fetches_it_names_storage_net_for_the_back_channel(sso: SsoLab) -> None:
    config_url = urlsplit(minio_openid(sso.config, sso.secrets).config_url)  # http://keycloak:8080/auth/realms/...
    document = requests.get(
        f"http://{sso.keycloak.endpoint}{config_url.path}", headers={"Host": config_url.netloc}, timeout=30
    ).json()
    internal = f"http://{config_url.netloc}/auth/realms/{sso.realm}/protocol/openid-connect"
    # MinIO's server calls (token, keys, userinfo) stay on storage-net; the browser is sent to the public URL
    assert document["token_endpoint"] == f"{internal}/token"
    assert document["jwks_uri"] == f"{internal}/certs"
    assert document["userinfo_endpoint"] == f"{internal}/userinfo"
    assert document["authorization_endpoint"] == f"{sso.issuer}/protocol/openid-connect/auth"
    assert document["issuer"] == sso.issuer
    keys = requests.get(f"http://{sso.keycloak.endpoint}{urlsplit(document['jwks_uri']).path}", timeout=30).json()
    assert any(key["use"] == "sig" and key["kty"] == "RSA" for key in keys["keys"])


def test_discovery_through_the_proxy_names_the_public_url_only(sso: SsoLab) -> None:
    answer = sso.browser().get(f"{sso.issuer}/.well-known/openid-configuration", timeout=30)
    document = answer.json()
    assert document["issuer"] == sso.issuer
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"):
        assert document[key].startswith(f"{sso.issuer}/protocol/openid-connect/"), key


# ---------------------------------------------------------------------------------------------
# Logins


def test_bootstrap_user_logs_in_as_the_smoke_suite_does_and_the_id_token_carries_policy_and_audience(sso: SsoLab) -> None:
    token = keycloak_id_token(sso.stack_outputs(), sso.config, sso.certificate)
    claims = unverified_claims(token)
    assert claims["policy"] == ["consoleAdmin"]  # a JSON array: multivalued
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert CONSOLE_CLIENT_ID in audience and claims["azp"] == CONSOLE_CLIENT_ID
    assert claims["iss"] == sso.issuer and claims["preferred_username"] == sso.config.identity.bootstrap_username
    # the console session lasts as long as this token: not cut short by the SSO session it was issued in
    assert claims["exp"] - claims["iat"] == sso.config.identity.session_seconds


def test_minios_scopes_are_granted_and_the_session_length_reaches_the_token_answer(sso: SsoLab) -> None:
    code, verifier, redirect = authorization_code(sso, scope=" ".join(MINIO_SCOPES))
    # a console exchanging the code a moment after the login: the token must still get the whole length
    time.sleep(2)
    tokens = exchange(sso, code, verifier, redirect, **console_credentials(sso))
    assert tokens.status_code == 200, tokens.text
    answer = tokens.json()
    # the console hands MinIO's STS this expires_in as DurationSeconds: below 900 MinIO refuses it
    assert answer["expires_in"] == sso.config.identity.session_seconds >= 900
    assert set(answer["scope"].split()) >= set(MINIO_SCOPES)
    claims = unverified_claims(answer["id_token"])
    assert claims["policy"] == ["consoleAdmin"] and claims["email_verified"] is False


def test_the_login_form_posts_to_the_public_url_behind_the_proxy(sso: SsoLab) -> None:
    page = sso.browser().get(
        f"{sso.issuer}/protocol/openid-connect/auth",
        params={"client_id": CONSOLE_CLIENT_ID, "response_type": "code", "scope": "openid", "redirect_uri": sso.redirect_uri},
        timeout=30,
    )
    action = login_form_action(page.text) or ""
    assert action.startswith(f"{sso.issuer}/login-actions/authenticate")
    assert "Secure" in page.headers.get("Set-Cookie", "")


def test_a_browser_logs_in_through_the_tls_listener_and_lands_on_the_redirect_uri_with_a_code(sso: SsoLab) -> None:
    chromium = require_tool("chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    state = random.token_urlsafe(16)
    # as the console builds it (pkg/auth/idp/oauth2: AuthCodeURL(state), the configured scopes)
    start = f"{sso.issuer}/protocol/openid-connect/auth?" + urlencode(
        {"client_id": CONSOLE_CLIENT_ID, "response_type": "code", "scope": " ".join(MINIO_SCOPES),
         "redirect_uri": sso.redirect_uri, "state": state}
    )
    sso.console.reset()
    with playwright.sync_playwright() as driver:
        # Chromium refuses its sandbox to root; the proxy's certificate is the lab's own, self-signed
        browser = driver.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.set_default_timeout(BROWSER_SECONDS * 1000)
            page.goto(start)
            page.fill("input[name=username]", sso.config.identity.bootstrap_username)
            page.fill("input[name=password]", sso.secrets.keycloak_bootstrap_password)
            page.click("#kc-login")
            page.wait_for_url(f"{sso.redirect_uri}?**")
            landed = page.url
        finally:
            browser.close()
    query = parse_qs(urlsplit(landed).query)
    assert landed.startswith(f"{sso.redirect_uri}?") and query["state"] == [state] and query["code"]
    # the console's own listener received the callback, prefix stripped by the proxy
    assert any(r.path.startswith("/oauth_callback?") and "code=" in r.path for r in sso.console.requests)
    tokens = sso.browser().post(
        f"{sso.issuer}/protocol/openid-connect/token",
        data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": sso.redirect_uri,
              **console_credentials(sso)},
        timeout=30,
    )
    assert tokens.status_code == 200 and unverified_claims(tokens.json()["id_token"])["policy"] == ["consoleAdmin"]


# ---------------------------------------------------------------------------------------------
# What Keycloak refuses


def test_the_code_is_exchanged_only_with_the_client_secret(sso: SsoLab) -> None:
    code, verifier, redirect = authorization_code(sso)
    missing = exchange(sso, code, verifier, redirect, client_id=CONSOLE_CLIENT_ID)
    wrong = exchange(sso, code, verifier, redirect, client_id=CONSOLE_CLIENT_ID, client_secret="not-" + random.token_urlsafe(8))
    assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized_client")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized_client")
    # the code itself was good: with the secret it is exchanged
    assert exchange(sso, code, verifier, redirect, **console_credentials(sso)).status_code == 200


def test_an_unregistered_redirect_uri_is_refused(sso: SsoLab) -> None:
    page = sso.browser().get(
        f"{sso.issuer}/protocol/openid-connect/auth",
        params={"client_id": CONSOLE_CLIENT_ID, "response_type": "code", "scope": "openid",
                "redirect_uri": "https://attacker.example/minio-console/oauth_callback"},
        allow_redirects=False,
        timeout=30,
    )
    assert page.status_code == 400 and "Location" not in page.headers
    assert "Invalid parameter: redirect_uri" in page.text


def test_a_code_is_not_exchanged_for_another_redirect_uri(sso: SsoLab) -> None:
    code, verifier, _ = authorization_code(sso)
    answer = exchange(sso, code, verifier, f"{sso.urls.console}/elsewhere", **console_credentials(sso))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    "password",
    # the realm this module imported shows a 12-character password accepted
    ["eleven-char", "Console-Admin", "\U0001f600" * 6, "\U0001f600" * 5 + "x"],
    ids=["11-characters", "the-username-in-capitals", "6-emoji-are-12-utf16-units", "5-emoji-and-1-letter"],
)
def test_the_bootstrap_password_rule_refuses_what_keycloaks_import_refuses(sso: SsoLab, password: str) -> None:
    realm = json.loads(render_realm(sso.config, sso.secrets))
    realm["realm"] = f"policy-probe-{random.token_hex(4)}"
    realm["users"][0]["credentials"][0]["value"] = password
    headers = {"Authorization": f"Bearer {sso.keycloak.admin_token()}"}
    created = requests.post(f"{sso.keycloak.base_url}/admin/realms", headers=headers, json=realm, timeout=120)
    if created.status_code == 201:
        requests.delete(f"{sso.keycloak.base_url}/admin/realms/{realm['realm']}", headers=headers, timeout=120)
    accepted_by_python = password_policy_problem(password, sso.config.identity.bootstrap_username) is None
    assert (created.status_code == 201) == accepted_by_python, created.text
    if not accepted_by_python:
        assert created.status_code == 400 and "Password policy not met" in created.text
