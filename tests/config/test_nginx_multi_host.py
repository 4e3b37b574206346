"""A multi-host stack's nginx.conf (TLS to the nodes, the gateway listener) accepted by real nginx
(`nginx -t`), with a real CA and gateway pair made here: nginx loads the CA it checks the nodes
against and the gateway's certificate and key while it tests the file, so a wrong one fails.

The rest of the configuration is rendered as the container receives it and checked the way
test_nginx_config.py does (the rendered folder mounted over /etc/nginx); the cluster's files stay
in the test's folder, named through the proxy's runtime paths as a lab would name its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.config import StackConfig, parse_stack_config
from infra.edge import ProxyRuntime, edge_files, render_nginx_conf
from infra.hosts import CLUSTER_TLS_NAME, GATEWAY_NAME
from infra.secrets import SecretValues
from tests.config.test_nginx_config import nginx_test_in_namespace

HOSTS = [{"dockerHost": f"ssh://ops@node{node}", "address": f"10.0.0.{10 + node}"} for node in range(1, 5)]
MAIN = "10.0.0.10"


def multi_host_config(**edge: object) -> StackConfig:
    storage = {"hosts": HOSTS, "mainHostAddress": MAIN}
    return parse_stack_config("dev", {"environment": "dev", "name": "t", "storage": storage, "edge": edge})


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    names: tuple[str, ...] = (),
    addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        alternatives = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.IPv4Address(a)) for a in addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@dataclass(frozen=True)
class ClusterFiles:
    ca: Path
    gateway_certificate: Path
    gateway_key: Path

    def runtime(self) -> ProxyRuntime:
        return ProxyRuntime(
            cluster_ca=str(self.ca), gateway_certificate=str(self.gateway_certificate), gateway_key=str(self.gateway_key)
        )


def cluster_files(folder: Path) -> ClusterFiles:
    """A CA and a gateway pair it signed, as the stack's ClusterCertificates makes them, in `folder`."""
    folder.mkdir()
    ca_key, gateway_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("t cluster CA", ca_key)
    gateway = certificate(GATEWAY_NAME, gateway_key, ca, ca_key, names=(GATEWAY_NAME,), addresses=(MAIN,))
    files = ClusterFiles(folder / "ca.crt", folder / "gateway.crt", folder / "gateway.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.gateway_certificate.write_bytes(gateway.public_bytes(serialization.Encoding.PEM))
    files.gateway_key.write_bytes(pem(gateway_key))
    return files


def render(root: Path, config: StackConfig, cluster: ClusterFiles) -> Path:
    """Every edge file under root as the container receives it, nginx.conf naming the cluster files in place."""
    for item in edge_files(config, SecretValues.throwaway(nodes_on_hosts=len(HOSTS))):
        target = root / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item.content)
    conf = render_nginx_conf(config, runtime=cluster.runtime())
    assert f"proxy_ssl_trusted_certificate {cluster.ca};" in conf and f"proxy_ssl_name {CLUSTER_TLS_NAME};" in conf
    assert f"ssl_certificate {cluster.gateway_certificate};" in conf
    (root / "nginx" / "nginx.conf").write_text(conf)
    return root


def test_nginx_accepts_tls_to_the_nodes_and_the_gateway_listener(tmp_path: Path) -> None:
    rendered = render(tmp_path / "out", multi_host_config(), cluster_files(tmp_path / "cluster"))
    result = nginx_test_in_namespace(rendered)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_accepts_the_gateway_beside_plain_http_public_listeners(tmp_path: Path) -> None:
    rendered = render(tmp_path / "out", multi_host_config(tls={"mode": "off"}), cluster_files(tmp_path / "cluster"))
    result = nginx_test_in_namespace(rendered)
    assert result.returncode == 0, result.stderr


def test_nginx_refuses_a_ca_file_that_holds_no_certificate(tmp_path: Path) -> None:
    cluster = cluster_files(tmp_path / "cluster")
    cluster.ca.write_text("THROWAWAY CA CERTIFICATE\n")
    result = nginx_test_in_namespace(render(tmp_path / "out", multi_host_config(), cluster))
    assert result.returncode != 0 and str(cluster.ca) in result.stderr


def test_nginx_refuses_a_gateway_key_that_does_not_match_its_certificate(tmp_path: Path) -> None:
    cluster = cluster_files(tmp_path / "cluster")
    cluster.gateway_key.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    result = nginx_test_in_namespace(render(tmp_path / "out", multi_host_config(), cluster))
    assert result.returncode != 0 and "key values mismatch" in result.stderr
