"""The bucket catalogue and the scheduled backup: which buckets the cluster holds, and how each behaves.

`scripts/ops sync-buckets` makes the cluster match the catalogue; the scheduled backup service
writes PostgreSQL dumps into one of its buckets.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from infra.config.base import MemoryMb, Settings
from infra.cron import CronSchedule

# lower-case letters, digits, dots and hyphens; starts and ends with a letter or digit (S3 naming rules)
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a valid S3 bucket name, or None when it is."""
    if not _BUCKET_NAME.fullmatch(name):
        return (
            f"{name!r} is not a bucket name: use 3 to 63 lower-case letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        return f"{name!r} is not a bucket name: '.' may not be next to another '.' or a '-'"
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        return f"{name!r} is not a bucket name: it may not look like an IP address"
    for prefix in ("xn--", "sthree-"):
        if name.startswith(prefix):
            return f"{name!r} is not a bucket name: the prefix {prefix!r} is reserved"
    for suffix in ("-s3alias", "--ol-s3"):
        if name.endswith(suffix):
            return f"{name!r} is not a bucket name: the suffix {suffix!r} is reserved"
    return None


def _bucket_name(value: str) -> str:
    problem = bucket_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


BucketName = Annotated[str, AfterValidator(_bucket_name)]

_QUOTA = re.compile(r"^(?P<number>[1-9][0-9]*)(?P<unit>KiB|MiB|GiB|TiB)$")
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def _quota(value: str) -> str:
    if not _QUOTA.fullmatch(value):
        raise ValueError(f"{value!r} is not a size: write a whole number and a unit, e.g. '50GiB' (KiB, MiB, GiB, TiB)")
    return value


QuotaSize = Annotated[str, AfterValidator(_quota)]


def quota_bytes(quota: str) -> int:
    match = _QUOTA.fullmatch(quota)
    assert match is not None, quota
    return int(match["number"]) * _UNITS[match["unit"]]


class BucketSettings(Settings):
    purpose: str = Field(min_length=1, description="what the bucket holds, for the people who read the catalogue")
    retention_days: int | None = Field(
        None, ge=1, le=36500, description="objects expire this many days after creation (a lifecycle rule); unset: kept"
    )
    versioning: bool = Field(False, description="keep every version of every object")
    quota: QuotaSize | None = Field(None, description="hard quota, e.g. '100GiB' (MinIO only); unset: not managed")
    encryption: bool = Field(False, description="encrypt new objects with the cluster's KMS key (SSE-S3)")
    anonymous_read: bool = Field(False, description="anyone may download objects without credentials")

    @property
    def quota_bytes(self) -> int | None:
        return None if self.quota is None else quota_bytes(self.quota)


BucketCatalogue = dict[BucketName, BucketSettings]

# every stack starts from this catalogue; retentions follow the platform's data classes
DEFAULT_CATALOGUE: dict[str, BucketSettings] = {
    "backups-postgresql": BucketSettings(
        purpose="PostgreSQL dumps written by the backup service", retention_days=30, versioning=True
    ),
    "logs": BucketSettings(purpose="exported application and audit logs", retention_days=90),
    "artifacts": BucketSettings(purpose="build artifacts and releases", versioning=True),
    "temp": BucketSettings(purpose="scratch space; emptied after a week", retention_days=7),
}

def _cron(value: str) -> str:
    CronSchedule.parse(value)
    return value


Cron = Annotated[str, AfterValidator(_cron)]


class BackupSettings(Settings):
    enabled: bool = Field(True, description="run the scheduled PostgreSQL backup service")
    schedule: Cron = Field("30 2 * * *", description="cron schedule in UTC (minute hour day-of-month month day-of-week)")
    bucket: BucketName = Field("backups-postgresql", description="catalogue bucket the dumps go to")
    memory_mb: MemoryMb = 256

    @field_validator("schedule")
    @classmethod
    def _not_every_minute(cls, schedule: str) -> str:
        if CronSchedule.parse(schedule).runs_per_hour() > 12:
            raise ValueError(f"{schedule!r} runs more than 12 backups an hour: a dump needs time to finish")
        return schedule


def backup_bucket_problem(backup: BackupSettings, buckets: dict[str, BucketSettings]) -> str | None:
    """Why the backup service could not write where it is told to, or None."""
    if backup.enabled and backup.bucket not in buckets:
        return f"{backup.bucket!r} is not in the bucket catalogue (buckets: {', '.join(sorted(buckets)) or 'none'})"
    return None
