"""Audit sink: turns MinIO's audit webhook into container log lines, one JSON line per entry on stdout.

MinIO posts each audit entry (or, with MINIO_AUDIT_WEBHOOK_BATCH_SIZE > 1, a newline-separated
batch) with `Authorization: <token>` (MINIO_AUDIT_WEBHOOK_AUTH_TOKEN, no "Bearer"); Alertmanager
may post its notifications to /alertmanager with `Authorization: Bearer <token>`, which makes every
alert visible in the logs when no other receiver is configured. The log agent reads this
container's stdout and ships the lines to Loki.

A client costs little before it proves the token: the token is checked on the headers, and a
request without it is answered 401 and closed with its body unread; a body needs a Content-Length
within the cap; every socket read times out; connections beyond the cap get an immediate 503
(MinIO retries after its retry_interval, so nothing is lost). Each line is redacted with the log
pipeline's own rules (infra/monitoring/log_pipeline.py, uploaded as a JSON file beside this
script) before it reaches stdout, so the Docker log files on the host hold no credential either.

Standard library only: the file is copied into a plain Python image and run as is.

    AUDIT_SINK_TOKEN_FILE        file holding the shared token (required)
    AUDIT_SINK_REDACTIONS_FILE   the log pipeline's redaction rules, JSON (required)
    AUDIT_SINK_LISTEN            address:port to listen on (default 0.0.0.0:8080)
    AUDIT_SINK_MAX_BODY          largest accepted body in bytes (default 8 MiB)
    AUDIT_SINK_MAX_CONNECTIONS   connections served at once (default 32)
    AUDIT_SINK_TIMEOUT           seconds any socket read may wait (default 10)
"""

from __future__ import annotations

import hmac
import json
import os
import re
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from socketserver import _RequestType

AUDIT_PATH = "/minio/audit"
ALERTMANAGER_PATH = "/alertmanager"
PORT = 8080
DEFAULT_LISTEN = f"0.0.0.0:{PORT}"
# the sink's host name within a stack: MinIO and Alertmanager reach it there
SERVICE = "audit-sink"
MINIO_WEBHOOK_URL = f"http://{SERVICE}:{PORT}{AUDIT_PATH}"
ALERTMANAGER_WEBHOOK_URL = f"http://{SERVICE}:{PORT}{ALERTMANAGER_PATH}"
# MinIO posts one entry per request (batch_size 1, internal/logger/config.go) and retries a refused
# one forever (max_retry 0), stalling that node's audit queue, so the cap must fit its largest entry:
# DeleteMultipleObjects lists up to 1000 names (cmd/api-response.go maxDeleteList) of up to 1024 bytes,
# which its JSON encoder may escape to 6 bytes a character (about 6 MiB), plus the request headers the
# edge proxy lets through (large_client_header_buffers 4 32k). Raise it with the batch size.
DEFAULT_MAX_BODY = 8 * 1024 * 1024
# MinIO keeps one sender per node busy, up to 16 under a backlog (internal/logger/target/http maxWorkers)
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_TIMEOUT = 10.0
REJECTION_REASONS = ("unauthorized", "malformed", "too_large", "not_found", "busy", "timeout")
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nRetry-After: 3\r\nConnection: close\r\n\r\nbusy\n"


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


def json_line(record: dict[str, Any]) -> str:
    """A record as one line of ASCII-only JSON: no control or bidi character of a client reaches the log."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Redaction:
    """One replace stage of the log pipeline: every capture group of every match becomes `replacement`.

    The expressions are written for RE2. On ASCII text, which is all the sink writes, Python's `re`
    in ASCII mode reads them the same way: `\\s` differs only in \\v and `(?i)` only outside ASCII,
    and JSON escapes both.
    """

    pattern: re.Pattern[str]
    replacement: str

    def apply(self, text: str) -> str:
        pieces, previous_end = [], 0
        for match in self.pattern.finditer(text):
            for group in range(1, self.pattern.groups + 1):
                start, end = match.span(group)
                # -1 for a group that took no part; Alloy also rewrites a group that starts where the last ended
                if start >= previous_end:
                    pieces += [text[previous_end:start], self.replacement]
                    previous_end = end
        pieces.append(text[previous_end:])
        return "".join(pieces)


def load_redactions(text: str) -> tuple[Redaction, ...]:
    """The rules of a redactions file: a JSON list of {"expression", "replace"} objects."""
    rules = json.loads(text)
    if not isinstance(rules, list) or not rules:
        raise ValueError("the redactions file holds no rules: the sink would write credentials as they came")
    loaded = []
    for index, rule in enumerate(rules):
        if not (isinstance(rule, dict) and isinstance(rule.get("expression"), str) and isinstance(rule.get("replace"), str)):
            raise ValueError(f"redaction {index}: needs a string 'expression' and 'replace', got {rule!r}")
        pattern = re.compile(rule["expression"], re.ASCII)
        if pattern.groups < 1:
            raise ValueError(f"redaction {index}: {rule['expression']!r} has no capture group to replace")
        loaded.append(Redaction(pattern, rule["replace"]))
    return tuple(loaded)


@dataclass(frozen=True)
class Limits:
    max_body: int = DEFAULT_MAX_BODY
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    timeout: float = DEFAULT_TIMEOUT
    """Seconds one read of the request line, the headers or the body may wait."""


class AuditSink:
    """What the handlers share: the token, the redactions, the output stream and the counters /metrics reports."""

    def __init__(
        self, token: str, out: TextIO, err: TextIO, redactions: Sequence[Redaction], limits: Limits = Limits()
    ) -> None:
        if not token:
            raise ValueError("the audit sink needs a non-empty token")
        if not redactions:
            raise ValueError("the audit sink needs the log pipeline's redactions")
        self.token = token
        self.out = out
        self.err = err
        self.redactions = tuple(redactions)
        self.limits = limits
        self.entries: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        presented = header.removeprefix("Bearer ").strip()
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def redact(self, text: str) -> str:
        for redaction in self.redactions:
            text = redaction.apply(text)
        return text

    def write(self, records: list[dict[str, Any]], source: str) -> None:
        lines = "".join(self.redact(json_line(record)) + "\n" for record in records)
        with self._lock:
            self.out.write(lines)
            self.out.flush()
            self.entries[source] += len(records)

    def log(self, level: str, message: str, **fields: Any) -> None:
        """The sink's own messages go to stderr, apart from the audit lines; they never quote a body."""
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
                *(f'audit_sink_rejected_requests_total{{reason="{r}"}} {self.rejected[r]}' for r in REJECTION_REASONS),
            ]
        return "\n".join(lines) + "\n"


