"""The Pulumi program under Pulumi's mocks: the monitoring tier's resource graph for every stack."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from infra.config.monitoring import DEFAULT_PROMTAIL_IMAGE
from tests.unit.pulumi_harness import Deployment, Registration, deploy

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
STACKS = ["dev", "staging", "prod"]
SERVICES = ["prometheus", "alertmanager", "loki", "promtail", "grafana", "audit-sink"]
NETWORKS = {
    "prometheus": {"storage", "monitoring"},
    "alertmanager": {"monitoring"},
    "loki": {"monitoring"},
    "promtail": {"monitoring"},
    "grafana": {"monitoring"},
    "audit-sink": {"storage", "monitoring"},
}
# containers whose uploads hold a secret (token, password), so they travel as secret Outputs
SECRET_UPLOADS = {"prometheus", "alertmanager", "grafana", "audit-sink"}


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


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
    assert images["promtail-image"] == DEFAULT_PROMTAIL_IMAGE
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
    assert set(files) == {
        "/etc/prometheus/prometheus.yml",
        "/etc/prometheus/rules/minio.rules.yml",
        "/etc/prometheus/rules/monitoring.rules.yml",
        "/etc/prometheus/secrets/minio-metrics-token",
    }
    token = files["/etc/prometheus/secrets/minio-metrics-token"].strip()
    password = deployment.outputs["minioRootPassword"]
    claims = jwt.decode(token, password, algorithms=["HS512"], issuer="prometheus")
    assert claims["sub"] == deployment.outputs["minioRootUser"]
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


def test_promtail_reads_the_docker_socket_read_only(deployment: Deployment) -> None:
    mounts = container(deployment, "promtail").inputs["volumes"]
    socket = next(mount for mount in mounts if mount.get("hostPath"))
    assert socket == {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock", "readOnly": True}


def test_data_lives_on_volumes_that_prod_protects(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    volumes = {volume.inputs["name"]: volume for volume in deployment.of_type("docker:index/volume:Volume")}
    for service in ("prometheus", "alertmanager", "loki", "promtail", "grafana"):
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
