"""The monitoring tier, by concern: metrics (Prometheus, Alertmanager and the rule files, and the
blackbox exporter Prometheus probes MinIO's health endpoint through), logs
(Loki, the audit sink), the log agent (Alloy or Promtail, from the pipeline in log_pipeline.py) with
the Docker API proxy it reads through, and dashboards (Grafana and its provisioning).

Each module renders its own files from templates/ (and the committed alerts/ and dashboards/)
with pure functions, and adds its containers to the one `Monitoring` component. With nodes on hosts of
their own (storage.hosts) the tier also runs a log agent and its Docker API proxy on every node host
(agent_hosts.py); everything else stays on the stack's own host.
"""

from __future__ import annotations

import pulumi

from infra.cluster_ca import ca_certificate
from infra.config import StackConfig
from infra.monitoring import blackbox_exporter, dashboards, docker_api_proxy, log_agent, logs, metrics
from infra.monitoring.agent_hosts import agent_hosts
from infra.rendering import RenderedFile
from infra.secrets import SecretValues
from infra.tier import Tier, TierArgs


def monitoring_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    certificate = ca_certificate(config, secrets)
    return [
        *metrics.prometheus_files(config, secrets),
        *metrics.alertmanager_files(config, secrets),
        *blackbox_exporter.blackbox_exporter_files(config, certificate),
        *logs.loki_files(config),
        *log_agent.log_agent_files(config),
        *log_agent.node_host_agent_files(config, certificate),
        *dashboards.grafana_files(config, secrets),
        *logs.audit_sink_files(config, secrets),
    ]


class MonitoringArgs(TierArgs):
    """The monitoring tier needs nothing beyond the stack context."""


class Monitoring(Tier):
    """By name in the stack: prometheus, alertmanager, nginx-exporter, blackbox-exporter, loki, docker-api-proxy, alloy (or promtail), grafana, audit-sink;
    on a multi-host stack also docker-api-proxy-minioN and alloy-minioN (or promtail-minioN) on every node host."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("minio-platform:monitoring:Monitoring", name, args, opts)
        metrics.add_prometheus(self)
        metrics.add_alertmanager(self)
        metrics.add_nginx_exporter(self)
        blackbox_exporter.add_blackbox_exporter(self)
        logs.add_loki(self)
        for host in agent_hosts(self):
            docker_api = docker_api_proxy.add_docker_api_proxy(self, log_agent.deployed_agent(self.config).name, host)
            log_agent.add_log_agent(self, docker_api, host)
        dashboards.add_grafana(self)
        logs.add_audit_sink(self)
        self.register_outputs({"containers": [container.name for container in self.containers.values()]})
