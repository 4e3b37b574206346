"""The log agent: reads every container of the stack through the Docker API, by way of the Docker API
proxy (docker_api_proxy.py, read calls only), and ships its lines to Loki, redacted and tagged.
Grafana Alloy by default, Promtail (end of life) when `monitoring.logAgent` says so; both
configurations are rendered from the one pipeline definition in `log_pipeline.py`.

With nodes on hosts of their own (storage.hosts) every node host runs an agent too (agent_hosts.py),
reading that host's containers of the stack with the same filter and pushing through the edge proxy's
gateway listener over TLS, trusting the stack's CA.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi_docker as docker

from infra.cluster_ca import ca_files, uploads_with_ca
from infra.config import StackConfig
from infra.container import STACK_LABEL, ContainerSpec, Healthcheck
from infra.hosts import CA_FILE, gateway_url, node_addresses
from infra.monitoring.agent_hosts import AgentHost, placed_name
from infra.monitoring.docker_api_proxy import DOCKER_API_URL
from infra.monitoring.log_pipeline import (
    PIPELINE,
    Json,
    LabelDrop,
    Labels,
    LogPipeline,
    Match,
    Replace,
    Stage,
    StaticLabels,
    Template,
)
from infra.monitoring.logs import LOKI_PUSH_PATH, LOKI_PUSH_URL
from infra.rendering import RenderedFile, as_uploads, render_template
from infra.tier import Tier


@dataclass(frozen=True)
class LogAgent:
    """What differs between the two agents; `name` is the container, service, volume and scrape job."""

    name: str
    port: int
    config_file: str
    """Where the container receives its configuration; `render` writes it to the same relative path."""
    data_dir: str
    ready_path: str

    def rendered_path(self, node: int | None = None) -> str:
        return f"{placed_name(self.name, node)}/{Path(self.config_file).name}"


# grafana/alloy's Dockerfile: config at /etc/alloy/config.alloy, data under /var/lib/alloy/data
ALLOY = LogAgent("alloy", 12345, "/etc/alloy/config.alloy", "/var/lib/alloy/data", "/-/ready")
PROMTAIL = LogAgent("promtail", 9080, "/etc/promtail/promtail.yml", "/promtail", "/ready")
LOG_AGENTS = {agent.name: agent for agent in (ALLOY, PROMTAIL)}


def deployed_agent(config: StackConfig) -> LogAgent:
    """The agent the stack runs: Alloy, unless `monitoring.logAgent` is promtail."""
    return LOG_AGENTS[config.monitoring.log_agent]


@dataclass(frozen=True)
class LokiPush:
    """Where an agent pushes, and the CA certificate file it checks the receiver's certificate with (TLS only)."""

    url: str
    ca_file: str | None = None


# on the stack's own host: Loki itself, on monitoring-net
TO_LOKI = LokiPush(LOKI_PUSH_URL)
# on a node host: the edge proxy's gateway listener on the stack's own host, which forwards to Loki
THROUGH_GATEWAY = LokiPush(gateway_url(LOKI_PUSH_PATH), CA_FILE)


def loki_push(node: int | None) -> LokiPush:
    return TO_LOKI if node is None else THROUGH_GATEWAY


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def alloy_string(value: str) -> str:
    """An Alloy string literal: plain "..." when nothing needs escaping, else raw `...` (taken as written)."""
    if "`" in value or "\r" in value or "\n" in value:
        raise ValueError(f"{value!r} cannot be written as an Alloy raw string")
    return f'"{value}"' if re.fullmatch(r'[^"\\\x00-\x1f]*', value) else f"`{value}`"


def yaml_string(value: str) -> str:
    """A single-quoted YAML scalar, which takes backslashes as written."""
    if re.search(r"[\x00-\x1f]", value):
        raise ValueError(f"{value!r} holds a control character")
    return "'" + value.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    # label names are Alloy object keys and YAML keys as they are
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a label name")
    return name


def _stage(stage: Stage, quote: Callable[[str], str]) -> dict[str, Any]:
    """A stage as the templates read it: its kind, a comment, and every string already quoted."""
    match stage:
        case Replace():
            return {"kind": "replace", "why": stage.why, "expression": quote(stage.expression), "replace": quote(stage.replace)}
        case Json():
            paths = [(_identifier(name), quote(path)) for name, path in stage.expressions.items()]
            return {"kind": "json", "why": "", "expressions": paths}
        case Template():
            return {"kind": "template", "why": "", "source": quote(stage.source), "template": quote(stage.template)}
        case Labels():
            return {"kind": "labels", "why": stage.why, "names": [_identifier(name) for name in stage.names]}
        case StaticLabels():
            values = [(_identifier(name), quote(value)) for name, value in stage.values.items()]
            return {"kind": "static_labels", "why": "", "labels": values}
        case LabelDrop():
            return {"kind": "label_drop", "why": "", "names": [quote(_identifier(name)) for name in stage.names]}
        case Match():
            stages = [_stage(inner, quote) for inner in stage.stages]
            return {"kind": "match", "why": stage.why, "selector": quote(stage.selector), "stages": stages}


