"""The monitoring tier: Prometheus, Alertmanager, Loki, Promtail, Grafana and the audit sink.

Every configuration file is rendered here from templates/ (and the committed alerts/ and
dashboards/) by pure functions, grouped by the container that receives it; the `Monitoring`
component delivers each group with `uploads`, as a secret Output when it holds a secret.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning
import pulumi
import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import (
    SERVICE_LABEL,
    STACK_LABEL,
    Attachment,
    ContainerSpec,
    Healthcheck,
    Naming,
    data_volume,
    pinned_image,
    service_container,
)
from infra.networks import Segments
from infra.rendering import RenderedFile, as_uploads, render_template
from infra.runbook import COMMITTED_RUNBOOK_URL, runbook_url
from infra.secrets import SecretValues
from infra.services import audit_sink
from infra.storage import API_PORT, node_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALERTS_DIR = PROJECT_ROOT / "alerts"
DASHBOARDS_DIR = PROJECT_ROOT / "dashboards"

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
LOKI_PORT = 3100
PROMTAIL_PORT = 9080
GRAFANA_PORT = 3000

PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES_DIR = "/etc/prometheus/rules"
MINIO_TOKEN_FILE = "/etc/prometheus/secrets/minio-metrics-token"
ALERTMANAGER_CONFIG = "/etc/alertmanager/alertmanager.yml"
WEBHOOK_TOKEN_FILE = "/etc/alertmanager/secrets/webhook-token"
LOKI_CONFIG = "/etc/loki/loki.yml"
LOKI_DATA = "/loki"
PROMTAIL_CONFIG = "/etc/promtail/promtail.yml"
PROMTAIL_DATA = "/promtail"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"
GRAFANA_PASSWORD_FILE = "/etc/grafana/secrets/admin-password"
AUDIT_SINK_SCRIPT = "/opt/audit-sink/audit_sink.py"
AUDIT_SINK_TOKEN_FILE = "/etc/audit-sink/token"

# 2100-01-01T00:00:00Z: a fixed expiry (and no iat) keeps the token, and so Prometheus, unchanged across updates
METRICS_TOKEN_EXPIRES = 4102444800

# the datasource uids dashboards refer to; provisioned with exactly these
PROMETHEUS_DATASOURCE_UID = "prometheus"
LOKI_DATASOURCE_UID = "loki"
ALERTMANAGER_DATASOURCE_UID = "alertmanager"

# the monitoring services MonitoringTargetDown watches (alerts/monitoring.rules.yml), in scrape order
MONITORING_JOBS = ("prometheus", "alertmanager", "loki", "promtail", "audit-sink")
SEVERITIES = ("critical", "warning", "info")


def minio_metrics_token(access_key: str, secret_key: str) -> str:
    """The bearer token `mc admin prometheus generate` makes: HS512 JWT, sub=access key, iss=prometheus."""
    with warnings.catch_warnings():
        # MinIO signs with the user's secret key as it is; its length is not ours to choose
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(
            {"exp": METRICS_TOKEN_EXPIRES, "sub": access_key, "iss": "prometheus"}, secret_key, algorithm="HS512"
        )


@dataclass(frozen=True)
class ScrapeAddresses:
    """host:port of everything Prometheus talks to; in a stack, container names on the shared networks."""

    prometheus: str
    alertmanager: str
    loki: str
    promtail: str
    audit_sink: str
    minio_nodes: tuple[tuple[str, str], ...]
    """(node name, host:port) of every MinIO node."""

    @classmethod
    def of_stack(cls, config: StackConfig) -> ScrapeAddresses:
        nodes = tuple(
            (node_name(index), f"{node_name(index)}:{API_PORT}") for index in range(1, config.storage.nodes + 1)
        )
        return cls(
            prometheus=f"localhost:{PROMETHEUS_PORT}",
            alertmanager=f"alertmanager:{ALERTMANAGER_PORT}",
            loki=f"loki:{LOKI_PORT}",
            promtail=f"promtail:{PROMTAIL_PORT}",
            audit_sink=f"{audit_sink.SERVICE}:{audit_sink.PORT}",
            minio_nodes=nodes,
        )


def prometheus_yml(
    config: StackConfig,
    addresses: ScrapeAddresses,
    rules_dir: str = PROMETHEUS_RULES_DIR,
    token_file: str = MINIO_TOKEN_FILE,
) -> str:
    settings = config.monitoring
    targets = {
        "prometheus": addresses.prometheus,
        "alertmanager": addresses.alertmanager,
        "loki": addresses.loki,
        "promtail": addresses.promtail,
        "audit-sink": addresses.audit_sink,
    }
    return render_template(
        "prometheus/prometheus.yml.j2",
        stack=config.name,
        scrape_interval=settings.scrape_interval,
        evaluation_interval=settings.evaluation_interval,
        rules_dir=rules_dir,
        alertmanager=addresses.alertmanager,
        monitoring_jobs=[{"name": job, "target": targets[job], "metrics_path": "/metrics"} for job in MONITORING_JOBS],
        minio_jobs=[
            {
                "name": "minio-cluster",
                "metrics_path": "/minio/v2/metrics/cluster",
                "scrape_interval": None,
                "why": "any node answers for the whole cluster; scraping every node keeps cluster metrics "
                "flowing while one is down (read them with max())",
            },
            {
                "name": "minio-nodes",
                "metrics_path": "/minio/v2/metrics/node",
                "scrape_interval": None,
                "why": "each node's own process, drive and S3 request metrics; its `up` is MinIONodeDown",
            },
            {
                "name": "minio-bucket",
                "metrics_path": "/minio/v2/metrics/bucket",
                "scrape_interval": settings.bucket_scrape_interval,
                "why": "bucket usage (only here since 2023-07); every node, as for minio-cluster",
            },
        ],
        minio_nodes=[{"name": name, "target": target} for name, target in addresses.minio_nodes],
        minio_token_file=token_file,
    )


def alert_rule_files(config: StackConfig) -> dict[str, str]:
    """The committed rule files by name, their runbook links pointing at the stack's runbook URL."""
    return {
        path.name: path.read_text().replace(COMMITTED_RUNBOOK_URL, runbook_url(config))
        for path in sorted(ALERTS_DIR.glob("*.rules.yml"))
    }


