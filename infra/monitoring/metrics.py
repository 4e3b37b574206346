"""Metrics and alerting: Prometheus with its scrape jobs and rule files, Alertmanager, and the
exporter that turns the edge proxy's stub_status into metrics.

Prometheus scrapes every MinIO node and Keycloak's management port on storage-net (MinIO with a
bearer JWT derived from the metrics reader's credentials), probes every node's cluster health endpoint
through the blackbox exporter there, and scrapes the monitoring services, Grafana and the edge proxy's
exporter on monitoring-net. The rule files are the committed alerts/*.rules.yml with
their runbook links pointed at the stack's own runbook, plus the stack's alert thresholds rendered as
recording rules, which the committed rules compare against.

With nodes on hosts of their own (storage.hosts) Prometheus reaches them over https, trusting the
stack's CA, by names its `hosts` entries give. It does not scrape the node hosts' log agents: their
ports are published nowhere, so those agents have no `up` series and MonitoringTargetDown cannot see them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from infra import backups
from infra.cluster_ca import ca_certificate, ca_files
from infra.config import StackConfig
from infra.config.edge import STATUS_PORT
from infra.container import Attachment, ContainerSpec, Healthcheck
from infra.hosts import CA_FILE, node_host_entries
from infra.identity import KEYCLOAK_MANAGEMENT_PORT
from infra.monitoring import blackbox_exporter
from infra.monitoring.log_agent import deployed_agent
from infra.monitoring.logs import LOKI_PORT
from infra.networks import host_address
from infra.rendering import FileOwner, RenderedFile, render_template
from infra.runbook import COMMITTED_RUNBOOK_URL, runbook_url
from infra.secrets import METRICS_READER_USER, SecretValues
from infra.services import audit_sink
from infra.storage import API_PORT, minio_scheme, node_name
from infra.tier import Tier

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALERTS_DIR = PROJECT_ROOT / "alerts"

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
# the edge proxy's stub_status listener (templates/nginx/nginx.conf.j2), for the exporter only
EDGE_STATUS_PORT = STATUS_PORT
NGINX_EXPORTER = "nginx-exporter"
NGINX_EXPORTER_PORT = 9113

PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES_DIR = "/etc/prometheus/rules"
# rendered, not committed: each stack's alert thresholds as recording rules
THRESHOLD_RULES_FILE = "stack-thresholds.yml"
MINIO_TOKEN_FILE = "/etc/prometheus/secrets/minio-metrics-token"
ALERTMANAGER_CONFIG = "/etc/alertmanager/alertmanager.yml"
WEBHOOK_TOKEN_FILE = "/etc/alertmanager/secrets/webhook-token"

# 2100-01-01T00:00:00Z: a fixed expiry (and no iat) keeps the token, and so Prometheus, unchanged across updates
METRICS_TOKEN_EXPIRES = 4102444800

SEVERITIES = ("critical", "warning", "info")


def monitoring_jobs(config: StackConfig) -> tuple[str, ...]:
    """The monitoring services MonitoringTargetDown watches (alerts/monitoring.rules.yml), in scrape order."""
    return ("prometheus", "alertmanager", "loki", deployed_agent(config).name, "audit-sink")


# the rest of the platform, which PlatformTargetDown watches (alerts/platform.rules.yml), in scrape order
PLATFORM_JOBS = ("grafana", "keycloak", "edge-proxy")


def scheduled_jobs(config: StackConfig) -> tuple[str, ...]:
    """The scheduled services the stack runs, each its own scrape job (alerts/operations.rules.yml)."""
    return (*(("backup",) if config.backup.enabled else ()), *(("mirror",) if config.replication is not None else ()))


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
    log_agent: str
    """The log agent the stack runs, Alloy or Promtail."""
    audit_sink: str
    minio_nodes: tuple[tuple[str, str], ...]
    """(node name, host:port) of every MinIO node."""
    grafana: str
    keycloak: str
    """Keycloak's management interface, which serves /metrics."""
    edge_proxy: str
    """The exporter of the edge proxy's stub_status."""
    blackbox_exporter: str
    """The exporter every MinIO node's cluster health endpoint is probed through."""
    scheduled: tuple[tuple[str, str], ...] = ()
    """(job, host:port) of each scheduled service's metrics (scheduled_jobs)."""

    @classmethod
    def of_stack(cls, config: StackConfig) -> ScrapeAddresses:
        nodes = tuple(
            (node_name(index), f"{node_name(index)}:{API_PORT}") for index in range(1, config.storage.total_nodes + 1)
        )
        agent = deployed_agent(config)
        # dashboards.py imports this module's ports
        from infra.monitoring.dashboards import GRAFANA_PORT

        return cls(
            prometheus=f"localhost:{PROMETHEUS_PORT}",
            alertmanager=f"alertmanager:{ALERTMANAGER_PORT}",
            loki=f"loki:{LOKI_PORT}",
            log_agent=f"{agent.name}:{agent.port}",
            audit_sink=f"{audit_sink.SERVICE}:{audit_sink.PORT}",
            minio_nodes=nodes,
            grafana=f"grafana:{GRAFANA_PORT}",
            # its alias on storage-net, the network it shares with Prometheus
            keycloak=f"keycloak:{KEYCLOAK_MANAGEMENT_PORT}",
            edge_proxy=f"{NGINX_EXPORTER}:{NGINX_EXPORTER_PORT}",
            # its alias on storage-net, where it reaches the nodes
            blackbox_exporter=f"{blackbox_exporter.SERVICE}:{blackbox_exporter.PORT}",
            # each one's alias on storage-net, where it listens (infra/backups.py metrics_listen)
            scheduled=tuple((job, f"{job}:{backups.METRICS_PORT}") for job in scheduled_jobs(config)),
        )


