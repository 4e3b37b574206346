"""Offsite copies of buckets: each bucket copied to another S3 endpoint, incrementally and resumably.

An object is copied when the target lacks it or holds another one: same size and ETag means the
same, and since a target's ETag depends on how the copy was uploaded (one part or many, its
encryption), every copy records the source's ETag as `x-amz-meta-mirror-source-etag`, read back
when the ETags differ. So a second run copies nothing, and a run killed half-way copies only what
it had not finished.

Each copy streams: objects up to one part in a single PUT, larger ones as a multipart upload with
one part (`part_size`) in memory at a time. An interrupted multipart upload is resumed: its parts
are checked against the source (MD5 of each, as S3 reports it) and uploading goes on from the
first missing one; an upload that does not match is aborted and the object copied again.

With `all_versions`, where both buckets are versioned, noncurrent versions are copied too, oldest
first, each recording `x-amz-meta-mirror-source-version`: only versions newer than the newest one
already copied, so the target's versions keep the source's order. Deletions reach the target only
with `deletes` (on a versioned target as a delete marker: the copy's history stays).

MinIO's own bucket replication fits a MinIO target better (versions with their ids, continuous);
see README, "Offsite copies". This mirror is for any S3 target.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from minio import Minio, MinioAdmin
from minio.datatypes import Object, Part
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig
from tqdm import tqdm  # type: ignore[import-untyped]

from opscli import iam
from opscli.catalogue import human_size
from opscli.failures import ConfigurationError, OpsError

MIB = 1 << 20
DEFAULT_PART_MIB = 16
META_SOURCE_ETAG = "mirror-source-etag"
META_SOURCE_VERSION = "mirror-source-version"
# object headers a copy keeps besides its user metadata
KEPT_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language", "cache-control", "expires")
# the MinIO user the stack's mirror service signs in to this cluster as (read-only, see `source_policy`)
MIRROR_SERVICE_USER = "mirror-service"
MIRROR_SERVICE_POLICY = "mirror-service"


class Guard(Protocol):
    """Turns SDK and network failures of one endpoint into an OpsError naming it (connection.explained)."""

    def __call__(self, doing: str) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Side:
    """One end of the mirror: a client, and how its failures are explained."""

    client: Minio
    url: str
    guard: Guard


@dataclass(frozen=True)
class SourceVersion:
    key: str
    size: int
    etag: str
    version_id: str | None
    """Set only when the copy must read this exact version (all_versions)."""
    last_modified: datetime | None


@dataclass(frozen=True)
class Copy:
    source: SourceVersion
    reason: str
    """'new', 'changed', 'noncurrent version'."""


@dataclass
class BucketPlan:
    bucket: str
    target_bucket: str
    create_target: bool = False
    versioned: bool = False
    all_versions: bool = False
    copies: list[Copy] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    kept: int = 0
    """Objects deleted here that the target keeps (no `deletes`)."""
    up_to_date: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def copy_bytes(self) -> int:
        return sum(copy.source.size for copy in self.copies)


@dataclass
class MirrorPlan:
    source: str
    target: str
    buckets: list[BucketPlan]

    @property
    def copies(self) -> int:
        return sum(len(bucket.copies) for bucket in self.buckets)

    @property
    def copy_bytes(self) -> int:
        return sum(bucket.copy_bytes for bucket in self.buckets)

    @property
    def removals(self) -> int:
        return sum(len(bucket.removals) for bucket in self.buckets)

    def lines(self) -> list[str]:
        lines = []
        for plan in self.buckets:
            where = f"{plan.bucket} -> {plan.target_bucket}" if plan.bucket != plan.target_bucket else plan.bucket
            if plan.create_target:
                lines.append(f"+ create bucket {plan.target_bucket} on the target" + (" (versioned)" if plan.versioned else ""))
            lines += [f"+ {plan.bucket}/{c.source.key} {human_size(c.source.size)} ({c.reason})" for c in plan.copies]
            lines += [f"- {plan.bucket}/{key} (deleted here: removed from the target)" for key in plan.removals]
            if plan.kept:
                lines.append(f"? {where}: {plan.kept} object(s) deleted here stay on the target (--delete removes them)")
            lines += [f"! {where}: {note}" for note in plan.notes]
            lines.append(f"= {where}: {plan.up_to_date} {'version' if plan.all_versions else 'object'}(s) up to date")
        lines.append(
            f"plan: {self.copies} to copy ({human_size(self.copy_bytes)}), {self.removals} to remove, "
            f"{sum(b.up_to_date for b in self.buckets)} up to date"
        )
        return lines


@dataclass(frozen=True)
class MirrorResult:
    copied: int
    bytes: int
    removed: int
    up_to_date: int
    skipped: int
    resumed: int
    seconds: float

    def describe(self) -> str:
        rate = self.bytes / self.seconds / MIB if self.seconds else 0.0
        extra = f"; {self.resumed} resumed" if self.resumed else ""
        extra += f"; {self.skipped} skipped (changed or deleted while mirroring: the next run copies them)" if self.skipped else ""
        return (
            f"mirrored {self.copied} object(s), {human_size(self.bytes)} in {self.seconds:.1f} s ({rate:.1f} MiB/s); "
            f"removed {self.removed}; {self.up_to_date} up to date{extra}"
        )


def source_policy(buckets: list[str], never_mint: dict[str, Any]) -> dict[str, Any]:
    """The mirror-service user's policy: read the mirrored buckets and their versions, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListMirroredBuckets",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:ListBucket", "s3:ListBucketVersions"],
                "Resource": [f"arn:aws:s3:::{bucket}" for bucket in buckets],
            },
            {
                "Sid": "ReadMirroredObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": [f"arn:aws:s3:::{bucket}/*" for bucket in buckets],
            },
            never_mint,
        ],
    }


