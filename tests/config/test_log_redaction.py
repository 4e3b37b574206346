"""Redaction and labelling, read back from each stack's RENDERED log agent configuration and applied with RE2.

Grafana Alloy's config.alloy (the default; read with the subset parser in alloy_syntax.py) and
Promtail's promtail.yml (still selectable) are both rendered from infra/monitoring/log_pipeline.py;
pipeline_emulator.py runs either as its agent does. The corpus is audit entries shaped like MinIO's
(docs/logging: api, requestHeader, requestQuery, accessKey, parentUser), one per line as the audit
sink writes them, plus lines of other containers (the edge proxy's access log, MinIO's start-up
banner, a metrics scrape). No secret may survive, JSON must stay JSON, every audit line gets the
right op_type and security_event label, and every redaction stage is needed by some line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import re2
import yaml

from dashboards import minio_overview
from tests.config.alloy_syntax import parse
from tests.config.monitoring_render import STACKS, render
from tests.config.pipeline_emulator import (
    AGENTS,
    CONFIG_FILES,
    RenderedPipeline,
    parse_selector,
    read_pipeline,
    render_agent,
    selector_matches,
)
from tests.smoke.test_monitoring import OPERATION_TYPES, STREAM_LABELS

ROOT_USER = "platformadmin7k2q9"
ROOT_PASSWORD = "Xq7vT2mLp9RzK4wNc8HjB3dFg6YsA1eU5iOkQ0nM"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SERVICE_KEY = "backupsvc4f8e2a9d71c3"
STS_KEY = "LR2KAQJ5TZ0DGPXBWE8M"
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
SIGNATURE_2 = "aa8c2f3b1e0d9c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00"
SIGV2_SIGNATURE = "frJIUN8DYpKDtOLCwo//yllqDzg="
SESSION_TOKEN = "eyJhbGciOiJIUzUxMiJ9.eyJhY2Nlc3NLZXkiOiJMUjJLQVFKNVRaMERHUFhCV0U4TSJ9.c2lnbmF0dXJlLXBhcnQ+/=="
WEB_IDENTITY_TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJhbGljZSIsInBvbGljeSI6InJlYWRvbmx5In0.U0lHTkVE"
METRICS_JWT = "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6InJvb3QiLCJpc3MiOiJwcm9tZXRoZXVzIn0.c2ln"
SCOPE = "20261121/us-east-1/s3/aws4_request"


def audit(api: str, status: int, *, headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
          access_key: str | None = None, parent: str | None = None, obj: str = "reports/q3.pdf") -> str:
    entry: dict[str, Any] = {
        "version": "1",
        "deploymentid": "bc0e4d1e-bacc-42eb-91ad-2d7f3eacfa8d",
        "time": "2026-11-21T10:00:00.123456789Z",
        "event": "",
        "trigger": "incoming",
        "api": {
            "name": api,
            "bucket": "finance",
            "object": obj,
            "status": "OK" if status < 300 else "Forbidden",
            "statusCode": status,
            "rx": 512,
            "tx": 0,
            "timeToResponse": "16438202ns",
        },
        "remotehost": "172.40.0.2",
        "requestID": "187A3B3C4D5E6F70",
        "userAgent": "MinIO (linux; amd64) minio-go/v7.0.80",
        "requestPath": f"/finance/{obj}",
        "requestHost": "storage.example.com:9000",
        "requestQuery": query or {},
        "requestHeader": {"Host": "storage.example.com:9000", "X-Amz-Date": "20261121T100000Z", **(headers or {})},
        "responseHeader": {"Server": "MinIO", "X-Amz-Request-Id": "187A3B3C4D5E6F70"},
        "tags": {},
    }
    if access_key is not None:
        entry["accessKey"] = access_key
    if parent is not None:
        entry["parentUser"] = parent
    return json.dumps(entry, separators=(",", ":"))


def sigv4(key: str, signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={key}/{SCOPE}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
    )


@dataclass(frozen=True)
class Case:
    name: str
    line: str
    secrets: tuple[str, ...]
    service: str = "audit-sink"
    op_type: str | None = None
    security_event: str | None = None
    keeps: tuple[str, ...] = field(default=())


PRESIGNED_QUERY = {
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": f"{ACCESS_KEY}/{SCOPE}",
    "X-Amz-Date": "20261121T100000Z",
    "X-Amz-Expires": "300",
    "X-Amz-SignedHeaders": "host",
    "X-Amz-Signature": SIGNATURE,
}

CORPUS = [
    Case(
        "SigV4 header, root user, PutObject",
        audit("PutObject", 200, headers={"Authorization": sigv4(ROOT_USER, SIGNATURE)}, access_key=ROOT_USER),
        (ROOT_USER, SIGNATURE),
        op_type="write",
        keeps=("reports/q3.pdf", SCOPE),
    ),
    Case(
        "presigned GET (SigV4 query)",
        audit("GetObject", 200, query=PRESIGNED_QUERY, access_key=ACCESS_KEY),
        (ACCESS_KEY, SIGNATURE),
        op_type="read",
        keeps=("X-Amz-Expires",),
    ),
    Case(
        "STS session credentials with a security token",
        audit(
            "HeadObject",
            200,
            headers={"Authorization": sigv4(STS_KEY, SIGNATURE_2), "X-Amz-Security-Token": SESSION_TOKEN},
            access_key=STS_KEY,
            parent=ACCESS_KEY,
        ),
        (STS_KEY, SIGNATURE_2, SESSION_TOKEN, ACCESS_KEY),
        op_type="read",
    ),
    Case(
        "STS web identity exchange",
        audit(
            "AssumeRoleWithWebIdentity",
            200,
            query={"Action": "AssumeRoleWithWebIdentity", "WebIdentityToken": WEB_IDENTITY_TOKEN, "Version": "2011-06-15"},
            obj="",
        ),
        (WEB_IDENTITY_TOKEN,),
    ),
    Case(
        "presigned URL with a session token in the query",
        audit("GetObject", 200, query={**PRESIGNED_QUERY, "X-Amz-Security-Token": SESSION_TOKEN}, access_key=ACCESS_KEY),
        (ACCESS_KEY, SIGNATURE, SESSION_TOKEN),
        op_type="read",
    ),
    Case(
        "SigV2 Authorization header",
        audit("ListObjectsV2", 200, headers={"Authorization": f"AWS {ACCESS_KEY}:{SIGV2_SIGNATURE}"}, access_key=ACCESS_KEY),
        (ACCESS_KEY, SIGV2_SIGNATURE),
        op_type="read",
    ),
    Case(
        "SigV2 presigned query",
        audit(
            "GetObject",
            200,
            query={"AWSAccessKeyId": ACCESS_KEY, "Expires": "1795000000", "Signature": SIGV2_SIGNATURE},
            access_key=ACCESS_KEY,
        ),
        (ACCESS_KEY, SIGV2_SIGNATURE),
        op_type="read",
    ),
    Case(
        "service account DeleteObject with parentUser",
        audit("DeleteObject", 204, headers={"Authorization": sigv4(SERVICE_KEY, SIGNATURE)}, access_key=SERVICE_KEY, parent=ROOT_USER),
        (SERVICE_KEY, SIGNATURE, ROOT_USER),
        op_type="delete",
    ),
    Case(
        "multi-object delete",
        audit("DeleteMultipleObjects", 200, headers={"Authorization": sigv4(ACCESS_KEY, SIGNATURE)}, access_key=ACCESS_KEY, obj=""),
        (ACCESS_KEY, SIGNATURE),
        op_type="delete",
    ),
    Case(
        "multipart upload completion",
        audit("CompleteMultipartUpload", 200, headers={"Authorization": sigv4(ACCESS_KEY, SIGNATURE)}, access_key=ACCESS_KEY),
        (ACCESS_KEY, SIGNATURE),
        op_type="write",
    ),
    Case(
        "aborted multipart upload",
        audit("AbortMultipartUpload", 204, headers={"Authorization": sigv4(ACCESS_KEY, SIGNATURE)}, access_key=ACCESS_KEY),
        (ACCESS_KEY, SIGNATURE),
        op_type="delete",
    ),
    Case(
        "denied: a known key without permission",
        audit("PutObject", 403, headers={"Authorization": sigv4(SERVICE_KEY, SIGNATURE)}, access_key=SERVICE_KEY),
        (SERVICE_KEY, SIGNATURE),
        op_type="write",
        security_event="denied",
    ),
    Case(
        "unauthenticated: anonymous request to a private bucket",
        audit("GetObject", 403),
        (),
        op_type="read",
        security_event="unauthenticated",
    ),
    Case(
        "unauthenticated: bad signature from an unknown key",
        audit("ListBuckets", 403, headers={"Authorization": sigv4(ACCESS_KEY, SIGNATURE_2)}, obj=""),
        (ACCESS_KEY, SIGNATURE_2),
        op_type="read",
        security_event="unauthenticated",
    ),
    Case(
        "metrics scrape with a bearer token",
        audit("ClusterMetrics", 200, headers={"Authorization": f"Bearer {METRICS_JWT}"}, access_key=ROOT_USER, obj=""),
        (METRICS_JWT, ROOT_USER),
    ),
    Case(
        "edge proxy access log of a presigned URL",
        '172.24.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET /finance/reports/q3.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256'
        f"&X-Amz-Credential={ACCESS_KEY}%2F20261121%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261121T100000Z"
        f'&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE} HTTP/1.1" 200 5 "-" "curl/8.5.0"',
        (ACCESS_KEY, SIGNATURE),
        service="edge-proxy",
        keeps=("/finance/reports/q3.pdf", "X-Amz-Expires=300"),
    ),
    Case(
        "MinIO start-up banner",
        f"API: http://172.40.0.10:9000  http://127.0.0.1:9000\n   RootUser: {ROOT_USER}\n   RootPass: {ROOT_PASSWORD}",
        (ROOT_USER, ROOT_PASSWORD),
        service="minio",
    ),
]


@pytest.fixture(scope="module", params=[(agent, stack) for agent in AGENTS for stack in STACKS], ids="-".join)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(agent, text of its rendered configuration); Alloy from the stack as it is, since it is the default."""
    agent, stack = request.param
    out = tmp_path_factory.mktemp(f"{agent}-{stack}")
    path: Path = render(stack, out) / CONFIG_FILES[agent] if agent == "alloy" else render_agent(stack, agent, out)
    return agent, path.read_text()


