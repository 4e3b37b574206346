"""The sub-commands for copies offsite and recovery: mirror, mirror-schedule, export-config,
import-config, drill, and purge (deletion on request).

Registered by cli.py beside the others; each takes the same `Context` (connection, stack, output).
The target of a mirror is a second connection: flags `--target-*`, else the environment
(OPS_TARGET_ENDPOINT, OPS_TARGET_ACCESS_KEY, OPS_TARGET_SECRET_KEY), else the stack's
`replication` settings for everything but the credentials, which the stack keeps as secrets.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from minio.helpers import check_bucket_name

from opscli import configdoc, drill, iam, mirror, pgbackup, purge
from opscli.catalogue import human_size
from opscli.connection import Connection, explained, fallback_endpoints, normalise_url
from opscli.failures import ConfigurationError, ExitCode, NotFoundError, RefusedError
from opscli.scheduled import METRICS_LISTEN_HELP

if TYPE_CHECKING:
    from infra.config.replication import ReplicationSettings
    from opscli.cli import Context

ENV_TARGET_ENDPOINT = "OPS_TARGET_ENDPOINT"
ENV_TARGET_ACCESS_KEY = "OPS_TARGET_ACCESS_KEY"
ENV_TARGET_SECRET_KEY = "OPS_TARGET_SECRET_KEY"
ENV_MIRROR_SECRET_KEY = "OPS_MIRROR_SERVICE_SECRET_KEY"
MIRROR_SECRET_OUTPUT = "mirrorServiceSecretKey"
DRILL_STEPS = ("postgres", "mirror", "config")

CommandFactory = Callable[..., argparse.ArgumentParser]


def _target_options(parser: argparse.ArgumentParser, with_prefix: bool = True) -> None:
    group = parser.add_argument_group(
        "mirror target (flags, then OPS_TARGET_*, then the stack's replication settings; "
        f"the secret key only from {ENV_TARGET_SECRET_KEY})"
    )
    group.add_argument("--target-endpoint", help=f"S3 endpoint of the copies, e.g. https://s3.offsite.example.com (or {ENV_TARGET_ENDPOINT})")
    group.add_argument("--target-access-key", help=f"access key there (or {ENV_TARGET_ACCESS_KEY})")
    group.add_argument("--target-ca-file", help="CA certificate that signed the target's TLS certificate")
    group.add_argument("--target-insecure", action="store_true", help="do not verify the target's TLS certificate")
    if with_prefix:
        group.add_argument("--target-bucket-prefix", help="the copy of bucket B is bucket PREFIX+B there (default: replication.bucketPrefix, else none)")


def add_parsers(command: CommandFactory, database_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """The sub-commands of this module, on cli.py's parser (`command` adds one with the common options)."""
    copy = command(
        "mirror", "copy buckets to another S3 endpoint: only new or changed objects, streamed, resumable",
        "Without BUCKET: the stack's replication.buckets, else its whole catalogue. Deletions reach the target only with "
        "--delete. For a MinIO target, MinIO's own bucket replication may fit better (README, 'Offsite copies')",
    )
    _mirror_options(copy)
    copy.add_argument("--dry-run", action="store_true", help="show the plan and copy nothing")

    scheduled = command("mirror-schedule", "run mirror on a cron schedule, forever (the stack's mirror service)")
    _mirror_options(scheduled)
    scheduled.add_argument("--schedule", required=True, help="cron schedule in UTC, e.g. '0 3 * * *'")
    scheduled.add_argument(
        "--heartbeat", type=Path, default=Path(tempfile.gettempdir()) / "ops-mirror-heartbeat",
        help="file touched at least every 30 s while the service is alive (the container's healthcheck reads it)",
    )
    scheduled.add_argument("--metrics-listen", metavar="ADDRESS:PORT", help=METRICS_LISTEN_HELP)

    export = command(
        "export-config", "write the cluster's configuration (IAM, bucket settings; never a secret key) to a file and the backup bucket",
        f"One versioned JSON document with its sha256; the copy in the backup bucket is {configdoc.EXPORT_PREFIX}<UTC time>.json",
    )
    export.add_argument("--out", type=Path, help="new file for the document, mode 0600 (default: ./config-export-<UTC time>.json)")
    export.add_argument("--bucket", help="backup bucket for the copy (default: the stack's backup.bucket, else backups-postgresql)")
    export.add_argument("--no-bucket-copy", action="store_true", help="write the file only")
    export.add_argument("--s3-only", action="store_true", help="bucket settings only, for an S3 server that is not MinIO (no IAM, no quotas)")
    export.set_defaults(database=None)  # the backup bucket is found as the backup commands find it

    load = command(
        "import-config", "apply a configuration export to a fresh or rebuilt cluster (plan first; --dry-run changes nothing)",
        "Users and service accounts the cluster lacks get new secret keys, written to --secrets-file; the stack's own users "
        "are left to bootstrap",
    )
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="an export-config document")
    source.add_argument("--latest", action="store_true", help="the newest export in the backup bucket")
    load.add_argument("--bucket", help="backup bucket for --latest (default: the stack's backup.bucket)")
    load.add_argument("--dry-run", action="store_true", help="show the plan and change nothing")
    load.add_argument("--secrets-file", type=Path, help="new 0600 file for the new secret keys (needed when users or keys are created)")
    load.add_argument("--s3-only", action="store_true", help="apply bucket settings only (the target is not MinIO)")
    load.set_defaults(database=None)

    rehearse = command(
        "drill", "recovery drill: restore the newest PostgreSQL backup into a scratch database, compare a sample of mirrored "
        "objects by sha256, read the newest configuration export back; each step timed",
        "Exit 0 when every step run passed; otherwise the exit code of the first failed step (8: checksum, 6: missing...). "
        "A step without its settings is skipped and says so",
    )
    database_options(rehearse)
    _target_options(rehearse)
    rehearse.add_argument("--steps", default=",".join(DRILL_STEPS), help=f"comma-separated, of {', '.join(DRILL_STEPS)} (default: all)")
    rehearse.add_argument("--mirror-bucket", action="append", dest="mirror_buckets", metavar="BUCKET",
                          help="a mirrored bucket to sample (repeatable; default: the stack's replication buckets)")
    rehearse.add_argument("--sample", type=int, default=20, help="objects sampled per mirrored bucket (default 20)")
    rehearse.add_argument("--min-age-minutes", type=int, default=0,
                          help="sample only objects older than this: newer ones may not be mirrored yet (default 0)")
    rehearse.add_argument("--keep-scratch", action="store_true", help="keep the scratch database for inspection")
    rehearse.add_argument("--json", action="store_true", help="machine-readable output")

    erase = command(
        "purge", "deletion on request: remove every version and delete marker of the named objects or of a prefix",
        "One audit line per object (JSON after 'audit '); exit 6 when nothing matched, 1 when anything is left afterwards "
        "(an object-lock retention, say)",
    )
    erase.add_argument("bucket", help="bucket holding the objects")
    erase.add_argument("keys", nargs="*", metavar="KEY", help="exact object keys")
    erase.add_argument("--prefix", help="every object under this (non-empty) prefix")
    erase.add_argument("--dry-run", action="store_true", help="list what would be removed, with the audit lines marked, and remove nothing")
    erase.add_argument("--reason", default="", help="why, for the audit lines (a ticket or request id)")
    erase.add_argument("--audit-log", type=Path, help="also append the audit lines to this file")
    erase.add_argument("--also-target", action="store_true", help="purge the mirror target's copy too (bucket PREFIX+BUCKET there)")
    _target_options(erase)


