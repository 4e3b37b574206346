"""The provisioned dashboards: committed JSON equals the code's output, and every query is one Prometheus parses.

Panel queries are checked by promtool as recording rules (Grafana's $__ interval variables
replaced by a fixed range), against what each scrape job's pinned exporter serves
(tests/config/known_metrics.py), and against the datasource uids Grafana is provisioned with.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from dashboards import minio_overview, platform_health
from infra.__main__ import load_stack
from infra.monitoring.metrics import PLATFORM_JOBS, monitoring_jobs, rule_files
from tests.conftest import require_tool
from tests.config.known_metrics import recorded_names, unknown_metrics
from tests.config.monitoring_render import render
from tests.config.pipeline_emulator import parse_selector

DASHBOARDS = [minio_overview, platform_health]
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)")
# template variables, as Grafana substitutes them before the query reaches Prometheus
TEMPLATE_VARIABLES = re.compile(r"\$(node|bucket)\b")
# the labels a stream carries after the log agent (infra/monitoring/log_pipeline.py)
LOG_AGENT_LABELS = {"container", "service", "stack", "stream", "op_type", "security_event"}
# the dashboards' own recording rules: the stack's thresholds, rendered from its settings
RECORDED = recorded_names(rule_files(load_stack("dev", None)))


def load(module: ModuleType) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(module.OUTPUT.read_text())
    return document


@pytest.fixture(scope="module", params=DASHBOARDS, ids=lambda module: module.UID)
def dashboard(request: pytest.FixtureRequest) -> tuple[ModuleType, dict[str, Any]]:
    return request.param, load(request.param)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render("dev", tmp_path_factory.mktemp("dev"))


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in document["panels"] if panel["type"] != "row"]


def prometheus_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in panels(document)
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "prometheus"
    ]


def variables(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in document.get("templating", {}).get("list", [])}


def test_the_committed_json_is_what_the_code_generates(dashboard: tuple[ModuleType, dict[str, Any]]) -> None:
    module, _ = dashboard
    assert module.OUTPUT.read_text() == module.render(), (
        f"dashboards/{module.OUTPUT.name} is stale: run .venv/bin/python -m {module.__name__}"
    )
    assert module.main(["--check"]) == 0


def test_grafana_receives_the_committed_json(dashboard: tuple[ModuleType, dict[str, Any]], rendered: Path) -> None:
    module, _ = dashboard
    delivered = rendered / "grafana" / "dashboards" / module.OUTPUT.name
    assert delivered.read_text() == module.OUTPUT.read_text()


def test_the_json_is_classic_with_a_schema_version_as_grafana_13_provisions_it(dashboard: tuple[ModuleType, dict[str, Any]]) -> None:
    _, document = dashboard
    # Grafana 13 file provisioning rejects the v2 (resource) format: apiVersion/kind/spec at the top
    assert isinstance(document["schemaVersion"], int)
    assert not {"apiVersion", "kind", "spec", "elements", "layout"} & set(document)


def test_every_prometheus_query_parses(dashboard: tuple[ModuleType, dict[str, Any]], tmp_path: Path) -> None:
    _, document = dashboard
    queries = prometheus_queries(document)
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": TEMPLATE_VARIABLES.sub(".*", GRAFANA_VARIABLES.sub("5m", expr))}
                    for index, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_queries_name_only_what_each_jobs_pinned_exporter_serves(dashboard: tuple[ModuleType, dict[str, Any]]) -> None:
    _, document = dashboard
    for where, expr in prometheus_queries(document):
        assert not unknown_metrics(expr, RECORDED), f"{where}: {unknown_metrics(expr, RECORDED)} in {expr}"
    for name, variable in variables(document).items():
        assert not unknown_metrics(variable["query"], variable=True), f"variable {name}: {variable['query']}"


def test_the_metric_check_would_catch_a_wrong_name_or_the_wrong_job() -> None:
    # the process metrics live on the cluster endpoint, the drive metrics on the node endpoint
    assert unknown_metrics('max by (server) (minio_node_process_resident_memory_bytes{job="minio-nodes"})')
    assert unknown_metrics('max(minio_node_drive_latency_us{job="minio-cluster"})')
    assert unknown_metrics('sum(rate(nginx_requests_total{job="edge-proxy"}[5m]))')
    assert unknown_metrics('up{job="grafana-agent"}')
    assert not unknown_metrics('max by (server) (minio_node_process_resident_memory_bytes{job="minio-cluster"})')


def test_datasource_uids_match_the_provisioned_datasources(dashboard: tuple[ModuleType, dict[str, Any]], rendered: Path) -> None:
    _, document = dashboard
    provisioned = yaml.safe_load((rendered / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text())
    by_uid = {source["uid"]: source["type"] for source in provisioned["datasources"]}
    assert set(by_uid) == {"prometheus", "loki", "alertmanager"}
    for panel in panels(document):
        references = [panel["datasource"], *(target["datasource"] for target in panel.get("targets", []))]
        for reference in references:
            assert by_uid.get(reference["uid"]) == reference["type"], f"{panel['title']}: {reference}"
    for variable in variables(document).values():
        assert by_uid.get(variable["datasource"]["uid"]) == variable["datasource"]["type"]


def test_panels_have_unique_ids_and_each_dashboard_its_fixed_uid(dashboard: tuple[ModuleType, dict[str, Any]]) -> None:
    module, document = dashboard
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    assert document["uid"] == module.UID
    assert {minio_overview.UID: "MinIO Overview", platform_health.UID: "Platform health"}[module.UID] == document["title"]


def test_the_security_events_panel_selects_labels_the_log_agent_sets() -> None:
    (logs,) = [panel for panel in panels(load(minio_overview)) if panel["type"] == "logs"]
    (target,) = logs["targets"]
    labels = {name for name, _, _ in parse_selector(target["expr"])}
    assert labels <= LOG_AGENT_LABELS
    assert "security_event" in labels


def test_the_overview_covers_health_capacity_traffic_security_latency_nodes_and_drives() -> None:
    document = load(minio_overview)
    titles = " | ".join(panel["title"].lower() for panel in panels(document))
    for topic in (
        "cluster health", "nodes online", "nodes offline", "drives online", "drives offline", "quorum",
        "usable capacity", "used", "free", "growth", "requests by api", "bandwidth", "4xx and 5xx",
        "top buckets", "security events", "p50 time to first byte", "p90 time to first byte",
        "p99 time to first byte", "requests per node", "errors per node", "cpu per node", "memory per node",
        "drive latency", "drive errors", "drives offline per node", "requests per bucket",
    ):
        assert topic in titles, f"no panel about {topic!r}"
    expressions = " ".join(expr for _, expr in prometheus_queries(document))
    for metric in (
        "minio_s3_traffic_received_bytes", "minio_s3_traffic_sent_bytes", "minio_bucket_usage_total_bytes",
        "minio_s3_requests_ttfb_seconds_distribution", "minio_node_process_cpu_total_seconds",
        "minio_node_process_resident_memory_bytes", "minio_node_drive_latency_us", "minio_node_drive_errors_availability",
    ):
        assert metric in expressions
    for quantile in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (api, le) (rate(minio_s3_requests_ttfb_seconds_distribution" in expressions


def test_node_and_bucket_variables_filter_the_per_node_per_drive_and_per_bucket_panels() -> None:
    document = load(minio_overview)
    found = variables(document)
    assert set(found) == {"node", "bucket"}
    assert found["node"]["query"] == 'label_values(minio_software_version_info{job="minio-nodes"}, server)'
    assert found["bucket"]["query"] == 'label_values(minio_bucket_usage_total_bytes{job="minio-bucket"}, bucket)'
    for variable in found.values():
        assert variable["multi"] and variable["includeAll"] and variable["current"]["value"] == "$__all"
    rows = {panel["title"]: panel["gridPos"]["y"] for panel in document["panels"] if panel["type"] == "row"}
    for panel in panels(document):
        y = panel["gridPos"]["y"]
        row = max((title for title, start in rows.items() if start < y), key=lambda title: rows[title])
        exprs = [target["expr"] for target in panel["targets"] if target["datasource"]["type"] == "prometheus"]
        if row in ("Latency: time to first byte", "Per node", "Per drive"):
            assert all('server=~"$node"' in expr for expr in exprs if "job=" in expr), panel["title"]
        if row == "Per bucket" or panel["title"] == "Top buckets by size":
            assert all('bucket=~"$bucket"' in expr for expr in exprs), panel["title"]
    # one line per drive: the drive panels keep the drive label
    drive_queries = [expr for where, expr in prometheus_queries(document) if where.startswith("Drive ")]
    assert drive_queries and all("by (server, drive)" in expr for expr in drive_queries)


def test_the_latency_panel_shows_the_threshold_the_alert_uses() -> None:
    (panel,) = [p for p in panels(load(minio_overview)) if p["title"].startswith("p99 by node")]
    threshold = [target["expr"] for target in panel["targets"] if ":" in target["expr"].split("{")[0]]
    assert threshold == ["minio_platform:s3_ttfb_p99_threshold_seconds"]
    assert threshold[0] in RECORDED


def test_platform_health_watches_every_scrape_job_and_the_pipeline() -> None:
    document = load(platform_health)
    expressions = " ".join(expr for _, expr in prometheus_queries(document))
    assert "min by (job) (up)" in expressions
    for job in (*monitoring_jobs(load_stack("dev", None)), *PLATFORM_JOBS):
        if job in ("alloy", "audit-sink"):
            continue  # watched through `up` only
        assert f'job="{job}"' in expressions or f"{job}|" in expressions or f"|{job}" in expressions, job
    for metric in (
        "prometheus_rule_evaluation_failures_total", "prometheus_notifications_alertmanagers_discovered",
        "prometheus_notifications_errors_total", "alertmanager_notifications_failed_total",
        "loki_discarded_samples_total", "loki_request_duration_seconds_count", "nginx_up",
        "grafana_http_request_duration_seconds_count", "http_server_requests_seconds_count",
    ):
        assert metric in expressions, metric
