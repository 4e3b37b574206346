"""The scheduled services: wait for each run of a cron schedule and run the job then (the backup;
the offsite mirror).

Runs inside the stack's backup and mirror containers, so they need no cron on the Docker host. A failed
run is logged and the service waits for the next one; the heartbeat file (touched at least every
`HEARTBEAT_SECONDS`) is what the container's healthcheck reads.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from infra.cron import CronSchedule

from opscli.failures import OpsError

HEARTBEAT_SECONDS = 30


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
) -> int:
    """Run `run_backup` at every scheduled minute; returns after `max_runs` runs (forever when None).
    `job` names it in the log lines ('backup done: ...', 'mirror failed: ...')."""
    runs = failures = 0
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    log(f"scheduled {job}s: {schedule.expression!r} (UTC); next at {schedule.next_run(clock()):%Y-%m-%d %H:%M}")
    while max_runs is None or runs < max_runs:
        due = schedule.next_run(clock())
        while (remaining := (due - clock()).total_seconds()) > 0:
            heartbeat.touch()
            sleep(min(remaining, HEARTBEAT_SECONDS))
        heartbeat.touch()
        runs += 1
        try:
            log(f"{job} done: {run_backup()}")
        except OpsError as error:
            failures += 1
            log(f"{job} failed: {error.sentence}")
        except Exception as error:  # noqa: BLE001 - the service must outlive any single failed run
            failures += 1
            log(f"{job} failed unexpectedly: {type(error).__name__}: {error}")
    return failures
