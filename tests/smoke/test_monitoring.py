"""Audit logs in Loki: MinIO's audit entries arrive labelled with their operation type, and with no secret in them."""

from __future__ import annotations

import io
import re
import secrets
import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from minio import Minio

from tests.smoke import live
from tests.smoke.stack import StackOutputs, hidden_literal_pattern, loki_lines, mismatch, wait_for

pytestmark = pytest.mark.smoke

AUDIT_ARRIVAL_TIMEOUT_SECONDS = 120
SEARCH_WINDOW_SECONDS = 30 * 60
OPERATION_TYPES = {"read", "write", "delete"}
# labels every shipped stream carries, in order of preference, for a search across all of them
STREAM_LABELS = ("stack", "service", "container", "job")


def loki_query(in_stack: live.InStackHttp, loki: str, query: str, since_ns: int) -> list[tuple[dict[str, str], str]]:
    answer = in_stack.get(
        f"{loki}/loki/api/v1/query_range", query=query, start=str(since_ns), limit="1000", direction="backward"
    )
    assert answer.status == 200, mismatch(f"Loki query {query}", 200, f"{answer.status} {answer.body[:300]}")
    return loki_lines(answer.json())


def test_audit_lines_reach_loki_with_op_type_and_no_secrets(
    stack: StackOutputs, root_s3: Minio, scratch_bucket: str, http: requests.Session, in_stack: live.InStackHttp
) -> None:
    loki = stack.endpoint("lokiInternal")
    # wide enough to cover the whole run so far: every audit line the data-path checks caused is searched too
    since_ns = time.time_ns() - SEARCH_WINDOW_SECONDS * 10**9
    marker = f"audit-{secrets.token_hex(6)}"
    key = f"smoke/{marker}.bin"
    root_s3.put_object(scratch_bucket, key, io.BytesIO(b"audit"), 5)
    presigned = root_s3.presigned_get_object(scratch_bucket, key, expires=timedelta(minutes=5))
    assert live.get(http, presigned).status_code == 200
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", presigned)
    assert signature, mismatch("presigned URL", "an X-Amz-Signature", presigned.split("?")[0])

    lines = wait_for(
        lambda: loki_query(in_stack, loki, f'{{op_type=~".+"}} |= "{marker}"', since_ns),
        lambda found: {labels.get("op_type") for labels, _ in found} >= {"read", "write"},
        what=f"audit lines in Loki for object {key}",
        expected="a write (PutObject) and a read (GetObject) line, labelled op_type",
        timeout=AUDIT_ARRIVAL_TIMEOUT_SECONDS,
        interval=5,
    )
    op_types = {labels.get("op_type") for labels, _ in lines}
    assert op_types <= OPERATION_TYPES, mismatch("op_type values", sorted(OPERATION_TYPES), sorted(map(str, op_types)))

    labels_answer: Any = in_stack.get(f"{loki}/loki/api/v1/labels", start=str(since_ns)).json()
    names = set(labels_answer.get("data", []))
    stream_label = next((label for label in STREAM_LABELS if label in names), None)
    assert stream_label, mismatch("Loki label names", f"one of {STREAM_LABELS}", sorted(names))
    # every stream of this stack (Promtail labels them with the stack's name), else every stream
    selector = f'{{stack="{stack.name}"}}' if stream_label == "stack" else f'{{{stream_label}=~".+"}}'
    for what, secret in (("the root access key", stack.value("minioRootUser")), ("a request signature", signature.group(1))):
        leaked = loki_query(in_stack, loki, f"{selector} |~ `{hidden_literal_pattern(secret)}`", since_ns)
        # report where, never the line itself: it holds the secret
        where = sorted({labels.get(stream_label, "?") for labels, _ in leaked})
        assert not leaked, mismatch(f"log lines in Loki holding {what}", "none (Promtail redacts them)", f"{len(leaked)} in {where}")