def ensure_mirror_service_user(admin: MinioAdmin, policy_dir: Path, buckets: list[str], secret_key: str) -> str:
    """The mirror-service user with this secret and exactly its policy, generated for `buckets` (idempotent)."""
    never_mint = next(
        statement for statement in iam.load_policy(policy_dir, "readonly")["Statement"]
        if statement.get("Sid") == "NeverMintOrChangeCredentials"
    )
    admin.policy_add(MIRROR_SERVICE_POLICY, policy=source_policy(buckets, never_mint))
    admin.user_add(MIRROR_SERVICE_USER, secret_key)
    iam._attach(admin, [MIRROR_SERVICE_POLICY], MIRROR_SERVICE_USER)  # "already attached" counts as done
    extra = [name for name in iam.attached_policies(admin, MIRROR_SERVICE_USER) or [] if name != MIRROR_SERVICE_POLICY]
    if extra:
        admin.detach_policy(extra, user=MIRROR_SERVICE_USER)
    return f"user {MIRROR_SERVICE_USER} has policy {MIRROR_SERVICE_POLICY} only: read {', '.join(buckets)}"


def _versioned(side: Side, bucket: str) -> bool:
    with side.guard(f"read the versioning of bucket {bucket}"):
        return side.client.get_bucket_versioning(bucket).status == ENABLED


def _recorded(side: Side, bucket: str, key: str, version_id: str | None = None) -> tuple[str | None, str | None]:
    """(source ETag, source version) a copy recorded, read with a HEAD."""
    with side.guard(f"read {bucket}/{key}"):
        stat = side.client.stat_object(bucket, key, version_id=version_id)
    metadata = stat.metadata or {}
    return metadata.get(f"x-amz-meta-{META_SOURCE_ETAG}"), metadata.get(f"x-amz-meta-{META_SOURCE_VERSION}")


def _same(target: Side, bucket: str, key: str, theirs: Object, ours: SourceVersion) -> bool:
    if theirs.size != ours.size:
        return False
    return theirs.etag == ours.etag or _recorded(target, bucket, key)[0] == ours.etag


def _plan_current(source: Side, target: Side, plan: BucketPlan, deletes: bool, target_exists: bool) -> None:
    with source.guard(f"list bucket {plan.bucket}"):
        here = {o.object_name: o for o in source.client.list_objects(plan.bucket, recursive=True) if o.object_name}
    there: dict[str, Object] = {}
    if target_exists:
        with target.guard(f"list bucket {plan.target_bucket}"):
            there = {o.object_name: o for o in target.client.list_objects(plan.target_bucket, recursive=True) if o.object_name}
    for key in sorted(here):
        item = here[key]
        ours = SourceVersion(key, item.size or 0, item.etag or "", None, item.last_modified)
        if key not in there:
            plan.copies.append(Copy(ours, "new"))
        elif _same(target, plan.target_bucket, key, there[key], ours):
            plan.up_to_date += 1
        else:
            plan.copies.append(Copy(ours, "changed"))
    gone = sorted(set(there) - set(here))
    if deletes:
        plan.removals = gone
    else:
        plan.kept = len(gone)