@pytest.fixture(scope="module")
def pipeline(rendered: tuple[str, str]) -> RenderedPipeline:
    return read_pipeline(*rendered)


def meta_of(service: str) -> dict[str, str]:
    """What Docker discovery reports for a container of the dev stack (its labels arrive sanitized)."""
    return {
        "__meta_docker_container_id": "4f1c2b7d9e0a",
        "__meta_docker_container_name": f"/minio-dev-{service}",
        "__meta_docker_container_label_io_minio_platform_service": service,
        "__meta_docker_container_label_io_minio_platform_stack": "minio-dev",
        "__meta_docker_container_log_stream": "stdout",
    }


def leaks(pipeline: RenderedPipeline) -> list[str]:
    """Names of corpus cases with a secret left after the pipeline."""
    return [
        case.name
        for case in CORPUS
        if any(secret in pipeline.run(case.line, meta_of(case.service)).line for secret in case.secrets)
    ]


def without_redaction(agent: str, text: str, index: int) -> str:
    """The rendered file with its `index`-th replace stage cut out, as an editor would."""
    if agent == "alloy":
        (process,) = parse(text).children("loki.process")
        stage = process.children("stage.replace")[index]
        return text[: stage.start] + text[stage.end :]
    document = yaml.safe_load(text)
    stages = document["scrape_configs"][0]["pipeline_stages"]
    stages.remove([stage for stage in stages if "replace" in stage][index])
    return yaml.safe_dump(document)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_no_secret_survives_and_json_stays_json(pipeline: RenderedPipeline, case: Case) -> None:
    for secret in case.secrets:
        assert secret in case.line, f"corpus error: {case.name} does not hold its secret"
    entry = pipeline.run(case.line, meta_of(case.service))
    survivors = [secret[:4] + "..." for secret in case.secrets if secret in entry.line]
    assert not survivors, f"{case.name}: secrets starting {survivors} survive redaction"
    assert "REDACTED" in entry.line or not case.secrets
    for kept in case.keeps:
        assert kept in entry.line, f"{case.name}: redaction also removed {kept!r}"
    if case.service == "audit-sink":
        redacted = json.loads(entry.line)
        assert redacted["api"] == json.loads(case.line)["api"]


