"""The audit sink run for real, as its container runs it: a Python process serving on loopback.

Entries are posted the way MinIO's audit webhook posts them (one JSON object per request, or
newline-separated batches, `Authorization: <token>`); what the sink writes to stdout is what
Promtail ships to Loki.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.services import audit_sink
from tests.conftest import ROOT

HOST = "127.0.4.30"
TOKEN = "sink-token-3f9a1c"
SCRIPT = ROOT / "infra" / "services" / "audit_sink.py"
START_TIMEOUT_SECONDS = 10.0


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningSink:
    process: subprocess.Popen[str]
    port: int
    stdout_path: Path

    def post(self, path: str, body: bytes, authorization: str | None = TOKEN) -> tuple[int, str]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=5)
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout_path.read_text().splitlines() if line.strip()]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[RunningSink]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port(HOST)
    stdout_path = tmp_path / "stdout.jsonl"
    with stdout_path.open("w") as stdout, (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-u", str(SCRIPT)],
            env={"AUDIT_SINK_TOKEN_FILE": str(token_file), "AUDIT_SINK_LISTEN": f"{HOST}:{port}", "PATH": "/usr/bin:/bin"},
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    running = RunningSink(process, port, stdout_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if running.get("/health")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"audit sink exited: {(tmp_path / 'stderr.log').read_text()}"
            assert time.monotonic() < deadline, "audit sink did not answer /health within 10 s"
            time.sleep(0.05)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def audit_entry(api: str, status: int, **extra: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "deploymentid": "bc0e4d1e-bacc-42eb-91ad-2d7f3eacfa8d",
        "time": "2026-11-21T10:00:00.000000000Z",
        "api": {"name": api, "bucket": "photos", "object": "cat.jpg", "statusCode": status},
        "remotehost": "172.40.0.2",
        "requestID": "187A3B3C4D5E6F70",
        **extra,
    }


def test_each_posted_entry_comes_out_as_one_json_line(sink: RunningSink) -> None:
    first, second = audit_entry("PutObject", 200), audit_entry("GetObject", 200, accessKey="AKIAEXAMPLE")
    assert sink.post(audit_sink.AUDIT_PATH, json.dumps(first).encode()) == (200, "ok\n")
    assert sink.post(audit_sink.AUDIT_PATH, json.dumps(second, indent=2).encode())[0] == 200
    assert sink.lines() == [first, second]


def test_a_newline_separated_batch_gives_one_line_per_entry(sink: RunningSink) -> None:
    # MINIO_AUDIT_WEBHOOK_BATCH_SIZE > 1: MinIO's encoder writes one object per line
    entries = [audit_entry(api, 200) for api in ("PutObject", "HeadObject", "DeleteObject")]
    body = "".join(json.dumps(entry) + "\n" for entry in entries).encode()
    assert sink.post(audit_sink.AUDIT_PATH, body)[0] == 200
    assert [line["api"]["name"] for line in sink.lines()] == ["PutObject", "HeadObject", "DeleteObject"]


def test_the_token_is_accepted_bare_or_as_a_bearer_token(sink: RunningSink) -> None:
    assert sink.post(audit_sink.AUDIT_PATH, b'{"api": {"name": "ListBuckets"}}', TOKEN)[0] == 200
    assert sink.post(audit_sink.AUDIT_PATH, b'{"api": {"name": "ListBuckets"}}', f"Bearer {TOKEN}")[0] == 200
    assert len(sink.lines()) == 2


def test_a_wrong_or_missing_token_is_refused_and_nothing_is_written(sink: RunningSink) -> None:
    body = json.dumps(audit_entry("PutObject", 200)).encode()
    assert sink.post(audit_sink.AUDIT_PATH, body, "wrong-token")[0] == 403
    assert sink.post(audit_sink.AUDIT_PATH, body, None)[0] == 403
    assert sink.post(audit_sink.ALERTMANAGER_PATH, b'{"alerts": []}', f"Bearer {TOKEN}x")[0] == 403
    assert sink.lines() == []
    metrics = sink.get("/metrics")[1]
    assert 'audit_sink_rejected_requests_total{reason="unauthorized"} 3' in metrics


def test_a_malformed_body_is_refused_and_the_sink_keeps_serving(sink: RunningSink) -> None:
    for body in (b"{not json", b"", b"[1, 2, 3]", b'"just a string"', b"\xff\xfe\x00garbage"):
        status, _ = sink.post(audit_sink.AUDIT_PATH, body)
        assert status == 400, body
    assert sink.process.poll() is None
    good = audit_entry("GetObject", 200)
    assert sink.post(audit_sink.AUDIT_PATH, json.dumps(good).encode())[0] == 200
    assert sink.lines() == [good]
    assert 'audit_sink_rejected_requests_total{reason="malformed"} 5' in sink.get("/metrics")[1]


def test_unreadable_lines_of_a_batch_are_skipped_not_the_whole_batch(sink: RunningSink) -> None:
    body = b'{"api": {"name": "PutObject"}}\n{broken\n{"api": {"name": "GetObject"}}\n'
    assert sink.post(audit_sink.AUDIT_PATH, body)[0] == 200
    assert [line["api"]["name"] for line in sink.lines()] == ["PutObject", "GetObject"]


def test_alertmanager_notifications_become_one_line_per_alert(sink: RunningSink) -> None:
    notification = {
        "version": "4",
        "receiver": "critical",
        "status": "firing",
        "groupKey": '{}:{alertname="MinIONodeDown"}',
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "MinIONodeDown", "node": node, "severity": "critical"},
                "annotations": {"summary": f"MinIO node {node} is down"},
                "startsAt": "2026-11-21T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
            }
            for node in ("minio1", "minio2")
        ],
    }
    assert sink.post(audit_sink.ALERTMANAGER_PATH, json.dumps(notification).encode(), f"Bearer {TOKEN}")[0] == 200
    lines = sink.lines()
    assert [(line["source"], line["labels"]["node"], line["status"]) for line in lines] == [
        ("alertmanager", "minio1", "firing"),
        ("alertmanager", "minio2", "firing"),
    ]
    assert 'audit_sink_entries_total{source="alertmanager"} 2' in sink.get("/metrics")[1]


def test_unknown_paths_are_not_found(sink: RunningSink) -> None:
    assert sink.post("/elsewhere", b"{}")[0] == 404
    assert sink.get("/elsewhere")[0] == 404
    assert sink.lines() == []


def test_an_empty_token_is_rejected_at_start() -> None:
    with pytest.raises(ValueError, match="non-empty token"):
        audit_sink.AuditSink("", sys.stdout, sys.stderr)