def _mirror_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("buckets", nargs="*", metavar="BUCKET",
                        help="buckets to mirror, each BUCKET (copied to PREFIX+BUCKET) or SOURCE:TARGET (default: see above)")
    _target_options(parser)
    parser.add_argument("--delete", action="store_true", help="remove from the target what was deleted here (on a versioned target: a delete marker)")
    parser.add_argument("--all-versions", action="store_true", help="also copy noncurrent versions, where both buckets are versioned")
    parser.add_argument("--part-size-mib", type=int, default=mirror.DEFAULT_PART_MIB, help="multipart part size; bounds memory (default 16)")


# -- settings ------------------------------------------------------------------------------------


def replication(ctx: Context) -> ReplicationSettings | None:
    """The stack's replication settings; None without --stack or when the stack sets none."""
    if not ctx.args.stack:
        return None
    from infra.config import ConfigError, read_stack_file, split_config
    from infra.secrets import SECRET_CONFIG_KEYS

    try:
        values, encrypted = read_stack_file(ctx.stack_file())
        config, _ = split_config(ctx.args.stack, values, SECRET_CONFIG_KEYS, encrypted)
    except ConfigError as error:
        raise ConfigurationError(str(error)) from None
    return config.replication


def target_connection(ctx: Context, required: bool = True) -> Connection | None:
    args, environ = ctx.args, ctx.environ
    settings = replication(ctx)
    endpoint = args.target_endpoint or environ.get(ENV_TARGET_ENDPOINT) or (settings.target if settings else None)
    access_key = args.target_access_key or environ.get(ENV_TARGET_ACCESS_KEY)
    secret_key = environ.get(ENV_TARGET_SECRET_KEY)
    missing = [
        name for name, value in (
            (f"endpoint (--target-endpoint, {ENV_TARGET_ENDPOINT} or the stack's replication.target)", endpoint),
            (f"access key (--target-access-key or {ENV_TARGET_ACCESS_KEY})", access_key),
            (f"secret key ({ENV_TARGET_SECRET_KEY})", secret_key),
        ) if not value
    ]
    if missing:
        if not required and not endpoint:
            return None
        raise ConfigurationError(f"no mirror target settings for: {'; '.join(missing)}")
    if args.target_ca_file is not None and not Path(args.target_ca_file).is_file():
        raise ConfigurationError(f"--target-ca-file {args.target_ca_file}: no such file")
    return Connection(
        url=normalise_url(str(endpoint)), access_key=str(access_key), secret_key=str(secret_key),
        verify_tls=not args.target_insecure, ca_file=args.target_ca_file, source="mirror target",
    )


