"""Stand-ins for the stack's cluster CA and its certificates, generated in the test with `cryptography`.

The program makes the real ones with pulumi-tls when it runs (infra/hosts.py `ClusterCertificates`); a
test that needs files nginx, Prometheus or a TLS client will load cannot wait for that, so this CA has
the same key type (ECDSA P-256), the same uses and the same leaf names. Nothing here is ever deployed.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.hosts import GATEWAY_NAME, node_certificate_addresses, node_certificate_names
from infra.storage import node_name


@dataclass(frozen=True)
class PemPair:
    certificate: str
    key: str

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        """`name`.crt and `name`.key in `folder` (made if missing): the certificate's path, then the key's."""
        folder.mkdir(parents=True, exist_ok=True)
        certificate, key = folder / f"{name}.crt", folder / f"{name}.key"
        certificate.write_text(self.certificate)
        key.write_text(self.key)
        return certificate, key


def _key_usage(**uses: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: uses.get(name, False) for name in names})


@dataclass
class StandInCa:
    """A stand-in for the stack's pulumi-tls CA: same key type, uses and leaf names."""

    common_name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def write(self, path: Path) -> Path:
        """The CA certificate (PEM) at `path`, its folder made if missing."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.pem)
        return path

    def sign(self, common_name: str, dns_names: list[str], ip_addresses: list[str]) -> PemPair:
        """A server certificate as `tls.LocallySignedCert` makes it with infra/hosts.py `SERVER_USES`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.IPv4Address(address)) for address in ip_addresses]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return PemPair(
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
        )

    def node_pair(self, node: int, address: str) -> PemPair:
        """Node `node`'s certificate and key, with the names and addresses the program gives it."""
        return self.sign(node_name(node), node_certificate_names(node), node_certificate_addresses(address))

    def gateway_pair(self, main_host_address: str) -> PemPair:
        """The gateway listener's certificate and key, as the program signs it for the stack's own host."""
        return self.sign(GATEWAY_NAME, [GATEWAY_NAME], [main_host_address])
