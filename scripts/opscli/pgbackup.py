"""PostgreSQL backup to the object store and restore from it, streamed end to end.

Backup: `pg_dump` (plain SQL) -> gzip in this process -> multipart upload, one part in memory at
a time; nothing is written to local disk. The sha256 of the stored (compressed) bytes becomes the
object's `x-amz-meta-sha256`: the dump is uploaded under `.incoming/`, then copied to its final
key with the checksum, so a final key never exists without one.

Restore: refuses a non-empty database without `force`, reads the object once to verify its sha256
before anything touches the database, then streams it again (same version) through gunzip into
`psql --single-transaction`; a second mismatch kills psql before it can commit.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, BinaryIO, cast

from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from tqdm import tqdm  # type: ignore[import-untyped]

from opscli.failures import ChecksumMismatchError, ConfigurationError, NotFoundError, RefusedError, ToolFailedError

SUFFIX = ".sql.gz"
INCOMING = ".incoming/"
META_SHA256 = "sha256"
META_DATABASE = "pg-database"
META_FORMAT = "dump-format"
META_RAW_BYTES = "uncompressed-bytes"
FORMAT = "plain-sql+gzip"
MIB = 1 << 20
DEFAULT_PART_MIB = 16
READ_CHUNK = 1 * MIB


def find_pg_tool(name: str, bin_dir: str | None = None) -> str:
    """A PostgreSQL client program: from --pg-bin-dir, PATH, or Debian's versioned directories (newest)."""
    if bin_dir:
        candidate = os.path.join(bin_dir, name)
        if os.access(candidate, os.X_OK):
            return candidate
        raise ConfigurationError(f"{candidate} is not an executable {name}")
    # Debian keeps each major version's programs apart; take the newest
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(path.split("/")[4]))
    found = shutil.which(name) or (debian[-1] if debian else None)
    if found is None:
        raise ConfigurationError(f"{name} is not installed: install the PostgreSQL client or pass --pg-bin-dir")
    return found


@dataclass(frozen=True)
class Database:
    """Where the database is; unset fields fall back to libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD."""

    name: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    bin_dir: str | None = None

    def args(self) -> list[str]:
        args = ["--no-password"]
        if self.host:
            args += ["--host", self.host]
        if self.port:
            args += ["--port", str(self.port)]
        if self.user:
            args += ["--username", self.user]
        return args

    def describe(self) -> str:
        where = f"{self.host or os.environ.get('PGHOST', 'localhost')}:{self.port or os.environ.get('PGPORT', '5432')}"
        return f"database {self.name!r} on {where}"


class _StderrTail:
    """Keeps the last lines a child process writes to stderr, read on a thread so the pipe never fills."""

    def __init__(self, stream: IO[bytes], keep: int = 20) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._lines.append(line.decode(errors="replace").rstrip())

    def text(self) -> str:
        self._thread.join(timeout=5)
        return " | ".join(line for line in self._lines if line) or "no error output"