def _bucket_pairs(ctx: Context, named: list[str] | None) -> list[tuple[str, str]]:
    settings = replication(ctx)
    prefix = getattr(ctx.args, "target_bucket_prefix", None)
    if prefix is None:
        prefix = settings.bucket_prefix if settings else ""
    if named:
        # SOURCE:TARGET names the copy's bucket itself (':' is never part of a bucket name): copying back after a loss
        pairs = [(name.split(":", 1)[0], name.split(":", 1)[1]) if ":" in name else (name, f"{prefix}{name}") for name in named]
    elif settings is not None:
        pairs = [(bucket, f"{prefix}{bucket}") for bucket in settings.bucket_names(ctx.catalogue())]
    elif ctx.args.stack:
        pairs = [(bucket, f"{prefix}{bucket}") for bucket in sorted(ctx.catalogue())]
    else:
        raise ConfigurationError("name the buckets to mirror (BUCKET ...), or the stack whose replication settings or catalogue to use: --stack S")
    for name in {name for pair in pairs for name in pair}:
        try:
            check_bucket_name(name, strict=True)
        except ValueError:
            raise ConfigurationError(f"{name!r} is not a bucket name (S3 naming rules: 3-63 lower-case letters, digits, '.' and '-')") from None
    return pairs


def _side(connection: Connection) -> mirror.Side:
    return mirror.Side(connection.s3(), connection.url, lambda doing: explained(connection, doing))


# -- mirror ---------------------------------------------------------------------------------------


def _mirror_once(ctx: Context, source: Connection, target: Connection, pairs: list[tuple[str, str]], report: Callable[[str], None]) -> mirror.MirrorResult:
    source_side, target_side = _side(source), _side(target)
    plan = mirror.plan_mirror(source_side, target_side, pairs, deletes=ctx.args.delete, all_versions=ctx.args.all_versions)
    return mirror.apply_mirror(source_side, target_side, plan, report, part_size_mib=ctx.args.part_size_mib, show_progress=ctx.args.progress)


