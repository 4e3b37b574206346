"""Keycloak in production mode (`start`, as prod runs it) with a prod stack's rendered keycloak.conf and
realm, on Debian's PostgreSQL, behind the rendered nginx: it builds, imports the realm and serves it.

Production mode refuses what dev mode lets through (no hostname, HTTP without a proxy, clustering
left open): this start shows the rendered options satisfy it. One start for the module; the login
flows themselves are shown in dev mode by test_keycloak_sso.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from infra.config import StackConfig, parse_stack_config
from infra.edge import ProxyUpstreams
from infra.secrets import SecretValues
from tests.lab.keycloak_lab import (
    POSTGRES_ADDRESS,
    LabKeycloak,
    create_keycloak_database,
    lab_folder,
    running_keycloak,
)
from tests.lab.ops_servers import postgres_server
from tests.lab.proxy_lab import PROXY_ADDRESS, WEB_STAND_IN_ADDRESS, LabProxy, free_ports, recording_stand_in, running_proxy

pytestmark = pytest.mark.lab


def prod_lab_stack() -> StackConfig:
    """A prod stack whose edge listens on free loopback ports, with the self-signed certificate."""
    s3_port, s3_tls_port, http_port, https_port = free_ports(PROXY_ADDRESS, 4)
    edge = {"publicHost": PROXY_ADDRESS, "s3Port": s3_port, "s3TlsPort": s3_tls_port, "httpPort": http_port,
            "httpsPort": https_port, "tls": {"mode": "self-signed"}}
    return parse_stack_config("lab", {"environment": "prod", "name": "lab", "edge": edge})


@pytest.fixture(scope="module")
def production() -> Iterator[tuple[LabKeycloak, LabProxy]]:
    config = prod_lab_stack()
    values = replace(SecretValues.throwaway(), keycloak_admin_password="prod-lab-admin-password")
    with pytest.MonkeyPatch.context() as environment:
        # requests lets these override a session's own `verify`, and so the lab certificate
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            environment.delenv(name, raising=False)
        with lab_folder("keycloak-prod-") as root, postgres_server(POSTGRES_ADDRESS) as database, recording_stand_in(
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
                    yield keycloak, proxy


def test_start_comes_up_in_production_mode_with_the_rendered_options(production: tuple[LabKeycloak, LabProxy]) -> None:
    keycloak, _ = production
    log = keycloak.log_file.read_text()
    assert keycloak.command == ["start", "--import-realm"]
    assert "Profile prod activated" in log
    assert f"Listening on: http://{keycloak.endpoint}." in log
    assert f"Realm '{keycloak.config.identity.realm}' imported" in log
    # HTTP, management and the cluster transport: loopback only
    assert keycloak.binds_loopback_only(), keycloak.listening_sockets()
    assert requests.get(f"{keycloak.management_url}/health/ready", timeout=10).status_code == 200


def test_the_prod_realm_is_served_at_the_public_url_and_has_no_bootstrap_user(production: tuple[LabKeycloak, LabProxy]) -> None:
    keycloak, proxy = production
    urls = keycloak.config.edge.public_urls(keycloak.config.environment)
    issuer = f"{urls.keycloak}/realms/{keycloak.config.identity.realm}"
    certificate = str(proxy.root / "tls" / "server.crt")
    document = requests.get(f"{issuer}/.well-known/openid-configuration", verify=certificate, timeout=30).json()
    assert document["issuer"] == issuer and document["token_endpoint"] == f"{issuer}/protocol/openid-connect/token"
    assert keycloak.admin("GET", "/users").json() == []
    [client] = keycloak.admin("GET", "/clients", params={"clientId": "minio-console"}).json()
    assert client["redirectUris"] and client["publicClient"] is False
