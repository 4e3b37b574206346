"""A multi-host stack's nginx.conf (TLS to the nodes, the gateway listener) accepted by real nginx
(`nginx -t`), with a real CA and gateway pair made here (tests/cluster_pki.py, stand-ins for the
stack's pulumi-tls ones): nginx loads the CA it checks the nodes
against and the gateway's certificate and key while it tests the file, so a wrong one fails.

The rest of the configuration is rendered as the container receives it and checked the way
test_nginx_config.py does (the rendered folder mounted over /etc/nginx); the cluster's files stay
in the test's folder, named through the proxy's runtime paths as a lab would name its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.config import StackConfig, parse_stack_config
from infra.edge import ProxyRuntime, edge_files, render_nginx_conf
from infra.hosts import CLUSTER_TLS_NAME
from infra.secrets import SecretValues
from tests.cluster_pki import StandInCa
from tests.config.test_nginx_config import nginx_test_in_namespace
from tests.unit.multi_host_stack import HOSTS, MAIN_HOST_ADDRESS, STORAGE_ON_HOSTS


def multi_host_config(**edge: object) -> StackConfig:
    return parse_stack_config("dev", {"environment": "dev", "name": "t", "storage": STORAGE_ON_HOSTS, "edge": edge})


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
    """A stand-in CA and a gateway pair it signed, as the stack's ClusterCertificates makes them, in `folder`."""
    ca = StandInCa("t cluster CA")
    certificate, key = ca.gateway_pair(MAIN_HOST_ADDRESS).write(folder, "gateway")
    return ClusterFiles(ca.write(folder / "ca.crt"), certificate, key)


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
    # the key of another gateway pair, with a certificate of its own
    cluster.gateway_key.write_text(StandInCa("another CA").gateway_pair(MAIN_HOST_ADDRESS).key)
    result = nginx_test_in_namespace(render(tmp_path / "out", multi_host_config(), cluster))
    assert result.returncode != 0 and "key values mismatch" in result.stderr
