"""Recovery drills: restore, compare, read back, and time each step.

A drill proves the copies can be used, not only that they exist:

- `postgres`: the newest PostgreSQL backup restored into a new scratch database (its sha256 checked
  first, as `restore-postgres` does), the restored database inspected, then dropped;
- `mirror`: a sample of each mirrored bucket's objects read from both ends and compared by sha256;
  an object missing on the target, or different, fails the step;
- `config`: the newest configuration export in the backup bucket read back, its version and
  checksum verified.

Each step reports its duration; their sum is the recovery time the drill measured. A step whose
settings are missing is skipped and says so; a failed step does not stop the others.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from minio import Minio

from opscli import configdoc, pgbackup
from opscli.catalogue import human_size
from opscli.failures import ChecksumMismatchError, ExitCode, NotFoundError, OpsError, ToolFailedError
from opscli.mirror import Side

PASSED, FAILED, SKIPPED = "ok", "FAILED", "skipped"


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str
    seconds: float
    detail: str
    code: ExitCode = ExitCode.OK

    def line(self) -> str:
        return f"{self.name:<10} {self.status:<8} {self.seconds:8.2f} s  {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {"step": self.name, "status": self.status, "seconds": round(self.seconds, 3), "detail": self.detail}


def run_step(name: str, step: Callable[[], str] | str) -> StepResult:
    """Run one step, timed; a string instead of a function is the reason it is skipped."""
    if isinstance(step, str):
        return StepResult(name, SKIPPED, 0.0, step)
    started = time.monotonic()
    try:
        detail = step()
    except OpsError as error:
        return StepResult(name, FAILED, time.monotonic() - started, error.sentence, error.code)
    return StepResult(name, PASSED, time.monotonic() - started, detail)


def _psql(database: pgbackup.Database, sql: str, dbname: str = "postgres") -> str:
    psql = pgbackup.find_pg_tool("psql", database.bin_dir)
    result = subprocess.run(
        [psql, *database.args(), "--dbname", dbname, "--tuples-only", "--no-align", "--set", "ON_ERROR_STOP=1", "--command", sql],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no error output"]
        raise ToolFailedError(f"psql on {database.describe()} failed: {lines[-1]}")
    return result.stdout.strip()


def postgres_step(client: Minio, bucket: str, database: pgbackup.Database, now: datetime, keep: bool = False) -> str:
    """Restore the newest backup of `database.name` into a new scratch database on the same server."""
    newest = pgbackup.list_backups(client, bucket, database.name, limit=1)
    if not newest:
        raise NotFoundError(f"no backups of database {database.name!r} in bucket {bucket!r}")
    scratch = pgbackup.Database(f"{database.name}_drill_{now:%Y%m%d%H%M%S}"[:63], database.host, database.port, database.user, database.bin_dir)
    _psql(database, f'CREATE DATABASE "{scratch.name}"')
    try:
        backup = pgbackup.restore_postgres(client, bucket, scratch, newest[0].key, show_progress=False)
        relations = pgbackup.user_relation_count(scratch)
        if relations == 0:
            raise ToolFailedError(f"{backup.key} restored into {scratch.name} holds no tables: the backup is empty")
    finally:
        if not keep:
            _psql(database, f'DROP DATABASE IF EXISTS "{scratch.name}"')
    age = now - backup.modified if backup.modified else None
    return (
        f"{backup.key} ({human_size(backup.size)}{f', {_age(age)} old' if age else ''}; sha256 verified) restored into "
        f"{scratch.name}: {relations} tables, views or sequences; " + ("kept" if keep else "dropped")
    )


def _age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _sha256(side: Side, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    with side.guard(f"read {bucket}/{key}"):
        response = side.client.get_object(bucket, key)
        try:
            for chunk in response.stream(pgbackup.READ_CHUNK):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
    return digest.hexdigest()


def _sample(items: list[str], size: int, seed: int | None) -> list[str]:
    return sorted(items) if len(items) <= size else sorted(random.Random(seed).sample(items, size))


def mirror_step(
    source: Side, target: Side, buckets: list[tuple[str, str]], sample: int, *,
    min_age: timedelta = timedelta(0), now: datetime | None = None, seed: int | None = None,
) -> str:
    """Compare a sample of each bucket's objects by sha256; objects younger than `min_age` may not be mirrored yet."""
    moment = now or datetime.now(timezone.utc)
    checked = total_bytes = 0
    missing: list[str] = []
    different: list[str] = []
    for bucket, target_bucket in buckets:
        with source.guard(f"list bucket {bucket}"):
            listed = {
                o.object_name: o for o in source.client.list_objects(bucket, recursive=True)
                if o.object_name and (o.last_modified is None or moment - o.last_modified >= min_age)
            }
        with target.guard(f"list bucket {target_bucket}"):
            if not target.client.bucket_exists(target_bucket):
                raise NotFoundError(f"bucket {target_bucket!r} does not exist on {target.url}: nothing of {bucket} is mirrored")
            there = {o.object_name for o in target.client.list_objects(target_bucket, recursive=True)}
        for key in _sample(list(listed), sample, seed):
            checked += 1
            total_bytes += listed[key].size or 0
            if key not in there:
                missing.append(f"{bucket}/{key}")
            elif _sha256(source, bucket, key) != _sha256(target, target_bucket, key):
                different.append(f"{bucket}/{key}")
    if missing:
        raise NotFoundError(f"{len(missing)} of {checked} sampled object(s) missing on {target.url}: {', '.join(missing[:5])}")
    if different:
        raise ChecksumMismatchError(f"{len(different)} of {checked} sampled object(s) differ on {target.url}: {', '.join(different[:5])}")
    return f"{checked} sampled object(s) in {len(buckets)} bucket(s), {human_size(total_bytes)}, identical by sha256 on the target"


def latest_export(client: Minio, bucket: str) -> str | None:
    keys = [o.object_name for o in client.list_objects(bucket, prefix=configdoc.EXPORT_PREFIX, recursive=True) if o.object_name]
    return max(keys) if keys else None


def config_step(client: Minio, bucket: str) -> str:
    key = latest_export(client, bucket)
    if key is None:
        raise NotFoundError(f"no configuration export in bucket {bucket!r} (run 'scripts/ops export-config')")
    response = client.get_object(bucket, key)
    try:
        text = response.read().decode()
    finally:
        response.close()
        response.release_conn()
    document = configdoc.read_document(text, f"s3://{bucket}/{key}")
    return f"{key}: {configdoc.describe(document)}; sha256 verified"


@dataclass(frozen=True)
class DrillReport:
    steps: list[StepResult]

    @property
    def failed(self) -> list[StepResult]:
        return [step for step in self.steps if step.status == FAILED]

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    def exit_code(self) -> ExitCode:
        return self.failed[0].code if self.failed else ExitCode.OK

    def lines(self) -> Iterator[str]:
        for step in self.steps:
            yield step.line()
        counts = {status: sum(step.status == status for step in self.steps) for status in (PASSED, FAILED, SKIPPED)}
        yield (
            f"recovery time (sum of the steps run): {self.seconds:.1f} s; "
            f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped"
        )
