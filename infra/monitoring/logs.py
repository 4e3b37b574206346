"""Logs: Loki, and the audit sink that turns MinIO's audit webhook into container log lines for the
log agent (`log_agent.py`) to ship.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra.config import StackConfig
from infra.container import ContainerSpec, Healthcheck
from infra.monitoring.log_pipeline import PIPELINE, Replace
from infra.rendering import FileOwner, RenderedFile, as_uploads, render_template
from infra.secrets import SecretValues
from infra.services import audit_sink
from infra.tier import Tier

LOKI_PORT = 3100
LOKI_PUSH_PATH = "/loki/api/v1/push"
LOKI_PUSH_URL = f"http://loki:{LOKI_PORT}{LOKI_PUSH_PATH}"

LOKI_CONFIG = "/etc/loki/loki.yml"
LOKI_DATA = "/loki"
AUDIT_SINK_SCRIPT = "/opt/audit-sink/audit_sink.py"
AUDIT_SINK_REDACTIONS = "/opt/audit-sink/redactions.json"
AUDIT_SINK_TOKEN_FILE = "/etc/audit-sink/token"
# `nobody` of the Python image: the sink needs no user of its own, and reads its token as that user
AUDIT_SINK_USER = FileOwner(65534, 65534)


def loki_yml(config: StackConfig) -> str:
    return render_template(
        "loki/loki.yml.j2",
        stack=config.name,
        http_port=LOKI_PORT,
        data_dir=LOKI_DATA,
        retention=config.monitoring.loki_retention,
    )


def loki_files(config: StackConfig) -> list[RenderedFile]:
    return [RenderedFile("loki/loki.yml", LOKI_CONFIG, loki_yml(config))]


def audit_sink_redactions() -> str:
    """The log pipeline's redaction stages, for the sink to apply before it writes a line: the same rules
    as the log agent's, from their one definition."""
    rules = [
        {"expression": stage.expression, "replace": stage.replace, "why": stage.why}
        for stage in PIPELINE.stages
        if isinstance(stage, Replace)
    ]
    return json.dumps(rules, indent=2) + "\n"


def audit_sink_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    script = Path(audit_sink.__file__).read_text()
    return [
        RenderedFile("audit-sink/audit_sink.py", AUDIT_SINK_SCRIPT, script),
        RenderedFile("audit-sink/redactions.json", AUDIT_SINK_REDACTIONS, audit_sink_redactions()),
        RenderedFile("audit-sink/token", AUDIT_SINK_TOKEN_FILE, secrets.audit_webhook_token + "\n", secret=True),
    ]


def add_loki(tier: Tier) -> None:
    settings = tier.config.monitoring
    tier.container(
        ContainerSpec(
            service="loki",
            name="loki",
            image=tier.image("loki-image", settings.loki_image),
            command=[f"-config.file={LOKI_CONFIG}"],
            uploads=as_uploads(loki_files(tier.config)),
            volumes=[tier.data_mount("loki", LOKI_DATA)],
            networks=[tier.stack.segments.monitoring.attachment("loki")],
            # the image has no shell nor wget since 3.6; `loki -health` asks its own /ready
            healthcheck=Healthcheck(["CMD", "/usr/bin/loki", "-health"]),
            memory_mb=settings.loki_memory_mb,
        )
    )


def add_audit_sink(tier: Tier) -> None:
    settings, segments = tier.config.monitoring, tier.stack.segments
    tier.container(
        ContainerSpec(
            service="audit-sink",
            name=audit_sink.SERVICE,
            image=tier.image("audit-sink-image", settings.audit_sink_image),
            command=["python", "-u", AUDIT_SINK_SCRIPT],
            envs=[
                f"AUDIT_SINK_TOKEN_FILE={AUDIT_SINK_TOKEN_FILE}",
                f"AUDIT_SINK_REDACTIONS_FILE={AUDIT_SINK_REDACTIONS}",
                f"AUDIT_SINK_LISTEN=0.0.0.0:{audit_sink.PORT}",
            ],
            uploads=tier.secret_uploads(audit_sink_files, AUDIT_SINK_USER),
            # storage-net for MinIO's audit webhook, monitoring-net for Prometheus and Alertmanager
            networks=[segments.storage.attachment(audit_sink.SERVICE), segments.monitoring.attachment(audit_sink.SERVICE)],
            healthcheck=Healthcheck(
                [
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{audit_sink.PORT}/health', timeout=3)",
                ]
            ),
            memory_mb=settings.audit_sink_memory_mb,
            user=f"{AUDIT_SINK_USER.uid}:{AUDIT_SINK_USER.gid}",
        )
    )
