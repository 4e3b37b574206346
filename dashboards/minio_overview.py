"""The "MinIO Overview" Grafana dashboard, written with grafana-foundation-sdk.

    .venv/bin/python -m dashboards.minio_overview          # rewrite dashboards/minio-overview.json
    .venv/bin/python -m dashboards.minio_overview --check  # exit 1 if the committed JSON is stale

Queries read the datasources Grafana is provisioned with (fixed uids, see infra/monitoring.py).
MinIO's cluster endpoint is scraped on every node and each answer covers the whole cluster, so
cluster gauges are read with max(), never summed; per-node counters (job minio-nodes) are summed.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

# the SDK steers towards the v2 (resource) schema, which file provisioning does not read without
# feature flags; the classic dashboard JSON is what Grafana provisions from a folder
warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)

from grafana_foundation_sdk.builders import bargauge, dashboard, logs, loki, prometheus, stat, table, timeseries  # noqa: E402
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig, VizLegendOptions  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models.common import (  # noqa: E402
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    DataSourceRef,
    LegendDisplayMode,
    LegendPlacement,
    LogsSortOrder,
    StackingMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat  # noqa: E402
from grafana_foundation_sdk.models.dashboard import (  # noqa: E402
    DashboardCursorSync,
    DataTransformerConfig,
    GridPos,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)

from infra.monitoring.dashboards import LOKI_DATASOURCE_UID, PROMETHEUS_DATASOURCE_UID, dashboard_json  # noqa: E402

UID = "minio-overview"
OUTPUT = Path(__file__).resolve().parent / "minio-overview.json"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_DATASOURCE_UID)
LOKI = DataSourceRef(type_val="loki", uid=LOKI_DATASOURCE_UID)

CLUSTER = 'job="minio-cluster"'
NODES = 'job="minio-nodes"'
BUCKETS = 'job="minio-bucket"'
RATE = "$__rate_interval"


def query(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> prometheus.Dataquery:
    built = prometheus.Dataquery().datasource(PROMETHEUS).expr(expr).ref_id(ref)
    if legend:
        built = built.legend_format(legend)
    return built.instant() if instant else built.range()


def at(x: int, y: int, width: int, height: int) -> GridPos:
    return GridPos(h=height, w=width, x=x, y=y)


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in steps]
    )


def big_number(title: str, expr: str, grid: GridPos, *, unit: str = "none", colors: dashboard.ThresholdsConfig) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .grid_pos(grid)
        .with_target(query(expr, instant=True))
        .unit(unit)
        .thresholds(colors)
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
    )


def trend(title: str, grid: GridPos, unit: str, *targets: prometheus.Dataquery, stacked: bool = False) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .grid_pos(grid)
        .unit(unit)
        .fill_opacity(10)
        .legend(VizLegendOptions().display_mode(LegendDisplayMode.TABLE).placement(LegendPlacement.RIGHT).show_legend(True).calcs(["mean", "max"]))
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def build() -> dashboard.Dashboard:
    ok_bad = thresholds((None, "green"), (1, "red"))
    health = (
        stat.Panel()
        .title("Cluster health")
        .description("MinIO's own verdict (1 healthy: every erasure set has write quorum), from any answering node.")
        .datasource(PROMETHEUS)
        .grid_pos(at(0, 1, 4, 4))
        .with_target(query(f"max(minio_cluster_health_status{{{CLUSTER}}})", instant=True))
        .thresholds(thresholds((None, "red"), (1, "green")))
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="Unhealthy", color="red"),
                        "1": ValueMappingResult(text="Healthy", color="green"),
                    }
                )
            ]
        )
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
    )
    quorum = (
        bargauge.Panel()
        .title("Erasure sets: online drives above write quorum")
        .description("Per pool/set: online drives minus the write quorum. Below 0 writes fail; below the read-quorum margin reads fail too.")
        .datasource(PROMETHEUS)
        .grid_pos(at(20, 1, 4, 8))
        .with_target(
            query(
                f"max by (pool, set) (minio_cluster_health_erasure_set_online_drives{{{CLUSTER}}})"
                f" - max by (pool, set) (minio_cluster_health_erasure_set_write_quorum{{{CLUSTER}}})",
                "pool {{pool}} / set {{set}}",
                instant=True,
            )
        )
        .thresholds(thresholds((None, "red"), (0, "orange"), (1, "green")))
        .display_mode(BarGaugeDisplayMode.BASIC)
        .orientation(VizOrientation.HORIZONTAL)
        .min(-4)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
    )
    top_buckets = (
        table.Panel()
        .title("Top buckets by size")
        .description("From MinIO's background scanner (job minio-bucket): sizes lag uploads by minutes.")
        .datasource(PROMETHEUS)
        .grid_pos(at(0, 19, 8, 8))
        .with_target(
            query(f"topk(10, max by (bucket) (minio_bucket_usage_total_bytes{{{BUCKETS}}}))", "{{bucket}}", instant=True)
            .format(PromQueryFormat.TABLE)
        )
        .with_target(
            query(f"topk(10, max by (bucket) (minio_bucket_usage_object_total{{{BUCKETS}}}))", "{{bucket}}", instant=True, ref="B")
            .format(PromQueryFormat.TABLE)
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="merge",
                options={},
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {"bucket": "Bucket", "Value #A": "Size", "Value #B": "Objects"},
                },
            )
        )
        .unit("bytes")
    )
    security_events = (
        logs.Panel()
        .title("Security events (denied and unauthenticated S3 requests)")
        .description("MinIO audit entries that Promtail labelled security_event; credentials are redacted before they reach Loki.")
        .datasource(LOKI)
        .grid_pos(at(8, 19, 16, 8))
        .with_target(
            loki.Dataquery()
            .datasource(LOKI)
            .ref_id("A")
            .expr('{service="audit-sink", security_event=~".+"}')
        )
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(LogsSortOrder.DESCENDING)
    )
    return (
        dashboard.Dashboard("MinIO Overview")
        .uid(UID)
        .description("Health, capacity, traffic and security events of the stack's MinIO cluster.")
        .tags(["minio", "minio-platform"])
        .readonly()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .timezone("browser")
        .refresh("30s")
        .with_row(dashboard.Row("Cluster health").grid_pos(at(0, 0, 24, 1)))
        .with_panel(health)
        .with_panel(big_number("Nodes online", f"max(minio_cluster_nodes_online_total{{{CLUSTER}}})", at(4, 1, 4, 4), colors=thresholds((None, "green"))))
        .with_panel(big_number("Nodes offline", f"max(minio_cluster_nodes_offline_total{{{CLUSTER}}})", at(8, 1, 4, 4), colors=ok_bad))
        .with_panel(big_number("Drives online", f"max(minio_cluster_drive_online_total{{{CLUSTER}}})", at(12, 1, 4, 4), colors=thresholds((None, "green"))))
        .with_panel(big_number("Drives offline", f"max(minio_cluster_drive_offline_total{{{CLUSTER}}})", at(16, 1, 4, 4), colors=ok_bad))
        .with_panel(
            big_number(
                "Healing drives",
                f"sum(max by (pool, set) (minio_cluster_health_erasure_set_healing_drives{{{CLUSTER}}}))",
                at(0, 5, 10, 4),
                colors=thresholds((None, "green"), (1, "orange")),
            )
        )
        .with_panel(
            big_number(
                "Nodes scraped (up)",
                f"sum(up{{{NODES}}})",
                at(10, 5, 10, 4),
                colors=thresholds((None, "red"), (1, "green")),
            )
        )
        .with_panel(quorum)
        .with_row(dashboard.Row("Capacity").grid_pos(at(0, 9, 24, 1)))
        .with_panel(
            big_number("Usable capacity", f"max(minio_cluster_capacity_usable_total_bytes{{{CLUSTER}}})", at(0, 10, 4, 4), unit="bytes", colors=thresholds((None, "blue")))
        )
        .with_panel(
            big_number(
                "Used",
                f"max(minio_cluster_capacity_usable_total_bytes{{{CLUSTER}}}) - max(minio_cluster_capacity_usable_free_bytes{{{CLUSTER}}})",
                at(4, 10, 4, 4),
                unit="bytes",
                colors=thresholds((None, "blue")),
            )
        )
        .with_panel(
            big_number("Free", f"max(minio_cluster_capacity_usable_free_bytes{{{CLUSTER}}})", at(0, 14, 4, 4), unit="bytes", colors=thresholds((None, "blue")))
        )
        .with_panel(
            big_number(
                "Used (%)",
                f"1 - max(minio_cluster_capacity_usable_free_bytes{{{CLUSTER}}}) / max(minio_cluster_capacity_usable_total_bytes{{{CLUSTER}}})",
                at(4, 14, 4, 4),
                unit="percentunit",
                colors=thresholds((None, "green"), (0.8, "orange"), (0.9, "red")),
            )
        )
        .with_panel(
            trend(
                "Used capacity and growth",
                at(8, 10, 16, 8),
                "bytes",
                query(
                    f"max(minio_cluster_capacity_usable_total_bytes{{{CLUSTER}}}) - max(minio_cluster_capacity_usable_free_bytes{{{CLUSTER}}})",
                    "used",
                ),
                query(
                    f"deriv((max(minio_cluster_capacity_usable_total_bytes{{{CLUSTER}}}) - max(minio_cluster_capacity_usable_free_bytes{{{CLUSTER}}}))[1h:5m]) * 86400",
                    "growth per day (last hour's trend)",
                    ref="B",
                ),
            )
        )
        .with_row(dashboard.Row("Traffic").grid_pos(at(0, 18, 24, 1)))
        .with_panel(top_buckets)
        .with_panel(security_events)
        .with_panel(
            trend(
                "Requests by API",
                at(0, 27, 12, 8),
                "reqps",
                query(f"sum by (api) (rate(minio_s3_requests_total{{{NODES}}}[{RATE}]))", "{{api}}"),
                stacked=True,
            )
        )
        .with_panel(
            trend(
                "Bandwidth",
                at(12, 27, 12, 8),
                "Bps",
                query(f"sum(rate(minio_s3_traffic_received_bytes{{{NODES}}}[{RATE}]))", "in (received)"),
                query(f"-sum(rate(minio_s3_traffic_sent_bytes{{{NODES}}}[{RATE}]))", "out (sent)", ref="B"),
            )
        )
        .with_panel(
            trend(
                "Errors: 4xx and 5xx rate",
                at(0, 35, 12, 8),
                "reqps",
                query(f"sum(rate(minio_s3_requests_4xx_errors_total{{{NODES}}}[{RATE}]))", "4xx"),
                query(f"sum(rate(minio_s3_requests_5xx_errors_total{{{NODES}}}[{RATE}]))", "5xx", ref="B"),
                query(f"sum(rate(minio_s3_requests_rejected_auth_total{{{NODES}}}[{RATE}]))", "rejected (auth)", ref="C"),
            )
        )
        .with_panel(
            trend(
                "Error ratio",
                at(12, 35, 12, 8),
                "percentunit",
                query(
                    f"sum(rate(minio_s3_requests_4xx_errors_total{{{NODES}}}[{RATE}])) / sum(rate(minio_s3_requests_total{{{NODES}}}[{RATE}]))",
                    "4xx",
                ),
                query(
                    f"sum(rate(minio_s3_requests_5xx_errors_total{{{NODES}}}[{RATE}])) / sum(rate(minio_s3_requests_total{{{NODES}}}[{RATE}]))",
                    "5xx",
                    ref="B",
                ),
            )
        )
    )


def render() -> str:
    document: dict[str, Any] = json.loads(JSONEncoder().encode(build().build()))
    # Grafana keys panel state by id; the builders leave ids unset (rows get 0)
    for number, panel in enumerate(document["panels"], start=1):
        panel["id"] = number
    return dashboard_json(document)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs from the code")
    args = parser.parse_args(argv)
    content = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != content:
            print(f"{OUTPUT.name} is stale: run python -m dashboards.minio_overview", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(content)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
