"""Keycloak through the gateway listener, as MinIO on a node host of its own reaches it (`storage.hosts`).

The real Keycloak (tests/lab/keycloak_lab.py: the pinned distribution, `start-dev` with the rendered
keycloak.conf and realm, on Debian's PostgreSQL) runs inside the main namespace of tests/lab/netns_lab.py,
on that namespace's loopback, as the keycloak upstream of the real nginx there on the multi-host
rendering. The clients are curl run with `ip netns exec` on a node host: `cluster-gateway` resolves
through that host's hosts entries and the gateway certificate is checked against the stand-in CA, as
MinIO's are. The browser is a requests session on the main host, at the public URL.

What is shown: the discovery document at MinIO's configured URL names the backchannel endpoints (keys,
token, userinfo) on the gateway and the browser's on the public URL; keys, a code exchange and userinfo
go through the gateway; the gateway serves no admin console and no other realm, and only to the nodes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets as random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from infra.config.storage import GATEWAY_PORT
from infra.edge import ProxyUpstreams
from infra.hosts import GATEWAY_NAME, node_addresses
from infra.identity import CONSOLE_CLIENT_ID, MINIO_SCOPES, keycloak_internal_url, minio_openid
from infra.secrets import SecretValues
from tests.cluster_pki import StandInCa
from tests.conftest import require_root, require_tool
from tests.lab.keycloak_lab import POSTGRES_ADDRESS, LabKeycloak, create_keycloak_database, lab_folder, running_keycloak
from tests.lab.netns_lab import MAIN_ADDRESS, Answer, NetnsLab, inside, multi_host_stack
from tests.lab.ops_servers import postgres_server
from tests.smoke.stack import login_form_action, pkce_pair, unverified_claims

pytestmark = pytest.mark.lab

# on the lab's private network, and no node: outside the gateway's allow list
OUTSIDER_ADDRESS = "10.213.0.20"
CURL_SECONDS = 30
BACKCHANNEL_ENDPOINTS = ("jwks_uri", "token_endpoint", "userinfo_endpoint", "introspection_endpoint")


@dataclass
class GatewayLab:
    lab: NetnsLab
    keycloak: LabKeycloak
    secrets: SecretValues

    @property
    def outsider(self) -> str:
        return f"{self.lab.prefix}-outsider"

    @property
    def public_issuer(self) -> str:
        return f"{self.lab.config.edge.public_urls(self.lab.config.environment).keycloak}/realms/{self.lab.config.identity.realm}"

    @property
    def gateway_realm(self) -> str:
        """The realm's base as the node hosts reach it (what MinIO is configured with)."""
        return keycloak_internal_url(self.lab.config)

    @property
    def redirect_uri(self) -> str:
        return f"{self.lab.config.edge.public_urls(self.lab.config.environment).console}/oauth_callback"

    def from_node(self, url: str, node: int = 1, **request: Any) -> Answer:
        return curl(self.lab.node_namespace(node), url, self.lab.ca_file, **request)

    def gateway(self, path: str, node: int = 1, **request: Any) -> Answer:
        return self.from_node(f"https://{GATEWAY_NAME}:{GATEWAY_PORT}{path}", node, **request)

    def discovery(self) -> dict[str, Any]:
        answer = self.from_node(minio_openid(self.lab.config, self.secrets).config_url)
        assert answer.status == 200, (answer.status, answer.body[:500])
        document: dict[str, Any] = json.loads(answer.body)
        return document


def curl(
    namespace: str, url: str, ca_file: Path, *, form: dict[str, str] | None = None, bearer: str | None = None,
    resolve: str | None = None,
) -> Answer:
    """One request by curl started in `namespace` (so through its /etc/netns hosts entries), trusting `ca_file`."""
    with tempfile.TemporaryDirectory(prefix="gateway-curl-") as folder:
        head, body = Path(folder) / "head", Path(folder) / "body"
        command = ["ip", "netns", "exec", namespace, require_tool("curl"), "-sS", "--max-time", str(CURL_SECONDS),
                   "--cacert", str(ca_file), "-D", str(head), "-o", str(body), "-w", "%{http_code}"]
        if resolve:
            command += ["--resolve", resolve]
        if bearer:
            command += ["-H", f"Authorization: Bearer {bearer}"]
        for key, value in (form or {}).items():
            command += ["--data-urlencode", f"{key}={value}"]
        started = time.monotonic()
        done = subprocess.run([*command, url], capture_output=True, text=True, timeout=CURL_SECONDS + 10)
        if done.returncode != 0:
            raise AssertionError(f"curl {url} in {namespace}: exit {done.returncode}: {done.stderr.strip()}")
        lines = head.read_text(errors="replace").splitlines()[1:]
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines) if value}
        return Answer(int(done.stdout), headers, body.read_bytes(), time.monotonic() - started)


