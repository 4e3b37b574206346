"""Making the cluster's buckets match the stack's bucket catalogue, and reporting what they hold.

`plan_sync` only reads; `apply` changes. A bucket that holds objects is never deleted: pruning
is asked for explicitly and refuses any non-empty bucket before anything is changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minio import Minio, MinioAdmin
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, NoncurrentVersionExpiration, Rule
from minio.sseconfig import Rule as EncryptionRule
from minio.sseconfig import SSEConfig
from minio.versioningconfig import OFF, SUSPENDED, VersioningConfig

from opscli.failures import ConfigurationError, RefusedError

if TYPE_CHECKING:
    from infra.config.buckets import BucketSettings

# the lifecycle rule and bucket-policy statement this tool owns; anything else on a bucket is left alone
RETENTION_RULE_ID = "catalogue-retention"
ANONYMOUS_READ_SID = "CatalogueAnonymousRead"


def load_catalogue(stack: str, config_file: Path | None, project_root: Path) -> dict[str, BucketSettings]:
    """The bucket catalogue of a stack, validated with the rest of its configuration."""
    from infra.config import ConfigError, read_stack_file, split_config
    from infra.secrets import SECRET_CONFIG_KEYS

    path = config_file or project_root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise ConfigurationError(f"no configuration for stack {stack!r}: {path} does not exist")
    values, encrypted = read_stack_file(path)
    try:
        config, _ = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    except ConfigError as error:
        raise ConfigurationError(str(error)) from None
    return dict(config.buckets)


@dataclass(frozen=True)
class Change:
    bucket: str
    what: str
    """'create', 'versioning', 'retention', 'anonymous read', 'encryption', 'quota', 'delete'."""
    current: str
    wanted: str
    apply: Callable[[], object] = field(compare=False, repr=False)
    minio_only: bool = False
    """Uses MinIO's admin API (quota), which other S3 servers do not have."""

    def describe(self) -> str:
        if self.what == "create":
            return f"+ create bucket {self.bucket}"
        if self.what == "delete":
            return f"- delete bucket {self.bucket} (empty, not in the catalogue)"
        return f"~ {self.bucket}: {self.what} {self.current} -> {self.wanted}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    uncatalogued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Buckets --prune would have to delete but that hold objects."""

    def lines(self, pruning: bool) -> list[str]:
        lines = [change.describe() for change in self.changes]
        lines += [f"= {bucket}: up to date" for bucket in self.up_to_date]
        if not pruning:
            lines += [f"? {bucket}: not in the catalogue (kept; --prune deletes it if empty)" for bucket in self.uncatalogued]
        lines += [f"! {bucket}: not in the catalogue but holds objects: refusing to delete it" for bucket in self.refused]
        return lines


def retention_rule(days: int, versioning: bool) -> Rule:
    return Rule(
        ENABLED,
        rule_filter=Filter(prefix=""),
        rule_id=RETENTION_RULE_ID,
        expiration=Expiration(days=days),
        # on a versioned bucket an expired object becomes a noncurrent version: expire those too
        noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=days) if versioning else None,
    )


def anonymous_read_statement(bucket: str) -> dict[str, Any]:
    return {
        "Sid": ANONYMOUS_READ_SID,
        "Effect": "Allow",
        "Principal": {"AWS": ["*"]},
        "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/*"],
    }


def _bucket_policy(client: Minio, bucket: str) -> dict[str, Any]:
    try:
        text = client.get_bucket_policy(bucket)
    except S3Error as error:
        if error.code == "NoSuchBucketPolicy":
            return {}
        raise
    parsed: dict[str, Any] = json.loads(text) if text.strip() else {}
    return parsed


def _statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    statements = policy.get("Statement") or []
    return list(statements) if isinstance(statements, list) else [statements]


def _retention_days(lifecycle: LifecycleConfig | None, versioning: bool) -> tuple[int | None, int | None]:
    for rule in lifecycle.rules if lifecycle else []:
        if rule.rule_id == RETENTION_RULE_ID and rule.status == ENABLED:
            expiry = rule.expiration.days if rule.expiration else None
            noncurrent = rule.noncurrent_version_expiration.noncurrent_days if rule.noncurrent_version_expiration else None
            return expiry, noncurrent
    return None, None


def _describe_days(days: int | None) -> str:
    return "kept forever" if days is None else f"expire after {days} days"


def _set_retention(client: Minio, bucket: str, days: int | None, versioning: bool) -> None:
    lifecycle = client.get_bucket_lifecycle(bucket)
    others = [rule for rule in (lifecycle.rules if lifecycle else []) if rule.rule_id != RETENTION_RULE_ID]
    rules = others + ([retention_rule(days, versioning)] if days is not None else [])
    if rules:
        client.set_bucket_lifecycle(bucket, LifecycleConfig(rules))
    else:
        client.delete_bucket_lifecycle(bucket)


def _set_anonymous_read(client: Minio, bucket: str, allowed: bool) -> None:
    policy = _bucket_policy(client, bucket)
    statements = [s for s in _statements(policy) if s.get("Sid") != ANONYMOUS_READ_SID]
    if allowed:
        statements.append(anonymous_read_statement(bucket))
    if statements:
        client.set_bucket_policy(bucket, json.dumps({"Version": "2012-10-17", "Statement": statements}))
    else:
        client.delete_bucket_policy(bucket)