def alertmanager_yml(config: StackConfig, token_file: str | None) -> str:
    settings = config.monitoring
    return render_template(
        "alertmanager/alertmanager.yml.j2",
        stack=config.name,
        group_wait=settings.alert_group_wait,
        group_interval=settings.alert_group_interval,
        repeat_interval=settings.alert_repeat_interval,
        watchdog_repeat_interval="5m",
        severities=[
            {"name": "critical", "repeat_interval": "1h"},
            {"name": "warning", "repeat_interval": None},
            {"name": "info", "repeat_interval": "24h"},
        ],
        receivers=["watchdog", *SEVERITIES],
        webhook_url=settings.webhook_url,
        webhook_token_file=token_file,
    )


def loki_yml(config: StackConfig) -> str:
    return render_template(
        "loki/loki.yml.j2",
        stack=config.name,
        http_port=LOKI_PORT,
        data_dir=LOKI_DATA,
        retention=config.monitoring.loki_retention,
    )


def promtail_yml(config: StackConfig) -> str:
    return render_template(
        "promtail/promtail.yml.j2",
        stack=config.name,
        http_port=PROMTAIL_PORT,
        data_dir=PROMTAIL_DATA,
        loki_push_url=f"http://loki:{LOKI_PORT}/loki/api/v1/push",
        docker_socket=config.monitoring.docker_socket,
        stack_label=STACK_LABEL,
        service_label=SERVICE_LABEL,
    )


