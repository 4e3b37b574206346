"""Logs: Loki, the log agent that reads every container of the stack through the Docker API, and
the audit sink that turns MinIO's audit webhook into container log lines for the agent to ship.
"""

from __future__ import annotations

from pathlib import Path

import pulumi_docker as docker

from infra.config import StackConfig
from infra.container import SERVICE_LABEL, STACK_LABEL, Attachment, ContainerSpec, Healthcheck
from infra.rendering import RenderedFile, as_uploads, render_template
from infra.secrets import SecretValues
from infra.services import audit_sink
from infra.tier import Tier

LOKI_PORT = 3100
PROMTAIL_PORT = 9080

LOKI_CONFIG = "/etc/loki/loki.yml"
LOKI_DATA = "/loki"
PROMTAIL_CONFIG = "/etc/promtail/promtail.yml"
PROMTAIL_DATA = "/promtail"
AUDIT_SINK_SCRIPT = "/opt/audit-sink/audit_sink.py"
AUDIT_SINK_TOKEN_FILE = "/etc/audit-sink/token"


def loki_yml(config: StackConfig) -> str:
    return render_template(
        "loki/loki.yml.j2",
        stack=config.name,
        http_port=LOKI_PORT,
        data_dir=LOKI_DATA,
        retention=config.monitoring.loki_retention,
    )


def promtail_yml(config: StackConfig) -> str:
    return render_template(
        "promtail/promtail.yml.j2",
        stack=config.name,
        http_port=PROMTAIL_PORT,
        data_dir=PROMTAIL_DATA,
        loki_push_url=f"http://loki:{LOKI_PORT}/loki/api/v1/push",
        docker_socket=config.monitoring.docker_socket,
        stack_label=STACK_LABEL,
        service_label=SERVICE_LABEL,
    )


def loki_files(config: StackConfig) -> list[RenderedFile]:
    return [RenderedFile("loki/loki.yml", LOKI_CONFIG, loki_yml(config))]


def promtail_files(config: StackConfig) -> list[RenderedFile]:
    return [RenderedFile("promtail/promtail.yml", PROMTAIL_CONFIG, promtail_yml(config))]


def audit_sink_files(config: StackConfig, secrets: SecretValues) -> list[RenderedFile]:
    script = Path(audit_sink.__file__).read_text()
    return [
        RenderedFile("audit-sink/audit_sink.py", AUDIT_SINK_SCRIPT, script),
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


def add_promtail(tier: Tier) -> None:
    settings = tier.config.monitoring
    tier.container(
        ContainerSpec(
            service="promtail",
            name="promtail",
            image=tier.image("promtail-image", settings.promtail_image),
            command=[f"-config.file={PROMTAIL_CONFIG}"],
            uploads=as_uploads(promtail_files(tier.config)),
            volumes=[
                tier.data_mount("promtail", PROMTAIL_DATA),
                # read-only Docker API access for service discovery and log reading
                docker.ContainerVolumeArgs(
                    host_path=settings.docker_socket, container_path=settings.docker_socket, read_only=True
                ),
            ],
            # no fixed address: nothing connects to it but Prometheus, by name
            networks=[Attachment(tier.stack.segments.monitoring.network, aliases=["promtail"])],
            # the Ubuntu-based image has bash but neither curl nor wget
            healthcheck=Healthcheck(
                [
                    "CMD",
                    "bash",
                    "-c",
                    f"exec 3<>/dev/tcp/127.0.0.1/{PROMTAIL_PORT} && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 "
                    "&& head -n1 <&3 | grep -q ' 200 '",
                ]
            ),
            memory_mb=settings.promtail_memory_mb,
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
            envs=[f"AUDIT_SINK_TOKEN_FILE={AUDIT_SINK_TOKEN_FILE}", f"AUDIT_SINK_LISTEN=0.0.0.0:{audit_sink.PORT}"],
            uploads=tier.secret_uploads(audit_sink_files),
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
            user="65534:65534",
        )
    )