@pytest.mark.parametrize("case", [case for case in CORPUS if case.service == "audit-sink"], ids=lambda case: case.name)
def test_audit_lines_get_op_type_and_security_event(pipeline: RenderedPipeline, case: Case) -> None:
    entry = pipeline.run(case.line, meta_of(case.service))
    assert entry.labels.get("op_type") == case.op_type
    assert entry.labels.get("security_event") == case.security_event
    # the temporary labels the matchers used are gone; what remains is low-cardinality
    assert set(entry.labels) <= {"container", "service", "stack", "stream", "op_type", "security_event"}


def test_lines_of_other_services_get_no_audit_labels(pipeline: RenderedPipeline) -> None:
    entry = pipeline.run(audit("PutObject", 403, access_key=ACCESS_KEY), meta_of("minio"))
    assert "op_type" not in entry.labels and "security_event" not in entry.labels


def test_streams_are_labelled_by_container_service_stack_and_stream(pipeline: RenderedPipeline) -> None:
    entry = pipeline.run("API: http://172.40.0.10:9000", meta_of("minio") | {"__meta_docker_container_name": "/minio-dev-minio1"})
    assert entry.labels == {"container": "minio-dev-minio1", "service": "minio", "stack": "minio-dev", "stream": "stdout"}


def test_every_expression_is_valid_re2(pipeline: RenderedPipeline) -> None:
    expressions = [stage.spec["expression"] for stage in pipeline.stages if stage.kind == "replace"]
    assert len(expressions) >= 5
    for expression in expressions:
        compiled = re2.compile(expression)
        assert compiled.groups >= 1, f"{expression} has no capture group to replace"


