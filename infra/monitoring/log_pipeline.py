"""The log pipeline, defined once: which containers the log agent reads, the labels each stream gets,
what is redacted from every line, and the tags MinIO's audit entries get.

Plain data; `logs.py` renders it into both agents' configuration (templates/alloy/config.alloy.j2 and
templates/promtail/promtail.yml.j2), and the config tests run the rendered stages with RE2.
The stages mean the same in Alloy's `loki.process` and in Promtail's `pipeline_stages`:

- `Replace` rewrites every capture group of every match of its RE2 expression, so the context around
  a secret sits in `(?:...)`; access keys are arbitrary strings, so they are found by context.
- `Match` runs its stages on the streams whose labels match a LogQL stream selector.
- `Json` extracts fields by JMESPath; `Template` is Go text/template over the extracted values.
- `Labels` turns extracted values into labels; `StaticLabels` sets fixed ones; `LabelDrop` removes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from infra.container import SERVICE_LABEL, STACK_LABEL

REDACTED = "REDACTED"
# Docker discovery's meta labels, the same in Promtail's docker_sd_configs and Alloy's discovery.docker
CONTAINER_NAME = "__meta_docker_container_name"
LOG_STREAM = "__meta_docker_container_log_stream"
DISCOVERY_REFRESH = "10s"


def docker_label(label: str) -> str:
    """The meta label a Docker label arrives as: invalid characters become '_', as Prometheus sanitizes them."""
    return "__meta_docker_container_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


@dataclass(frozen=True)
class StreamLabel:
    """One label every stream carries, taken from a discovery meta label (relabelling's replace action)."""

    target: str
    source: str
    regex: str | None = None
    """RE2, anchored; its first group becomes the value. None: the whole value."""


@dataclass(frozen=True)
class Replace:
    expression: str
    why: str
    replace: str = REDACTED


@dataclass(frozen=True)
class Json:
    expressions: Mapping[str, str]
    """Extracted name -> JMESPath into the line."""


@dataclass(frozen=True)
class Template:
    source: str
    template: str


@dataclass(frozen=True)
class Labels:
    names: tuple[str, ...]
    """Extracted values that become labels of the same name."""
    why: str = ""


@dataclass(frozen=True)
class StaticLabels:
    values: Mapping[str, str]


@dataclass(frozen=True)
class LabelDrop:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    selector: str
    stages: tuple[Stage, ...]
    why: str = ""


Stage = Replace | Json | Template | Labels | StaticLabels | LabelDrop | Match


@dataclass(frozen=True)
class LogPipeline:
    stream_labels: tuple[StreamLabel, ...]
    stages: tuple[Stage, ...]
    refresh_interval: str = DISCOVERY_REFRESH
    """How often discovery asks the Docker API for the stack's containers."""


def _tag(selector: str, label: str, value: str) -> Match:
    return Match(selector, (StaticLabels({label: value}),))


# Redaction first, on every line of every container, so Loki never receives an unredacted line.
REDACTIONS = (
    Replace(
        r'(?i)(?:x-amz-credential|x-amz-signature|x-amz-security-token|awsaccesskeyid|signature|webidentitytoken)'
        r'(?:=|"\s*:\s*")([^&"\s,]+)',
        "SigV4 and presigned (query) credentials, signatures, session and web-identity tokens",
    ),
    Replace(
        r'(?i)credential=([^/\s",&]+)',
        "the access key inside a SigV4 Authorization header (Credential=<key>/<date>/<region>/...)",
    ),
    Replace(r'(?i)authorization"?\s*[:=]\s*"?AWS ([^:\s"]+):([^\s",]+)', "SigV2 Authorization header (AWS <key>:<signature>)"),
    Replace(r'(?i)bearer ([^\s",]+)', "bearer tokens (STS, metrics, webhooks)"),
    Replace(
        r'(?i)root_?(?:user|pass(?:word)?)"?\s*[:=]\s*"?([^\s",]+)',
        "root credentials, should a start-up banner or an environment dump print them",
    ),
    Replace(r'"(?:accessKey|parentUser)"\s*:\s*"([^"]+)"', "who made the request, in MinIO's audit entries"),
)

_AUDIT_FIELDS = ("api", "status", "authenticated")

AUDIT_ENTRIES = Match(
    '{service="audit-sink"}',
    (
        Json({"api": "api.name", "status": "api.statusCode", "access_key": "accessKey"}),
        Template("authenticated", "{{ if .access_key }}yes{{ else }}no{{ end }}"),
        Labels(_AUDIT_FIELDS, why="temporary labels for the matchers below; dropped again at the end"),
        _tag('{status=~"401|403", authenticated="yes"}', "security_event", "denied"),
        _tag('{status=~"401|403", authenticated="no"}', "security_event", "unauthenticated"),
        _tag('{api=~"(Delete|Abort).*"}', "op_type", "delete"),
        _tag('{api=~"(Put|Post|Copy|Complete|NewMultipart|Restore|Upload).*"}', "op_type", "write"),
        _tag('{api=~"(Get|Head|List|Select).*"}', "op_type", "read"),
        LabelDrop(_AUDIT_FIELDS),
    ),
    why="MinIO audit entries, written one per line by the audit sink",
)

PIPELINE = LogPipeline(
    # labels stay low-cardinality: which container, service and stack a line came from, and its stream
    stream_labels=(
        # Docker names start with '/'
        StreamLabel("container", CONTAINER_NAME, regex="/?(.*)"),
        StreamLabel("service", docker_label(SERVICE_LABEL)),
        StreamLabel("stack", docker_label(STACK_LABEL)),
        StreamLabel("stream", LOG_STREAM),
    ),
    stages=(*REDACTIONS, AUDIT_ENTRIES),
)
