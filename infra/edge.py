"""The edge tier: NGINX, the only container that publishes ports, and where TLS terminates.

Three listeners face clients: S3 (the MinIO admin API only from edge.adminAllowFrom), the web
listener (console, Grafana, the parts of Keycloak browsers need) and, on the Docker host's
loopback only, an admin listener with the whole S3 API for scripts/ops.

With nodes on hosts of their own (storage.hosts, infra/hosts.py) the proxy reaches them at their
private addresses over TLS, checked against the stack's own CA, and a fourth listener, the gateway,
published on the stack's own host's private address only, carries what the node hosts send here:
Keycloak's realm endpoints for MinIO, the audit log and the log agents' pushes.

Rendering is split in two so that tests run the very same template: `nginx_context` builds a
plain context from the stack config, upstream addresses and where nginx keeps its files;
`render_nginx_conf` turns it into text. Deployed, the upstreams are the fixed container
addresses of infra/networks.py (nginx 1.22 resolves names only when it loads its
configuration); in the lab they are stand-ins on loopback.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import asdict, dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from infra.config import StackConfig
from infra.config.edge import ADMIN_HOST_ADDRESS, TLS_CERTIFICATE_KEY, TLS_PRIVATE_KEY_KEY, size_in_bytes
from infra.config.storage import GATEWAY_PORT
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.hosts import CLUSTER_TLS_NAME, gateway_url, node_addresses
from infra.identity import KEYCLOAK_HTTP_PORT, KEYCLOAK_RELATIVE_PATH
from infra.monitoring.dashboards import GRAFANA_PORT
from infra.monitoring.logs import LOKI_PORT, LOKI_PUSH_PATH
from infra.monitoring.metrics import ALERTS_DIR, EDGE_STATUS_PORT
from infra.networks import gateway_address, host_address
from infra.rendering import RenderedFile, as_uploads, render_template
from infra.runbook import render_runbook_html
from infra.secrets import SecretValues
from infra.services import audit_sink
from infra.storage import API_PORT, CONSOLE_PORT, minio_scheme
from infra.tier import Tier, TierArgs

NGINX_CONF_DIR = "/etc/nginx"
TLS_CERTIFICATE_FILE = f"{NGINX_CONF_DIR}/tls/server.crt"
TLS_KEY_FILE = f"{NGINX_CONF_DIR}/tls/server.key"
# multi-host stacks: the CA the nodes' certificates are checked against, and the gateway listener's pair
CLUSTER_CA_FILE = f"{NGINX_CONF_DIR}/tls/cluster-ca.crt"
GATEWAY_CERTIFICATE_FILE = f"{NGINX_CONF_DIR}/tls/gateway.crt"
GATEWAY_KEY_FILE = f"{NGINX_CONF_DIR}/tls/gateway.key"
# a log agent's push: at most 1 MiB of lines before compression (Promtail's and Alloy's batch size)
LOKI_PUSH_BODY_SIZE = "4m"
# the runbook page, away from the configuration folder that holds the TLS key
RUNBOOK_DIR = "/usr/share/nginx/runbook"


@dataclass(frozen=True)
class ProxyUpstreams:
    """Every server nginx proxies to, as 'address:port'."""

    s3: tuple[str, ...]
    console: tuple[str, ...]
    keycloak: str
    grafana: str
    audit_sink: str | None = None
    """Behind the gateway listener only (multi-host stacks), like `loki`."""
    loki: str | None = None

    @classmethod
    def of_stack(cls, config: StackConfig) -> ProxyUpstreams:
        storage, monitoring = config.networks.storage.subnet, config.networks.monitoring.subnet
        if config.storage.multi_host:
            # each node publishes its ports on its host's private address only
            nodes = list(node_addresses(config).values())
        else:
            nodes = [host_address(storage, "minio", index) for index in range(1, config.storage.total_nodes + 1)]
        return cls(
            s3=tuple(f"{node}:{API_PORT}" for node in nodes),
            console=tuple(f"{node}:{CONSOLE_PORT}" for node in nodes),
            keycloak=f"{host_address(storage, 'keycloak')}:{KEYCLOAK_HTTP_PORT}",
            grafana=f"{host_address(monitoring, 'grafana')}:{GRAFANA_PORT}",
            audit_sink=f"{host_address(storage, audit_sink.SERVICE)}:{audit_sink.PORT}",
            loki=f"{host_address(monitoring, 'loki')}:{LOKI_PORT}",
        )


@dataclass(frozen=True)
class ProxyRuntime:
    """Where nginx keeps its files, which address it listens on, how it writes its log, its workers."""

    pid_file: str = "/var/run/nginx.pid"
    temp_dir: str = "/var/cache/nginx"
    access_log: str = "/dev/stdout"
    error_log: str = "/dev/stderr"
    certificate: str = TLS_CERTIFICATE_FILE
    key: str = TLS_KEY_FILE
    cluster_ca: str = CLUSTER_CA_FILE
    """Multi-host stacks: the CA certificate the nodes' certificates are checked against."""
    gateway_certificate: str = GATEWAY_CERTIFICATE_FILE
    gateway_key: str = GATEWAY_KEY_FILE
    listen_address: str | None = None
    """None: every address of the container (Docker publishes the ports on edge.bindAddress)."""
    runbook_dir: str = RUNBOOK_DIR
    """Folder holding the runbook page (index.html) served at /runbook/."""
    host_gateway: str | None = None
    """Where the Docker host's own connections come from (None: the edge network's gateway): the
    only client the admin listener admits."""
    status_allow: tuple[str, ...] | None = None
    """Who may read the status page (None: monitoring-net, where its exporter runs, but not that
    network's gateway, which is the Docker host)."""
    access_log_buffer: str | None = "4k"
    """Records collected per write of the access log (None: one write per request). At most 4k
    (PIPE_BUF): /dev/stdout is a pipe, and only writes that small reach it whole while every
    worker writes to it, so each record stays one line."""
    access_log_flush: str = "1s"
    """The longest a record waits in that buffer."""
    worker_processes: str = "auto"
    worker_connections: int = 4096
    """Per worker, client and upstream connections together (a proxied request holds one of each)."""