def prometheus_yml(
    config: StackConfig,
    addresses: ScrapeAddresses,
    rules_dir: str = PROMETHEUS_RULES_DIR,
    token_file: str = MINIO_TOKEN_FILE,
    ca_file: str = CA_FILE,
) -> str:
    """`ca_file`, read on a multi-host stack only, is where Prometheus finds the CA the nodes' certificates come from."""
    settings = config.monitoring
    # nodes on hosts of their own serve TLS (infra/hosts.py); on one host they speak plain HTTP on storage-net
    scheme = minio_scheme(config)
    targets = {
        "prometheus": addresses.prometheus,
        "alertmanager": addresses.alertmanager,
        "loki": addresses.loki,
        deployed_agent(config).name: addresses.log_agent,
        "audit-sink": addresses.audit_sink,
    }
    return render_template(
        "prometheus/prometheus.yml.j2",
        stack=config.name,
        scrape_interval=settings.scrape_interval,
        evaluation_interval=settings.evaluation_interval,
        rules_dir=rules_dir,
        alertmanager=addresses.alertmanager,
        monitoring_jobs=[{"name": job, "target": targets[job], "metrics_path": "/metrics"} for job in monitoring_jobs(config)],
        platform_jobs=[
            {
                "name": "grafana",
                "target": addresses.grafana,
                "metrics_path": "/metrics",
                "why": "Grafana answers /metrics at its root whatever its sub-path (it strips the prefix first)",
            },
            {
                "name": "keycloak",
                "target": addresses.keycloak,
                "metrics_path": "/metrics",
                "why": "Keycloak's management interface (metrics-enabled), on storage-net",
            },
            {
                "name": "edge-proxy",
                "target": addresses.edge_proxy,
                "metrics_path": "/metrics",
                "why": "the exporter of the edge proxy's stub_status; its nginx_up says whether nginx answered",
            },
            *(
                {
                    "name": job,
                    "target": target,
                    "metrics_path": "/metrics",
                    "why": f"the {job} service's runs, on its storage-net address (ScheduledJobFailed, ScheduledJobStale)",
                }
                for job, target in addresses.scheduled
            ),
        ],
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
        minio_tls={"scheme": scheme, "ca_file": ca_file} if config.storage.multi_host else None,
        health_probe={
            "name": blackbox_exporter.HEALTH_JOB,
            "module": blackbox_exporter.HEALTH_MODULE,
            "url": f"{scheme}://${{1}}{blackbox_exporter.HEALTH_PATH}",
            "prober": addresses.blackbox_exporter,
            "why": "every node's unauthenticated cluster health, through the blackbox exporter: it still answers "
            "while IAM waits for Keycloak and refuses the metrics token (MinIOIdentityOffline)",
        },
    )


def alert_rule_files(config: StackConfig) -> dict[str, str]:
    """The committed rule files by name, their runbook links pointing at the stack's runbook URL."""
    return {
        path.name: path.read_text().replace(COMMITTED_RUNBOOK_URL, runbook_url(config))
        for path in sorted(ALERTS_DIR.glob("*.rules.yml"))
    }


def threshold_rules(config: StackConfig) -> str:
    """The stack's alert thresholds as recording rules: the committed rules compare against these series."""
    return render_template(
        "prometheus/thresholds.rules.yml.j2",
        stack=config.name,
        thresholds=[
            {
                "record": "minio_platform:s3_ttfb_p99_threshold_seconds",
                "setting": "monitoring.s3LatencyP99Seconds",
                "value": config.monitoring.s3_latency_p99_seconds,
            }
        ],
    )