def test_the_pipeline_redacts_before_it_parses(pipeline: RenderedPipeline) -> None:
    # Loki must never receive an unredacted line, whatever stage later fails on it
    kinds = [stage.kind for stage in pipeline.stages]
    first_other = next(index for index, kind in enumerate(kinds) if kind != "replace")
    assert all(kind != "replace" for kind in kinds[first_other:])
    assert first_other >= 5


def test_removing_any_one_redaction_stage_lets_a_secret_through(rendered: tuple[str, str], pipeline: RenderedPipeline) -> None:
    agent, text = rendered
    assert leaks(pipeline) == []
    count = sum(stage.kind == "replace" for stage in pipeline.stages)
    for index in range(count):
        mutated = read_pipeline(agent, without_redaction(agent, text, index))
        assert sum(stage.kind == "replace" for stage in mutated.stages) == count - 1
        assert leaks(mutated), f"replace stage {index + 1} of {count} can go and no corpus secret survives: test it or drop it"


def test_the_dashboard_and_smoke_suite_find_the_labels_they_query(pipeline: RenderedPipeline) -> None:
    entries = [(case, pipeline.run(case.line, meta_of(case.service))) for case in CORPUS]
    (panel,) = [panel for panel in json.loads(minio_overview.OUTPUT.read_text())["panels"] if panel["type"] == "logs"]
    (target,) = panel["targets"]
    # the security events panel shows exactly the audit lines that are security events
    shown = {case.name for case, entry in entries if selector_matches(target["expr"], entry.labels)}
    assert shown == {case.name for case in CORPUS if case.security_event}
    assert {name for name, _, _ in parse_selector(target["expr"])} <= {name for _, entry in entries for name in entry.labels}
    # the smoke suite waits for op_type values and searches every stream by the stack label it prefers
    assert {entry.labels["op_type"] for _, entry in entries if "op_type" in entry.labels} == OPERATION_TYPES
    assert all(entry.labels[STREAM_LABELS[0]] == "minio-dev" for _, entry in entries)


@pytest.mark.parametrize("stack", STACKS)
def test_alloy_and_promtail_render_the_same_pipeline(stack: str, tmp_path: Path) -> None:
    alloy = read_pipeline("alloy", (render(stack, tmp_path / "alloy") / CONFIG_FILES["alloy"]).read_text())
    promtail = read_pipeline("promtail", render_agent(stack, "promtail", tmp_path / "promtail").read_text())
    assert (alloy.rules, alloy.stages) == (promtail.rules, promtail.stages)