def pipeline_context(pipeline: LogPipeline, stack: str, quote: Callable[[str], str], push: LokiPush) -> dict[str, Any]:
    """What both agent templates render: discovery, stream labels, stages and destination, quoted for one syntax."""
    return {
        "stack": stack,
        "stack_filter": quote(f"{STACK_LABEL}={stack}"),
        "refresh_interval": quote(pipeline.refresh_interval),
        "loki_push_url": quote(push.url),
        "loki_ca_file": push.ca_file and quote(push.ca_file),
        "stream_labels": [
            {"target": quote(label.target), "source": quote(label.source), "regex": label.regex and quote(label.regex)}
            for label in pipeline.stream_labels
        ],
        "stages": [_stage(stage, quote) for stage in pipeline.stages],
    }


def alloy_config(config: StackConfig, push: LokiPush = TO_LOKI) -> str:
    return render_template(
        "alloy/config.alloy.j2",
        docker_host=alloy_string(DOCKER_API_URL),
        **pipeline_context(PIPELINE, config.name, alloy_string, push),
    )


def promtail_yml(config: StackConfig, push: LokiPush = TO_LOKI) -> str:
    return render_template(
        "promtail/promtail.yml.j2",
        http_port=PROMTAIL.port,
        positions_file=yaml_string(f"{PROMTAIL.data_dir}/positions.yaml"),
        docker_host=yaml_string(DOCKER_API_URL),
        **pipeline_context(PIPELINE, config.name, yaml_string, push),
    )


_AGENT_CONFIGS: dict[str, Callable[[StackConfig, LokiPush], str]] = {ALLOY.name: alloy_config, PROMTAIL.name: promtail_yml}


def log_agent_files(config: StackConfig, node: int | None = None, ca_certificate: str | None = None) -> list[RenderedFile]:
    """The configuration of the agent the stack runs (and only that one): on the stack's own host, or on
    `node`'s host, with the CA certificate it checks the gateway with."""
    agent = deployed_agent(config)
    content = _AGENT_CONFIGS[agent.name](config, loki_push(node))
    files = [RenderedFile(agent.rendered_path(node), agent.config_file, content)]
    if node is not None:
        if ca_certificate is None:
            raise ValueError(f"the log agent on minio{node}'s host needs the stack's CA certificate to check the gateway with")
        files += ca_files(placed_name(agent.name, node), ca_certificate)
    return files


def node_host_agent_files(config: StackConfig, ca_certificate: str | None) -> list[RenderedFile]:
    """Every node host's agent configuration and CA certificate (none on a one-host stack)."""
    return [file for node in node_addresses(config) for file in log_agent_files(config, node, ca_certificate)]


def _agent_command(agent: LogAgent) -> list[str]:
    if agent is PROMTAIL:
        return [f"-config.file={agent.config_file}"]
    # the image's entrypoint is /bin/alloy; it listens on 127.0.0.1 unless told otherwise, out of Prometheus' reach
    return [
        "run",
        f"--server.http.listen-addr=0.0.0.0:{agent.port}",
        f"--storage.path={agent.data_dir}",
        # no usage reports: monitoring-net has no route out, and a node host's agent sends only logs
        "--disable-reporting",
        agent.config_file,
    ]


def add_log_agent(tier: Tier, docker_api: docker.Container, host: AgentHost) -> None:
    """The agent the stack runs on `host`, created once `docker_api` (the Docker API proxy it reads through there) is healthy."""
    settings, agent, config = tier.config.monitoring, deployed_agent(tier.config), tier.config
    image, memory_mb = {
        ALLOY.name: (settings.alloy_image, settings.alloy_memory_mb),
        PROMTAIL.name: (settings.promtail_image, settings.promtail_memory_mb),
    }[agent.name]
    name = host.name(agent.name)
    # read offsets, so a restarted agent resumes where it stopped; no Docker socket: the proxy has it
    data = tier.volume(f"{name}-data", agent.name, provider=host.provider)
    tier.container(
        ContainerSpec(
            service=agent.name,
            name=name,
            image=tier.image(f"{name}-image", image, provider=host.provider),
            command=_agent_command(agent),
            uploads=as_uploads(log_agent_files(config))
            if host.node is None
            else uploads_with_ca(tier, lambda certificate: log_agent_files(config, host.node, certificate)),
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=agent.data_dir)],
            # a fixed address, the one the Docker API proxy admits; on the stack's own host Prometheus scrapes it
            # by name (a node host's agent publishes no port, so nothing scrapes it)
            networks=[host.attachment(agent.name)],
            # on a node host, the gateway it pushes through (node_host_entries, as every container there gets)
            hosts=host.hosts,
            # both images are Ubuntu-based, with bash but neither curl nor wget
            healthcheck=Healthcheck(
                [
                    "CMD",
                    "bash",
                    "-c",
                    f"exec 3<>/dev/tcp/127.0.0.1/{agent.port} && printf 'GET {agent.ready_path} HTTP/1.0\\r\\n\\r\\n' >&3 "
                    "&& head -n1 <&3 | grep -q ' 200 '",
                ]
            ),
            # Alloy sets its Go GOMEMLIMIT to 90% of this cgroup limit itself (automemlimit)
            memory_mb=memory_mb,
        ),
        depends_on=[docker_api],
        provider=host.provider,
    )
