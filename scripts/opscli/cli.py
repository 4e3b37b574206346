"""scripts/ops: the argument parser and one function per sub-command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from opscli import catalogue, iam, pgbackup, recovery_commands, scheduled
from opscli.connection import (
    ENV_ACCESS_KEY,
    ENV_ADMIN_ENDPOINT,
    ENV_ENDPOINT,
    ENV_FALLBACK_ENDPOINTS,
    ENV_SECRET_KEY,
    OPS_ADMIN_SECRET_OUTPUT,
    OPS_ADMIN_USER,
    Connection,
    explained,
    fallback_endpoints,
    first_answering,
    resolve_connection,
    stack_outputs,
)
from opscli.failures import EXIT_CODE_MEANINGS, AccessDeniedError, ConfigurationError, ExitCode, OpsError, RefusedError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = PROJECT_ROOT / "policies"
DEFAULT_BACKUP_BUCKET = "backups-postgresql"
ENV_BACKUP_SECRET_KEY = "OPS_BACKUP_SERVICE_SECRET_KEY"
ENV_ROOT_ACCESS_KEY = "OPS_ROOT_ACCESS_KEY"
ENV_ROOT_SECRET_KEY = "OPS_ROOT_SECRET_KEY"

EPILOG = "exit codes:\n" + "\n".join(f"  {code.value:<3} {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()) + f"""

connection (first source that has each setting wins):
  flags --endpoint/--admin-endpoint/--access-key, then {ENV_ENDPOINT}/{ENV_ADMIN_ENDPOINT}/{ENV_ACCESS_KEY}/{ENV_SECRET_KEY},
  then the stack's outputs (--stack S runs 'pulumi stack output --json --show-secrets', or --outputs-file F):
  endpoints.s3, endpoints.minioAdmin for admin calls (else the S3 endpoint), and the CLI's own user
  {OPS_ADMIN_USER} with {OPS_ADMIN_SECRET_OUTPUT}. Root signs in only in 'bootstrap', to create {OPS_ADMIN_USER}.
  The secret key is never a flag. PostgreSQL: flags, else libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE.
  backup-postgres, backup-schedule, mirror and mirror-schedule: {ENV_FALLBACK_ENDPOINTS} (comma-separated) names
  the cluster's other nodes, tried in order when the endpoint does not answer.