def _quota_bytes(admin: MinioAdmin, bucket: str) -> int:
    answer = json.loads(admin.bucket_quota_get(bucket) or "{}")
    return int(answer.get("quota") or answer.get("size") or 0)


def _bucket_changes(
    client: Minio, admin: Callable[[], MinioAdmin], bucket: str, wanted: BucketSettings, exists: bool
) -> list[Change]:
    changes: list[Change] = []
    if not exists:
        changes.append(Change(bucket, "create", "absent", "present", lambda: client.make_bucket(bucket)))

    # a bucket that was never versioned has no status (MinIO says "Off", other servers leave it empty)
    current_versioning = (client.get_bucket_versioning(bucket).status or OFF) if exists else OFF
    wanted_versioning = "Enabled" if wanted.versioning else (OFF if current_versioning == OFF else SUSPENDED)
    if current_versioning != wanted_versioning:
        changes.append(
            Change(
                bucket, "versioning", current_versioning, wanted_versioning,
                lambda: client.set_bucket_versioning(bucket, VersioningConfig(wanted_versioning)),
            )
        )

    lifecycle = client.get_bucket_lifecycle(bucket) if exists else None
    current_days = _retention_days(lifecycle, wanted.versioning)
    wanted_days = (wanted.retention_days, wanted.retention_days if wanted.versioning else None)
    if wanted.retention_days is None:
        wanted_days = (None, None)
    if current_days != wanted_days:
        changes.append(
            Change(
                bucket, "retention", _describe_days(current_days[0]), _describe_days(wanted.retention_days),
                lambda: _set_retention(client, bucket, wanted.retention_days, wanted.versioning),
            )
        )

    policy = _bucket_policy(client, bucket) if exists else {}
    current_anonymous = any(s.get("Sid") == ANONYMOUS_READ_SID for s in _statements(policy))
    if current_anonymous != wanted.anonymous_read:
        changes.append(
            Change(
                bucket, "anonymous read", "on" if current_anonymous else "off", "on" if wanted.anonymous_read else "off",
                lambda: _set_anonymous_read(client, bucket, wanted.anonymous_read),
            )
        )

    # encryption and quota are managed only when the catalogue asks for them (see README, "Bucket catalogue")
    if wanted.encryption:
        encryption = client.get_bucket_encryption(bucket) if exists else None
        if encryption is None or encryption.rule is None:
            changes.append(
                Change(
                    bucket, "encryption", "none", "SSE-S3 (cluster KMS key)",
                    lambda: client.set_bucket_encryption(bucket, SSEConfig(EncryptionRule.new_sse_s3_rule())),
                )
            )
    quota = wanted.quota_bytes
    if quota is not None:
        current_quota = _quota_bytes(admin(), bucket) if exists else 0
        if current_quota != quota:
            changes.append(
                Change(
                    bucket, "quota", f"{current_quota} bytes" if current_quota else "none", f"{wanted.quota} hard",
                    lambda: admin().bucket_quota_set(bucket, quota),
                    minio_only=True,
                )
            )
    return changes


def holds_objects(client: Minio, bucket: str) -> bool:
    """Any object, old version or delete marker: a versioned bucket is empty only when all are gone."""
    for _ in client.list_objects(bucket, recursive=True, include_version=True):
        return True
    return False


def plan_sync(
    client: Minio, admin: Callable[[], MinioAdmin], catalogue: Mapping[str, BucketSettings], prune: bool = False
) -> Plan:
    """What it takes to make the cluster match the catalogue; reads only."""
    existing = {bucket.name for bucket in client.list_buckets()}
    plan = Plan()
    for bucket, wanted in sorted(catalogue.items()):
        changes = _bucket_changes(client, admin, bucket, wanted, bucket in existing)
        plan.changes.extend(changes)
        if not changes:
            plan.up_to_date.append(bucket)
    for bucket in sorted(existing - set(catalogue)):
        if not prune:
            plan.uncatalogued.append(bucket)
        elif holds_objects(client, bucket):
            plan.refused.append(bucket)
        else:
            plan.changes.append(Change(bucket, "delete", "present", "absent", _remover(client, bucket)))
    return plan


def _remover(client: Minio, bucket: str) -> Callable[[], None]:
    return lambda: client.remove_bucket(bucket)


def apply(plan: Plan, report: Callable[[str], None]) -> int:
    """Carry out a plan in order; refuses the whole plan if pruning would delete a bucket holding objects."""
    if plan.refused:
        raise RefusedError(
            f"--prune would delete {', '.join(plan.refused)}, which hold objects: nothing was changed "
            "(empty them yourself or add them to the catalogue)"
        )
    for change in plan.changes:
        change.apply()
        report(f"done: {change.describe()}")
    return len(plan.changes)


@dataclass(frozen=True)
class BucketUsage:
    name: str
    objects: int
    bytes: int
    catalogued: bool


def bucket_usage(client: Minio, catalogue: Mapping[str, object] | None = None) -> list[BucketUsage]:
    """Object count and size of the current version of every object, by listing (exact, not the scanner's estimate)."""
    usage = []
    for bucket in sorted(client.list_buckets(), key=lambda item: item.name):
        count = size = 0
        for item in client.list_objects(bucket.name, recursive=True):
            count += 1
            size += item.size or 0
        usage.append(BucketUsage(bucket.name, count, size, catalogue is not None and bucket.name in catalogue))
    return usage


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
