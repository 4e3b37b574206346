"""The "MinIO Overview" dashboard: committed JSON equals the code's output, and every query is one Prometheus parses.

Panel queries are checked by promtool as recording rules (Grafana's $__ interval variables
replaced by a fixed range), against the list of metric names MinIO exports, and against the
datasource uids Grafana is provisioned with.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import minio_overview
from tests.conftest import require_tool
from tests.config.monitoring_render import ALLOWED_METRICS, metric_names, render
from tests.config.pipeline_emulator import parse_selector

GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)")
# the labels a stream carries after the log agent (infra/monitoring/log_pipeline.py)
LOG_AGENT_LABELS = {"container", "service", "stack", "stream", "op_type", "security_event"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(minio_overview.OUTPUT.read_text())
    return document


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render("dev", tmp_path_factory.mktemp("dev"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def prometheus_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "prometheus"
    ]


def test_the_committed_json_is_what_the_code_generates() -> None:
    assert minio_overview.OUTPUT.read_text() == minio_overview.render(), (
        "dashboards/minio-overview.json is stale: run .venv/bin/python -m dashboards.minio_overview"
    )
    assert minio_overview.main(["--check"]) == 0


def test_grafana_receives_the_committed_json(rendered: Path) -> None:
    delivered = rendered / "grafana" / "dashboards" / "minio-overview.json"
    assert delivered.read_text() == minio_overview.OUTPUT.read_text()


def test_every_prometheus_query_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    queries = prometheus_queries(dashboard)
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": GRAFANA_VARIABLES.sub("5m", expr)}
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


def test_queries_name_only_metrics_minio_exports(dashboard: dict[str, Any]) -> None:
    for where, expr in prometheus_queries(dashboard):
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr}"
        unknown = names - ALLOWED_METRICS
        assert not unknown, f"{where} reads {sorted(unknown)}, which MinIO does not export"


def test_datasource_uids_match_the_provisioned_datasources(dashboard: dict[str, Any], rendered: Path) -> None:
    provisioned = yaml.safe_load((rendered / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text())
    by_uid = {source["uid"]: source["type"] for source in provisioned["datasources"]}
    assert set(by_uid) == {"prometheus", "loki", "alertmanager"}
    for panel in panels(dashboard):
        references = [panel["datasource"], *(target["datasource"] for target in panel.get("targets", []))]
        for reference in references:
            assert by_uid.get(reference["uid"]) == reference["type"], f"{panel['title']}: {reference}"


def test_the_security_events_panel_selects_labels_the_log_agent_sets(dashboard: dict[str, Any]) -> None:
    (logs,) = [panel for panel in panels(dashboard) if panel["type"] == "logs"]
    (target,) = logs["targets"]
    labels = {name for name, _, _ in parse_selector(target["expr"])}
    assert labels <= LOG_AGENT_LABELS
    assert "security_event" in labels


def test_the_dashboard_covers_health_capacity_traffic_and_security(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(panel["title"].lower() for panel in panels(dashboard))
    for topic in (
        "cluster health", "nodes online", "nodes offline", "drives online", "drives offline", "quorum",
        "usable capacity", "used", "free", "growth", "requests by api", "bandwidth", "4xx and 5xx",
        "top buckets", "security events",
    ):
        assert topic in titles, f"no panel about {topic!r}"
    expressions = " ".join(expr for _, expr in prometheus_queries(dashboard))
    for metric in ("minio_s3_traffic_received_bytes", "minio_s3_traffic_sent_bytes", "minio_bucket_usage_total_bytes"):
        assert metric in expressions


def test_panels_have_unique_ids_and_the_dashboard_a_fixed_uid(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    assert dashboard["uid"] == "minio-overview"
    assert dashboard["title"] == "MinIO Overview"
