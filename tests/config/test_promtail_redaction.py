"""Redaction and labelling, read from each stack's RENDERED promtail.yml and applied with RE2 as Promtail applies it.

The corpus is audit entries shaped like MinIO's (docs/logging: api, requestHeader,
requestQuery, accessKey, parentUser), one per line as the audit sink writes them, plus lines of
other containers (the edge proxy's access log, MinIO's start-up banner, a metrics scrape).
No secret may survive, JSON must stay JSON, and every audit line gets the right op_type and
security_event label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import re2
import yaml

from tests.config.monitoring_render import STACKS, render
from tests.config.promtail_pipeline import run_pipeline

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


@pytest.fixture(scope="module", params=STACKS)
def promtail_config(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rendered: Path = render(request.param, tmp_path_factory.mktemp(request.param))
    document: dict[str, Any] = yaml.safe_load((rendered / "promtail" / "promtail.yml").read_text())
    return document


def labels_of(case: Case) -> dict[str, str]:
    return {"container": f"minio-dev-{case.service}", "service": case.service, "stack": "minio-dev", "stream": "stdout"}


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_no_secret_survives_and_json_stays_json(promtail_config: dict[str, Any], case: Case) -> None:
    for secret in case.secrets:
        assert secret in case.line, f"corpus error: {case.name} does not hold its secret"
    entry = run_pipeline(promtail_config, case.line, labels_of(case))
    survivors = [secret[:4] + "..." for secret in case.secrets if secret in entry.line]
    assert not survivors, f"{case.name}: secrets starting {survivors} survive redaction"
    assert "REDACTED" in entry.line or not case.secrets
    for kept in case.keeps:
        assert kept in entry.line, f"{case.name}: redaction also removed {kept!r}"
    if case.service == "audit-sink":
        redacted = json.loads(entry.line)
        assert redacted["api"] == json.loads(case.line)["api"]


@pytest.mark.parametrize("case", [case for case in CORPUS if case.service == "audit-sink"], ids=lambda case: case.name)
def test_audit_lines_get_op_type_and_security_event(promtail_config: dict[str, Any], case: Case) -> None:
    entry = run_pipeline(promtail_config, case.line, labels_of(case))
    assert entry.labels.get("op_type") == case.op_type
    assert entry.labels.get("security_event") == case.security_event
    # the temporary labels the matchers used are gone; what remains is low-cardinality
    assert set(entry.labels) <= {"container", "service", "stack", "stream", "op_type", "security_event"}


def test_lines_of_other_services_get_no_audit_labels(promtail_config: dict[str, Any]) -> None:
    line = audit("PutObject", 403, access_key=ACCESS_KEY)
    entry = run_pipeline(promtail_config, line, {"service": "minio", "stack": "minio-dev"})
    assert "op_type" not in entry.labels and "security_event" not in entry.labels


def test_every_expression_is_valid_re2(promtail_config: dict[str, Any]) -> None:
    stages = promtail_config["scrape_configs"][0]["pipeline_stages"]
    expressions = [stage["replace"]["expression"] for stage in stages if "replace" in stage]
    assert len(expressions) >= 5
    for expression in expressions:
        compiled = re2.compile(expression)
        assert compiled.groups >= 1, f"{expression} has no capture group to replace"


def test_the_pipeline_redacts_before_it_parses(promtail_config: dict[str, Any]) -> None:
    # Loki must never receive an unredacted line, whatever stage later fails on it
    kinds = [next(iter(stage)) for stage in promtail_config["scrape_configs"][0]["pipeline_stages"]]
    first_other = next(index for index, kind in enumerate(kinds) if kind != "replace")
    assert all(kind != "replace" for kind in kinds[first_other:])
    assert first_other >= 5