def _versions_by_key(side: Side, bucket: str) -> dict[str, list[Object]]:
    """Every version and delete marker, by key, oldest first."""
    by_key: dict[str, list[Object]] = {}
    with side.guard(f"list the versions in bucket {bucket}"):
        for item in side.client.list_objects(bucket, recursive=True, include_version=True):
            if item.object_name:
                by_key.setdefault(item.object_name, []).append(item)
    # S3 lists a key's versions newest first, but the SDK reads versions and delete markers as two
    # lists: merge them by time (a stable sort keeps each list's own order), the latest one last
    for key, versions in by_key.items():
        versions.sort(key=lambda v: (v.last_modified.timestamp() if v.last_modified else 0.0, v.is_latest == "true"), reverse=True)
        by_key[key] = versions[::-1]
    return by_key


def _plan_versions(source: Side, target: Side, plan: BucketPlan, deletes: bool, target_exists: bool) -> None:
    here = _versions_by_key(source, plan.bucket)
    there = _versions_by_key(target, plan.target_bucket) if target_exists else {}
    for key in sorted(here):
        versions = here[key]
        objects = [v for v in versions if not v.is_delete_marker]
        # (recorded source ETag, recorded source version, size, ETag) of every version on the target; a copy
        # made without all_versions records no version and stands for the source version with its content
        copies = [
            (*_recorded(target, plan.target_bucket, key, v.version_id), v.size, v.etag)
            for v in there.get(key, []) if not v.is_delete_marker
        ]
        present = [
            any(version == v.version_id or (version is None and etag in (v.etag, raw) and size == v.size)
                for etag, version, size, raw in copies)
            for v in objects
        ]
        newest = max((i for i, found in enumerate(present) if found), default=-1)
        older_missing = sum(1 for found in present[:newest] if not found) if newest > 0 else 0
        if older_missing:
            plan.notes.append(f"{key}: {older_missing} older version(s) predate the copies on the target and are not copied")
        for version in objects[newest + 1:]:
            reason = "noncurrent version" if version is not objects[-1] else ("changed" if key in there else "new")
            plan.copies.append(
                Copy(SourceVersion(key, version.size or 0, version.etag or "", version.version_id, version.last_modified), reason)
            )
        plan.up_to_date += sum(present[: newest + 1])
        deleted_here = versions[-1].is_delete_marker
        there_current = there.get(key, [])[-1:] or []
        if deleted_here and there_current and not there_current[0].is_delete_marker:
            if deletes:
                plan.removals.append(key)
            else:
                plan.kept += 1
    for key in sorted(set(there) - set(here)):
        if not there[key][-1].is_delete_marker:
            if deletes:
                plan.removals.append(key)
            else:
                plan.kept += 1


def plan_mirror(
    source: Side, target: Side, buckets: list[tuple[str, str]], *, deletes: bool = False, all_versions: bool = False
) -> MirrorPlan:
    """What it takes to bring each (source bucket, target bucket) up to date; reads only."""
    plans = []
    for bucket, target_bucket in buckets:
        with source.guard(f"read bucket {bucket}"):
            if not source.client.bucket_exists(bucket):
                raise ConfigurationError(f"bucket {bucket!r} does not exist on {source.url}: nothing to mirror")
        with target.guard(f"read bucket {target_bucket}"):
            target_exists = target.client.bucket_exists(target_bucket)
        plan = BucketPlan(bucket, target_bucket, create_target=not target_exists, versioned=_versioned(source, bucket))
        both_versioned = plan.versioned and (not target_exists or _versioned(target, target_bucket))
        if all_versions and not both_versioned:
            plan.notes.append("current versions only: versions are copied where both buckets are versioned")
        plan.all_versions = all_versions and both_versioned
        if plan.all_versions:
            _plan_versions(source, target, plan, deletes, target_exists)
        else:
            _plan_current(source, target, plan, deletes, target_exists)
        plans.append(plan)
    return MirrorPlan(source.url, target.url, plans)


class _Restart(Exception):
    """The interrupted upload does not match the source: copy the object afresh."""


