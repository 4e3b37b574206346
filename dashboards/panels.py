"""The panel shapes the provisioned dashboards are built from, and how their JSON is written and checked.

Queries read the datasources Grafana is provisioned with (fixed uids, infra/monitoring/dashboards.py).
Each dashboard module has `build()`, `OUTPUT` and a `main` that writes or `--check`s its JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the SDK steers towards the v2 (resource) schema, which file provisioning does not read without
# feature flags (Grafana 13 rejects it); the classic dashboard JSON is what Grafana provisions from a folder
warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries  # noqa: E402
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig, VizLegendOptions  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models.common import (  # noqa: E402
    BigValueColorMode,
    BigValueGraphMode,
    DataSourceRef,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (  # noqa: E402
    GridPos,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from infra.monitoring.dashboards import LOKI_DATASOURCE_UID, PROMETHEUS_DATASOURCE_UID, dashboard_json  # noqa: E402

PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_DATASOURCE_UID)
LOKI = DataSourceRef(type_val="loki", uid=LOKI_DATASOURCE_UID)
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


def big_number(
    title: str, expr: str, grid: GridPos, *, unit: str = "none", colors: dashboard.ThresholdsConfig, legend: str = ""
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .grid_pos(grid)
        .with_target(query(expr, legend, instant=True))
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


def label_variable(name: str, label: str, selector: str, source_label: str) -> dashboard.QueryVariable:
    """A multi-value variable of every value `source_label` takes on `selector`, 'All' by default."""
    values = f"label_values({selector}, {source_label})"
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(values)
        .definition(values)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .allow_custom_value(False)
        .include_all(True)
        # 'All' matches every value, also ones that appear after the dashboard loaded
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def render(built: dashboard.Dashboard) -> str:
    document: dict[str, Any] = json.loads(JSONEncoder().encode(built.build()))
    # Grafana keys panel state by id; the builders leave ids unset (rows get 0)
    for number, panel in enumerate(document["panels"], start=1):
        panel["id"] = number
    return dashboard_json(document)


def write_or_check(output: Path, build: Callable[[], dashboard.Dashboard], module: str, doc: str | None, argv: list[str] | None) -> int:
    """The command line of a dashboard module: write its JSON, or with --check fail if the committed one is stale."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs from the code")
    args = parser.parse_args(argv)
    content = render(build())
    if args.check:
        if not output.is_file() or output.read_text() != content:
            print(f"{output.name} is stale: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    output.write_text(content)
    print(f"wrote {output}")
    return 0
