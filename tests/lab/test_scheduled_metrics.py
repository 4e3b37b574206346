"""The scheduled services' metrics as Prometheus reads them: `scripts/ops backup-schedule` started as the
backup container starts it, with a metrics listener on loopback; promtool's lint of what it serves; and
the real Prometheus on the configuration infra/monitoring/metrics.py renders, with the committed rules,
firing ScheduledJobFailed for a service whose last run (before a restart) failed.

No run happens here: the schedule's next run is hours away. What a run records is the unit tests'
(tests/unit/test_ops_cli.py); the outcome of one from before the restart is the state file's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from infra.config import parse_stack_config
from infra.monitoring.metrics import ScrapeAddresses
from opscli.scheduled import state_file
from tests.conftest import ROOT, require_tool
from tests.lab.ops_servers import free_port, run_ops, wait_until
from tests.prometheus_files import write_prometheus_files

pytestmark = pytest.mark.lab

SERVICE_HOST = "127.0.6.20"
PROMETHEUS_HOST = "127.0.6.21"
NOWHERE = "127.0.6.22"  # nothing listens here: the service never connects before its first run


def service_command(listen: str, heartbeat: Path) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "python"), "-m", "opscli", "backup-schedule", "--schedule", "30 2 * * *",
        "--database", "keycloak", "--pg-host", NOWHERE, "--heartbeat", str(heartbeat), "--metrics-listen", listen, "--no-progress",
    ]


SERVICE_ENVIRON = {"OPS_ENDPOINT": f"http://{NOWHERE}:9", "OPS_ACCESS_KEY": "backup-service", "OPS_SECRET_KEY": "lab-secret"}


def scrape(listen: str) -> str:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The service, its last run (before this start) a failed one."""
    heartbeat = tmp_path / "heartbeat"
    ended = time.time() - 3600
    state_file(heartbeat).write_text(json.dumps({"success": False, "ended": ended, "last_success": ended - 86400}))
    listen = f"{SERVICE_HOST}:{free_port(SERVICE_HOST)}"
    log = (tmp_path / "service.log").open("wb")
    process = subprocess.Popen(service_command(listen, heartbeat), stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **SERVICE_ENVIRON})
    try:
        wait_until(lambda: scrape(listen), "the backup service's metrics listener", timeout=30, process=process)
        yield listen, tmp_path
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_the_service_serves_its_runs_in_a_format_promtool_accepts(service: tuple[str, Path]) -> None:
    listen, _ = service
    exposition = scrape(listen)
    # the failure from before the restart is still reported
    assert "ops_scheduled_last_run_success 0.0" in exposition
    assert 'ops_scheduled_runs_total{result="failed"} 0.0' in exposition, "counters start again with the process"
    assert "ops_scheduled_interval_seconds 86400.0" in exposition
    promtool = require_tool("promtool")
    lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_prometheus_scrapes_the_service_as_its_job_and_fires_scheduled_job_failed(service: tuple[str, Path]) -> None:
    listen, workdir = service
    prometheus_binary = require_tool("prometheus")
    config = parse_stack_config(
        "dev", {"environment": "dev", "monitoring": {"scrapeInterval": "1s", "evaluationInterval": "1s"}}
    )
    # the stack's rendering; only the service's address is the lab's (the other targets answer nowhere)
    addresses = replace(ScrapeAddresses.of_stack(config), scheduled=(("backup", listen),))
    conf = write_prometheus_files(config, addresses, workdir)
    address = f"{PROMETHEUS_HOST}:{free_port(PROMETHEUS_HOST)}"
    log = (workdir / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [prometheus_binary, f"--config.file={conf}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address={address}"],
        stdout=log, stderr=subprocess.STDOUT,
    )

    def api(path: str) -> Any:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as answer:
            return json.loads(answer.read())

    def firing() -> list[dict[str, Any]]:
        alerts = api("/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ScheduledJobFailed" and a["state"] == "firing"]

    try:
        wait_until(firing, "ScheduledJobFailed firing", timeout=60, process=prometheus)
        [alert] = firing()
        assert alert["labels"]["job"] == "backup" and alert["labels"]["instance"] == listen
        assert alert["labels"]["severity"] == "warning"
        # the service is fresh, its last success a day and an hour old: not yet stale, and up
        names = {a["labels"]["alertname"] for a in api("/api/v1/alerts")["data"]["alerts"]}
        assert not names & {"ScheduledJobStale", "ScheduledJobDown"}
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=15)
        log.close()


def test_a_metrics_listener_that_cannot_listen_is_one_line_at_start(tmp_path: Path) -> None:
    taken = f"{SERVICE_HOST}:{free_port(SERVICE_HOST)}"
    with socket.socket() as holder:
        host, port = taken.split(":")
        holder.bind((host, int(port)))
        holder.listen()
        result = run_ops(service_command(taken, tmp_path / "heartbeat")[3:], SERVICE_ENVIRON, timeout=60)
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --metrics-listen {taken}: cannot listen there"), line
