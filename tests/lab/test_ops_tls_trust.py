"""scripts/ops trusts the stack's own self-signed certificate from its outputs, and nothing more.

A plain HTTPS server on loopback (a stand-in, not MinIO) serves a certificate made like the dev
stack's; the connection built from stack outputs must verify it, one built without it must not.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from infra.edge import throwaway_certificate
from opscli.connection import Connection, resolve_connection

HOST = "127.0.6.1"


@pytest.fixture
def self_signed_https_stand_in(tmp_path: Path) -> Iterator[tuple[str, str]]:
    material = throwaway_certificate(HOST)
    (tmp_path / "server.crt").write_text(material.certificate)
    (tmp_path / "server.key").write_text(material.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server = http.server.ThreadingHTTPServer((HOST, 0), http.server.SimpleHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"https://{HOST}:{server.server_address[1]}", material.certificate
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def outputs(url: str, certificate: str | None) -> dict[str, object]:
    values: dict[str, object] = {"endpoints": {"s3": url}, "opsAdminSecretKey": "secret"}
    if certificate is not None:
        values["tlsCertificate"] = certificate
    return values


def test_connection_from_stack_outputs_verifies_the_stacks_self_signed_certificate(
    self_signed_https_stand_in: tuple[str, str],
) -> None:
    url, certificate = self_signed_https_stand_in
    connection = resolve_connection(endpoint=None, access_key=None, outputs=outputs(url, certificate), environ={})
    response = connection._http().request("GET", f"{url}/", retries=False)
    assert response.status in {200, 404}


def test_without_the_exported_certificate_the_same_server_is_not_trusted(
    self_signed_https_stand_in: tuple[str, str],
) -> None:
    url, _ = self_signed_https_stand_in
    connection = resolve_connection(endpoint=None, access_key=None, outputs=outputs(url, None), environ={})
    with pytest.raises(urllib3.exceptions.SSLError):
        connection._http().request("GET", f"{url}/", retries=False)


@pytest.fixture
def stand_in_for_a_named_host(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """HTTPS on loopback with a certificate for a host name only, as a provided production certificate is."""
    material = throwaway_certificate("storage.example.test")
    (tmp_path / "named.crt").write_text(material.certificate)
    (tmp_path / "named.key").write_text(material.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "named.crt", tmp_path / "named.key")
    server = http.server.ThreadingHTTPServer((HOST, 0), http.server.SimpleHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), material.certificate
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_loopback_admin_listener_is_verified_for_the_s3_host_name(stand_in_for_a_named_host: tuple[int, str]) -> None:
    port, certificate = stand_in_for_a_named_host
    admin_url = f"https://{HOST}:{port}"
    values = {"endpoints": {"s3": "https://storage.example.test:9443", "minioAdmin": admin_url},
              "opsAdminSecretKey": "secret", "tlsCertificate": certificate}
    connection = resolve_connection(endpoint=None, access_key=None, outputs=values, environ={})

    response = connection._http(connection.admin_endpoint).request("GET", f"{admin_url}/", retries=False)
    assert response.status in {200, 404}
    # the same certificate checked for the address it was reached at is refused: it names no address
    with pytest.raises(urllib3.exceptions.SSLError):
        Connection(admin_url, "ops-admin", "secret", extra_ca_pem=certificate)._http().request("GET", f"{admin_url}/", retries=False)