class _Skipped(OpsError):
    """The source object changed or vanished after it was listed: the next run copies it."""


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _copy_headers(response_headers: Any, source: SourceVersion) -> dict[str, str]:
    headers = {
        key: value for key, value in response_headers.items()
        if key.lower() in KEPT_HEADERS or (key.lower().startswith("x-amz-meta-") and "mirror-source-" not in key.lower())
    }
    headers[f"x-amz-meta-{META_SOURCE_ETAG}"] = source.etag
    if source.version_id:
        headers[f"x-amz-meta-{META_SOURCE_VERSION}"] = source.version_id
    return headers


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _uploaded_parts(target: Side, bucket: str, key: str, upload_id: str) -> list[Part]:
    parts: list[Part] = []
    marker: str | None = None
    while True:
        result = target.client._list_parts(bucket, key, upload_id, part_number_marker=marker)
        parts += result.parts
        if not result.is_truncated or not result.next_part_number_marker:
            return sorted(parts, key=lambda part: part.part_number)
        marker = result.next_part_number_marker


def _resumable(target: Side, bucket: str, key: str, source: SourceVersion, part_size: int) -> tuple[str | None, list[Part]]:
    """An interrupted upload of this object to go on with, and its parts; aborts the ones that cannot be."""
    with target.guard(f"list the unfinished uploads of {bucket}/{key}"):
        uploads = [u for u in target.client._list_multipart_uploads(bucket, prefix=key).uploads if u.object_name == key]
        uploads.sort(key=lambda u: u.initiated_time.timestamp() if u.initiated_time else 0.0, reverse=True)
        chosen: tuple[str | None, list[Part]] = (None, [])
        for upload in uploads:
            started_after_change = (
                upload.initiated_time is not None and source.last_modified is not None and upload.initiated_time >= source.last_modified
            )
            if chosen[0] is None and upload.upload_id and started_after_change:
                parts = _uploaded_parts(target, bucket, key, upload.upload_id)
                numbers = [part.part_number for part in parts]
                whole = all(part.size == _part_length(source.size, part_size, part.part_number) for part in parts)
                if numbers == list(range(1, len(parts) + 1)) and whole:
                    chosen = (upload.upload_id, parts)
                    continue
            if upload.upload_id:
                target.client._abort_multipart_upload(bucket, key, upload.upload_id)
    return chosen


def _part_length(size: int, part_size: int, number: int) -> int:
    return max(0, min(part_size, size - (number - 1) * part_size))


def _open(source: Side, bucket: str, item: SourceVersion) -> Any:
    # the exact version, or the listed content (If-Match): an object changed since the listing is left for the next run
    headers: dict[str, str | list[str] | tuple[str]] | None = None if item.version_id else {"If-Match": f'"{item.etag}"'}
    with source.guard(f"read {bucket}/{item.key}"):
        try:
            return source.client.get_object(bucket, item.key, version_id=item.version_id, request_headers=headers)
        except S3Error as error:
            if error.code in ("PreconditionFailed", "NoSuchKey", "NoSuchVersion"):
                raise _Skipped("changed or deleted since it was listed") from None
            raise


def _close(response: Any) -> None:
    response.close()
    response.release_conn()


def copy_object(
    source: Side, target: Side, bucket: str, target_bucket: str, item: SourceVersion, part_size: int,
    progress: Callable[[int], object] = lambda _: None,
) -> str:
    """Stream one object (version) to the target; returns 'copied' or 'resumed from part N of M'."""
    try:
        return _copy_once(source, target, bucket, target_bucket, item, part_size, progress, resume=True)
    except _Restart:
        return _copy_once(source, target, bucket, target_bucket, item, part_size, progress, resume=False)


def _copy_once(
    source: Side, target: Side, bucket: str, target_bucket: str, item: SourceVersion, part_size: int,
    progress: Callable[[int], object], resume: bool,
) -> str:
    response = _open(source, bucket, item)
    try:
        headers = _copy_headers(response.headers, item)
        if item.size <= part_size:
            with source.guard(f"read {bucket}/{item.key}"):
                data = _read_exactly(response, item.size)
            if len(data) != item.size:
                raise OpsError(f"{bucket}/{item.key} ended after {len(data)} of {item.size} bytes; nothing was written")
            with target.guard(f"write {target_bucket}/{item.key}"):
                target.client._put_object(target_bucket, item.key, data, dict(headers))
            progress(len(data))
            return "copied"
        return _multipart(source, target, bucket, target_bucket, item, part_size, response, headers, progress, resume)
    finally:
        _close(response)


