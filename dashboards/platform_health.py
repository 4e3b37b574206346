"""The "Platform health" Grafana dashboard: the services around MinIO, written with grafana-foundation-sdk.

    .venv/bin/python -m dashboards.platform_health          # rewrite dashboards/platform-health.json
    .venv/bin/python -m dashboards.platform_health --check  # exit 1 if the committed JSON is stale

Whether every scrape target answers, the alerting pipeline (Prometheus evaluating rules and sending
alerts, Alertmanager notifying), logs arriving in Loki, the edge proxy, Grafana and Keycloak, and the
scheduled backup and mirror. The panels read what the alerts of alerts/platform.rules.yml,
alerts/monitoring.rules.yml and alerts/operations.rules.yml read.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dashboards.panels import PROMETHEUS, RATE, at, big_number, query, thresholds, trend, write_or_check
from dashboards.panels import render as panels_render
from grafana_foundation_sdk.builders import dashboard, stat
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.models.common import BigValueColorMode, BigValueGraphMode
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, GridPos, ValueMap, ValueMappingResult

from infra.monitoring.metrics import PLATFORM_JOBS

UID = "platform-health"
OUTPUT = Path(__file__).resolve().parent / "platform-health.json"

PROMETHEUS_JOB = 'job="prometheus"'
ALERTMANAGER_JOB = 'job="alertmanager"'
LOKI_JOB = 'job="loki"'
GRAFANA_JOB = 'job="grafana"'
KEYCLOAK_JOB = 'job="keycloak"'
EDGE_JOB = 'job="edge-proxy"'
SCHEDULED_JOBS = 'job=~"backup|mirror"'
# services that report their own process (client_golang); Keycloak's Micrometer has no such series, and
# the edge-proxy job's process is the exporter's, not nginx's
GO_PROCESSES = 'job=~"prometheus|alertmanager|loki|grafana"'


def up_or_down(title: str, expr: str, legend: str, grid: GridPos, description: str) -> stat.Panel:
    """One tile per series: green 'up' at 1, red 'down' at 0."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .grid_pos(grid)
        .with_target(query(expr, legend, instant=True))
        .thresholds(thresholds((None, "red"), (1, "green")))
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="down", color="red"),
                        "1": ValueMappingResult(text="up", color="green"),
                    }
                )
            ]
        )
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
    )