CONTAINER_RUNTIME = ProxyRuntime()


def nginx_size(size: int) -> str:
    """Bytes as nginx writes a size: '512k', '4m', or plain bytes."""
    for unit, factor in (("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True)
class ProxyBuffers:
    """Per-request buffers of the S3 path, all in memory: nothing is ever spooled to disk."""

    body: str = "1m"
    """client_body_buffer_size: each read of an upload, passed on as it arrives."""
    response: str = "256k"
    """The size of each response buffer, and proxy_buffer_size where responses are relayed unbuffered."""
    head: str = "16k"
    """proxy_buffer_size on the S3 listeners, where downloads are read ahead: the answer's head (and the
    first bytes of its body). No slower than 256k (docs/proxy-performance.md), and 240 KiB less per
    connection."""
    response_buffers: int = 8
    """proxy_buffers on the S3 listeners: how far nginx may read a download ahead of the client, in
    memory only (2 MiB by default: 30% less CPU per GiB than relaying through the one
    proxy_buffer_size buffer, and no less than 4 MiB or 8 MiB gave; docs/proxy-performance.md); 0
    relays it through that one buffer (proxy_buffering off)."""

    def context(self) -> dict[str, object]:
        response = size_in_bytes(self.response)
        return {
            "body": self.body,
            "response": self.response,
            "response_buffers": self.response_buffers,
            "head": self.head,
            # nginx's default of two buffers on their way to the client, within its limit of all but one
            "busy": nginx_size(max(1, min(2, self.response_buffers - 1)) * response),
        }


@dataclass(frozen=True)
class TlsMaterial:
    certificate: str
    """PEM certificate chain."""
    key: str = field(repr=False)
    """PEM private key."""


def nginx_context(
    config: StackConfig,
    upstreams: ProxyUpstreams | None = None,
    runtime: ProxyRuntime = CONTAINER_RUNTIME,
    buffers: ProxyBuffers = ProxyBuffers(),
) -> dict[str, object]:
    edge = config.edge
    tls_on = edge.tls_enabled(config.environment)
    urls = edge.public_urls(config.environment)

    def listen(port: int) -> str:
        return f"{runtime.listen_address}:{port}" if runtime.listen_address else str(port)

    upstreams = upstreams or ProxyUpstreams.of_stack(config)
    return {
        "stack": config.name,
        "urls": asdict(urls),
        "runtime": asdict(runtime),
        "listen": {
            "s3": listen(edge.s3_tls_port if tls_on else edge.s3_port),
            "web": listen(edge.https_port if tls_on else edge.http_port),
            "http": listen(edge.http_port),
            "admin": listen(edge.admin_port),
        },
        "admin": {
            "url": edge.admin_url(config.environment),
            "public_allow": list(edge.admin_allow_from),
            # docker-proxy, or DNAT with masquerade, hands the host's connections over from the bridge's own address
            "host_gateway": runtime.host_gateway or gateway_address(config.networks.edge.subnet),
        },
        "keycloak": {
            "path": KEYCLOAK_RELATIVE_PATH,
            "realm": config.identity.realm,
            "admin_allow": list(config.identity.admin_allow_from),
        },
        "status": {
            "listen": listen(EDGE_STATUS_PORT),
            "deny": [] if runtime.status_allow else [gateway_address(config.networks.monitoring.subnet)],
            "allow": list(runtime.status_allow or [config.networks.monitoring.subnet]),
        },
        "limits": edge.limits.model_dump(),
        "tls": {
            "certificate": runtime.certificate,
            "key": runtime.key,
            "hsts_max_age_seconds": edge.tls.hsts_max_age_seconds,
        }
        if tls_on
        else None,
        "upstreams": asdict(upstreams),
        "minio_scheme": minio_scheme(config),
        "cluster": _cluster_context(config, upstreams, runtime, listen(GATEWAY_PORT)),
        "failover": {**edge.failover.model_dump(), "retry_window_seconds": edge.failover.retry_window_seconds},
        "max_body_size": edge.max_body_size,
        "buffers": buffers.context(),
    }


def _cluster_context(config: StackConfig, upstreams: ProxyUpstreams, runtime: ProxyRuntime, listen: str) -> dict[str, object] | None:
    """TLS to the nodes and the gateway listener of a multi-host stack (None on a one-host stack)."""
    if not config.storage.multi_host:
        return None
    missing = [name for name in ("audit_sink", "loki") if getattr(upstreams, name) is None]
    if missing:
        raise ValueError(f"a multi-host stack's gateway listener needs the {' and '.join(missing)} upstream")
    return {
        "ca": runtime.cluster_ca,
        "tls_name": CLUSTER_TLS_NAME,
        "gateway": {
            "url": gateway_url("/"),
            "listen": listen,
            "certificate": runtime.gateway_certificate,
            "key": runtime.gateway_key,
            "allow": list(node_addresses(config).values()),
            "audit_path": audit_sink.AUDIT_PATH,
            # the sink's own cap: it refuses a larger body anyway, after nginx has streamed it
            "audit_body_size": nginx_size(audit_sink.DEFAULT_MAX_BODY),
            "loki_path": LOKI_PUSH_PATH,
            "loki_body_size": LOKI_PUSH_BODY_SIZE,
        },
    }


def render_nginx_conf(
    config: StackConfig,
    upstreams: ProxyUpstreams | None = None,
    runtime: ProxyRuntime = CONTAINER_RUNTIME,
    buffers: ProxyBuffers = ProxyBuffers(),
) -> str:
    return render_template("nginx/nginx.conf.j2", **nginx_context(config, upstreams, runtime, buffers))


def certificate_addresses(host: str) -> list[str]:
    """IP addresses a stack certificate names: the public host if it is one, and the admin listener's."""
    try:
        public = [str(ipaddress.IPv4Address(host))]
    except ValueError:
        public = []
    return list(dict.fromkeys([*public, ADMIN_HOST_ADDRESS]))


def throwaway_certificate(host: str, days: int = 30, addresses: tuple[str, ...] = ()) -> TlsMaterial:
    """A self-signed certificate for `host` (and `addresses`), for offline rendering and tests; never deployed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alternatives: list[x509.GeneralName] = [x509.IPAddress(ipaddress.IPv4Address(host))]
    except ValueError:
        alternatives = [x509.DNSName(host)]
    alternatives += [x509.IPAddress(ipaddress.IPv4Address(a)) for a in addresses if a != host]
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TlsMaterial(
        certificate=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )


def runbook_page(config: StackConfig) -> str:
    """alerts/RUNBOOK.md as the page every alert of the stack links to."""
    markdown = (ALERTS_DIR / "RUNBOOK.md").read_text()
    return render_runbook_html(markdown, f"Alert runbook of stack {config.name}")


def edge_files(config: StackConfig, secrets: SecretValues, certificate: TlsMaterial | None = None) -> list[RenderedFile]:
    """nginx.conf, the runbook page, with TLS on certificate and key (a throwaway pair when none is given)
    and, on a multi-host stack, the cluster CA and the gateway listener's pair."""
    files = [
        RenderedFile("nginx/nginx.conf", f"{NGINX_CONF_DIR}/nginx.conf", render_nginx_conf(config)),
        RenderedFile("nginx/runbook/index.html", f"{RUNBOOK_DIR}/index.html", runbook_page(config)),
    ]
    if config.edge.tls_enabled(config.environment):
        host = config.edge.public_host
        material = certificate or throwaway_certificate(host, addresses=tuple(certificate_addresses(host)))
        files += [
            RenderedFile("nginx/tls/server.crt", TLS_CERTIFICATE_FILE, material.certificate),
            RenderedFile("nginx/tls/server.key", TLS_KEY_FILE, material.key, secret=True),
        ]
    if config.storage.multi_host:
        cluster = secrets.cluster_tls
        if cluster is None:
            raise ValueError("a multi-host stack's edge proxy needs the cluster's CA and gateway certificate (secrets.cluster_tls)")
        files += [
            RenderedFile("nginx/tls/cluster-ca.crt", CLUSTER_CA_FILE, cluster.ca_certificate),
            RenderedFile("nginx/tls/gateway.crt", GATEWAY_CERTIFICATE_FILE, cluster.gateway.certificate),
            RenderedFile("nginx/tls/gateway.key", GATEWAY_KEY_FILE, cluster.gateway.key, secret=True),
        ]
    return files


def published_ports(config: StackConfig) -> list[docker.ContainerPortArgs]:
    edge = config.edge
    if edge.tls_enabled(config.environment):
        ports = [edge.s3_tls_port, edge.http_port, edge.https_port]
    else:
        ports = [edge.s3_port, edge.http_port]
    public = [docker.ContainerPortArgs(internal=port, external=port, ip=edge.bind_address) for port in ports]
    # the admin listener never leaves the host, whatever edge.bindAddress says
    admin = docker.ContainerPortArgs(internal=edge.admin_port, external=edge.admin_port, ip=ADMIN_HOST_ADDRESS)
    if not config.storage.multi_host:
        return [*public, admin]
    # the gateway listener faces the node hosts only: on the stack's own host's private address
    gateway = docker.ContainerPortArgs(internal=GATEWAY_PORT, external=GATEWAY_PORT, ip=config.storage.main_host_address)
    return [*public, admin, gateway]


def _self_signed(config: StackConfig, parent: pulumi.Resource) -> pulumi.Output[TlsMaterial]:
    host = config.edge.public_host
    ip_addresses = certificate_addresses(host)
    dns_names = None if host in ip_addresses else [host]
    opts = pulumi.ResourceOptions(parent=parent)
    key = tls.PrivateKey("edge-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
    certificate = tls.SelfSignedCert(
        "edge-tls-certificate",
        private_key_pem=key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=host, organization=f"minio-platform {config.name}"),
        validity_period_hours=config.edge.tls.self_signed_validity_days * 24,
        # renewed on the first `pulumi up` within 30 days of expiry
        early_renewal_hours=30 * 24,
        allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
        ip_addresses=ip_addresses,
        dns_names=dns_names,
        opts=opts,
    )
    return pulumi.Output.all(certificate.cert_pem, key.private_key_pem).apply(lambda pair: TlsMaterial(*pair))


NGINX_CAPABILITIES = ("CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID")


class EdgeProxyArgs(TierArgs):
    """The edge proxy needs nothing beyond the stack context."""


class EdgeProxy(Tier):
    proxy: docker.Container
    certificate: pulumi.Output[str | None]
    """The PEM certificate the proxy serves (None with TLS off): public, so clients can trust a self-signed one."""

    def __init__(self, name: str, args: EdgeProxyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:edge:EdgeProxy", name, args, opts)
        config, segments = self.config, self.stack.segments
        edge = config.edge
        mode = edge.tls_mode(config.environment)
        material: pulumi.Output[TlsMaterial | None]
        if mode == "self-signed":
            material = _self_signed(config, self)
        elif mode == "provided":
            # the program's load_config has checked that both were supplied, before any resource
            settings = pulumi.Config()
            material = pulumi.Output.all(
                settings.require_secret(TLS_CERTIFICATE_KEY), settings.require_secret(TLS_PRIVATE_KEY_KEY)
            ).apply(lambda pair: TlsMaterial(*pair))
        else:
            material = pulumi.Output.from_input(None)

        files = pulumi.Output.all(self.stack.secrets, material).apply(
            lambda pair: as_uploads(edge_files(config, pair[0], pair[1]))
        )
        uploads: pulumi.Output[list[docker.ContainerUploadArgs]] = pulumi.Output.secret(files)
        http_port = edge.http_port
        self.proxy = self.container(
            ContainerSpec(
                service="nginx",
                name="edge-proxy",
                image=self.image("nginx-image", edge.image),
                uploads=uploads,
                ports=published_ports(config),
                networks=[
                    Attachment(segments.edge.network, ipv4_address=segments.edge.address("edge-proxy")),
                    Attachment(segments.storage.network, ipv4_address=segments.storage.address("edge-proxy")),
                    Attachment(segments.monitoring.network, ipv4_address=segments.monitoring.address("edge-proxy")),
                ],
                # busybox wget is part of the alpine image; /healthz answers on the plain HTTP listener
                healthcheck=Healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{http_port}/healthz"]),
                memory_mb=edge.memory_mb,
                # the master binds the listeners (80 and 443 on prod), creates its temp folders for the
                # workers and switches them to the nginx user
                capabilities=NGINX_CAPABILITIES,
            )
        )
        self.certificate = pulumi.Output.unsecret(material.apply(lambda pair: pair.certificate if pair else None))
        self.register_outputs({"proxy": self.proxy.name})