def grafana_datasources() -> list[dict[str, Any]]:
    return [
        {
            "name": "Prometheus",
            "uid": PROMETHEUS_DATASOURCE_UID,
            "type": "prometheus",
            "url": f"http://prometheus:{PROMETHEUS_PORT}",
            "default": True,
            "json_data": {"httpMethod": "POST"},
        },
        {
            "name": "Loki",
            "uid": LOKI_DATASOURCE_UID,
            "type": "loki",
            "url": f"http://loki:{LOKI_PORT}",
            "default": False,
            "json_data": {"maxLines": 1000},
        },
        {
            "name": "Alertmanager",
            "uid": ALERTMANAGER_DATASOURCE_UID,
            "type": "alertmanager",
            "url": f"http://alertmanager:{ALERTMANAGER_PORT}",
            "default": False,
            "json_data": {"implementation": "prometheus", "handleGrafanaManagedAlerts": "false"},
        },
    ]


def dashboard_files() -> dict[str, str]:
    """The committed dashboard JSON, by file name (generated from dashboards/*.py)."""
    return {path.name: path.read_text() for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def grafana_environment(config: StackConfig) -> list[str]:
    root_url = config.edge.public_urls(config.environment).grafana
    return [
        f"GF_SERVER_ROOT_URL={root_url}",
        "GF_SERVER_SERVE_FROM_SUB_PATH=true",
        f"GF_SECURITY_ADMIN_PASSWORD__FILE={GRAFANA_PASSWORD_FILE}",
        "GF_AUTH_ANONYMOUS_ENABLED=false",
        "GF_USERS_ALLOW_SIGN_UP=false",
        "GF_ANALYTICS_REPORTING_ENABLED=false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES=false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES=false",
        "GF_NEWS_NEWS_FEED_ENABLED=false",
    ]


# ---- the files of each container; `monitoring_files` (the `render` command) is all of them


def prometheus_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    token = minio_metrics_token(secrets.minio_root_user, secrets.minio_root_password)
    return [
        RenderedFile(
            "prometheus/prometheus.yml", PROMETHEUS_CONFIG, prometheus_yml(config, ScrapeAddresses.of_stack(config))
        ),
        *(
            RenderedFile(f"prometheus/rules/{name}", f"{PROMETHEUS_RULES_DIR}/{name}", content)
            for name, content in alert_rule_files(config).items()
        ),
        RenderedFile("prometheus/secrets/minio-metrics-token", MINIO_TOKEN_FILE, token + "\n", secret=True),
    ]


def alertmanager_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    # the stack's own audit sink wants its token; an outside receiver never sees it
    internal = config.monitoring.webhook_is_audit_sink
    files = [
        RenderedFile(
            "alertmanager/alertmanager.yml",
            ALERTMANAGER_CONFIG,
            alertmanager_yml(config, WEBHOOK_TOKEN_FILE if internal else None),
        )
    ]
    if internal:
        files.append(
            RenderedFile(
                "alertmanager/secrets/webhook-token", WEBHOOK_TOKEN_FILE, secrets.audit_webhook_token + "\n", secret=True
            )
        )
    return files


def loki_files(config: StackConfig) -> list[RenderedFile]:
    return [RenderedFile("loki/loki.yml", LOKI_CONFIG, loki_yml(config))]


def promtail_files(config: StackConfig) -> list[RenderedFile]:
    return [RenderedFile("promtail/promtail.yml", PROMTAIL_CONFIG, promtail_yml(config))]


def grafana_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    datasources = render_template("grafana/datasources.yml.j2", stack=config.name, datasources=grafana_datasources())
    provider = render_template(
        "grafana/dashboards.yml.j2", stack=config.name, folder="MinIO", dashboards_dir=GRAFANA_DASHBOARDS
    )
    return [
        RenderedFile(
            "grafana/provisioning/datasources/datasources.yml",
            f"{GRAFANA_PROVISIONING}/datasources/datasources.yml",
            datasources,
        ),
        RenderedFile(
            "grafana/provisioning/dashboards/minio-platform.yml",
            f"{GRAFANA_PROVISIONING}/dashboards/minio-platform.yml",
            provider,
        ),
        *(
            RenderedFile(f"grafana/dashboards/{name}", f"{GRAFANA_DASHBOARDS}/{name}", content)
            for name, content in dashboard_files().items()
        ),
        RenderedFile("grafana/secrets/admin-password", GRAFANA_PASSWORD_FILE, secrets.grafana_admin_password, secret=True),
    ]


def audit_sink_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    script = Path(audit_sink.__file__).read_text()
    return [
        RenderedFile("audit-sink/audit_sink.py", AUDIT_SINK_SCRIPT, script),
        RenderedFile("audit-sink/token", AUDIT_SINK_TOKEN_FILE, secrets.audit_webhook_token + "\n", secret=True),
    ]


def monitoring_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    return [
        *prometheus_files(config, secrets),
        *alertmanager_files(config, secrets),
        *loki_files(config),
        *promtail_files(config),
        *grafana_files(config, secrets),
        *audit_sink_files(config, secrets),
    ]


def _http_probe(url: str) -> Healthcheck:
    """busybox wget in the Prometheus and Alertmanager images."""
    return Healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", url])


class Monitoring(pulumi.ComponentResource):
    containers: dict[str, docker.Container]
    """By name in the stack: prometheus, alertmanager, loki, promtail, grafana, audit-sink."""
    volumes: list[docker.Volume]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        naming: Naming,
        segments: Segments,
        secrets: pulumi.Output[SecretValues],
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("minio-platform:monitoring:Monitoring", name, None, opts)
        settings = config.monitoring
        storage, monitoring = segments.storage, segments.monitoring

        def volume(service: str, container_path: str) -> docker.ContainerVolumeArgs:
            created = data_volume(f"{service}-data", service, config, naming, self)
            self.volumes.append(created)
            return docker.ContainerVolumeArgs(volume_name=created.name, container_path=container_path)

        def on_monitoring(service: str) -> Attachment:
            return Attachment(monitoring.network, aliases=[service], ipv4_address=monitoring.address(service))

        def secret_uploads(
            render: Callable[[StackConfig, SecretValues], list[RenderedFile]],
        ) -> pulumi.Output[list[docker.ContainerUploadArgs]]:
            return secrets.apply(lambda plain: as_uploads(render(config, plain)))

        self.volumes = []
        specs = [
            ContainerSpec(
                service="prometheus",
                name="prometheus",
                image=pinned_image("prometheus-image", settings.prometheus_image, self),
                command=[
                    f"--config.file={PROMETHEUS_CONFIG}",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={settings.prometheus_retention}",
                    f"--web.listen-address=:{PROMETHEUS_PORT}",
                ],
                uploads=secret_uploads(prometheus_files),
                volumes=[volume("prometheus", "/prometheus")],
                # storage-net to scrape MinIO, monitoring-net for everything else
                networks=[
                    Attachment(storage.network, aliases=["prometheus"], ipv4_address=storage.address("prometheus")),
                    on_monitoring("prometheus"),
                ],
                healthcheck=_http_probe(f"http://localhost:{PROMETHEUS_PORT}/-/ready"),
                memory_mb=settings.prometheus_memory_mb,
            ),
            ContainerSpec(
                service="alertmanager",
                name="alertmanager",
                image=pinned_image("alertmanager-image", settings.alertmanager_image, self),
                command=[
                    f"--config.file={ALERTMANAGER_CONFIG}",
                    "--storage.path=/alertmanager",
                    f"--web.listen-address=:{ALERTMANAGER_PORT}",
                    # a single instance: no gossip port
                    "--cluster.listen-address=",
                ],
                uploads=secret_uploads(alertmanager_files),
                volumes=[volume("alertmanager", "/alertmanager")],
                networks=[on_monitoring("alertmanager")],
                healthcheck=_http_probe(f"http://localhost:{ALERTMANAGER_PORT}/-/ready"),
                memory_mb=settings.alertmanager_memory_mb,
            ),
            ContainerSpec(
                service="loki",
                name="loki",
                image=pinned_image("loki-image", settings.loki_image, self),
                command=[f"-config.file={LOKI_CONFIG}"],
                uploads=as_uploads(loki_files(config)),
                volumes=[volume("loki", LOKI_DATA)],
                networks=[on_monitoring("loki")],
                # the image has no shell nor wget since 3.6; `loki -health` asks its own /ready
                healthcheck=Healthcheck(["CMD", "/usr/bin/loki", "-health"]),
                memory_mb=settings.loki_memory_mb,
            ),
            ContainerSpec(
                service="promtail",
                name="promtail",
                image=pinned_image("promtail-image", settings.promtail_image, self),
                command=[f"-config.file={PROMTAIL_CONFIG}"],
                uploads=as_uploads(promtail_files(config)),
                volumes=[
                    volume("promtail", PROMTAIL_DATA),
                    # read-only Docker API access for service discovery and log reading
                    docker.ContainerVolumeArgs(
                        host_path=settings.docker_socket, container_path=settings.docker_socket, read_only=True
                    ),
                ],
                networks=[Attachment(monitoring.network, aliases=["promtail"])],
                # the Ubuntu-based image has bash but neither curl nor wget
                healthcheck=Healthcheck(
                    [
                        "CMD",
                        "bash",
                        "-c",
                        f"exec 3<>/dev/tcp/127.0.0.1/{PROMTAIL_PORT} && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 "
                        "&& head -n1 <&3 | grep -q ' 200 '",
                    ]
                ),
                memory_mb=settings.promtail_memory_mb,
            ),
            ContainerSpec(
                service="grafana",
                name="grafana",
                image=pinned_image("grafana-image", settings.grafana_image, self),
                envs=grafana_environment(config),
                uploads=secret_uploads(grafana_files),
                volumes=[volume("grafana", "/var/lib/grafana")],
                # the edge proxy reaches it on monitoring-net at /monitoring/grafana/
                networks=[on_monitoring("grafana")],
                healthcheck=Healthcheck(
                    [
                        "CMD-SHELL",
                        f"wget -q -O /dev/null http://localhost:{GRAFANA_PORT}/monitoring/grafana/api/health "
                        f"|| curl -fsS -o /dev/null http://localhost:{GRAFANA_PORT}/monitoring/grafana/api/health",
                    ]
                ),
                memory_mb=settings.grafana_memory_mb,
            ),
            ContainerSpec(
                service="audit-sink",
                name=audit_sink.SERVICE,
                image=pinned_image("audit-sink-image", settings.audit_sink_image, self),
                command=["python", "-u", AUDIT_SINK_SCRIPT],
                envs=[f"AUDIT_SINK_TOKEN_FILE={AUDIT_SINK_TOKEN_FILE}", f"AUDIT_SINK_LISTEN=0.0.0.0:{audit_sink.PORT}"],
                uploads=secret_uploads(audit_sink_files),
                # storage-net for MinIO's audit webhook, monitoring-net for Prometheus and Alertmanager
                networks=[
                    Attachment(
                        storage.network, aliases=[audit_sink.SERVICE], ipv4_address=storage.address(audit_sink.SERVICE)
                    ),
                    on_monitoring(audit_sink.SERVICE),
                ],
                healthcheck=Healthcheck(
                    [
                        "CMD",
                        "python",
                        "-c",
                        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{audit_sink.PORT}/health', timeout=3)",
                    ]
                ),
                memory_mb=settings.audit_sink_memory_mb,
                user="65534:65534",
            ),
        ]
        self.containers = {
            spec.name: service_container(spec, config, naming, self, depends_on) for spec in specs
        }
        self.register_outputs({"containers": [container.name for container in self.containers.values()]})


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """How dashboards/*.json are written: stable key order and indentation, so regenerating shows no diff."""
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"