def rule_files(config: StackConfig) -> dict[str, str]:
    """Every rule file Prometheus loads, by name: the committed ones and the stack's thresholds."""
    return {**alert_rule_files(config), THRESHOLD_RULES_FILE: threshold_rules(config)}


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


def prometheus_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    # signed for a user that may only read metrics: root's secret never leaves the storage tier for Prometheus
    token = minio_metrics_token(METRICS_READER_USER, secrets.metrics_reader_secret_key)
    return [
        RenderedFile(
            "prometheus/prometheus.yml", PROMETHEUS_CONFIG, prometheus_yml(config, ScrapeAddresses.of_stack(config))
        ),
        *(
            RenderedFile(f"prometheus/rules/{name}", f"{PROMETHEUS_RULES_DIR}/{name}", content)
            for name, content in rule_files(config).items()
        ),
        RenderedFile("prometheus/secrets/minio-metrics-token", MINIO_TOKEN_FILE, token + "\n", secret=True),
        *ca_files("prometheus", ca_certificate(config, secrets)),
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



# prom/prometheus and prom/alertmanager run as `nobody` (USER nobody in their Dockerfiles)
PROMETHEUS_USER = FileOwner(65534, 65534)


def _http_probe(url: str) -> Healthcheck:
    """busybox wget in the Prometheus and Alertmanager images."""
    return Healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", url])


def add_prometheus(tier: Tier) -> None:
    settings, segments = tier.config.monitoring, tier.stack.segments
    tier.container(
        ContainerSpec(
            service="prometheus",
            name="prometheus",
            image=tier.image("prometheus-image", settings.prometheus_image),
            command=[
                f"--config.file={PROMETHEUS_CONFIG}",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={settings.prometheus_retention}",
                f"--web.listen-address=:{PROMETHEUS_PORT}",
            ],
            uploads=tier.secret_uploads(prometheus_files, PROMETHEUS_USER),
            volumes=[tier.data_mount("prometheus", "/prometheus")],
            # storage-net to scrape MinIO, monitoring-net for everything else
            networks=[segments.storage.attachment("prometheus"), segments.monitoring.attachment("prometheus")],
            # nodes on other hosts, by their names (none on one host)
            hosts=node_host_entries(tier.config),
            healthcheck=_http_probe(f"http://localhost:{PROMETHEUS_PORT}/-/ready"),
            memory_mb=settings.prometheus_memory_mb,
        )
    )


def add_alertmanager(tier: Tier) -> None:
    settings = tier.config.monitoring
    tier.container(
        ContainerSpec(
            service="alertmanager",
            name="alertmanager",
            image=tier.image("alertmanager-image", settings.alertmanager_image),
            command=[
                f"--config.file={ALERTMANAGER_CONFIG}",
                "--storage.path=/alertmanager",
                f"--web.listen-address=:{ALERTMANAGER_PORT}",
                # a single instance: no gossip port
                "--cluster.listen-address=",
            ],
            uploads=tier.secret_uploads(alertmanager_files, PROMETHEUS_USER),
            volumes=[tier.data_mount("alertmanager", "/alertmanager")],
            networks=[tier.stack.segments.monitoring.attachment("alertmanager")],
            healthcheck=_http_probe(f"http://localhost:{ALERTMANAGER_PORT}/-/ready"),
            memory_mb=settings.alertmanager_memory_mb,
        )
    )


def nginx_exporter_command(config: StackConfig) -> list[str]:
    status = host_address(config.networks.monitoring.subnet, "edge-proxy")
    return [
        f"--nginx.scrape-uri=http://{status}:{EDGE_STATUS_PORT}/stub_status",
        f"--web.listen-address=:{NGINX_EXPORTER_PORT}",
    ]


def add_nginx_exporter(tier: Tier) -> None:
    settings = tier.config.monitoring
    tier.container(
        ContainerSpec(
            service=NGINX_EXPORTER,
            name=NGINX_EXPORTER,
            image=tier.image("nginx-exporter-image", settings.nginx_exporter_image),
            command=nginx_exporter_command(tier.config),
            # reaches the proxy's status listener, and is scraped, on monitoring-net only
            networks=[Attachment(tier.stack.segments.monitoring.network, aliases=[NGINX_EXPORTER])],
            # the image is FROM scratch (no shell, no HTTP client): the probe shows the binary runs;
            # whether it serves, and whether nginx answers it, are PlatformTargetDown and PlatformEdgeProxyDown
            healthcheck=Healthcheck(["CMD", "/usr/bin/nginx-prometheus-exporter", "--version"]),
            memory_mb=settings.nginx_exporter_memory_mb,
        )
    )