"""


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and stack")
    group.add_argument("--stack", help="stack name (dev, staging, prod...): its catalogue, and its outputs for the connection")
    group.add_argument("--config-file", type=Path, help="stack file for the catalogue (default: Pulumi.<stack>.yaml)")
    group.add_argument("--outputs-file", type=Path, help="JSON of 'pulumi stack output --json --show-secrets' instead of running pulumi")
    group.add_argument(
        "--endpoint",
        help=f"S3 endpoint: https://host:port (TLS) or http://host:port (plain; host:port alone means the same), "
        f"e.g. https://storage.example.com:9443 (or {ENV_ENDPOINT})",
    )
    group.add_argument(
        "--admin-endpoint",
        help=f"MinIO admin API URL when it is not the S3 endpoint, e.g. https://127.0.0.1:9444 (or {ENV_ADMIN_ENDPOINT}; "
        "default: the stack's endpoints.minioAdmin, else the S3 endpoint)",
    )
    group.add_argument("--access-key", help=f"access key (or {ENV_ACCESS_KEY}); the secret key comes from {ENV_SECRET_KEY}")
    group.add_argument("--ca-file", help="CA certificate that signed the endpoint's TLS certificate")
    group.add_argument("--insecure", action="store_true", help="do not verify the endpoint's TLS certificate (dev stacks)")
    bars = group.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress bars")
    bars.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars (default: only on a terminal)")
    return common


def _database_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("PostgreSQL (libpq variables apply when a flag is absent)")
    group.add_argument("--database", help="database name (default: PGDATABASE, or the stack's backup.database)")
    group.add_argument("--pg-host", help="server host (default: PGHOST)")
    group.add_argument("--pg-port", type=int, help="server port (default: PGPORT or 5432)")
    group.add_argument("--pg-user", help="role to connect as (default: PGUSER); the password comes from PGPASSWORD or ~/.pgpass")
    group.add_argument("--pg-bin-dir", help="directory of pg_dump and psql (default: PATH, then /usr/lib/postgresql/<newest>/bin)")
    parser.add_argument("--bucket", help=f"backup bucket (default: the stack's backup.bucket, else {DEFAULT_BACKUP_BUCKET})")


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="scripts/ops",
        description="Operations on a deployed minio-platform stack: bucket catalogue, IAM policies and service "
        "accounts, PostgreSQL backup and restore, offsite mirror, configuration export and import, recovery drills, "
        "deletion on request. Uses the MinIO SDK; no 'mc' needed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        return commands.add_parser(
            name, parents=[common], help=summary, description=f"{summary}. {details}" if details else summary, epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    sync = command("sync-buckets", "make the cluster's buckets match the stack's bucket catalogue (plan first, idempotent)")
    sync.add_argument("--dry-run", action="store_true", help="show the plan and change nothing")
    sync.add_argument("--prune", action="store_true", help="also delete buckets missing from the catalogue; refuses any that hold objects")

    create = command("create-bucket", "create one bucket, optionally with a retention (lifecycle expiry)")
    create.add_argument("name", help="bucket name (S3 naming rules)")
    create.add_argument("--retention-days", type=int, help="objects expire this many days after creation")
    create.add_argument("--versioning", action="store_true", help="keep every version of every object")

    listing = command("list-buckets", "every bucket with its object count and size")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    install = command("install-policies", "install (create or update) the IAM policies from policies/*-policy.json")
    install.add_argument("names", nargs="*", help="policies to install (default: all)")

    account = command(
        "create-service-account",
        "create an access key of user sa-NAME, restricted to one policy; the secret goes to a new 0600 file",
    )
    account.add_argument("name", help="account name (letters, digits, '_' and '-', up to 32); its owner is user sa-NAME")
    account.add_argument("--policy", required=True, help="policy name, e.g. backup-service, readonly, admin")
    account.add_argument("--description", default="", help="free text stored with the account")
    secret_out = account.add_mutually_exclusive_group()
    secret_out.add_argument("--secret-file", type=Path, help="new file for the credentials, mode 0600 (default: ./NAME.env)")
    secret_out.add_argument("--print-secret", action="store_true", help="print the secret key once instead of writing a file")

    delete = command("delete-service-account", "delete an access key; its sa-NAME owner goes with its last key")
    delete.add_argument("access_key", metavar="ACCESS_KEY", help="access key of the service account")

    assign = command("assign-policy", "attach an installed policy to a user or group, or restrict a service account to it")
    assign.add_argument("policy", help="policy name")
    target = assign.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="MinIO user (access key of a user)")
    target.add_argument("--group", help="MinIO group")
    target.add_argument("--service-account", metavar="ACCESS_KEY", help="access key of a service account to restrict to the policy")

    bootstrap = command(
        "bootstrap",
        f"after a deploy: the {OPS_ADMIN_USER} user (with root, only if it cannot sign in), then as {OPS_ADMIN_USER}: "
        "install-policies, sync-buckets, the backup-service and metrics-reader users",
        "Their secrets come from the "
        f"stack outputs ({OPS_ADMIN_SECRET_OUTPUT}, backupServiceSecretKey, metricsReaderSecretKey) or OPS_ADMIN_SECRET_KEY, "
        f"{ENV_BACKUP_SECRET_KEY}, OPS_METRICS_READER_SECRET_KEY; root's from {ENV_ROOT_ACCESS_KEY}/{ENV_ROOT_SECRET_KEY} "
        "or minioRootUser/minioRootPassword",
    )
    bootstrap.add_argument("--dry-run", action="store_true", help="show the bucket plan and change nothing")

    backup = command("backup-postgres", "stream pg_dump through gzip into the backup bucket (sha256 recorded)")
    _database_options(backup)
    backup.add_argument("--part-size-mib", type=int, default=pgbackup.DEFAULT_PART_MIB, help="multipart part size; bounds memory (default 16)")
    backup.add_argument("--compression-level", type=int, choices=range(1, 10), default=6, metavar="1-9", help="gzip level (default 6)")

    restore = command("restore-postgres", "verify a backup's sha256, then restore it into a database")
    _database_options(restore)
    restore.add_argument("key", nargs="?", help="backup object key (default: the newest backup of the database)")
    restore.add_argument("--force", action="store_true", help="restore even though the database is not empty")

    backups = command("list-backups", "backups in the backup bucket, newest first, with their sha256")
    _database_options(backups)
    backups.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    backups.add_argument("--json", action="store_true", help="machine-readable output")

    schedule = command("backup-schedule", "run backup-postgres on a cron schedule, forever (the stack's backup service)")
    _database_options(schedule)
    schedule.add_argument("--schedule", required=True, help="cron schedule in UTC, e.g. '30 2 * * *'")
    schedule.add_argument(
        "--heartbeat", type=Path, default=Path(tempfile.gettempdir()) / "ops-backup-heartbeat",
        help="file touched at least every 30 s while the service is alive (the container's healthcheck reads it)",
    )
    schedule.add_argument("--metrics-listen", metavar="ADDRESS:PORT", help=scheduled.METRICS_LISTEN_HELP)
    schedule.add_argument("--part-size-mib", type=int, default=pgbackup.DEFAULT_PART_MIB)
    schedule.add_argument("--compression-level", type=int, choices=range(1, 10), default=6, metavar="1-9")
    # offsite copies, configuration export and import, recovery drills, deletion on request
    recovery_commands.add_parsers(command, _database_options)
    return parser


class Context:
    """What the sub-commands share: parsed arguments, and the connection and catalogue, resolved on first use."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], out: Callable[[str], None]) -> None:
        self.args = args
        self.environ = environ
        self.out = out
        self._outputs: dict[str, Any] | None = None
        self._connection: Connection | None = None

    def outputs(self) -> dict[str, Any]:
        if self._outputs is None:
            if self.args.stack and self.args.outputs_file is None:
                self.stack_file()  # an unknown stack is named with the real ones, before pulumi is asked
            self._outputs = stack_outputs(self.args.stack, self.args.outputs_file, PROJECT_ROOT)
        return self._outputs

    def stack_file(self) -> Path:
        """The stack's Pulumi.<stack>.yaml (or --config-file); a ConfigurationError naming the stacks there are."""
        from infra.config import StackFileError, stack_file

        try:
            return stack_file(self.args.stack, PROJECT_ROOT, self.args.config_file)
        except StackFileError as error:
            raise ConfigurationError(str(error)) from None

    def _resolve(self, needs_outputs: bool, signed_in_as: tuple[str, str, str] | None = None) -> Connection:
        args = self.args
        return resolve_connection(
            endpoint=args.endpoint,
            admin_endpoint=args.admin_endpoint,
            access_key=args.access_key,
            outputs=self.outputs() if needs_outputs else {},
            environ=self.environ,
            verify_tls=not args.insecure,
            ca_file=args.ca_file,
            stack_label=f"stack {args.stack!r} outputs" if args.stack else "--outputs-file",
            signed_in_as=signed_in_as,
        )

    def connection(self) -> Connection:
        if self._connection is None:
            args = self.args
            needs_outputs = not (
                (args.endpoint or self.environ.get(ENV_ENDPOINT))
                and (args.access_key or self.environ.get(ENV_ACCESS_KEY))
                and self.environ.get(ENV_SECRET_KEY)
            )
            self._connection = self._resolve(needs_outputs)
        return self._connection

    def answering_node(self, probe: Callable[[Connection], object]) -> Connection:
        """The connection, or the first of OPS_FALLBACK_ENDPOINTS (the cluster's other nodes) that answers
        `probe` when its endpoint does not: for the backup and the mirror, which talk to one node."""
        from opscli.scheduled import log

        primary = self.connection()
        others = [replace(primary, url=url) for url in fallback_endpoints(self.environ)]
        return first_answering([primary, *others], probe, log) if others else primary

    def connection_as(self, access_key: str, secret_key: str, source: str) -> Connection:
        """The stack's endpoints with other credentials (bootstrap's root and ops-admin)."""
        needs_outputs = not (self.args.endpoint or self.environ.get(ENV_ENDPOINT))
        return self._resolve(needs_outputs, (access_key, secret_key, source))

    def catalogue(self) -> dict[str, Any]:
        if not self.args.stack:
            raise ConfigurationError("name the stack whose bucket catalogue to use: --stack dev|staging|prod|...")
        from infra.config import ConfigError

        try:
            return catalogue.load_catalogue(self.args.stack, self.stack_file(), PROJECT_ROOT)
        except ConfigError as error:  # a stack file that is not YAML
            raise ConfigurationError(str(error)) from None

    def backup_defaults(self) -> tuple[str, str | None]:
        """(bucket, database) from flags, the environment, then the stack's backup settings."""
        args = self.args
        bucket, database = args.bucket or self.environ.get("OPS_BACKUP_BUCKET"), args.database or self.environ.get("PGDATABASE")
        if (bucket is None or database is None) and args.stack:
            from infra.config import ConfigError, read_stack_file, split_config
            from infra.secrets import SECRET_CONFIG_KEYS

            try:
                values, encrypted = read_stack_file(self.stack_file())
                config, _ = split_config(args.stack, values, SECRET_CONFIG_KEYS, encrypted)
            except ConfigError as error:
                raise ConfigurationError(str(error)) from None
            bucket = bucket or config.backup.bucket
        if database is None and args.stack:
            from infra.identity import POSTGRES_DATABASE

            database = POSTGRES_DATABASE  # the stack's one database: Keycloak's
        return bucket or DEFAULT_BACKUP_BUCKET, database

    def database(self, required: bool = True) -> pgbackup.Database | None:
        _, name = self.backup_defaults()
        if name is None:
            if required:
                raise ConfigurationError("name the database: --database NAME (or PGDATABASE)")
            return None
        args = self.args
        return pgbackup.Database(name, args.pg_host, args.pg_port, args.pg_user, args.pg_bin_dir)


