"""The "MinIO Overview" Grafana dashboard, written with grafana-foundation-sdk.

    .venv/bin/python -m dashboards.minio_overview          # rewrite dashboards/minio-overview.json
    .venv/bin/python -m dashboards.minio_overview --check  # exit 1 if the committed JSON is stale

Queries read the datasources Grafana is provisioned with (fixed uids, see infra/monitoring/dashboards.py).
MinIO's cluster endpoint is scraped on every node and each answer covers the whole cluster, so
cluster gauges are read with max(), never summed; per-node counters (job minio-nodes) are summed.
The bucket endpoint is scraped on every node too, each answer holding every node's samples: per-bucket
series are deduplicated with max() by bucket and server before they are summed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dashboards.panels import LOKI, PROMETHEUS, RATE, at, big_number, label_variable, query, thresholds, trend, write_or_check
from dashboards.panels import render as panels_render
from grafana_foundation_sdk.builders import bargauge, dashboard, logs, loki, stat, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, BigValueColorMode, BigValueGraphMode, LogsSortOrder, VizOrientation
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataTransformerConfig, GridPos, ValueMap, ValueMappingResult
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "minio-overview"
OUTPUT = Path(__file__).resolve().parent / "minio-overview.json"

CLUSTER = 'job="minio-cluster"'
NODES = 'job="minio-nodes"'
BUCKETS = 'job="minio-bucket"'
# the $node variable holds MinIO's own node names (its `server` label, e.g. minio1:9000), which
# samples of the node endpoint and the per-node samples of the cluster endpoint both carry
ON_NODES = 'server=~"$node"'
ON_BUCKETS = 'bucket=~"$bucket"'
# uploads and server-side copies wait for their whole body before the first byte, as in MinIOHighRequestLatency
SLOW_BY_NATURE = "putobject|putobjectpart|putobjectextract|postpolicybucket|copyobject|copyobjectpart|listennotification"
TTFB = "minio_s3_requests_ttfb_seconds_distribution"


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
            query(f"topk(10, max by (bucket) (minio_bucket_usage_total_bytes{{{BUCKETS}, {ON_BUCKETS}}}))", "{{bucket}}", instant=True)
            .format(PromQueryFormat.TABLE)
        )
        .with_target(
            query(f"topk(10, max by (bucket) (minio_bucket_usage_object_total{{{BUCKETS}, {ON_BUCKETS}}}))", "{{bucket}}", instant=True, ref="B")
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
        .description("MinIO audit entries that the log agent labelled security_event; credentials are redacted before they reach Loki.")
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
        .with_variable(label_variable("node", "Node", f"minio_software_version_info{{{NODES}}}", "server"))
        .with_variable(label_variable("bucket", "Bucket", f"minio_bucket_usage_total_bytes{{{BUCKETS}}}", "bucket"))
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
        .with_row(dashboard.Row("Latency: time to first byte").grid_pos(at(0, 43, 24, 1)))
        .with_panel(latency_by_api(0.5, at(0, 44, 8, 8)))
        .with_panel(latency_by_api(0.9, at(8, 44, 8, 8)))
        .with_panel(latency_by_api(0.99, at(16, 44, 8, 8)))
        .with_panel(
            trend(
                "p99 by node, against the alert threshold",
                at(0, 52, 24, 8),
                "s",
                query(
                    f"histogram_quantile(0.99, sum by (server, le) (rate({TTFB}{{{NODES}, {ON_NODES}, api!~\"{SLOW_BY_NATURE}\"}}[{RATE}])))",
                    "{{server}}",
                ),
                # the recording rule rendered from monitoring.s3LatencyP99Seconds
                query("minio_platform:s3_ttfb_p99_threshold_seconds", "MinIOHighRequestLatency threshold", ref="B"),
            ).description(
                "Uploads and server-side copies are left out, as in MinIOHighRequestLatency: their first byte waits for the whole body."
            )
        )
        .with_row(dashboard.Row("Per node").grid_pos(at(0, 60, 24, 1)))
        .with_panel(
            trend(
                "Requests per node",
                at(0, 61, 12, 8),
                "reqps",
                query(f"sum by (server) (rate(minio_s3_requests_total{{{NODES}, {ON_NODES}}}[{RATE}]))", "{{server}}"),
            )
        )
        .with_panel(
            trend(
                "Errors per node: 4xx and 5xx",
                at(12, 61, 12, 8),
                "reqps",
                query(f"sum by (server) (rate(minio_s3_requests_4xx_errors_total{{{NODES}, {ON_NODES}}}[{RATE}]))", "{{server}} 4xx"),
                query(f"sum by (server) (rate(minio_s3_requests_5xx_errors_total{{{NODES}, {ON_NODES}}}[{RATE}]))", "{{server}} 5xx", ref="B"),
            )
        )
        .with_panel(
            trend(
                "CPU per node (cores)",
                at(0, 69, 12, 8),
                "short",
                # per-node process samples are on the cluster endpoint, one copy per scraped node
                query(f"max by (server) (rate(minio_node_process_cpu_total_seconds{{{CLUSTER}, {ON_NODES}}}[{RATE}]))", "{{server}}"),
            )
        )
        .with_panel(
            trend(
                "Resident memory per node",
                at(12, 69, 12, 8),
                "bytes",
                query(f"max by (server) (minio_node_process_resident_memory_bytes{{{CLUSTER}, {ON_NODES}}})", "{{server}}"),
            )
        )
        .with_row(dashboard.Row("Per drive").grid_pos(at(0, 77, 24, 1)))
        .with_panel(
            trend(
                "Drives offline per node",
                at(0, 78, 8, 8),
                "short",
                query(f"max by (server) (minio_node_drive_offline_total{{{NODES}, {ON_NODES}}})", "{{server}} offline"),
                query(f"max by (server) (minio_node_drive_online_total{{{NODES}, {ON_NODES}}})", "{{server}} online", ref="B"),
            ).description("MinIO's v2 metrics give each node's count of online and offline drives, not a state per drive.")
        )
        .with_panel(
            trend(
                "Drive latency (slowest storage operation, last minute's average)",
                at(8, 78, 16, 8),
                "µs",
                query(f"max by (server, drive) (minio_node_drive_latency_us{{{NODES}, {ON_NODES}}})", "{{server}} {{drive}}"),
            ).description("One line per drive: a drive far above its peers is the slow one.")
        )
        .with_panel(
            trend(
                "Drive errors (I/O errors and timeouts)",
                at(0, 86, 12, 8),
                "short",
                query(
                    f"sum by (server, drive) (rate(minio_node_drive_errors_availability{{{NODES}, {ON_NODES}}}[{RATE}]))",
                    "{{server}} {{drive}}",
                ),
            ).description("Per second, per drive: minio_node_drive_errors_availability counts I/O errors and timeouts.")
        )
        .with_panel(
            trend(
                "Drive space used",
                at(12, 86, 12, 8),
                "percentunit",
                query(
                    f"max by (server, drive) (minio_node_drive_used_bytes{{{NODES}, {ON_NODES}}})"
                    f" / max by (server, drive) (minio_node_drive_total_bytes{{{NODES}, {ON_NODES}}})",
                    "{{server}} {{drive}}",
                ),
            )
        )
        .with_row(dashboard.Row("Per bucket").grid_pos(at(0, 94, 24, 1)))
        .with_panel(
            trend(
                "Requests per bucket",
                at(0, 95, 12, 8),
                "reqps",
                query(
                    f"sum by (bucket) (max by (bucket, server, api) (rate(minio_bucket_requests_total{{{BUCKETS}, {ON_BUCKETS}}}[{RATE}])))",
                    "{{bucket}}",
                ),
            )
        )
        .with_panel(
            trend(
                "p99 time to first byte per bucket",
                at(12, 95, 12, 8),
                "s",
                query(
                    "histogram_quantile(0.99, sum by (bucket, le) (max by (bucket, server, api, le) "
                    f"(rate(minio_bucket_requests_ttfb_seconds_distribution{{{BUCKETS}, {ON_BUCKETS}, api!~\"{SLOW_BY_NATURE}\"}}[{RATE}]))))",
                    "{{bucket}}",
                ),
            )
        )
    )


def latency_by_api(quantile: float, grid: GridPos) -> timeseries.Panel:
    percentile = f"p{quantile * 100:g}"
    return trend(
        f"{percentile} time to first byte by API",
        grid,
        "s",
        query(
            f"histogram_quantile({quantile}, sum by (api, le) (rate({TTFB}{{{NODES}, {ON_NODES}}}[{RATE}])))",
            "{{api}}",
        ),
    ).description(f"{percentile} of the time each S3 API takes to its first byte, on the selected nodes (MinIO's buckets: 50ms to 10s).")


def render() -> str:
    return panels_render(build())


def main(argv: list[str] | None = None) -> int:
    return write_or_check(OUTPUT, build, "dashboards.minio_overview", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