def _multipart(
    source: Side, target: Side, bucket: str, target_bucket: str, item: SourceVersion, part_size: int,
    response: Any, headers: dict[str, str], progress: Callable[[int], object], resume: bool,
) -> str:
    total = -(-item.size // part_size)
    upload_id, done = _resumable(target, target_bucket, item.key, item, part_size) if resume else (None, [])
    if upload_id is None:
        with target.guard(f"start an upload of {target_bucket}/{item.key}"):
            upload_id = target.client._create_multipart_upload(target_bucket, item.key, dict(headers))
    uploaded = {part.part_number: part.etag for part in done}
    parts: list[Part] = []
    for number in range(1, total + 1):
        with source.guard(f"read {bucket}/{item.key}"):
            data = _read_exactly(response, _part_length(item.size, part_size, number))
        if len(data) != _part_length(item.size, part_size, number):
            raise OpsError(f"{bucket}/{item.key} ended early, in part {number} of {total}; the next run resumes it")
        if number in uploaded:
            if uploaded[number] != _md5_hex(data):
                with target.guard(f"abort the upload of {target_bucket}/{item.key}"):
                    target.client._abort_multipart_upload(target_bucket, item.key, upload_id)
                raise _Restart()
            parts.append(Part(number, uploaded[number]))
        else:
            with target.guard(f"write part {number} of {target_bucket}/{item.key}"):
                parts.append(Part(number, target.client._upload_part(target_bucket, item.key, data, None, upload_id, number)))
        progress(len(data))
    with target.guard(f"complete the upload of {target_bucket}/{item.key}"):
        target.client._complete_multipart_upload(target_bucket, item.key, upload_id, parts)
    return f"resumed from part {len(done) + 1} of {total}" if done else "copied"


def _create_target_bucket(target: Side, plan: BucketPlan) -> None:
    with target.guard(f"create bucket {plan.target_bucket}"):
        target.client.make_bucket(plan.target_bucket)
        if plan.versioned:
            target.client.set_bucket_versioning(plan.target_bucket, VersioningConfig(ENABLED))


def _remove(target: Side, plan: BucketPlan) -> Iterator[str]:
    with target.guard(f"remove objects from bucket {plan.target_bucket}"):
        failures = {
            error.name: f"{error.code}: {error.message}"
            for error in target.client.remove_objects(plan.target_bucket, (DeleteObject(key) for key in plan.removals))
        }
    for key in plan.removals:
        if key in failures:
            raise OpsError(f"{target.url} refused to remove {plan.target_bucket}/{key}: {failures[key]}")
        yield key


def apply_mirror(
    source: Side, target: Side, plan: MirrorPlan, report: Callable[[str], None], *,
    part_size_mib: int = DEFAULT_PART_MIB, show_progress: bool | None = None,
) -> MirrorResult:
    """Carry out a plan: create missing target buckets, copy, then remove (deletes come last)."""
    if not 5 <= part_size_mib <= 5120:
        raise ConfigurationError(f"part size {part_size_mib} MiB is outside S3's 5-5120 MiB")
    part_size = part_size_mib * MIB
    started = time.monotonic()
    copied = copied_bytes = removed = skipped = resumed = 0
    with tqdm(total=plan.copy_bytes, desc="mirror", unit="B", unit_scale=True, unit_divisor=1024,
              disable=None if show_progress is None else not show_progress) as bar:
        for bucket_plan in plan.buckets:
            if bucket_plan.create_target:
                _create_target_bucket(target, bucket_plan)
                report(f"created bucket {bucket_plan.target_bucket} on the target")
            for item in bucket_plan.copies:
                name = f"{bucket_plan.bucket}/{item.source.key}"
                try:
                    outcome = copy_object(source, target, bucket_plan.bucket, bucket_plan.target_bucket, item.source, part_size, bar.update)
                except _Skipped as why:
                    skipped += 1
                    report(f"skipped {name}: {why}")
                    continue
                copied += 1
                copied_bytes += item.source.size
                resumed += outcome.startswith("resumed")
                report(f"copied {name} {human_size(item.source.size)}{_detail(outcome)}")
            for key in _remove(target, bucket_plan) if bucket_plan.removals else ():
                removed += 1
                report(f"removed {bucket_plan.target_bucket}/{key} from the target")
    return MirrorResult(
        copied, copied_bytes, removed, sum(b.up_to_date for b in plan.buckets), skipped, resumed, time.monotonic() - started
    )


def _detail(outcome: str) -> str:
    return f" ({outcome})" if outcome != "copied" else ""
