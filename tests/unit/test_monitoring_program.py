"""The Pulumi program under Pulumi's mocks: the monitoring tier's resource graph for every stack, with either log agent."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
import yaml

from infra.__main__ import load_stack
from infra.config.images import DEFAULT_ALLOY_IMAGE
from infra.config.monitoring import DEFAULT_PROMTAIL_IMAGE
from infra.monitoring.docker_api_proxy import DOCKER_API_URL
from infra.monitoring.log_agent import alloy_config, promtail_yml
from infra.networks import host_address
from infra.monitoring.metrics import rule_files
from infra.secrets import METRICS_READER_USER
from tests.unit.pulumi_harness import Deployment, Registration, deploy

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
STACKS = ["dev", "staging", "prod"]
SERVICES = ["prometheus", "alertmanager", "blackbox-exporter", "loki", "docker-api-proxy", "alloy", "grafana", "audit-sink"]
NETWORKS = {
    "prometheus": {"storage", "monitoring"},
    "alertmanager": {"monitoring"},
    "blackbox-exporter": {"storage"},
    "loki": {"monitoring"},
    "docker-api-proxy": {"monitoring"},
    "alloy": {"monitoring"},
    "grafana": {"monitoring"},
    "audit-sink": {"storage", "monitoring"},
}
# containers whose uploads hold a secret (token, password), so they travel as secret Outputs
SECRET_UPLOADS = {"prometheus", "alertmanager", "grafana", "audit-sink"}
# the one setting that swaps Alloy for Promtail
PROMTAIL = {"monitoring": {"logAgent": "promtail"}}
DOCKER_SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


@pytest.fixture(scope="module", params=STACKS)
def with_promtail(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param, overrides=PROMTAIL)


def container(deployment: Deployment, name: str) -> Registration:
    return deployment.named(name, CONTAINER)


def uploads(deployment: Deployment, name: str) -> dict[str, str]:
    return container(deployment, name).uploads()


def test_every_monitoring_service_runs_on_only_the_networks_it_needs(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    for service, segments in NETWORKS.items():
        attached = {network["name"] for network in container(deployment, service).inputs["networksAdvanced"]}
        assert attached == {f"{prefix}-{segment}-net" for segment in segments}, service
        assert deployment.outputs["containers"][service]["networks"] == sorted(attached)


def test_every_image_is_pinned_and_pulled_by_id(deployment: Deployment) -> None:
    images = {image.name: image.inputs["name"] for image in deployment.of_type(IMAGE)}
    for service in SERVICES:
        reference = images[f"{service}-image"]
        assert ":" in reference.rsplit("/", 1)[-1] and not reference.endswith(":latest"), reference
        assert container(deployment, service).inputs["image"].startswith("sha256:")
    assert images["alloy-image"] == DEFAULT_ALLOY_IMAGE
    assert "promtail-image" not in images
    assert images["prometheus-image"].startswith("prom/prometheus:v3.")
    assert images["loki-image"].startswith("grafana/loki:3.")


def test_containers_follow_the_stack_conventions(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    for service in SERVICES:
        registration = container(deployment, service)
        labels = {label["label"]: label["value"] for label in registration.inputs["labels"]}
        assert labels["io.minio-platform.stack"] == prefix
        assert labels["io.minio-platform.service"] == service
        assert registration.inputs["healthcheck"]["tests"]
        assert registration.inputs["memory"] > 0
        assert registration.delete_before_replace
        assert not registration.inputs.get("ports"), f"{service} publishes a port; only the edge proxy may"


def test_files_holding_secrets_are_delivered_as_secret_outputs(deployment: Deployment) -> None:
    for service in SERVICES:
        secret = "uploads" in container(deployment, service).secret_paths
        assert secret == (service in SECRET_UPLOADS), service


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_prometheus_gets_its_config_rules_and_minio_token(deployment: Deployment) -> None:
    files = uploads(deployment, "prometheus")
    # every committed rule file, and the stack's thresholds rendered from its settings
    rules = {f"/etc/prometheus/rules/{name}" for name in rule_files(load_stack(deployment.outputs["environment"], None))}
    assert {"/etc/prometheus/rules/platform.rules.yml", "/etc/prometheus/rules/stack-thresholds.yml"} <= rules
    assert set(files) == {
        "/etc/prometheus/prometheus.yml",
        "/etc/prometheus/rules/minio.rules.yml",
        "/etc/prometheus/rules/monitoring.rules.yml",
        "/etc/prometheus/secrets/minio-metrics-token",
    } | rules
    token = files["/etc/prometheus/secrets/minio-metrics-token"].strip()
    # signed for the metrics-only MinIO user, never with root's secret
    password = deployment.outputs["metricsReaderSecretKey"]
    claims = jwt.decode(token, password, algorithms=["HS512"], issuer="prometheus")
    assert claims["sub"] == METRICS_READER_USER
    command = container(deployment, "prometheus").inputs["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert "--storage.tsdb.retention.time=15d" in command


def test_the_metrics_token_is_the_same_on_every_run(deployment: Deployment) -> None:
    again = deploy(deployment.outputs["environment"])
    token = "/etc/prometheus/secrets/minio-metrics-token"
    assert uploads(again, "prometheus")[token] == uploads(deployment, "prometheus")[token]


def test_grafana_is_served_under_its_sub_path_with_anonymous_access_off(deployment: Deployment) -> None:
    envs = dict(item.split("=", 1) for item in container(deployment, "grafana").inputs["envs"])
    assert envs["GF_SERVER_ROOT_URL"] == deployment.outputs["endpoints"]["grafana"]
    assert envs["GF_SERVER_ROOT_URL"].endswith("/monitoring/grafana/")
    assert envs["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert envs["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    files = uploads(deployment, "grafana")
    assert files[envs["GF_SECURITY_ADMIN_PASSWORD__FILE"]] == deployment.outputs["grafanaAdminPassword"]
    dashboard = json.loads(files["/etc/grafana/dashboards/minio-overview.json"])
    assert dashboard["title"] == "MinIO Overview"


def test_alloy_is_the_log_agent_by_default_reading_the_docker_api_through_the_proxy_without_a_socket(
    deployment: Deployment,
) -> None:
    prefix = deployment.outputs["name"]
    alloy = container(deployment, "alloy")
    assert "promtail" not in deployment.outputs["containers"]
    # its one volume is its read offsets: no Docker socket, no host path at all
    assert alloy.inputs["volumes"] == [{"volumeName": f"{prefix}-alloy-data", "containerPath": "/var/lib/alloy/data"}]
    config = uploads(deployment, "alloy")["/etc/alloy/config.alloy"]
    assert config.count(f'host             = "{DOCKER_API_URL}"') == 1 and config.count(f'host          = "{DOCKER_API_URL}"') == 1
    assert DOCKER_API_URL == "tcp://docker-api-proxy:2375" and "unix://" not in config and DOCKER_SOCKET not in config
    # created once the proxy it reads through is healthy
    assert container(deployment, "docker-api-proxy").urn in alloy.dependencies
    # Prometheus scrapes it on monitoring-net, so it must not keep Alloy's default 127.0.0.1 listener
    assert alloy.inputs["command"] == [
        "run",
        "--server.http.listen-addr=0.0.0.0:12345",
        "--storage.path=/var/lib/alloy/data",
        "--disable-reporting",
        "/etc/alloy/config.alloy",
    ]
    assert uploads(deployment, "alloy") == {"/etc/alloy/config.alloy": alloy_config(load_stack(deployment.outputs["environment"], None))}
    (bash, flag, probe) = alloy.inputs["healthcheck"]["tests"][1:]
    assert (bash, flag) == ("bash", "-c") and "/dev/tcp/127.0.0.1/12345" in probe and "GET /-/ready " in probe
    assert {network["aliases"][0] for network in alloy.inputs["networksAdvanced"]} == {"alloy"}
    # a fixed address, the one the proxy admits
    [attachment] = alloy.inputs["networksAdvanced"]
    assert attachment["ipv4Address"] == host_address(deployment.subnet("monitoring"), "alloy")


def test_prometheus_scrapes_the_log_agent_the_stack_runs(deployment: Deployment, with_promtail: Deployment) -> None:
    for deployed, job, target in ((deployment, "alloy", "alloy:12345"), (with_promtail, "promtail", "promtail:9080")):
        document = yaml.safe_load(uploads(deployed, "prometheus")["/etc/prometheus/prometheus.yml"])
        jobs = {scrape["job_name"]: scrape["static_configs"][0]["targets"] for scrape in document["scrape_configs"]}
        assert jobs[job] == [target]
        assert not ({"alloy", "promtail"} - {job}) & set(jobs)


def test_promtail_stays_selectable_with_its_own_image_volume_and_probe(with_promtail: Deployment) -> None:
    prefix = with_promtail.outputs["name"]
    assert "alloy" not in with_promtail.outputs["containers"]
    promtail = container(with_promtail, "promtail")
    assert with_promtail.named("promtail-image", IMAGE).inputs["name"] == DEFAULT_PROMTAIL_IMAGE
    assert promtail.inputs["command"] == ["-config.file=/etc/promtail/promtail.yml"]
    config = load_stack(with_promtail.outputs["environment"], None)
    config = config.model_copy(update={"monitoring": config.monitoring.model_copy(update={"log_agent": "promtail"})})
    assert uploads(with_promtail, "promtail") == {"/etc/promtail/promtail.yml": promtail_yml(config)}
    assert promtail.inputs["volumes"] == [{"volumeName": f"{prefix}-promtail-data", "containerPath": "/promtail"}]
    document = yaml.safe_load(uploads(with_promtail, "promtail")["/etc/promtail/promtail.yml"])
    assert [sd["host"] for sd in document["scrape_configs"][0]["docker_sd_configs"]] == [DOCKER_API_URL]
    [attachment] = promtail.inputs["networksAdvanced"]
    assert attachment["ipv4Address"] == host_address(with_promtail.subnet("monitoring"), "promtail")
    assert with_promtail.named("docker-api-proxy", CONTAINER).urn in promtail.dependencies
    assert f"{prefix}-promtail-data" in with_promtail.outputs["volumes"]
    assert f"{prefix}-alloy-data" not in with_promtail.outputs["volumes"]
    probe = promtail.inputs["healthcheck"]["tests"][-1]
    assert "/dev/tcp/127.0.0.1/9080" in probe and "GET /ready " in probe
    attached = {network["name"] for network in promtail.inputs["networksAdvanced"]}
    assert attached == {f"{prefix}-monitoring-net"} == set(with_promtail.outputs["containers"]["promtail"]["networks"])
    labels = {label["label"]: label["value"] for label in promtail.inputs["labels"]}
    assert labels["io.minio-platform.service"] == "promtail"


def test_data_lives_on_volumes_that_prod_protects(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    volumes = {volume.inputs["name"]: volume for volume in deployment.of_type("docker:index/volume:Volume")}
    for service in ("prometheus", "alertmanager", "loki", "alloy", "grafana"):
        volume = volumes[f"{prefix}-{service}-data"]
        assert volume.protect == (deployment.outputs["environment"] == "prod")
        assert f"{prefix}-{service}-data" in deployment.outputs["volumes"]


def test_minio_posts_its_audit_log_to_the_sink_with_the_sink_s_token(deployment: Deployment) -> None:
    env = uploads(deployment, "minio1")["/etc/minio/config.env"]
    settings = dict(line.split("=", 1) for line in env.splitlines() if line and not line.startswith("#"))
    assert settings["MINIO_AUDIT_WEBHOOK_ENABLE"] == "on"
    assert settings["MINIO_AUDIT_WEBHOOK_ENDPOINT"] == "http://audit-sink:8080/minio/audit"
    sink = uploads(deployment, "audit-sink")
    assert sink["/etc/audit-sink/token"].strip() == settings["MINIO_AUDIT_WEBHOOK_AUTH_TOKEN"]
    assert "def audit_entries" in sink["/opt/audit-sink/audit_sink.py"]
    assert container(deployment, "audit-sink").inputs["user"] == "65534:65534"


def test_outputs_name_the_monitoring_endpoints_and_keep_the_password_secret(deployment: Deployment) -> None:
    endpoints: dict[str, Any] = deployment.outputs["endpoints"]
    assert endpoints["prometheusInternal"] == "http://prometheus:9090"
    assert endpoints["alertmanagerInternal"] == "http://alertmanager:9093"
    assert endpoints["lokiInternal"] == "http://loki:3100"
    assert "grafanaAdminPassword" in deployment.secret_outputs
    for service in SERVICES:
        assert deployment.outputs["containers"][service]["name"] == f"{deployment.outputs['name']}-{service}"


def attachments(deployment: Deployment) -> dict[str, list[dict[str, Any]]]:
    """Container name in the stack -> its network attachments (name, aliases, ipv4Address)."""
    prefix = deployment.outputs["name"]
    return {
        registration.inputs["name"].removeprefix(f"{prefix}-"): registration.inputs["networksAdvanced"]
        for registration in deployment.of_type(CONTAINER)
    }


def test_every_scrape_target_is_reachable_on_a_network_prometheus_shares_with_it(deployment: Deployment) -> None:
    attached = attachments(deployment)
    prometheus_networks = {network["name"] for network in attached["prometheus"]}
    document = yaml.safe_load(uploads(deployment, "prometheus")["/etc/prometheus/prometheus.yml"])
    targets = {
        (job["job_name"], target)
        for job in document["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert {job for job, _ in targets} >= {"grafana", "keycloak", "edge-proxy"}
    for job, target in targets:
        host, _, port = target.rpartition(":")
        assert port.isdigit(), f"{job}: {target} has no explicit port"
        if host == "localhost":
            assert job == "prometheus"
            continue
        # Docker's DNS answers a network alias only to containers on that same network
        reachable = [
            name
            for name, networks in attached.items()
            for network in networks
            if network["name"] in prometheus_networks and host in (network.get("aliases") or [])
        ]
        assert len(set(reachable)) == 1, f"{job}: {host} is on no network Prometheus is on (or names several containers)"


def test_keycloak_is_scraped_on_storage_net_at_its_management_port(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    keycloak = {network["name"]: network for network in attachments(deployment)["keycloak"]}
    storage = keycloak[f"{prefix}-storage-net"]
    assert "keycloak" in storage["aliases"] and storage["ipv4Address"] == host_address(deployment.subnet("storage"), "keycloak")
    document = yaml.safe_load(uploads(deployment, "prometheus")["/etc/prometheus/prometheus.yml"])
    [job] = [job for job in document["scrape_configs"] if job["job_name"] == "keycloak"]
    assert job["static_configs"][0]["targets"] == ["keycloak:9000"] and job["metrics_path"] == "/metrics"
    conf = uploads(deployment, "keycloak")["/opt/keycloak/conf/keycloak.conf"]
    assert "metrics-enabled=true" in conf and "http-management-port=9000" in conf and "http-management-relative-path=/" in conf


def test_the_edge_proxys_exporter_reads_the_status_listener_on_monitoring_net_only(deployment: Deployment) -> None:
    from infra.config.images import NGINX_EXPORTER

    prefix = deployment.outputs["name"]
    exporter = container(deployment, "nginx-exporter")
    assert deployment.named("nginx-exporter-image", IMAGE).inputs["name"] == NGINX_EXPORTER.reference
    assert exporter.inputs["image"].startswith("sha256:")
    [network] = exporter.inputs["networksAdvanced"]
    assert network["name"] == f"{prefix}-monitoring-net" and network["aliases"] == ["nginx-exporter"]
    assert not exporter.inputs.get("ports") and not exporter.inputs.get("volumes")
    status = host_address(deployment.subnet("monitoring"), "edge-proxy")
    assert exporter.inputs["command"] == [
        f"--nginx.scrape-uri=http://{status}:8081/stub_status",
        "--web.listen-address=:9113",
    ]
    assert exporter.inputs["healthcheck"]["tests"] == ["CMD", "/usr/bin/nginx-prometheus-exporter", "--version"]
    labels = {label["label"]: label["value"] for label in exporter.inputs["labels"]}
    assert labels["io.minio-platform.service"] == "nginx-exporter"
    # the address it reads is the proxy's own on monitoring-net, where the status listener admits it
    proxy = {network["name"]: network for network in attachments(deployment)["edge-proxy"]}
    assert proxy[f"{prefix}-monitoring-net"]["ipv4Address"] == status
    conf = uploads(deployment, "edge-proxy")["/etc/nginx/nginx.conf"]
    server = conf[conf.index("listen 8081;") :]
    server = server[: server.index("\n    }\n")]
    gateway = str(__import__("ipaddress").IPv4Network(deployment.subnet("monitoring")).network_address + 1)
    assert f"deny {gateway};" in server and f"allow {deployment.subnet('monitoring')};" in server and "deny all;" in server
    assert server.index(f"deny {gateway};") < server.index("allow ") < server.index("deny all;")
    assert "stub_status;" in server and "access_log off;" in server
    # published nowhere: only the proxy's listed ports leave the host
    assert 8081 not in {port["internal"] for port in container(deployment, "edge-proxy").inputs["ports"]}


def test_the_latency_threshold_reaches_prometheus_as_its_recording_rule() -> None:
    deployed = deploy("dev", overrides={"monitoring": {"s3LatencyP99Seconds": 3.5}})
    rules = yaml.safe_load(uploads(deployed, "prometheus")["/etc/prometheus/rules/stack-thresholds.yml"])
    assert rules["groups"][0]["rules"] == [{"record": "minio_platform:s3_ttfb_p99_threshold_seconds", "expr": "vector(3.5)"}]


def test_platform_health_is_provisioned_beside_the_overview(deployment: Deployment) -> None:
    files = uploads(deployment, "grafana")
    dashboard = json.loads(files["/etc/grafana/dashboards/platform-health.json"])
    assert (dashboard["uid"], dashboard["title"]) == ("platform-health", "Platform health")
    assert json.loads(files["/etc/grafana/dashboards/minio-overview.json"])["uid"] == "minio-overview"


def test_the_blackbox_exporter_probes_minio_health_from_storage_net_with_the_pinned_image(deployment: Deployment) -> None:
    from infra.config.images import BLACKBOX_EXPORTER
    from infra.monitoring.blackbox_exporter import blackbox_yml

    prefix = deployment.outputs["name"]
    exporter = container(deployment, "blackbox-exporter")
    assert deployment.named("blackbox-exporter-image", IMAGE).inputs["name"] == BLACKBOX_EXPORTER.reference
    assert exporter.inputs["image"].startswith("sha256:")
    # on storage-net only, at its fixed address: the segment of the MinIO nodes and of Prometheus' scrapes
    [network] = exporter.inputs["networksAdvanced"]
    assert network["name"] == f"{prefix}-storage-net" and network["aliases"] == ["blackbox-exporter"]
    assert network["ipv4Address"] == host_address(deployment.subnet("storage"), "blackbox-exporter")
    # nothing published, nothing kept, no credentials of any kind
    assert not exporter.inputs.get("ports") and not exporter.inputs.get("volumes")
    assert exporter.inputs["user"] == "65534:65534"
    config = load_stack(deployment.outputs["environment"], None)
    assert uploads(deployment, "blackbox-exporter") == {"/etc/blackbox_exporter/blackbox.yml": blackbox_yml(config)}
    assert exporter.inputs["command"] == ["--config.file=/etc/blackbox_exporter/blackbox.yml", "--web.listen-address=:9115"]
    assert exporter.inputs["healthcheck"]["tests"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:9115/-/healthy"]
    labels = {label["label"]: label["value"] for label in exporter.inputs["labels"]}
    assert labels["io.minio-platform.service"] == "blackbox-exporter"
    # Prometheus reaches it by that alias, on the network they share
    document = yaml.safe_load(uploads(deployment, "prometheus")["/etc/prometheus/prometheus.yml"])
    [job] = [job for job in document["scrape_configs"] if job["job_name"] == "minio-health"]
    [address] = [rule["replacement"] for rule in job["relabel_configs"] if rule["target_label"] == "__address__"]
    assert address == "blackbox-exporter:9115"
    prometheus_networks = {n["name"] for n in attachments(deployment)["prometheus"]}
    assert network["name"] in prometheus_networks