def _answering_source(ctx: Context, pairs: list[tuple[str, str]]) -> Connection:
    """The source node to mirror from: OPS_ENDPOINT's, or the first other node that answers."""
    if not pairs:
        return ctx.connection()
    return ctx.answering_node(lambda node: node.s3().bucket_exists(pairs[0][0]))


def cmd_mirror(ctx: Context) -> int:
    ctx.connection()
    target = target_connection(ctx)
    assert target is not None
    pairs = _bucket_pairs(ctx, ctx.args.buckets)
    source = _answering_source(ctx, pairs)
    plan = mirror.plan_mirror(_side(source), _side(target), pairs, deletes=ctx.args.delete, all_versions=ctx.args.all_versions)
    ctx.out(f"mirror {source.url} -> {target.url}:")
    for line in plan.lines():
        ctx.out(f"  {line}")
    if ctx.args.dry_run:
        ctx.out("dry run: nothing was copied or removed")
        return ExitCode.OK
    result = mirror.apply_mirror(
        _side(source), _side(target), plan, lambda line: ctx.out(f"  {line}"),
        part_size_mib=ctx.args.part_size_mib, show_progress=ctx.args.progress,
    )
    ctx.out(result.describe())
    return ExitCode.OK


def cmd_mirror_schedule(ctx: Context) -> int:
    from infra.cron import CronSchedule

    from opscli.scheduled import log, run_schedule, start_metrics

    try:
        schedule = CronSchedule.parse(ctx.args.schedule)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    # settle every setting now, not at the first run hours later
    ctx.connection()
    fallback_endpoints(ctx.environ)
    target = target_connection(ctx)
    assert target is not None
    pairs = _bucket_pairs(ctx, ctx.args.buckets)
    if not 5 <= ctx.args.part_size_mib <= 5120:
        raise ConfigurationError(f"part size {ctx.args.part_size_mib} MiB is outside S3's 5-5120 MiB")

    def skips_only(line: str) -> None:
        # the summary and what was skipped: a line per copied object would flood the service log
        if line.startswith("skipped"):
            log(line)

    def run() -> str:
        return _mirror_once(ctx, _answering_source(ctx, pairs), target, pairs, skips_only).describe()

    metrics = start_metrics(ctx.args.metrics_listen, schedule, ctx.args.heartbeat)
    failures = run_schedule(schedule, run, ctx.args.heartbeat, job="mirror", metrics=metrics)
    return ExitCode.OK if failures == 0 else ExitCode.UNEXPECTED


# -- configuration export and import ---------------------------------------------------------------


def _new_file(path: Path) -> IO[str]:
    try:
        return iam.open_secret_file(path)  # 0600, never overwritten
    except RefusedError:
        raise RefusedError(f"{path} already exists: choose a new file, an existing one is never overwritten") from None


def _backup_bucket(ctx: Context) -> str:
    return ctx.backup_defaults()[0]


def export_now(ctx: Context, now: datetime) -> tuple[dict[str, Any], str]:
    connection = ctx.connection()
    with explained(connection, "read the configuration"):
        admin = None if ctx.args.s3_only else connection.admin()
        document = configdoc.export_document(connection.s3(), admin, connection.url, now)
    return document, json.dumps(document, indent=2, sort_keys=True) + "\n"


def cmd_export_config(ctx: Context) -> int:
    now = datetime.now(timezone.utc)
    out: Path = ctx.args.out or Path(f"config-export-{now:%Y%m%dT%H%M%SZ}.json")
    handle = _new_file(out)  # before anything is read: the document must have somewhere to go
    try:
        document, text = export_now(ctx, now)
    except BaseException:
        handle.close()
        out.unlink()
        raise
    with handle:
        handle.write(text)
    ctx.out(f"configuration written to {out} (mode 0600): {configdoc.describe(document)}; sha256 {document['sha256']}")
    if not ctx.args.no_bucket_copy:
        bucket, key = _backup_bucket(ctx), configdoc.export_key(now)
        connection = ctx.connection()
        with explained(connection, f"write the configuration export to bucket {bucket}"):
            client = connection.s3()
            if not client.bucket_exists(bucket):
                raise NotFoundError(f"backup bucket {bucket!r} does not exist (create it with 'sync-buckets'); the file was written")
            data = text.encode()
            client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/json",
                              metadata={pgbackup.META_SHA256: document["sha256"]})
        ctx.out(f"and to s3://{bucket}/{key}")
    return ExitCode.OK