class CompressedDump:
    """File-like: what `read(n)` returns is the gzip of the process's stdout, hashed as it leaves."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: _StderrTail, level: int, progress: tqdm[Any]) -> None:
        assert process.stdout is not None
        self._process = process
        self._source = process.stdout
        self._stderr = stderr
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
        self._buffer = bytearray()
        self._finished = False
        self._progress = progress
        self.sha256 = hashlib.sha256()
        self.compressed_bytes = 0
        self.raw_bytes = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("CompressedDump is read in bounded pieces only")
        while len(self._buffer) < size and not self._finished:
            chunk = self._source.read(READ_CHUNK)
            if chunk:
                self.raw_bytes += len(chunk)
                self._progress.update(len(chunk))
                self._buffer += self._compressor.compress(chunk)
            else:
                self._buffer += self._compressor.flush()
                self._finished = True
                # a failed dump must never be completed as an upload: raising here aborts the multipart upload
                if self._process.wait() != 0:
                    raise ToolFailedError(f"pg_dump failed (exit {self._process.returncode}): {self._stderr.text()}")
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.sha256.update(piece)
        self.compressed_bytes += len(piece)
        return piece


@dataclass(frozen=True)
class BackupResult:
    bucket: str
    key: str
    sha256: str
    compressed_bytes: int
    raw_bytes: int
    seconds: float


def backup_key(database: str, moment: datetime) -> str:
    return f"{database}/{moment:%Y%m%dT%H%M%SZ}{SUFFIX}"


def backup_postgres(
    client: Minio,
    bucket: str,
    database: Database,
    *,
    part_size_mib: int = DEFAULT_PART_MIB,
    compression_level: int = 6,
    show_progress: bool | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> BackupResult:
    if not client.bucket_exists(bucket):
        raise NotFoundError(f"backup bucket {bucket!r} does not exist (create it with 'sync-buckets')")
    if not 5 <= part_size_mib <= 5120:
        raise ConfigurationError(f"part size {part_size_mib} MiB is outside S3's 5-5120 MiB")
    pg_dump = find_pg_tool("pg_dump", database.bin_dir)
    started = time.monotonic()
    key = backup_key(database.name, now())
    incoming = INCOMING + key
    # --clean --if-exists: the same dump restores into an empty database or over an older copy (--force)
    command = [pg_dump, *database.args(), "--format=plain", "--clean", "--if-exists", "--dbname", database.name]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = _StderrTail(process.stderr)
    metadata: dict[str, str | list[str] | tuple[str]] = {META_DATABASE: database.name, META_FORMAT: FORMAT}
    with tqdm(desc=f"dump {database.name}", unit="B", unit_scale=True, unit_divisor=1024, disable=_no_bar(show_progress)) as bar:
        stream = CompressedDump(process, stderr, compression_level, bar)
        try:
            uploaded = client.put_object(
                bucket, incoming, cast(BinaryIO, stream), length=-1, part_size=part_size_mib * MIB,
                content_type="application/gzip", metadata=metadata, num_parallel_uploads=1,  # one part in memory
            )
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    metadata |= {META_SHA256: stream.sha256.hexdigest(), META_RAW_BYTES: str(stream.raw_bytes)}
    client.copy_object(
        bucket, key, CopySource(bucket, incoming, version_id=uploaded.version_id),
        metadata=metadata, metadata_directive=REPLACE,
    )
    # removing the exact version leaves no delete marker behind on a versioned bucket
    client.remove_object(bucket, incoming, version_id=uploaded.version_id)
    return BackupResult(
        bucket, key, stream.sha256.hexdigest(), stream.compressed_bytes, stream.raw_bytes, time.monotonic() - started
    )


@dataclass(frozen=True)
class StoredBackup:
    key: str
    size: int
    modified: datetime | None
    sha256: str | None
    version_id: str | None
    etag: str | None


def describe_backup(client: Minio, bucket: str, key: str) -> StoredBackup:
    stat = client.stat_object(bucket, key)
    sha256 = stat.metadata.get(f"x-amz-meta-{META_SHA256}") if stat.metadata else None
    return StoredBackup(key, stat.size or 0, stat.last_modified, sha256, stat.version_id, stat.etag)


def list_backups(client: Minio, bucket: str, database: str | None = None, limit: int = 50) -> list[StoredBackup]:
    """Newest first; each with its recorded sha256 (None: not a complete backup of this tool)."""
    if not client.bucket_exists(bucket):
        raise NotFoundError(f"backup bucket {bucket!r} does not exist (create it with 'sync-buckets')")
    prefix = f"{database}/" if database else None
    keys = [
        item for item in client.list_objects(bucket, prefix=prefix, recursive=True)
        if item.object_name and item.object_name.endswith(SUFFIX) and not item.object_name.startswith(INCOMING)
    ]
    keys.sort(key=lambda item: item.object_name or "", reverse=True)
    return [describe_backup(client, bucket, item.object_name or "") for item in keys[:limit]]


def _chunks(client: Minio, bucket: str, backup: StoredBackup) -> Iterator[bytes]:
    response = client.get_object(bucket, backup.key, version_id=backup.version_id)
    try:
        yield from response.stream(READ_CHUNK)
    finally:
        response.close()
        response.release_conn()


def verify_backup(client: Minio, bucket: str, backup: StoredBackup, show_progress: bool | None = None) -> str:
    """Read the whole object and compare its sha256 with the recorded one; returns it."""
    if not backup.sha256:
        raise ChecksumMismatchError(
            f"backup {backup.key!r} has no recorded sha256: it is incomplete or was not made by 'backup-postgres'; nothing was restored"
        )
    digest = hashlib.sha256()
    with tqdm(desc="verify", total=backup.size, unit="B", unit_scale=True, unit_divisor=1024, disable=_no_bar(show_progress)) as bar:
        for chunk in _chunks(client, bucket, backup):
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() != backup.sha256:
        raise ChecksumMismatchError(
            f"backup {backup.key!r} is corrupt: its sha256 is {digest.hexdigest()}, the recorded one {backup.sha256}; nothing was restored"
        )
    return digest.hexdigest()


_USER_RELATIONS = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
    "AND n.nspname NOT LIKE 'pg\\_temp%'"
)


def user_relation_count(database: Database) -> int:
    psql = find_pg_tool("psql", database.bin_dir)
    result = subprocess.run(
        [psql, *database.args(), "--dbname", database.name, "--tuples-only", "--no-align", "--command", _USER_RELATIONS],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no error output"]
        raise ToolFailedError(f"cannot inspect {database.describe()}: {lines[-1]}")
    return int(result.stdout.strip() or 0)


def restore_postgres(
    client: Minio,
    bucket: str,
    database: Database,
    key: str | None = None,
    *,
    force: bool = False,
    show_progress: bool | None = None,
) -> StoredBackup:
    """Restore `key` (default: the newest backup of the database) into the database."""
    if key is None:
        newest = list_backups(client, bucket, database.name, limit=1)
        if not newest:
            raise NotFoundError(f"no backups of database {database.name!r} in bucket {bucket!r}")
        key = newest[0].key
    backup = describe_backup(client, bucket, key)
    relations = user_relation_count(database)
    if relations and not force:
        raise RefusedError(
            f"{database.describe()} is not empty ({relations} tables, views or sequences): pass --force to restore over it"
        )
    verify_backup(client, bucket, backup, show_progress)

    psql = find_pg_tool("psql", database.bin_dir)
    environment = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    process = subprocess.Popen(
        [psql, *database.args(), "--dbname", database.name, "--single-transaction", "--quiet",
         "--set", "ON_ERROR_STOP=1", "--file", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment,
    )
    assert process.stdin is not None and process.stderr is not None
    stderr = _StderrTail(process.stderr)
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    digest = hashlib.sha256()
    try:
        with tqdm(desc=f"restore {database.name}", total=backup.size, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=_no_bar(show_progress)) as bar:
            for chunk in _chunks(client, bucket, backup):
                digest.update(chunk)
                bar.update(len(chunk))
                for piece in _inflate(decompressor, chunk):
                    process.stdin.write(piece)
            process.stdin.write(decompressor.flush())
        if digest.hexdigest() != backup.sha256:
            # the object changed between the two reads: psql has not seen the end, so it has not committed
            process.kill()
            process.wait()
            raise ChecksumMismatchError(f"backup {key!r} changed while it was restored; the transaction was rolled back")
        process.stdin.close()
    except BrokenPipeError:
        pass
    finally:
        if process.poll() is None and process.stdin.closed is False:
            process.kill()
    if process.wait() != 0:
        raise ToolFailedError(f"psql failed restoring {key!r} (the transaction was rolled back): {stderr.text()}")
    return backup


def _inflate(decompressor: Any, chunk: bytes, limit: int = 4 * MIB) -> Iterator[bytes]:
    """Decompressed pieces of at most `limit` bytes: a highly compressible dump never balloons in memory."""
    piece = decompressor.decompress(chunk, limit)
    yield piece
    while decompressor.unconsumed_tail:
        yield decompressor.decompress(decompressor.unconsumed_tail, limit)


def _no_bar(show_progress: bool | None) -> bool | None:
    """tqdm's `disable`: None hides the bar when stderr is not a terminal (logs, cron, containers)."""
    return None if show_progress is None else not show_progress