def cmd_sync_buckets(ctx: Context) -> int:
    wanted = ctx.catalogue()
    connection = ctx.connection()
    client = connection.s3()
    with explained(connection, "read the buckets"):
        plan = catalogue.plan_sync(client, connection.admin, wanted, prune=ctx.args.prune)
    ctx.out(f"plan for {connection.url} ({len(plan.changes)} change(s)):")
    for line in plan.lines(ctx.args.prune):
        ctx.out(f"  {line}")
    if ctx.args.dry_run:
        ctx.out("dry run: nothing was changed")
        return ExitCode.OK if not plan.refused else ExitCode.REFUSED
    with explained(connection, "change the buckets"):
        count = catalogue.apply(plan, lambda line: ctx.out(f"  {line}"))
    ctx.out("no changes: the cluster matches the catalogue" if count == 0 else f"applied {count} change(s)")
    return ExitCode.OK


def cmd_create_bucket(ctx: Context) -> int:
    from infra.config.buckets import BucketSettings, bucket_name_problem

    name = ctx.args.name
    problem = bucket_name_problem(name)
    if problem:
        raise ConfigurationError(problem)
    if ctx.args.retention_days is not None and ctx.args.retention_days < 1:
        raise ConfigurationError(f"--retention-days {ctx.args.retention_days}: use 1 or more days")
    connection = ctx.connection()
    client = connection.s3()
    with explained(connection, f"create bucket {name}"):
        # an already versioned bucket keeps versioning, and its retention then expires old versions too
        versioned = ctx.args.versioning or (client.bucket_exists(name) and client.get_bucket_versioning(name).status == "Enabled")
        settings = BucketSettings(purpose="created by create-bucket", retention_days=ctx.args.retention_days, versioning=versioned)
        plan = catalogue.plan_sync(client, connection.admin, {name: settings}, prune=False)
        # only what was asked for: an existing bucket keeps its other settings
        asked = {"create"} | ({"retention"} if ctx.args.retention_days else set()) | ({"versioning"} if ctx.args.versioning else set())
        plan.changes = [change for change in plan.changes if change.what in asked]
        plan.uncatalogued.clear()
        plan.up_to_date.clear()
        for line in plan.lines(False):
            ctx.out(line)
        catalogue.apply(plan, lambda line: None)
    ctx.out(f"bucket {name} is ready; add it to the stack's catalogue (buckets.{name}) to keep it managed")
    return ExitCode.OK