def _read_latest(ctx: Context) -> tuple[str, str]:
    bucket = ctx.args.bucket or _backup_bucket(ctx)
    connection = ctx.connection()
    with explained(connection, f"read the newest configuration export in bucket {bucket}"):
        client = connection.s3()
        key = drill.latest_export(client, bucket)
        if key is None:
            raise NotFoundError(f"no configuration export in bucket {bucket!r}")
        response = client.get_object(bucket, key)
        try:
            return response.read().decode(), f"s3://{bucket}/{key}"
        finally:
            response.close()
            response.release_conn()


def cmd_import_config(ctx: Context) -> int:
    from opscli.cli import stack_users

    args = ctx.args
    if args.latest:
        text, where = _read_latest(ctx)
    else:
        try:
            text, where = args.file.read_text(), str(args.file)
        except OSError as error:
            raise ConfigurationError(f"cannot read {args.file}: {error.strerror}") from None
    document = configdoc.read_document(text, where)
    ctx.out(f"{where}: {configdoc.describe(document)}; sha256 verified")
    connection = ctx.connection()
    own_users = [user.name for user in stack_users()] + [mirror.MIRROR_SERVICE_USER]
    with explained(connection, "read the cluster's configuration"):
        importer = configdoc.plan_import(connection.s3(), None if args.s3_only else connection.admin, document, own_users)
    plan = importer.plan
    ctx.out(f"plan for {connection.url} ({len(plan.changes)} change(s)):")
    for line in plan.lines():
        ctx.out(f"  {line}")
    if args.dry_run:
        ctx.out("dry run: nothing was changed")
        return ExitCode.OK
    if plan.needs_secrets_file and args.secrets_file is None:
        raise ConfigurationError("the plan creates users or service accounts: name a new file for their secret keys with --secrets-file F")
    secrets_out = _new_file(args.secrets_file) if plan.needs_secrets_file else None
    try:
        with explained(connection, "apply the configuration"):
            count = configdoc.apply_import(importer, lambda line: ctx.out(f"  {line}"), secrets_out)
    finally:
        if secrets_out is not None:
            secrets_out.close()
    ctx.out("no changes: the cluster holds the document's settings" if count == 0 else f"applied {count} change(s)")
    if secrets_out is not None:
        ctx.out(f"new secret keys written to {args.secrets_file} (mode 0600): hand each to its owner, then delete the file")
    return ExitCode.OK


# -- drill ----------------------------------------------------------------------------------------


def cmd_drill(ctx: Context) -> int:
    args = ctx.args
    chosen = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = [step for step in chosen if step not in DRILL_STEPS]
    if unknown or not chosen:
        raise ConfigurationError(f"--steps {args.steps!r}: choose from {', '.join(DRILL_STEPS)}")
    asked = args.steps != ",".join(DRILL_STEPS)
    now = datetime.now(timezone.utc)
    bucket = _backup_bucket(ctx)
    connection = ctx.connection()

    def guarded(doing: str, step: Callable[[], str], on: Connection = connection) -> Callable[[], str]:
        def run() -> str:
            with explained(on, doing):
                return step()
        return run

    def unavailable(why: str) -> Callable[[], str] | str:
        if not asked:
            return why
        def refuse() -> str:
            raise ConfigurationError(why)
        return refuse

    steps: dict[str, Callable[[], str] | str] = {}
    database = ctx.database(required=False)
    if database is None:
        steps["postgres"] = unavailable("no database: --database NAME (or PGDATABASE, or --stack)")
    else:
        scratch_on = database
        steps["postgres"] = guarded(
            f"restore the newest backup from bucket {bucket}",
            lambda: drill.postgres_step(connection.s3(), bucket, scratch_on, now, args.keep_scratch),
        )
    target = target_connection(ctx, required=False)
    if target is None:
        steps["mirror"] = unavailable("no mirror target: --target-endpoint (or OPS_TARGET_*, or the stack's replication)")
    else:
        pairs = _bucket_pairs(ctx, args.mirror_buckets)
        source_side, target_side = _side(connection), _side(target)
        steps["mirror"] = lambda: drill.mirror_step(
            source_side, target_side, pairs, args.sample, min_age=timedelta(minutes=args.min_age_minutes), now=now
        )
    steps["config"] = guarded(f"read the newest configuration export in bucket {bucket}", lambda: drill.config_step(connection.s3(), bucket))
    report = drill.DrillReport([drill.run_step(name, steps[name]) for name in DRILL_STEPS if name in chosen])
    if args.json:
        ctx.out(json.dumps({"steps": [s.as_dict() for s in report.steps], "seconds": round(report.seconds, 3),
                            "passed": not report.failed}, indent=2))
    else:
        ctx.out(f"drill of {connection.url} at {now:%Y-%m-%d %H:%M:%S}Z:")
        for line in report.lines():
            ctx.out(f"  {line}")
    code = report.exit_code()
    if code != ExitCode.OK:
        print(f"error: the drill failed: {report.failed[0].name}: {report.failed[0].detail}", file=sys.stderr)
    return code


