"""Audit sink: turns MinIO's audit webhook into container log lines, one JSON line per entry on stdout.

MinIO posts each audit entry (or a newline-separated batch) with `Authorization: <token>`
(MINIO_AUDIT_WEBHOOK_AUTH_TOKEN); Promtail reads this container's stdout, redacts credentials and
ships the lines to Loki. Alertmanager may post its notifications to /alertmanager the same way,
which makes every alert visible in the logs when no other receiver is configured.

Standard library only: the file is copied into a plain Python image and run as is.

    AUDIT_SINK_TOKEN_FILE   file holding the shared token (required)
    AUDIT_SINK_LISTEN       address:port to listen on (default 0.0.0.0:8080)
    AUDIT_SINK_MAX_BODY     largest accepted body in bytes (default 16 MiB)
"""

from __future__ import annotations

import hmac
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

AUDIT_PATH = "/minio/audit"
ALERTMANAGER_PATH = "/alertmanager"
PORT = 8080
DEFAULT_LISTEN = f"0.0.0.0:{PORT}"
# the sink's host name within a stack: MinIO and Alertmanager reach it there
SERVICE = "audit-sink"
MINIO_WEBHOOK_URL = f"http://{SERVICE}:{PORT}{AUDIT_PATH}"
ALERTMANAGER_WEBHOOK_URL = f"http://{SERVICE}:{PORT}{ALERTMANAGER_PATH}"
DEFAULT_MAX_BODY = 16 * 1024 * 1024


class MalformedBody(ValueError):
    """Nothing in the body could be read as a JSON object."""


def audit_entries(body: bytes) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects in a body and how many parts were unreadable.

    MinIO sends one object per request, or with MINIO_AUDIT_WEBHOOK_BATCH_SIZE > 1 several
    objects separated by newlines; a JSON array of objects is accepted too.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise MalformedBody("empty body")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    else:
        if isinstance(document, dict):
            return [document], 0
        if isinstance(document, list):
            objects = [item for item in document if isinstance(item, dict)]
            if not objects:
                raise MalformedBody("a JSON array without objects")
            return objects, len(document) - len(objects)
        raise MalformedBody(f"a JSON {type(document).__name__}, not an object")
    entries: list[dict[str, Any]] = []
    unreadable = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            unreadable += 1
            continue
        if isinstance(item, dict):
            entries.append(item)
        else:
            unreadable += 1
    if not entries:
        raise MalformedBody("not JSON, nor newline-separated JSON objects")
    return entries, unreadable