def cmd_list_buckets(ctx: Context) -> int:
    connection = ctx.connection()
    known = ctx.catalogue() if ctx.args.stack else None
    with explained(connection, "list the buckets"):
        usage = catalogue.bucket_usage(connection.s3(), known)
    if ctx.args.json:
        ctx.out(json.dumps([vars(item) for item in usage], indent=2))
        return ExitCode.OK
    ctx.out(f"{'BUCKET':<40} {'OBJECTS':>10} {'SIZE':>12}  CATALOGUED")
    for item in usage:
        flag = "yes" if item.catalogued else ("no" if known is not None else "-")
        ctx.out(f"{item.name:<40} {item.objects:>10} {catalogue.human_size(item.bytes):>12}  {flag}")
    return ExitCode.OK


def cmd_install_policies(ctx: Context) -> int:
    connection = ctx.connection()
    with explained(connection, "install IAM policies"):
        names = iam.install_policies(connection.admin(), POLICY_DIR, ctx.args.names or None)
    ctx.out(f"installed {len(names)} policies: {', '.join(names)}")
    return ExitCode.OK


def cmd_create_service_account(ctx: Context) -> int:
    args = ctx.args
    iam.check_account_name(args.name)
    iam.load_policy(POLICY_DIR, args.policy)
    path: Path | None = None if args.print_secret else (args.secret_file or Path(f"{args.name}.env"))
    connection = ctx.connection()
    # the file first: a secret MinIO has made must always have somewhere to go
    handle: IO[str] | None = iam.open_secret_file(path) if path is not None else None
    try:
        with explained(connection, "create a service account"):
            account = iam.create_service_account(connection.admin(), POLICY_DIR, args.name, args.policy, args.description)
    except BaseException:
        if handle is not None and path is not None:
            handle.close()
            path.unlink()
        raise
    ctx.out(f"service account {account.name} (policy {account.policy}, owner {account.owner})")
    ctx.out(f"access key: {account.access_key}")
    if handle is not None:
        with handle:
            handle.write(iam.secret_file_text(account))
        ctx.out(f"secret written to {path} (mode 0600, as OPS_ACCESS_KEY/OPS_SECRET_KEY lines)")
    else:
        ctx.out(f"secret key: {account.secret_key}")
        ctx.out("the secret key is shown only this once: store it now")
    return ExitCode.OK


