"""Dashboards: Grafana with its provisioned datasources and the committed dashboards/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.config import StackConfig
from infra.container import ContainerSpec, Healthcheck
from infra.monitoring.logs import LOKI_PORT
from infra.monitoring.metrics import ALERTMANAGER_PORT, PROMETHEUS_PORT
from infra.rendering import FileOwner, RenderedFile, render_template
from infra.secrets import SecretValues
from infra.tier import Tier

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = PROJECT_ROOT / "dashboards"

GRAFANA_PORT = 3000
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"
GRAFANA_PASSWORD_FILE = "/etc/grafana/secrets/admin-password"

# the datasource uids dashboards refer to; provisioned with exactly these
PROMETHEUS_DATASOURCE_UID = "prometheus"
LOKI_DATASOURCE_UID = "loki"
ALERTMANAGER_DATASOURCE_UID = "alertmanager"


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
        f"GF_SECURITY_COOKIE_SECURE={str(config.edge.tls_enabled(config.environment)).lower()}",
        "GF_SECURITY_COOKIE_SAMESITE=lax",
        f"GF_SECURITY_ADMIN_PASSWORD__FILE={GRAFANA_PASSWORD_FILE}",
        "GF_AUTH_ANONYMOUS_ENABLED=false",
        "GF_USERS_ALLOW_SIGN_UP=false",
        "GF_ANALYTICS_REPORTING_ENABLED=false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES=false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES=false",
        "GF_NEWS_NEWS_FEED_ENABLED=false",
    ]


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


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """How dashboards/*.json are written: stable key order and indentation, so regenerating shows no diff."""
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


# grafana/grafana runs as GF_UID 472, GF_GID 0 (its Dockerfile)
GRAFANA_USER = FileOwner(472, 0)


def add_grafana(tier: Tier) -> None:
    settings = tier.config.monitoring
    tier.container(
        ContainerSpec(
            service="grafana",
            name="grafana",
            image=tier.image("grafana-image", settings.grafana_image),
            envs=grafana_environment(tier.config),
            uploads=tier.secret_uploads(grafana_files, GRAFANA_USER),
            volumes=[tier.data_mount("grafana", "/var/lib/grafana")],
            # the edge proxy reaches it on monitoring-net at /monitoring/grafana/
            networks=[tier.stack.segments.monitoring.attachment("grafana")],
            healthcheck=Healthcheck(
                [
                    "CMD-SHELL",
                    f"wget -q -O /dev/null http://localhost:{GRAFANA_PORT}/monitoring/grafana/api/health "
                    f"|| curl -fsS -o /dev/null http://localhost:{GRAFANA_PORT}/monitoring/grafana/api/health",
                ]
            ),
            memory_mb=settings.grafana_memory_mb,
        )
    )
