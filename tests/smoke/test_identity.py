"""Identity end to end: a Keycloak login of the bootstrap user, exchanged at MinIO's STS for working S3 credentials.

This proves the OIDC wiring (MinIO trusts the realm's tokens) and the policy claim (the token
carries `policy`, so MinIO grants the exchanged credentials that policy). It logs in the way the
console does, with the authorization-code flow of the minio-console client (direct password
grants stay off), so the realm needs no test-only setting.
"""

from __future__ import annotations

import io
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from minio.credentials.providers import StaticProvider

from tests.smoke import live
from tests.smoke.stack import StackOutputs, login_form_action, mismatch, pkce_pair, unverified_claims

pytestmark = pytest.mark.smoke


def console_client_id() -> str:
    from infra.identity import CONSOLE_CLIENT_ID

    return CONSOLE_CLIENT_ID


def keycloak_id_token(stack: StackOutputs, stack_config: Any, verify: bool | str) -> str:
    """The bootstrap user's ID token, from a browser-like authorization-code login with PKCE."""
    issuer = stack.endpoint("keycloakIssuer")
    redirect_uri = f"{stack.endpoint('console')}/oauth_callback"
    username = stack.optional("keycloakBootstrapUser") or stack_config.identity.bootstrap_username
    client_id = console_client_id()
    with live.http_session(verify) as browser:
        discovery = live.get(browser, f"{issuer}/.well-known/openid-configuration").json()
        verifier, challenge = pkce_pair(secrets.token_urlsafe(48))
        state = secrets.token_urlsafe(16)
        login_page = live.get(
            browser,
            discovery["authorization_endpoint"],
            params={
                "client_id": client_id,
                "response_type": "code",
                "scope": "openid",
                "redirect_uri": redirect_uri,
                "state": state,
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        action = login_form_action(login_page.text)
        assert login_page.status_code == 200 and action, mismatch(
            "Keycloak login page", "200 with a password form", f"{login_page.status_code} {login_page.text[:300]}"
        )
        answer = browser.post(
            action,
            data={"username": username, "password": stack.value("keycloakBootstrapPassword"), "credentialId": ""},
            allow_redirects=False,
            timeout=live.HTTP_TIMEOUT_SECONDS,
        )
        location = answer.headers.get("Location", "")
        # checks on the callback are asserted as plain booleans: pytest's explanation would print the URL and its code
        redirected = answer.status_code in (302, 303) and location.startswith(redirect_uri)
        assert redirected, mismatch(
            f"Keycloak's answer to the login of {username}",
            f"a redirect to {redirect_uri} with a code",
            f"{answer.status_code} {location or answer.text[:300]}",
        )
        query = parse_qs(urlsplit(location).query)
        callback_complete = query.get("state") == [state] and "code" in query
        assert callback_complete, mismatch("callback query", "code and our state", sorted(query))
        tokens = browser.post(
            discovery["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "client_secret": stack.value("minioConsoleClientSecret"),
                "code_verifier": verifier,
            },
            timeout=live.HTTP_TIMEOUT_SECONDS,
        )
        assert tokens.status_code == 200, mismatch("token exchange", 200, f"{tokens.status_code} {tokens.text[:300]}")
        token: str = tokens.json()["id_token"]
        return token


def test_keycloak_login_exchanges_at_minio_sts_for_working_s3_credentials(
    stack: StackOutputs, stack_config: Any, tls_verify: bool | str, scratch_bucket: str
) -> None:
    if stack.is_prod:
        pytest.skip("prod has no bootstrap user (created on dev and staging only)")
    id_token = keycloak_id_token(stack, stack_config, tls_verify)
    claims = unverified_claims(id_token)
    assert claims.get("policy"), mismatch("policy claim in the ID token", "present (the realm's policy mapper)", sorted(claims))

    s3 = stack.endpoint("s3")
    credentials = live.web_identity_credentials(s3, id_token, tls_verify)
    session_token = credentials.session_token  # asserted alone: pytest's explanation would print the whole Credentials, secret included
    assert session_token, mismatch("STS answer", "a session token", "none")

    # the exchanged credentials as they are: the S3 calls never repeat the exchange (whose errors name the token)
    federated = live.s3_client(
        s3, tls_verify, credentials=StaticProvider(credentials.access_key, credentials.secret_key, credentials.session_token)
    )
    body = secrets.token_bytes(1024)
    key = "smoke/federated-user.bin"
    federated.put_object(scratch_bucket, key, io.BytesIO(body), len(body))
    response = federated.get_object(scratch_bucket, key)
    try:
        assert response.read() == body, "object written with STS credentials reads back differently"
    finally:
        response.close()
        response.release_conn()