def cmd_delete_service_account(ctx: Context) -> int:
    connection = ctx.connection()
    with explained(connection, f"delete service account {ctx.args.access_key}"):
        ctx.out(iam.delete_service_account(connection.admin(), ctx.args.access_key))
    return ExitCode.OK


def cmd_assign_policy(ctx: Context) -> int:
    args = ctx.args
    connection = ctx.connection()
    with explained(connection, f"assign policy {args.policy}"):
        message = iam.assign_policy(
            connection.admin(), POLICY_DIR, args.policy, user=args.user, group=args.group, access_key=args.service_account
        )
    ctx.out(message)
    return ExitCode.OK


@dataclass(frozen=True)
class StackUser:
    """A MinIO user the stack generates a secret key for, and `bootstrap` creates with it."""

    name: str
    policy: str
    output: str
    """The stack output holding its secret key."""
    variable: str
    """The environment variable that may give the secret key instead."""


def stack_users() -> list[StackUser]:
    from infra.secrets import METRICS_READER_USER

    return [
        StackUser(OPS_ADMIN_USER, iam.ADMIN_POLICY, OPS_ADMIN_SECRET_OUTPUT, "OPS_ADMIN_SECRET_KEY"),
        StackUser(iam.BACKUP_SERVICE_USER, iam.BACKUP_SERVICE_POLICY, "backupServiceSecretKey", ENV_BACKUP_SECRET_KEY),
        StackUser(METRICS_READER_USER, iam.METRICS_POLICY, "metricsReaderSecretKey", "OPS_METRICS_READER_SECRET_KEY"),
    ]