# -- purge ----------------------------------------------------------------------------------------


def _audit_log(path: Path) -> IO[str]:
    """Appended to; created readable by its owner only, since the keys it names may themselves be personal data."""
    try:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a")
    except OSError as error:
        raise ConfigurationError(f"cannot open the audit log {path}: {error.strerror}") from None


def cmd_purge(ctx: Context) -> int:
    args = ctx.args
    if not args.keys and not args.prefix:
        raise ConfigurationError("name the objects to purge (KEY ...) or a non-empty --prefix; a whole bucket is never purged by accident")
    log: IO[str] | None = _audit_log(args.audit_log) if args.audit_log else None

    def audit(line: str) -> None:
        ctx.out(line)
        if log is not None:
            log.write(line + "\n")
            log.flush()

    sides = [(ctx.connection(), args.bucket)]
    if args.also_target:
        target = target_connection(ctx)
        assert target is not None
        sides.append((target, _bucket_pairs(ctx, [args.bucket])[0][1]))
    found = 0
    try:
        for connection, bucket in sides:
            with explained(connection, f"purge objects in bucket {bucket}"):
                result = purge.purge(
                    connection.s3(), bucket, keys=args.keys, prefix=args.prefix, dry_run=args.dry_run,
                    by=connection.access_key, endpoint=connection.url, reason=args.reason, audit=audit,
                )
            found += result.objects
            done = "would remove" if args.dry_run else "removed"
            ctx.out(
                f"{connection.url} {bucket}: {done} {result.versions} version(s) and {result.delete_markers} delete marker(s) "
                f"of {result.objects} object(s), {human_size(result.bytes)}"
            )
    finally:
        if log is not None:
            log.close()
    if found == 0:
        raise NotFoundError(f"nothing matched in bucket {args.bucket}: no version or delete marker of " + (
            ", ".join(args.keys) if args.keys else f"prefix {args.prefix!r}"))
    if args.dry_run:
        ctx.out("dry run: nothing was removed")
    return ExitCode.OK


# -- bootstrap's part ------------------------------------------------------------------------------


def bootstrap_mirror_service(ctx: Context, ops: Connection, policy_dir: Path) -> None:
    """With the stack's replication set: the mirror-service user, read-only on the mirrored buckets."""
    settings = replication(ctx)
    if settings is None:
        return
    secret = ctx.environ.get(ENV_MIRROR_SECRET_KEY) or ctx.outputs().get(MIRROR_SECRET_OUTPUT)
    if not secret:
        raise ConfigurationError(
            f"the stack mirrors offsite but has no secret for {mirror.MIRROR_SERVICE_USER}: run 'pulumi up' "
            f"(output {MIRROR_SECRET_OUTPUT}) or set {ENV_MIRROR_SECRET_KEY}"
        )
    buckets = settings.bucket_names(ctx.catalogue())
    with explained(ops, f"create the {mirror.MIRROR_SERVICE_USER} user"):
        ctx.out(mirror.ensure_mirror_service_user(ops.admin(), policy_dir, buckets, str(secret)))

