"""The scheduled services: wait for each run of a cron schedule and run the job then (the backup;
the offsite mirror).

Runs inside the stack's backup and mirror containers, so they need no cron on the Docker host. A failed
run is logged and the service waits for the next one; the heartbeat file (touched at least every
`HEARTBEAT_SECONDS`) is what the container's healthcheck reads.

With a metrics listener, Prometheus reads how the runs go (`JobMetrics`): the alerts ScheduledJobFailed
and ScheduledJobStale (alerts/operations.rules.yml) are made of these series. The last run's outcome is
kept in a file beside the heartbeat, so a restarted service still reports a failure from before.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from infra.cron import CronSchedule

from opscli.failures import ConfigurationError, OpsError

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

HEARTBEAT_SECONDS = 30
METRIC_PREFIX = "ops_scheduled"


class JobMetrics:
    """What a scheduled service says of its runs, in a registry of its own.

    - `ops_scheduled_runs_total{result="done|failed"}`;
    - `ops_scheduled_last_run_success` (1 or 0) and `ops_scheduled_last_run_timestamp_seconds`, when it
      ended: both absent before the first run ever, so that no alert reads a run that never was;
    - `ops_scheduled_last_success_timestamp_seconds`: when the last run that succeeded ended (the
      service's first start until one has);
    - `ops_scheduled_next_run_timestamp_seconds` and `ops_scheduled_interval_seconds`, the longest time
      between two runs by the schedule, which the staleness alert measures against.

    `state` is where the last outcome survives a restart of the service. prometheus_client is imported
    here, not with the module: every `scripts/ops` command loads this module, and only the services serve.
    """

    def __init__(self, schedule: CronSchedule, state: Path, clock: Callable[[], datetime]) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.state = state
        started = clock()
        self.interval = schedule.longest_gap(started).total_seconds()
        self.next_run = schedule.next_run(started).timestamp()
        self.last_success = started.timestamp()
        self.last_run: tuple[bool, float] | None = None
        """(succeeded, when it ended) of the last run."""
        self._restore()
        self.registry = CollectorRegistry()
        self.runs = Counter(f"{METRIC_PREFIX}_runs", "Runs of the scheduled job, by result", ["result"], registry=self.registry)
        for result in ("done", "failed"):
            self.runs.labels(result)
        self.registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, read from the service's state at each scrape (prometheus_client's custom collector)."""
        from prometheus_client.core import GaugeMetricFamily

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{METRIC_PREFIX}_{name}", documentation, value=value)

        if self.last_run is not None:
            succeeded, ended = self.last_run
            yield gauge("last_run_success", "1 if the last run succeeded, 0 if it failed", 1 if succeeded else 0)
            yield gauge("last_run_timestamp_seconds", "When the last run ended", ended)
        yield gauge("last_success_timestamp_seconds", "When the last successful run ended (first start until one has)", self.last_success)
        yield gauge("next_run_timestamp_seconds", "When the next run is due by the schedule", self.next_run)
        yield gauge("interval_seconds", "The longest time between two runs by the schedule", self.interval)

    def _restore(self) -> None:
        try:
            kept = json.loads(self.state.read_text())
            self.last_run = (bool(kept["success"]), float(kept["ended"]))
            self.last_success = float(kept["last_success"])
        except (OSError, ValueError, TypeError, KeyError):
            return  # nothing kept, or not readable: as on a first start

    def waiting_for(self, due: datetime) -> None:
        self.next_run = due.timestamp()

    def record(self, success: bool, ended: datetime) -> None:
        self.runs.labels("done" if success else "failed").inc()
        self.last_run = (success, ended.timestamp())
        if success:
            self.last_success = ended.timestamp()
        kept = {"success": success, "ended": ended.timestamp(), "last_success": self.last_success}
        try:
            self.state.write_text(json.dumps(kept))
        except OSError as error:
            log(f"cannot keep the last run's outcome in {self.state}: {error.strerror}")

    def serve(self, listen: str) -> None:
        """The metrics at http://`listen`/metrics ('address:port'), from a thread of their own."""
        from prometheus_client import start_http_server

        address, _, port = listen.rpartition(":")
        if not (address and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigurationError(f"--metrics-listen {listen!r} is not ADDRESS:PORT (e.g. 0.0.0.0:9108)")
        try:
            start_http_server(int(port), address, registry=self.registry)
        except OSError as error:
            raise ConfigurationError(f"--metrics-listen {listen}: cannot listen there ({error.strerror})") from None


def log(message: str) -> None:
    print(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}", file=sys.stderr, flush=True)


def run_schedule(
    schedule: CronSchedule,
    run_backup: Callable[[], str],
    heartbeat: Path,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    sleep: Callable[[float], None] = time.sleep,
    max_runs: int | None = None,
    job: str = "backup",
    metrics: JobMetrics | None = None,
) -> int:
    """Run `run_backup` at every scheduled minute; returns after `max_runs` runs (forever when None).
    `job` names it in the log lines ('backup done: ...', 'mirror failed: ...'); `metrics` hears of every run."""
    runs = failures = 0
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    log(f"scheduled {job}s: {schedule.expression!r} (UTC); next at {schedule.next_run(clock()):%Y-%m-%d %H:%M}")
    while max_runs is None or runs < max_runs:
        due = schedule.next_run(clock())
        if metrics is not None:
            metrics.waiting_for(due)
        while (remaining := (due - clock()).total_seconds()) > 0:
            heartbeat.touch()
            sleep(min(remaining, HEARTBEAT_SECONDS))
        heartbeat.touch()
        runs += 1
        success = False
        try:
            log(f"{job} done: {run_backup()}")
            success = True
        except OpsError as error:
            failures += 1
            log(f"{job} failed: {error.sentence}")
        except Exception as error:  # noqa: BLE001 - the service must outlive any single failed run
            failures += 1
            log(f"{job} failed unexpectedly: {type(error).__name__}: {error}")
        if metrics is not None:
            metrics.record(success, clock())
    return failures


def state_file(heartbeat: Path) -> Path:
    """Where the service keeps its last run's outcome: beside its heartbeat, as writable as it is."""
    return heartbeat.with_name(f"{heartbeat.name}.last-run.json")


METRICS_LISTEN_HELP = "serve the runs' metrics for Prometheus at http://ADDRESS:PORT/metrics (default: none)"


def start_metrics(listen: str | None, schedule: CronSchedule, heartbeat: Path) -> JobMetrics | None:
    """The service's metrics, served at `listen` ('address:port'); None without a listener."""
    if listen is None:
        return None
    metrics = JobMetrics(schedule, state_file(heartbeat), lambda: datetime.now(timezone.utc))
    metrics.serve(listen)
    log(f"metrics for Prometheus at http://{listen}/metrics")
    return metrics