def _ops_admin_problem(ops: Connection) -> str | None:
    """Why ops-admin cannot administer the cluster yet, or None when it can."""
    try:
        with explained(ops, f"read user {OPS_ADMIN_USER}"):
            # a user may always read itself (GetUser is deny-only for oneself), so this also works without the policy
            policies = iam.attached_policies(ops.admin(), OPS_ADMIN_USER)
    except AccessDeniedError:
        return "it does not exist yet, or has another secret key"
    if iam.ADMIN_POLICY not in (policies or []):
        return f"it lacks the {iam.ADMIN_POLICY} policy"
    return None


def _root(ctx: Context, why: str) -> Connection:
    outputs = ctx.outputs()
    access_key = ctx.environ.get(ENV_ROOT_ACCESS_KEY) or outputs.get("minioRootUser")
    secret_key = ctx.environ.get(ENV_ROOT_SECRET_KEY) or outputs.get("minioRootPassword")
    if not (access_key and secret_key):
        raise ConfigurationError(
            f"{OPS_ADMIN_USER} cannot sign in ({why}) and only root can create it: set {ENV_ROOT_ACCESS_KEY} and "
            f"{ENV_ROOT_SECRET_KEY}, or use --stack/--outputs-file (minioRootUser, minioRootPassword)"
        )
    return ctx.connection_as(str(access_key), str(secret_key), "root credentials")


def _warn_about_root_keys(ctx: Context, ops: Connection) -> None:
    outputs = ctx.outputs()
    root_user = ctx.environ.get(ENV_ROOT_ACCESS_KEY) or outputs.get("minioRootUser")
    if not root_user:
        return
    with explained(ops, "list the service accounts of root"):
        keys = iam.service_accounts_of(ops.admin(), str(root_user))
    if keys:
        ctx.out(
            f"warning: {len(keys)} service account(s) belong to root: {', '.join(keys)}. On MinIO before "
            "RELEASE.2025-10-15T17-29-55Z such a key can mint an unrestricted root key (GHSA-jjjj-jwhf-8rgr): "
            "replace each with 'create-service-account NAME --policy P', then 'delete-service-account KEY'"
        )


