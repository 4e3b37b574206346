"""Monitoring with nodes on hosts of their own (storage.hosts), through the real validators where they exist:
Prometheus' MinIO jobs and health probe over https trusting the stack's CA (promtool), the blackbox
exporter's module trusting it (`--config.check`), and the node hosts' log agents pushing through the
gateway over TLS (Alloy through the subset reader, Promtail as YAML, as for the stack's own agent).

Neither promtool nor the exporter opens a CA file when checking, so the CA here is a real one all the
same, and the parsed documents are checked for where it is used.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.__main__ import load_stack
from infra.container import STACK_LABEL
from infra.hosts import CA_FILE, GATEWAY_NAME, GATEWAY_PORT
from infra.monitoring import blackbox_exporter, monitoring_files
from infra.monitoring.docker_api_proxy import DOCKER_API_URL
from infra.monitoring.log_agent import THROUGH_GATEWAY, alloy_config, promtail_yml
from infra.monitoring.metrics import MINIO_TOKEN_FILE, ScrapeAddresses, prometheus_files, prometheus_yml
from infra.secrets import SecretValues
from tests.cluster_pki import StandInCa
from tests.conftest import require_tool
from tests.config.alloy_syntax import parse
from tests.config.monitoring_render import STACKS, on_node_hosts
from tests.config.pipeline_emulator import read_pipeline
from tests.prometheus_files import write_prometheus_files

MINIO_JOBS = ("minio-cluster", "minio-nodes", "minio-bucket")
GATEWAY_PUSH_URL = f"https://{GATEWAY_NAME}:{GATEWAY_PORT}/loki/api/v1/push"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CA certificate, a stand-in for the stack's pulumi-tls one (ECDSA P-256)."""
    return StandInCa("minio-platform test cluster CA").write(tmp_path_factory.mktemp("ca") / "cluster-ca.crt")


def prometheus_config(stack: str, ca_file: Path, out: Path) -> Path:
    """prometheus.yml of `stack` on node hosts, naming real rule, token and CA files under `out`."""
    config = on_node_hosts(stack)
    return write_prometheus_files(config, ScrapeAddresses.of_stack(config), out, ca_file=ca_file)


def scrape_jobs(path: Path) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}


@pytest.mark.parametrize("stack", STACKS)
def test_promtool_accepts_the_minio_jobs_over_https_trusting_the_stack_ca(stack: str, ca_file: Path, tmp_path: Path) -> None:
    path = prometheus_config(stack, ca_file, tmp_path)
    result = subprocess.run(
        [require_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    jobs = scrape_jobs(path)
    for name in MINIO_JOBS:
        assert jobs[name]["scheme"] == "https", name
        assert jobs[name]["tls_config"] == {"ca_file": str(ca_file)}, name
        # by the node's name, which its certificate holds
        assert [group["targets"] for group in jobs[name]["static_configs"]] == [[f"minio{n}:9000"] for n in range(1, 5)]


def test_the_health_probe_asks_the_exporter_for_https_urls(ca_file: Path, tmp_path: Path) -> None:
    job = scrape_jobs(prometheus_config("dev", ca_file, tmp_path))[blackbox_exporter.HEALTH_JOB]
    (target,) = [rule for rule in job["relabel_configs"] if rule.get("target_label") == "__param_target"]
    assert target["replacement"] == "https://${1}/minio/health/cluster"
    # the exporter itself stays on storage-net, plain http
    assert "scheme" not in job and "tls_config" not in job


def test_on_one_host_the_minio_jobs_stay_plain_http() -> None:
    config = load_stack("dev", None)
    document = yaml.safe_load(prometheus_yml(config, ScrapeAddresses.of_stack(config)))
    for job in document["scrape_configs"]:
        assert "tls_config" not in job and job.get("scheme", "http") == "http", job["job_name"]
    assert CA_FILE not in "".join(item.target for item in prometheus_files(config, SecretValues.throwaway()))


def test_prometheus_receives_the_ca_where_its_configuration_names_it() -> None:
    config = on_node_hosts("dev")
    secrets = SecretValues.throwaway(nodes_on_hosts=4)
    files = {item.target: item for item in prometheus_files(config, secrets)}
    assert files[CA_FILE].content == secrets.cluster_tls.ca_certificate  # type: ignore[union-attr]
    assert not files[CA_FILE].secret
    jobs = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].content)["scrape_configs"]
    assert {job["tls_config"]["ca_file"] for job in jobs if job["job_name"] in MINIO_JOBS} == {CA_FILE}
    assert files[MINIO_TOKEN_FILE].secret


def test_a_multi_host_stack_cannot_render_without_its_ca() -> None:
    with pytest.raises(ValueError, match="storage.hosts"):
        prometheus_files(on_node_hosts("dev"), SecretValues.throwaway())


