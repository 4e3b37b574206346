"""The offsite mirror: which of the catalogue's buckets are copied to another S3 endpoint, and when.

Set, the stack runs `scripts/ops mirror-schedule` in a `mirror` container (infra/backups.py). The
target's credentials are Pulumi secrets only the operator can give (`TARGET_SECRET_KEYS`); the
mirror signs in to this cluster as the `mirror-service` user, read-only on these buckets.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from infra.config.base import MemoryMb, Settings
from infra.config.buckets import BucketName, Cron, bucket_name_problem
from infra.cron import CronSchedule

# Pulumi secrets nothing can generate: the target's access key and secret key
TARGET_ACCESS_KEY_KEY = "replicationTargetAccessKey"
TARGET_SECRET_KEY_KEY = "replicationTargetSecretKey"
TARGET_SECRET_KEYS = (TARGET_ACCESS_KEY_KEY, TARGET_SECRET_KEY_KEY)


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an S3 endpoint: write https://host[:port] (or http:// for a plain one)")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{value!r} has a path: an S3 API is served at the root of its listener (SigV4 signs the path)")
    return f"{parts.scheme}://{parts.netloc}"


Endpoint = Annotated[str, AfterValidator(_endpoint)]


class ReplicationSettings(Settings):
    target: Endpoint = Field(description="S3 endpoint the buckets are copied to: a second MinIO, a cloud bucket's endpoint")
    buckets: list[BucketName] | None = Field(None, min_length=1, description="catalogue buckets to copy; unset: all of them")
    bucket_prefix: str = Field("", description="the target bucket of bucket B is bucketPrefix + B (bucket names are global on clouds)")
    schedule: Cron = Field("0 3 * * *", description="cron schedule in UTC")
    deletes: bool = Field(False, description="remove from the target what was deleted here (default: the target keeps it)")
    all_versions: bool = Field(False, description="also copy noncurrent versions, where both buckets are versioned")
    part_size_mib: int = Field(16, ge=5, le=5120, description="multipart part size: bounds the mirror's memory")
    ca_certificate: str | None = Field(None, description="PEM certificate that signed the target's, when no public CA did")
    memory_mb: MemoryMb = 256

    @field_validator("schedule")
    @classmethod
    def _runs_can_finish(cls, schedule: str) -> str:
        if CronSchedule.parse(schedule).runs_per_hour() > 12:
            raise ValueError(f"{schedule!r} runs more than 12 mirrors an hour: a run needs time to list and copy")
        return schedule

    @field_validator("bucket_prefix")
    @classmethod
    def _prefix_makes_bucket_names(cls, prefix: str) -> str:
        problem = bucket_name_problem(f"{prefix}abc") if prefix else None
        if problem:
            raise ValueError(f"{prefix!r} cannot start a bucket name: {problem.split(': ', 1)[1]}")
        return prefix

    @field_validator("ca_certificate")
    @classmethod
    def _pem(cls, pem: str | None) -> str | None:
        if pem is not None and "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError("not a PEM certificate: paste the text from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----")
        return pem

    def bucket_names(self, catalogue: Collection[str]) -> list[str]:
        return sorted(self.buckets) if self.buckets is not None else sorted(catalogue)

    def target_bucket(self, bucket: str) -> str:
        return self.bucket_prefix + bucket

    @staticmethod
    def missing_operator_inputs(supplied: Collection[str]) -> list[str]:
        """The target's credentials, by config key, that the operator has not set as secrets."""
        return [
            f"{key}: replication is set but {key} is not; run 'pulumi config set --secret {key}' with the target's "
            f"{'access key' if key == TARGET_ACCESS_KEY_KEY else 'secret key'}"
            for key in TARGET_SECRET_KEYS
            if key not in supplied
        ]


def _buckets_are_catalogued(replication: ReplicationSettings | None, info: ValidationInfo) -> ReplicationSettings | None:
    catalogue: dict[str, Any] | None = info.data.get("buckets")
    if replication is None or catalogue is None or replication.buckets is None:
        return replication  # nothing to check, or the catalogue itself is invalid and already reported
    unknown = [name for name in replication.buckets if name not in catalogue]
    if unknown:
        raise ValueError(
            f"buckets names {', '.join(repr(name) for name in unknown)}, not in the bucket catalogue "
            f"(buckets: {', '.join(sorted(catalogue)) or 'none'})"
        )
    return replication


Replication = Annotated[ReplicationSettings | None, AfterValidator(_buckets_are_catalogued)]
"""The stack's `replication` key: unset, nothing is mirrored."""