@contextlib.contextmanager
def gateway_lab(root: Path) -> Iterator[GatewayLab]:
    """The netns lab's namespaces and nginx (no node stand-ins, no Prometheus), with Keycloak and its
    PostgreSQL in the main namespace and a sixth host outside the gateway's allow list."""
    require_root("creates network namespaces")
    require_tool("ip")
    require_tool("curl")
    config = multi_host_stack()
    values = replace(SecretValues.throwaway(), minio_console_client_secret=random.token_urlsafe(32))
    lab = NetnsLab(config, root, StandInCa(f"minio-platform {config.name} cluster CA (lab stand-in)"))
    try:
        with contextlib.ExitStack() as servers:
            lab.write_tls()
            lab.build_network()
            lab.add_host(f"{lab.prefix}-outsider", "outsider", OUTSIDER_ADDRESS, {GATEWAY_NAME: MAIN_ADDRESS})
            (root / "keycloak").mkdir()
            # started from this thread while it is in the main namespace: the servers, their ports and
            # the readiness probes all live there, on its loopback
            with inside(lab.main):
                database = servers.enter_context(postgres_server(POSTGRES_ADDRESS))
                create_keycloak_database(database)
                keycloak = servers.enter_context(running_keycloak(root / "keycloak", config, values, database))
            upstreams = replace(ProxyUpstreams.of_stack(config), keycloak=keycloak.endpoint)
            lab.proxy = lab.start_proxy(root / "nginx", upstreams)
            yield GatewayLab(lab, keycloak, values)
    finally:
        lab.teardown()


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayLab]:
    with lab_folder("gateway-keycloak-") as root, gateway_lab(root) as running:
        yield running


def console_login(gw: GatewayLab, authorization_endpoint: str) -> tuple[str, str]:
    """(code, PKCE verifier) from the bootstrap user's password login, by a browser on the main host at
    the authorization endpoint the gateway's discovery document names."""
    verifier, challenge = pkce_pair(random.token_urlsafe(48))
    state = random.token_urlsafe(16)
    browser = requests.Session()
    browser.trust_env = False
    with inside(gw.lab.main):
        page = browser.get(
            authorization_endpoint,
            params={"client_id": CONSOLE_CLIENT_ID, "response_type": "code", "scope": " ".join(MINIO_SCOPES),
                    "redirect_uri": gw.redirect_uri, "state": state, "code_challenge": challenge,
                    "code_challenge_method": "S256"},
            timeout=30,
        )
        action = login_form_action(page.text)
        assert page.status_code == 200 and action, f"{page.status_code}: {page.text[:300]}"
        answer = browser.post(
            action,
            data={"username": gw.lab.config.identity.bootstrap_username, "password": gw.secrets.keycloak_bootstrap_password},
            allow_redirects=False,
            timeout=30,
        )
    location = answer.headers.get("Location", "")
    assert answer.status_code == 302 and location.startswith(gw.redirect_uri), f"{answer.status_code} {answer.text[:300]}"
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return query["code"][0], verifier


def jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return header


def keycloak_error(answer: Answer) -> tuple[int, str, str]:
    """Status, `error` and `error_description` of Keycloak's own JSON error answer (nginx's own are HTML)."""
    assert answer.headers.get("content-type", "").startswith("application/json"), (answer.status, answer.headers, answer.body[:300])
    error = json.loads(answer.body)
    return answer.status, error["error"], error["error_description"]


def keycloak_events(keycloak: LabKeycloak, kind: str) -> list[str]:
    """The messages of Keycloak's event log records of `kind` (its console log is JSON, one record a line)."""
    messages = []
    for line in keycloak.log_file.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("loggerName") == "org.keycloak.events":
                messages.append(str(record["message"]))
    return [message for message in messages if message.startswith(f'type="{kind}"')]


def test_discovery_through_the_gateway_names_the_backchannel_on_it_and_the_browser_on_the_public_url(gw: GatewayLab) -> None:
    """Keycloak 26 counts revocation and device authorization among the frontend URLs: they stay on the
    public URL too. MinIO calls neither."""
    document = gw.discovery()
    assert document["issuer"] == gw.public_issuer
    assert document["authorization_endpoint"] == f"{gw.public_issuer}/protocol/openid-connect/auth"
    backchannel = {name: document[name] for name in BACKCHANNEL_ENDPOINTS}
    assert backchannel == {
        "jwks_uri": f"{gw.gateway_realm}/protocol/openid-connect/certs",
        "token_endpoint": f"{gw.gateway_realm}/protocol/openid-connect/token",
        "userinfo_endpoint": f"{gw.gateway_realm}/protocol/openid-connect/userinfo",
        "introspection_endpoint": f"{gw.gateway_realm}/protocol/openid-connect/token/introspect",
    }, json.dumps(document, indent=1)