def alert_lines(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One log record per alert of an Alertmanager webhook notification (payload version 4)."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise MalformedBody("an Alertmanager notification has an 'alerts' list")
    for alert in alerts:
        if isinstance(alert, dict):
            yield {
                "source": "alertmanager",
                "receiver": payload.get("receiver"),
                "groupKey": payload.get("groupKey"),
                "status": alert.get("status"),
                "labels": alert.get("labels", {}),
                "annotations": alert.get("annotations", {}),
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
            }


class AuditSink:
    """What the handlers share: the token, the output stream and the counters /metrics reports."""

    def __init__(self, token: str, out: TextIO, err: TextIO, max_body: int = DEFAULT_MAX_BODY) -> None:
        if not token:
            raise ValueError("the audit sink needs a non-empty token")
        self.token = token
        self.out = out
        self.err = err
        self.max_body = max_body
        self.entries: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        presented = header.removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def write(self, records: list[dict[str, Any]], source: str) -> None:
        lines = "".join(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n" for record in records)
        with self._lock:
            self.out.write(lines)
            self.out.flush()
            self.entries[source] += len(records)

    def log(self, level: str, message: str, **fields: Any) -> None:
        """The sink's own messages go to stderr, apart from the audit lines."""
        with self._lock:
            self.err.write(json.dumps({"level": level, "msg": message, **fields}) + "\n")
            self.err.flush()

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def metrics(self) -> str:
        with self._lock:
            lines = [
                "# HELP audit_sink_entries_total Records written to stdout, by source.",
                "# TYPE audit_sink_entries_total counter",
                *(f'audit_sink_entries_total{{source="{s}"}} {self.entries[s]}' for s in ("minio", "alertmanager")),
                "# HELP audit_sink_rejected_requests_total Requests refused, by reason.",
                "# TYPE audit_sink_rejected_requests_total counter",
                *(
                    f'audit_sink_rejected_requests_total{{reason="{r}"}} {self.rejected[r]}'
                    for r in ("unauthorized", "malformed", "too_large", "not_found")
                ),
            ]
        return "\n".join(lines) + "\n"


class AuditSinkHandler(BaseHTTPRequestHandler):
    server: AuditSinkServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Access logging would mix with the audit lines on stdout; refusals are counted instead."""

    def _reply(self, status: int, body: str = "", content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/health":
            self._reply(200, "ok\n")
        elif self.path == "/metrics":
            self._reply(200, self.server.sink.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self.server.sink.reject("not_found")
            self._reply(404, "not found\n")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        sink = self.server.sink
        if self.path not in (AUDIT_PATH, ALERTMANAGER_PATH):
            sink.reject("not_found")
            self._discard_body()
            self._reply(404, "not found\n")
            return
        if not sink.authorized(self.headers.get("Authorization")):
            sink.reject("unauthorized")
            self._discard_body()
            # MinIO reports a 403 as "check if your auth token is correctly set"
            self._reply(403, "forbidden: wrong or missing token\n")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            sink.reject("malformed")
            self.close_connection = True
            self._reply(411, "a Content-Length is required\n")
            return
        if int(length) > sink.max_body:
            sink.reject("too_large")
            self.close_connection = True
            self._reply(413, f"body larger than {sink.max_body} bytes\n")
            return
        body = self.rfile.read(int(length))
        try:
            if self.path == AUDIT_PATH:
                entries, unreadable = audit_entries(body)
                sink.write(entries, "minio")
            else:
                payload = json.loads(body)
                if not isinstance(payload, dict):
                    raise MalformedBody("an Alertmanager notification is a JSON object")
                sink.write(list(alert_lines(payload)), "alertmanager")
                unreadable = 0
        except (MalformedBody, json.JSONDecodeError, UnicodeDecodeError) as error:
            sink.reject("malformed")
            sink.log("warn", "refused a malformed body", path=self.path, reason=str(error), bytes=len(body))
            self._reply(400, f"malformed body: {error}\n")
            return
        if unreadable:
            sink.reject("malformed")
            sink.log("warn", "skipped unreadable parts of a batch", path=self.path, parts=unreadable)
        self._reply(200, "ok\n")

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) <= self.server.sink.max_body:
            self.rfile.read(int(length))
        else:
            self.close_connection = True


class AuditSinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sink: AuditSink) -> None:
        super().__init__(address, AuditSinkHandler)
        self.sink = sink


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"AUDIT_SINK_LISTEN={value!r} is not address:port")
    return host or "0.0.0.0", int(port)


def main() -> int:
    token_file = os.environ.get("AUDIT_SINK_TOKEN_FILE")
    if not token_file:
        print("error: AUDIT_SINK_TOKEN_FILE is not set", file=sys.stderr)
        return 2
    with open(token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    sink = AuditSink(token, sys.stdout, sys.stderr, int(os.environ.get("AUDIT_SINK_MAX_BODY", DEFAULT_MAX_BODY)))
    server = AuditSinkServer(parse_listen(os.environ.get("AUDIT_SINK_LISTEN", DEFAULT_LISTEN)), sink)
    # docker stop sends SIGTERM: finish the request in hand, then exit
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    host, port = server.server_address[:2]
    sink.log("info", "listening", address=f"{host!s}:{port}")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
