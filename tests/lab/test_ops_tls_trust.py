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
from opscli.connection import resolve_connection

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
    values: dict[str, object] = {"endpoints": {"s3": url}, "minioRootUser": "root", "minioRootPassword": "secret"}
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
