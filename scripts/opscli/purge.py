"""Deletion on request: every version and delete marker of the named objects (or of a prefix) removed.

A plain delete on a versioned bucket only adds a delete marker and keeps every version; purging
removes each version by its id, so nothing of the object is left. One audit line per object says
who removed what, where, and why; a dry run writes the same lines, marked, and removes nothing.
Afterwards the bucket is listed again: anything still there (an object-lock retention, say) fails
the purge.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from minio import Minio
from minio.deleteobjects import DeleteObject

from opscli.failures import ConfigurationError, OpsError

BATCH = 1000  # S3 DeleteObjects takes at most 1000 keys a request


@dataclass
class ObjectVersions:
    key: str
    versions: list[str | None] = field(default_factory=list)
    delete_markers: list[str | None] = field(default_factory=list)
    bytes: int = 0


def find_versions(client: Minio, bucket: str, keys: Iterable[str] = (), prefix: str | None = None) -> list[ObjectVersions]:
    """Every version and delete marker of the exact `keys`, and of everything under `prefix`."""
    wanted = set(keys)
    found: dict[str, ObjectVersions] = {}
    listings = [(key, True) for key in sorted(wanted)] + ([(prefix, False)] if prefix else [])
    for listed_prefix, exact in listings:
        for item in client.list_objects(bucket, prefix=listed_prefix, recursive=True, include_version=True):
            name = item.object_name or ""
            if exact and name != listed_prefix:
                continue
            entry = found.setdefault(name, ObjectVersions(name))
            version = item.version_id
            target = entry.delete_markers if item.is_delete_marker else entry.versions
            if version not in target:
                target.append(version)
                entry.bytes += 0 if item.is_delete_marker else item.size or 0
    return [found[key] for key in sorted(found)]


def audit_line(
    *, action: str, by: str, endpoint: str, bucket: str, entry: ObjectVersions, result: str, reason: str, now: datetime
) -> str:
    return "audit " + json.dumps({
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "action": action, "by": by, "endpoint": endpoint, "bucket": bucket,
        "key": entry.key, "versions": len(entry.versions), "deleteMarkers": len(entry.delete_markers), "bytes": entry.bytes,
        "result": result, "reason": reason,
    }, sort_keys=False)


def _remove_all(client: Minio, bucket: str, entries: list[ObjectVersions]) -> dict[str, str]:
    """Remove every listed version and marker; the first refusal of each key, by key."""
    targets = [
        DeleteObject(entry.key, version) if version not in (None, "") else DeleteObject(entry.key)
        for entry in entries for version in [*entry.versions, *entry.delete_markers]
    ]
    failures: dict[str, str] = {}
    for start in range(0, len(targets), BATCH):
        for error in client.remove_objects(bucket, targets[start : start + BATCH]):
            failures.setdefault(error.name or "", f"{error.code}: {error.message}")
    return failures


@dataclass(frozen=True)
class PurgeResult:
    objects: int
    versions: int
    delete_markers: int
    bytes: int
    left: list[str]
    """Keys that still have a version or marker afterwards."""


def purge(
    client: Minio, bucket: str, *, keys: Iterable[str] = (), prefix: str | None = None, dry_run: bool, by: str, endpoint: str,
    reason: str, audit: Callable[[str], None], now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> PurgeResult:
    keys = list(keys)
    if not keys and not prefix:
        raise ConfigurationError("name the objects to purge (KEY ...) or a non-empty --prefix; a whole bucket is never purged by accident")
    if not client.bucket_exists(bucket):
        raise ConfigurationError(f"bucket {bucket!r} does not exist on {endpoint}")
    entries = find_versions(client, bucket, keys, prefix)
    failures = {} if dry_run else _remove_all(client, bucket, entries)
    left = [] if dry_run else [entry.key for entry in find_versions(client, bucket, [e.key for e in entries])]
    for entry in entries:
        if dry_run:
            result = "dry run: would be removed"
        elif entry.key in failures:
            result = f"failed: {failures[entry.key]}"
        elif entry.key in left:
            result = "failed: versions are still there"
        else:
            result = "purged"
        audit(audit_line(action="purge", by=by, endpoint=endpoint, bucket=bucket, entry=entry, result=result, reason=reason, now=now()))
    if left or failures:
        names = sorted(set(left) | set(failures))
        raise OpsError(f"{len(names)} object(s) in bucket {bucket} still have versions after the purge: {', '.join(names[:10])}"
                       + (" ..." if len(names) > 10 else "") + " (object lock? see the audit lines)")
    return PurgeResult(
        len(entries), sum(len(e.versions) for e in entries), sum(len(e.delete_markers) for e in entries),
        sum(e.bytes for e in entries), left,
    )