def test_the_real_blackbox_exporter_accepts_the_module_trusting_the_stack_ca(ca_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "blackbox.yml"
    path.write_text(blackbox_exporter.blackbox_yml(on_node_hosts("dev"), ca_file=str(ca_file)))
    result = subprocess.run(
        [require_tool("prometheus-blackbox-exporter"), "--config.check", f"--config.file={path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    http = yaml.safe_load(path.read_text())["modules"][blackbox_exporter.HEALTH_MODULE]["http"]
    assert http["tls_config"] == {"ca_file": str(ca_file)}
    # on one host the module has no TLS settings at all
    one_host = yaml.safe_load(blackbox_exporter.blackbox_yml(load_stack("dev", None)))
    assert "tls_config" not in one_host["modules"][blackbox_exporter.HEALTH_MODULE]["http"]


def test_the_real_blackbox_exporter_refuses_tls_settings_out_of_place(ca_file: Path, tmp_path: Path) -> None:
    # so the check above could fail: tls_config belongs inside `http`, not beside it
    text = blackbox_exporter.blackbox_yml(on_node_hosts("dev"), ca_file=str(ca_file))
    path = tmp_path / "blackbox.yml"
    path.write_text(text.replace("      tls_config:\n        ca_file:", "    tls_config:\n      ca_file:"))
    result = subprocess.run(
        [require_tool("prometheus-blackbox-exporter"), "--config.check", f"--config.file={path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0


@pytest.mark.parametrize("stack", STACKS)
def test_a_node_host_s_alloy_pushes_through_the_gateway_trusting_the_ca(stack: str) -> None:
    config = on_node_hosts(stack)
    root = parse(alloy_config(config, THROUGH_GATEWAY))
    (endpoint,) = root.child("loki.write", "loki").children("endpoint")
    assert endpoint.attributes == {"url": GATEWAY_PUSH_URL}
    (tls,) = endpoint.children("tls_config")
    assert tls.attributes == {"ca_file": CA_FILE}
    # the same discovery as on the stack's own host: this stack's containers, through the local proxy
    discovery = root.child("discovery.docker", "containers")
    assert discovery.attributes["host"] == DOCKER_API_URL
    (only,) = discovery.children("filter")
    assert only.attributes == {"name": "label", "values": [f"{STACK_LABEL}={config.name}"]}


def test_the_stack_s_own_alloy_still_pushes_to_loki_in_plain_http() -> None:
    (endpoint,) = parse(alloy_config(on_node_hosts("dev"))).child("loki.write", "loki").children("endpoint")
    assert endpoint.attributes == {"url": "http://loki:3100/loki/api/v1/push"} and not endpoint.blocks


def test_a_node_host_s_promtail_pushes_through_the_gateway_trusting_the_ca() -> None:
    config = on_node_hosts("dev", monitoring={"logAgent": "promtail"})
    document = yaml.safe_load(promtail_yml(config, THROUGH_GATEWAY))
    # Promtail's client block: url, and tls_config with ca_file (clients/pkg/promtail/client/config.go)
    assert document["clients"] == [{"url": GATEWAY_PUSH_URL, "tls_config": {"ca_file": CA_FILE}}]
    (scrape,) = document["scrape_configs"]
    (discovery,) = scrape["docker_sd_configs"]
    assert discovery["host"] == DOCKER_API_URL
    assert discovery["filters"] == [{"name": "label", "values": [f"{STACK_LABEL}={config.name}"]}]


@pytest.mark.parametrize("agent", ["alloy", "promtail"])
def test_a_node_host_s_agent_redacts_and_labels_as_the_stack_s_own_does(agent: str) -> None:
    config = on_node_hosts("dev", monitoring={"logAgent": agent})
    render = alloy_config if agent == "alloy" else promtail_yml
    here, there = read_pipeline(agent, render(config)), read_pipeline(agent, render(config, THROUGH_GATEWAY))
    assert (there.rules, there.stages) == (here.rules, here.stages)


@pytest.mark.parametrize("agent", ["alloy", "promtail"])
def test_the_rendered_tree_holds_each_node_host_s_agent_with_the_ca(agent: str) -> None:
    config = on_node_hosts("dev", monitoring={"logAgent": agent})
    secrets = SecretValues.throwaway(nodes_on_hosts=4)
    files = {item.path: item for item in monitoring_files(config, secrets)}
    name = {"alloy": "config.alloy", "promtail": "promtail.yml"}[agent]
    for node in range(1, 5):
        assert GATEWAY_PUSH_URL in files[f"{agent}-minio{node}/{name}"].content
        ca = files[f"{agent}-minio{node}/cluster-ca.crt"]
        assert (ca.target, ca.content) == (CA_FILE, secrets.cluster_tls.ca_certificate)  # type: ignore[union-attr]
    assert GATEWAY_PUSH_URL not in files[f"{agent}/{name}"].content
    assert {path for path in files if path.endswith("cluster-ca.crt")} == {
        "prometheus/cluster-ca.crt",
        "blackbox/cluster-ca.crt",
        *(f"{agent}-minio{node}/cluster-ca.crt" for node in range(1, 5)),
    }
    # a one-host stack renders none of it
    one_host = [item.path for item in monitoring_files(load_stack("dev", None), SecretValues.throwaway())]
    assert not [path for path in one_host if "minio1" in path or path.endswith("cluster-ca.crt")]