def cmd_bootstrap(ctx: Context) -> int:
    """Root signs in only when ops-admin cannot, to create it: on a new cluster nobody else may create a
    user, a policy and the attachment (admin:CreateUser, admin:CreatePolicy, admin:AttachUserOrGroupPolicy:
    AddUser, AddCannedPolicy, AttachDetachPolicyBuiltin in MinIO's cmd/admin-handlers-users.go), and
    root passes every check as the owner. Everything else needs only the admin policy: ops-admin's."""
    outputs = ctx.outputs()
    users = stack_users()
    secrets = {user.name: ctx.environ.get(user.variable) or outputs.get(user.output) for user in users}
    missing = [user for user in users if not secrets[user.name]]
    if missing:
        raise ConfigurationError(
            "no secret key for " + ", ".join(f"{u.name} (set {u.variable} or use --stack/--outputs-file: {u.output})" for u in missing)
        )
    ops = ctx.connection_as(OPS_ADMIN_USER, str(secrets[OPS_ADMIN_USER]), f"{OPS_ADMIN_USER} ({OPS_ADMIN_SECRET_OUTPUT})")
    problem = _ops_admin_problem(ops)
    if problem is None:
        ctx.out(f"{OPS_ADMIN_USER} signs in with the admin policy: root is not needed")
    elif ctx.args.dry_run:
        ctx.out(f"{OPS_ADMIN_USER} cannot sign in yet ({problem}): bootstrap creates it with the root credentials")
        ctx.out("dry run: nothing was changed (the bucket plan needs the ops-admin user)")
        return ExitCode.OK
    else:
        root = _root(ctx, problem)
        with explained(root, f"create the {OPS_ADMIN_USER} user"):
            admin = root.admin()
            iam.install_policies(admin, POLICY_DIR, [iam.ADMIN_POLICY])
            ctx.out(iam.ensure_user(admin, POLICY_DIR, OPS_ADMIN_USER, iam.ADMIN_POLICY, str(secrets[OPS_ADMIN_USER])) + " (set with root)")
    ctx._connection = ops  # everything else as ops-admin
    ctx.args.names, ctx.args.prune = [], False  # every policy; never prune
    if not ctx.args.dry_run:
        cmd_install_policies(ctx)
    cmd_sync_buckets(ctx)
    if ctx.args.dry_run:
        return ExitCode.OK
    with explained(ops, "create the stack's users"):
        for user in users[1:]:
            ctx.out(iam.ensure_user(ops.admin(), POLICY_DIR, user.name, user.policy, str(secrets[user.name])))
    recovery_commands.bootstrap_mirror_service(ctx, ops, POLICY_DIR)  # only when the stack mirrors offsite
    _warn_about_root_keys(ctx, ops)
    return ExitCode.OK


def _backup_once(ctx: Context) -> pgbackup.BackupResult:
    bucket, _ = ctx.backup_defaults()
    database = ctx.database()
    assert database is not None
    connection = ctx.answering_node(lambda node: node.s3().bucket_exists(bucket))
    with explained(connection, f"write a backup to bucket {bucket}"):
        return pgbackup.backup_postgres(
            connection.s3(), bucket, database,
            part_size_mib=ctx.args.part_size_mib, compression_level=ctx.args.compression_level, show_progress=ctx.args.progress,
        )


def _describe_result(result: pgbackup.BackupResult) -> str:
    rate = result.raw_bytes / result.seconds / (1 << 20) if result.seconds else 0.0
    return (
        f"s3://{result.bucket}/{result.key} {catalogue.human_size(result.compressed_bytes)} "
        f"(dump {catalogue.human_size(result.raw_bytes)}, {rate:.1f} MiB/s) sha256 {result.sha256}"
    )


def cmd_backup_postgres(ctx: Context) -> int:
    ctx.out(f"backup written: {_describe_result(_backup_once(ctx))}")
    return ExitCode.OK


def cmd_restore_postgres(ctx: Context) -> int:
    bucket, _ = ctx.backup_defaults()
    database = ctx.database()
    assert database is not None
    connection = ctx.connection()
    with explained(connection, f"read backups from bucket {bucket}"):
        backup = pgbackup.restore_postgres(
            connection.s3(), bucket, database, ctx.args.key, force=ctx.args.force, show_progress=ctx.args.progress
        )
    ctx.out(f"restored s3://{bucket}/{backup.key} (sha256 {backup.sha256} verified) into {database.describe()}")
    return ExitCode.OK