def build() -> dashboard.Dashboard:
    platform = "|".join(PLATFORM_JOBS)
    return (
        dashboard.Dashboard("Platform health")
        .uid(UID)
        .description(
            "The stack's own services: scrape targets, the alerting pipeline, logs, the edge proxy, Grafana and Keycloak, "
            "the scheduled backup and mirror."
        )
        .tags(["minio-platform", "monitoring"])
        .readonly()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .timezone("browser")
        .refresh("30s")
        .with_row(dashboard.Row("Scrape targets").grid_pos(at(0, 0, 24, 1)))
        .with_panel(
            up_or_down(
                "Every job answering (up)",
                "min by (job) (up)",
                "{{job}}",
                at(0, 1, 16, 5),
                "The lowest `up` of each scrape job: one node of a MinIO job down shows the job down. "
                f"MonitoringTargetDown and PlatformTargetDown ({platform}) fire after 5 and 2 minutes.",
            )
        )
        .with_panel(
            up_or_down(
                "nginx answering its exporter",
                f"max(nginx_up{{{EDGE_JOB}}})",
                "edge proxy",
                at(16, 1, 8, 5),
                "The exporter reads the edge proxy's stub_status listener on monitoring-net; PlatformEdgeProxyDown fires after 2 minutes at 0.",
            )
        )
        .with_panel(
            trend(
                "Scrape duration by job",
                at(0, 6, 24, 7),
                "s",
                query("max by (job) (scrape_duration_seconds)", "{{job}}"),
            )
        )
        .with_row(dashboard.Row("Alerting pipeline").grid_pos(at(0, 13, 24, 1)))
        .with_panel(
            up_or_down(
                "Alertmanagers Prometheus sends to",
                f"max(prometheus_notifications_alertmanagers_discovered{{{PROMETHEUS_JOB}}})",
                "discovered",
                at(0, 14, 6, 7),
                "PrometheusNotConnectedToAlertmanagers fires after 10 minutes at 0; then no alert reaches the receiver.",
            )
        )
        .with_panel(
            trend(
                "Rule evaluation failures",
                at(6, 14, 9, 7),
                "short",
                query(
                    f"sum by (rule_group) (rate(prometheus_rule_evaluation_failures_total{{{PROMETHEUS_JOB}}}[{RATE}]))",
                    "{{rule_group}}",
                ),
            ).description("Per second; PrometheusRuleFailures fires after 15 minutes of any.")
        )
        .with_panel(
            trend(
                "Rule groups: last evaluation's share of the interval",
                at(15, 14, 9, 7),
                "percentunit",
                query(
                    f"max by (rule_group) (prometheus_rule_group_last_duration_seconds{{{PROMETHEUS_JOB}}}"
                    f" / prometheus_rule_group_interval_seconds{{{PROMETHEUS_JOB}}})",
                    "{{rule_group}}",
                ),
            ).description("Near 100% a group starts to miss evaluations.")
        )
        .with_panel(
            trend(
                "Alerts Prometheus sends to Alertmanager",
                at(0, 21, 12, 8),
                "short",
                query(f"sum(rate(prometheus_notifications_sent_total{{{PROMETHEUS_JOB}}}[{RATE}]))", "sent"),
                query(f"sum(rate(prometheus_notifications_errors_total{{{PROMETHEUS_JOB}}}[{RATE}]))", "errors", ref="B"),
                query(f"sum(rate(prometheus_notifications_dropped_total{{{PROMETHEUS_JOB}}}[{RATE}]))", "dropped", ref="C"),
            ).description("Per second; PrometheusErrorSendingAlerts fires above 1% of errors for 15 minutes.")
        )
        .with_panel(
            trend(
                "Alertmanager notifications by integration",
                at(12, 21, 12, 8),
                "short",
                query(f"sum by (integration) (rate(alertmanager_notifications_total{{{ALERTMANAGER_JOB}}}[{RATE}]))", "{{integration}} sent"),
                query(
                    f"sum by (integration) (rate(alertmanager_notifications_failed_total{{{ALERTMANAGER_JOB}}}[{RATE}]))",
                    "{{integration}} failed",
                    ref="B",
                ),
            ).description("Per second; AlertmanagerFailedToSendAlerts fires above 1% failed for 5 minutes.")
        )
        .with_panel(
            trend(
                "Alerts in Alertmanager",
                at(0, 29, 12, 7),
                "short",
                query(f"sum by (state) (alertmanager_alerts{{{ALERTMANAGER_JOB}}})", "{{state}}"),
            ).description("The Watchdog is always one of the active alerts.")
        )
        .with_panel(
            trend(
                "Prometheus series in memory",
                at(12, 29, 12, 7),
                "short",
                query(f"max(prometheus_tsdb_head_series{{{PROMETHEUS_JOB}}})", "head series"),
            )
        )
        .with_row(dashboard.Row("Logs: Loki").grid_pos(at(0, 36, 24, 1)))
        .with_panel(
            trend(
                "Log lines received and discarded",
                at(0, 37, 12, 8),
                "short",
                query(f"sum(rate(loki_distributor_lines_received_total{{{LOKI_JOB}}}[{RATE}]))", "received"),
                query(f"sum by (reason) (rate(loki_discarded_samples_total{{{LOKI_JOB}}}[{RATE}]))", "discarded: {{reason}}", ref="B"),
            ).description("Lines per second; LokiIngestionErrors fires after 15 minutes of discarding.")
        )
        .with_panel(
            trend(
                "Loki requests by route and status",
                at(12, 37, 12, 8),
                "reqps",
                query(
                    f"sum by (route, status_code) (rate(loki_request_duration_seconds_count{{{LOKI_JOB}}}[{RATE}]))",
                    "{{route}} {{status_code}}",
                ),
            ).description("LokiRequestErrors fires when more than 10% of a route's requests answer 5xx for 15 minutes.")
        )
        .with_panel(
            trend(
                "Loki p99 request duration by route",
                at(0, 45, 24, 7),
                "s",
                query(
                    f"histogram_quantile(0.99, sum by (route, le) (rate(loki_request_duration_seconds_bucket{{{LOKI_JOB}}}[{RATE}])))",
                    "{{route}}",
                ),
            )
        )
        .with_row(dashboard.Row("Edge proxy: nginx").grid_pos(at(0, 52, 24, 1)))
        .with_panel(
            trend(
                "Client connections",
                at(0, 53, 12, 8),
                "short",
                query(f"max(nginx_connections_active{{{EDGE_JOB}}})", "active"),
                query(f"max(nginx_connections_reading{{{EDGE_JOB}}})", "reading", ref="B"),
                query(f"max(nginx_connections_writing{{{EDGE_JOB}}})", "writing", ref="C"),
                query(f"max(nginx_connections_waiting{{{EDGE_JOB}}})", "waiting (idle keepalive)", ref="D"),
            )
        )
        .with_panel(
            trend(
                "Requests and dropped connections",
                at(12, 53, 12, 8),
                "short",
                query(f"sum(rate(nginx_http_requests_total{{{EDGE_JOB}}}[{RATE}]))", "requests/s"),
                query(
                    f"sum(rate(nginx_connections_accepted{{{EDGE_JOB}}}[{RATE}])) - sum(rate(nginx_connections_handled{{{EDGE_JOB}}}[{RATE}]))",
                    "accepted but not handled/s",
                    ref="B",
                ),
            ).description("Connections accepted but not handled hit a limit such as worker_connections.")
        )
        .with_row(dashboard.Row("Grafana and Keycloak").grid_pos(at(0, 61, 24, 1)))
        .with_panel(
            trend(
                "Grafana requests by status",
                at(0, 62, 12, 8),
                "reqps",
                query(f"sum by (status_code) (rate(grafana_http_request_duration_seconds_count{{{GRAFANA_JOB}}}[{RATE}]))", "{{status_code}}"),
                query(
                    f"histogram_quantile(0.99, sum by (le) (rate(grafana_http_request_duration_seconds_bucket{{{GRAFANA_JOB}}}[{RATE}])))",
                    "p99 duration (s)",
                    ref="B",
                ),
            )
        )
        .with_panel(
            trend(
                "Keycloak requests by outcome",
                at(12, 62, 12, 8),
                "reqps",
                query(f"sum by (outcome) (rate(http_server_requests_seconds_count{{{KEYCLOAK_JOB}}}[{RATE}]))", "{{outcome}}"),
                query(
                    f"sum(rate(http_server_requests_seconds_sum{{{KEYCLOAK_JOB}}}[{RATE}])) / sum(rate(http_server_requests_seconds_count{{{KEYCLOAK_JOB}}}[{RATE}]))",
                    "mean duration (s)",
                    ref="B",
                ),
            ).description("Keycloak's HTTP metrics are a summary without buckets: a mean, no percentiles.")
        )
        .with_panel(
            trend(
                "Keycloak JVM heap and database connections",
                at(0, 70, 12, 8),
                "short",
                query(f"sum(jvm_memory_used_bytes{{{KEYCLOAK_JOB}, area=\"heap\"}}) / 1024 / 1024", "heap used (MiB)"),
                query(f"sum(agroal_active_count{{{KEYCLOAK_JOB}}})", "database connections in use", ref="B"),
                query(f"sum(agroal_awaiting_count{{{KEYCLOAK_JOB}}})", "waiting for a connection", ref="C"),
            )
        )
        .with_panel(
            trend(
                "Resident memory of the services",
                at(12, 70, 12, 8),
                "bytes",
                query(f"max by (job) (process_resident_memory_bytes{{{GO_PROCESSES}}})", "{{job}}"),
            ).description("Compare with each container's memory limit (monitoring.*MemoryMb).")
        )
        .with_row(dashboard.Row("Scheduled backup and mirror").grid_pos(at(0, 78, 24, 1)))
        .with_panel(
            up_or_down(
                "Last run succeeded",
                f"max by (job) (ops_scheduled_last_run_success{{{SCHEDULED_JOBS}}})",
                "{{job}}",
                at(0, 79, 8, 6),
                "The last run of each scheduled service (its own metrics); ScheduledJobFailed fires at 0. "
                "No tile before a service's first run ever.",
            )
        )
        .with_panel(
            big_number(
                "Since the last successful run",
                f"time() - max by (job) (ops_scheduled_last_success_timestamp_seconds{{{SCHEDULED_JOBS}}})",
                at(8, 79, 8, 6),
                unit="s",
                colors=thresholds((None, "blue")),
                legend="{{job}}",
            ).description(
                "ScheduledJobStale fires once this passes two of the schedule's intervals and an hour "
                "(two days and an hour on a daily schedule)."
            )
        )
        .with_panel(
            trend(
                "Runs by result",
                at(16, 79, 8, 6),
                "short",
                query(f"sum by (job, result) (increase(ops_scheduled_runs_total{{{SCHEDULED_JOBS}}}[1d]))", "{{job}} {{result}}"),
            ).description("Runs in the last day; the counters start again when a service restarts.")
        )
    )


def render() -> str:
    return panels_render(build())


def main(argv: list[str] | None = None) -> int:
    return write_or_check(OUTPUT, build, "dashboards.platform_health", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
