"""The audit sink run for real, as its container runs it: a Python process serving on loopback.

Entries are posted the way MinIO's audit webhook posts them (one JSON object per request, or
newline-separated batches, `Authorization: <token>`); what the sink writes to stdout is what
the log agent ships to Loki. The sink redacts with the rules the stack uploads beside it, the log
pipeline's own; Python's `re` must read them as the agent's RE2 does.
"""

from __future__ import annotations

import contextlib
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

from infra.__main__ import load_stack
from infra.monitoring import logs
from infra.monitoring.log_pipeline import PIPELINE, Match, Replace
from infra.secrets import SecretValues
from infra.services import audit_sink
from tests.config.pipeline_emulator import replace_all
from tests.config.test_log_redaction import ACCESS_KEY, CORPUS, SIGNATURE, audit, sigv4
from tests.conftest import ROOT
from tests.unit.pulumi_harness import deploy

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
    host: str
    port: int
    stdout_path: Path

    def post(self, path: str, body: bytes, authorization: str | None = TOKEN) -> tuple[int, str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
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
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def output(self) -> str:
        return self.stdout_path.read_text()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.strip()]


@contextlib.contextmanager
def running_sink(directory: Path, host: str, **env: str) -> Iterator[RunningSink]:
    """The sink script on `host`, with the stack's rendered redactions file; `env` adds AUDIT_SINK_* settings."""
    token_file = directory / "token"
    token_file.write_text(TOKEN + "\n")
    redactions_file = directory / "redactions.json"
    redactions_file.write_text(logs.audit_sink_redactions())
    port = free_port(host)
    stdout_path = directory / "stdout.jsonl"
    with stdout_path.open("w") as stdout, (directory / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-u", str(SCRIPT)],
            env={
                "AUDIT_SINK_TOKEN_FILE": str(token_file),
                "AUDIT_SINK_REDACTIONS_FILE": str(redactions_file),
                "AUDIT_SINK_LISTEN": f"{host}:{port}",
                "PATH": "/usr/bin:/bin",
                **env,
            },
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    running = RunningSink(process, host, port, stdout_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if running.get("/health")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"audit sink exited: {(directory / 'stderr.log').read_text()}"
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


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[RunningSink]:
    with running_sink(tmp_path, HOST) as running:
        yield running


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
    # who made the request is redacted, as the log agent redacts it
    assert sink.lines() == [first, {**second, "accessKey": "REDACTED"}]


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
    assert sink.post(audit_sink.AUDIT_PATH, body, "wrong-token")[0] == 401
    assert sink.post(audit_sink.AUDIT_PATH, body, None)[0] == 401
    assert sink.post(audit_sink.ALERTMANAGER_PATH, b'{"alerts": []}', f"Bearer {TOKEN}x")[0] == 401
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
    redactions = audit_sink.load_redactions(logs.audit_sink_redactions())
    with pytest.raises(ValueError, match="non-empty token"):
        audit_sink.AuditSink("", sys.stdout, sys.stderr, redactions)


def test_the_sink_will_not_start_without_redactions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="redactions"):
        audit_sink.AuditSink(TOKEN, sys.stdout, sys.stderr, [])
    with pytest.raises(ValueError, match="no rules"):
        audit_sink.load_redactions("[]")
    with pytest.raises(ValueError, match="no capture group"):
        audit_sink.load_redactions('[{"expression": "(?i)bearer [^ ]+", "replace": "REDACTED"}]')
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    started = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={"AUDIT_SINK_TOKEN_FILE": str(token_file), "AUDIT_SINK_LISTEN": f"{HOST}:{free_port(HOST)}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert started.returncode != 0
    assert "AUDIT_SINK_REDACTIONS_FILE is not set" in started.stderr


def _replace_stages(stages: tuple[Any, ...]) -> list[Replace]:
    found = []
    for stage in stages:
        if isinstance(stage, Replace):
            found.append(stage)
        elif isinstance(stage, Match):
            found += _replace_stages(stage.stages)
    return found


def test_the_sink_applies_every_redaction_stage_of_the_log_pipeline() -> None:
    rules = json.loads(logs.audit_sink_redactions())
    stages = _replace_stages(PIPELINE.stages)
    # a replace stage inside a match would apply to some streams only, and the sink would not know which
    assert all(stage in PIPELINE.stages for stage in stages), "redact every line, before any match"
    assert [(rule["expression"], rule["replace"]) for rule in rules] == [(stage.expression, stage.replace) for stage in stages]
    assert len(audit_sink.load_redactions(logs.audit_sink_redactions())) == len(stages) >= 5


# records whose characters the two engines read differently when left as they are: non-ASCII spaces
# (Python's \s takes U+00A0 and U+2028 without ASCII mode, RE2's never), \v, and letters that fold to
# ASCII under RE2's (?i) only (U+017F long s, U+212A Kelvin sign)
UNUSUAL = [
    json.loads(audit("PutObject", 200, headers={"Authorization": sigv4("cl\u00e9\u00a0key", SIGNATURE)}, access_key="cl\u00e9\u00a0key")),
    json.loads(
        audit(
            "GetObject",
            200,
            query={"X-Amz-Signature": "sig\u2028nature\u000bx", "\u017fignature": "long-s", "X-Amz-Credential": "\u212aEY/scope"},
            access_key=ACCESS_KEY,
            obj="\u202efdp.exe",
        )
    ),
    {"source": "alertmanager", "annotations": {"summary": "Bearer tok\u00a0en \u017fignature=x root_pa\u017f\u017fword=y"}},
]


def test_python_re_reads_every_redaction_as_re2_does_on_what_the_sink_writes() -> None:
    redactions = audit_sink.load_redactions(logs.audit_sink_redactions())
    rules = json.loads(logs.audit_sink_redactions())
    records = [json.loads(case.line) for case in CORPUS if case.service == "audit-sink"] + UNUSUAL
    lines = [audit_sink.json_line(record) for record in records] + [case.line for case in CORPUS if case.service != "audit-sink"]
    for line in lines:
        assert line.isascii()
        for redaction, rule in zip(redactions, rules, strict=True):
            assert redaction.apply(line) == replace_all(rule["expression"], rule["replace"], line, "alloy"), (rule["why"], line)
    # the same records with their characters as they are: there the engines part, which is why the sink writes ASCII
    as_they_are = [json.dumps(record, separators=(",", ":"), ensure_ascii=False) for record in UNUSUAL]
    assert any(
        redaction.apply(line) != replace_all(rule["expression"], rule["replace"], line, "alloy")
        for line in as_they_are
        for redaction, rule in zip(redactions, rules, strict=True)
    )


def test_the_stack_uploads_the_sink_its_redactions_and_a_token_only_its_user_reads() -> None:
    files = {item.target: item for item in logs.audit_sink_files(load_stack("dev", None), SecretValues.throwaway())}
    assert files[logs.AUDIT_SINK_REDACTIONS].content == logs.audit_sink_redactions()
    assert not files[logs.AUDIT_SINK_REDACTIONS].secret and files[logs.AUDIT_SINK_TOKEN_FILE].secret
    deployment = deploy("dev")
    container = deployment.named(audit_sink.SERVICE, "docker:index/container:Container")
    uploads = {item["file"]: item for item in container.inputs["uploads"]["value"]}
    assert uploads[logs.AUDIT_SINK_REDACTIONS]["content"] == logs.audit_sink_redactions()
    token = uploads[logs.AUDIT_SINK_TOKEN_FILE]
    assert (token.get("owner"), token.get("group"), token.get("permissions")) == ("65534", "65534", "0600")
    assert container.inputs["user"] == "65534:65534"
    assert f"AUDIT_SINK_REDACTIONS_FILE={logs.AUDIT_SINK_REDACTIONS}" in container.inputs["envs"]