class AuditSinkHandler(BaseHTTPRequestHandler):
    server: AuditSinkServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # every read of the request line, the headers and the body: a client that stops sending is dropped
        self.connection.settimeout(self.server.sink.limits.timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Access logging would mix with the audit lines on stdout; refusals are counted instead."""

    def _reply(self, status: int, body: str = "", content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, reason: str, message: str) -> bool:
        """Answer and close: whatever body the client meant to send stays unread."""
        self.server.sink.reject(reason)
        self.close_connection = True
        self._reply(status, message)
        return False

    def _admitted(self) -> bool:
        """Whether the headers earn the body a read: the token, a known path, a length within the cap."""
        sink = self.server.sink
        if not sink.authorized(self.headers.get("Authorization")):
            return self._refuse(401, "unauthorized", "unauthorized: wrong or missing token\n")
        if self.path not in (AUDIT_PATH, ALERTMANAGER_PATH):
            return self._refuse(404, "not_found", "not found\n")
        length = self.headers.get("Content-Length", "")
        if "Transfer-Encoding" in self.headers or not (length.isascii() and length.isdigit()):
            return self._refuse(411, "malformed", "a Content-Length is required\n")
        if int(length) > sink.limits.max_body:
            return self._refuse(413, "too_large", f"body larger than {sink.limits.max_body} bytes\n")
        return True

    def handle_expect_100(self) -> bool:
        # a client waiting for "100 Continue" gets it only once its headers pass
        return (self.command != "POST" or self._admitted()) and super().handle_expect_100()

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
        if not self._admitted():
            return
        length = int(self.headers["Content-Length"])
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            sink.reject("timeout")
            self.close_connection = True
            return
        if len(body) < length:
            # the client went away mid-body
            sink.reject("malformed")
            self.close_connection = True
            return
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


class AuditSinkServer(ThreadingHTTPServer):
    daemon_threads = True
    # a burst of MinIO's senders waits in the kernel's queue, not in SYN retries
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], sink: AuditSink) -> None:
        super().__init__(address, AuditSinkHandler)
        self.sink = sink
        self._slots = threading.BoundedSemaphore(sink.limits.max_connections)

    def process_request(self, request: _RequestType, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # beyond the cap: answered at once from the accepting thread, never a thread of its own
            self.sink.reject("busy")
            if isinstance(request, socket.socket):
                request.setblocking(False)
                try:
                    request.send(_BUSY)
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: _RequestType, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: _RequestType, client_address: Any) -> None:
        """A connection that failed mid-way (reset, broken pipe): one line on stderr, not a traceback."""
        error = sys.exc_info()[1]
        self.sink.log("warn", "dropped a connection", reason=type(error).__name__)


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"AUDIT_SINK_LISTEN={value!r} is not address:port")
    return host or "0.0.0.0", int(port)


def _read(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise SystemExit(f"error: {variable} is not set")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def main() -> int:
    token = _read("AUDIT_SINK_TOKEN_FILE").strip()
    redactions = load_redactions(_read("AUDIT_SINK_REDACTIONS_FILE"))
    limits = Limits(
        max_body=int(os.environ.get("AUDIT_SINK_MAX_BODY", DEFAULT_MAX_BODY)),
        max_connections=int(os.environ.get("AUDIT_SINK_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
        timeout=float(os.environ.get("AUDIT_SINK_TIMEOUT", DEFAULT_TIMEOUT)),
    )
    sink = AuditSink(token, sys.stdout, sys.stderr, redactions, limits)
    server = AuditSinkServer(parse_listen(os.environ.get("AUDIT_SINK_LISTEN", DEFAULT_LISTEN)), sink)
    # docker stop sends SIGTERM: finish the requests in hand, then exit
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    host, port = server.server_address[:2]
    sink.log("info", "listening", address=f"{host!s}:{port}", **vars(limits))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