def cmd_list_backups(ctx: Context) -> int:
    bucket, database = ctx.backup_defaults()
    connection = ctx.connection()
    with explained(connection, f"list backups in bucket {bucket}"):
        backups = pgbackup.list_backups(connection.s3(), bucket, database, ctx.args.limit)
    if ctx.args.json:
        ctx.out(json.dumps([
            {"key": b.key, "size": b.size, "modified": b.modified.isoformat() if b.modified else None, "sha256": b.sha256}
            for b in backups
        ], indent=2))
        return ExitCode.OK
    if not backups:
        ctx.out(f"no backups in bucket {bucket}" + (f" for database {database}" if database else ""))
    for b in backups:
        modified = f"{b.modified:%Y-%m-%d %H:%M:%S}" if b.modified else "-"
        ctx.out(f"{b.key:<50} {catalogue.human_size(b.size):>10}  {modified}  {b.sha256 or 'INCOMPLETE (no sha256)'}")
    return ExitCode.OK


def cmd_backup_schedule(ctx: Context) -> int:
    from infra.cron import CronSchedule

    from opscli.scheduled import run_schedule, start_metrics

    try:
        schedule = CronSchedule.parse(ctx.args.schedule)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    ctx.connection()  # settle the connection settings now, not at the first run hours later
    fallback_endpoints(ctx.environ)
    ctx.database()
    metrics = start_metrics(ctx.args.metrics_listen, schedule, ctx.args.heartbeat)
    failures = run_schedule(schedule, lambda: _describe_result(_backup_once(ctx)), ctx.args.heartbeat, metrics=metrics)
    return ExitCode.OK if failures == 0 else ExitCode.UNEXPECTED


COMMANDS: dict[str, Callable[[Context], int]] = {
    "sync-buckets": cmd_sync_buckets,
    "create-bucket": cmd_create_bucket,
    "list-buckets": cmd_list_buckets,
    "install-policies": cmd_install_policies,
    "create-service-account": cmd_create_service_account,
    "delete-service-account": cmd_delete_service_account,
    "assign-policy": cmd_assign_policy,
    "bootstrap": cmd_bootstrap,
    "backup-postgres": cmd_backup_postgres,
    "restore-postgres": cmd_restore_postgres,
    "list-backups": cmd_list_backups,
    "backup-schedule": cmd_backup_schedule,
    "mirror": recovery_commands.cmd_mirror,
    "mirror-schedule": recovery_commands.cmd_mirror_schedule,
    "export-config": recovery_commands.cmd_export_config,
    "import-config": recovery_commands.cmd_import_config,
    "drill": recovery_commands.cmd_drill,
    "purge": recovery_commands.cmd_purge,
}


ENV_FILE = "OPS_ENV_FILE"


def load_env_file(environ: MutableMapping[str, str]) -> None:
    """Settings from the file OPS_ENV_FILE names, as KEY=VALUE lines; variables already set win.

    For containers: unlike environment variables, a file's content does not show in `docker inspect`.
    """
    path = environ.get(ENV_FILE)
    if not path:
        return
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigurationError(f"cannot read the settings file {path} named by {ENV_FILE} ({error.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator or not key.strip():
            raise ConfigurationError(f"line {number} of {path} is not KEY=VALUE")
        environ.setdefault(key.strip(), value)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args, os.environ if environ is None else environ, lambda line: print(line, flush=True))
    try:
        if environ is None:
            # into the process environment, so that pg_dump and psql inherit PGPASSWORD too
            load_env_file(os.environ)
        return int(COMMANDS[args.command](ctx))
    except OpsError as error:
        print(f"error: {error.sentence}", file=sys.stderr)
        return int(error.code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