def test_the_keys_come_through_the_gateway(gw: GatewayLab) -> None:
    answer = gw.from_node(gw.discovery()["jwks_uri"], node=3)
    assert answer.status == 200, (answer.status, answer.body[:300])
    keys = json.loads(answer.body)["keys"]
    assert any(key["kty"] == "RSA" and key.get("use") == "sig" and key.get("alg") == "RS256" for key in keys), keys


def test_the_token_endpoint_through_the_gateway_is_keycloaks(gw: GatewayLab) -> None:
    token_endpoint = gw.discovery()["token_endpoint"]
    wrong = gw.from_node(token_endpoint, form={"grant_type": "client_credentials", "client_id": CONSOLE_CLIENT_ID,
                                               "client_secret": "not-the-secret"})
    assert keycloak_error(wrong) == (401, "unauthorized_client", "Invalid client or Invalid client credentials")
    # the right secret authenticates the client; the console client has no service account
    right = gw.from_node(token_endpoint, form={"grant_type": "client_credentials", "client_id": CONSOLE_CLIENT_ID,
                                               "client_secret": gw.secrets.minio_console_client_secret})
    assert keycloak_error(right) == (401, "unauthorized_client", "Client not enabled to retrieve service account")
    # Keycloak saw the node's address (the gateway's X-Forwarded-For), and the client authenticated
    refused = [event for event in keycloak_events(gw.keycloak, "CLIENT_LOGIN_ERROR") if 'clientId="minio-console"' in event]
    node = f'ipAddress="{node_addresses(gw.lab.config)[1]}"'
    assert any(node in event and 'reason="Client not enabled to retrieve service account"' in event
               and 'client_auth_method="client-secret"' in event for event in refused), refused


def test_a_console_login_at_the_public_url_is_exchanged_and_read_back_through_the_gateway(gw: GatewayLab) -> None:
    """What MinIO does with the browser's code: token and userinfo from a node host, the keys checked by kid."""
    document = gw.discovery()
    code, verifier = console_login(gw, document["authorization_endpoint"])
    answer = gw.from_node(document["token_endpoint"], node=2, form={
        "grant_type": "authorization_code", "code": code, "redirect_uri": gw.redirect_uri, "code_verifier": verifier,
        "client_id": CONSOLE_CLIENT_ID, "client_secret": gw.secrets.minio_console_client_secret,
    })
    assert answer.status == 200, (answer.status, answer.body[:500])
    tokens = json.loads(answer.body)
    claims = unverified_claims(tokens["id_token"])
    assert claims["iss"] == document["issuer"] == gw.public_issuer
    assert claims["aud"] == CONSOLE_CLIENT_ID
    kid = jwt_header(tokens["id_token"])["kid"]
    keys = json.loads(gw.from_node(document["jwks_uri"], node=2).body)["keys"]
    assert kid in {key["kid"] for key in keys}

    userinfo = gw.from_node(document["userinfo_endpoint"], node=2, bearer=tokens["access_token"])
    assert userinfo.status == 200, (userinfo.status, userinfo.headers, userinfo.body[:300])
    assert json.loads(userinfo.body)["preferred_username"] == gw.lab.config.identity.bootstrap_username


@pytest.mark.parametrize(
    "path",
    ["/auth/admin/", "/auth/admin/master/console/", "/auth/realms/master/.well-known/openid-configuration",
     "/auth/realms/master/protocol/openid-connect/token", "/auth/resources/", "/"],
)
def test_the_gateway_serves_no_admin_console_and_no_other_realm(gw: GatewayLab, path: str) -> None:
    assert gw.lab.proxy is not None
    answer = gw.gateway(path, node=4)
    assert answer.status == 404
    assert b"<center>nginx</center>" in answer.body, answer.body[:300]
    [logged] = [entry for entry in gw.lab.proxy.access_log() if entry["path"] == path]
    assert logged["upstream_addr"] in ("", "-"), logged


def test_a_host_outside_the_node_addresses_is_refused(gw: GatewayLab) -> None:
    discovery = f"{gw.gateway_realm}/.well-known/openid-configuration"
    outsider = curl(gw.outsider, discovery, gw.lab.ca_file)
    # the stack's own host too: its address is not a node's
    own_host = curl(gw.lab.main, discovery, gw.lab.ca_file, resolve=f"{GATEWAY_NAME}:{GATEWAY_PORT}:{MAIN_ADDRESS}")
    assert (outsider.status, own_host.status) == (403, 403)


def test_a_client_trusting_only_public_cas_refuses_the_gateway_certificate(gw: GatewayLab) -> None:
    with pytest.raises(AssertionError, match="exit 60"):
        curl(gw.lab.node_namespace(1), f"{gw.gateway_realm}/.well-known/openid-configuration", Path("/etc/ssl/certs/ca-certificates.crt"))
