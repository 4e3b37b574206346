"""IAM on the cluster from the policy documents in policies/: install them, create service accounts
(access keys) restricted to one of them, attach them to users and groups.

Every call here is a MinIO admin API call (MinioAdmin); other S3 servers do not have them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minio import MinioAdmin
from minio.error import MinioAdminException

from opscli.failures import ConfigurationError, NotFoundError, RefusedError

POLICY_SUFFIX = "-policy.json"
# the MinIO user the scheduled backup service signs in as; its secret is the stack's backupServiceSecretKey
BACKUP_SERVICE_USER = "backup-service"
BACKUP_SERVICE_POLICY = "backup-service"
_ACCOUNT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def policy_files(policy_dir: Path) -> dict[str, Path]:
    """Installed policy name -> its document: 'backup-service' -> policies/backup-service-policy.json."""
    return {path.name.removesuffix(POLICY_SUFFIX): path for path in sorted(policy_dir.glob(f"*{POLICY_SUFFIX}"))}


def load_policy(policy_dir: Path, name: str) -> dict[str, Any]:
    files = policy_files(policy_dir)
    if name not in files:
        raise NotFoundError(f"no policy {name!r}: the policies are {', '.join(files) or 'none'} (files in {policy_dir})")
    try:
        document: dict[str, Any] = json.loads(files[name].read_text())
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{files[name]} is not JSON: {error.msg} (line {error.lineno})") from None
    return document


def install_policies(admin: MinioAdmin, policy_dir: Path, names: list[str] | None = None) -> list[str]:
    """Create or overwrite each canned policy from its file (idempotent); returns the names installed."""
    chosen = names or list(policy_files(policy_dir))
    for name in chosen:
        admin.policy_add(name, policy=load_policy(policy_dir, name))
    return chosen


@dataclass(frozen=True)
class ServiceAccount:
    access_key: str
    secret_key: str = field(repr=False)
    name: str
    policy: str


def check_account_name(name: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a service account name: use 1 to 32 letters, digits, '_' and '-', starting with a letter"
        )
    return name


def create_service_account(admin: MinioAdmin, policy_dir: Path, name: str, policy: str, description: str = "") -> ServiceAccount:
    """A new access key of the signed-in user, restricted to exactly `policy` (an inline session policy)."""
    check_account_name(name)
    document = load_policy(policy_dir, policy)
    answer = json.loads(
        admin.add_service_account(name=name, description=description or f"policy {policy}", policy=document)
    )
    credentials = answer.get("credentials") or answer
    return ServiceAccount(credentials["accessKey"], credentials["secretKey"], name, policy)


def write_secret_file(path: Path, account: ServiceAccount) -> None:
    """The credentials in a new file only its owner can read; refuses to overwrite an existing file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RefusedError(f"{path} already exists: choose a new file, secrets are never overwritten") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"OPS_ACCESS_KEY={account.access_key}\nOPS_SECRET_KEY={account.secret_key}\n")


def _already_applied(error: MinioAdminException) -> bool:
    # MinIO answers 400 XMinioAdminPolicyChangeAlreadyApplied when the policy is already attached
    return "AlreadyApplied" in str(error._body)


def assign_policy(
    admin: MinioAdmin,
    policy_dir: Path,
    policy: str,
    *,
    user: str | None = None,
    group: str | None = None,
    access_key: str | None = None,
) -> str:
    """Attach an installed policy to a user or group, or make it a service account's inline policy."""
    if access_key is not None:
        admin.update_service_account(access_key=access_key, policy=load_policy(policy_dir, policy))
        return f"service account {access_key} is now restricted to policy {policy}"
    if (user is None) == (group is None):
        raise ConfigurationError("name exactly one of --user, --group or --service-account")
    if policy not in policy_files(policy_dir):
        load_policy(policy_dir, policy)  # raises NotFoundError naming the policies that exist
    try:
        admin.attach_policy([policy], user=user, group=group)
    except MinioAdminException as error:
        if not _already_applied(error):
            raise
    target = f"user {user}" if user is not None else f"group {group}"
    return f"policy {policy} is attached to {target}"


def ensure_backup_service_user(admin: MinioAdmin, policy_dir: Path, secret_key: str) -> str:
    """The backup service's user with the stack's generated secret and only the backup-service policy (idempotent)."""
    install_policies(admin, policy_dir, [BACKUP_SERVICE_POLICY])
    admin.user_add(BACKUP_SERVICE_USER, secret_key)
    return assign_policy(admin, policy_dir, BACKUP_SERVICE_POLICY, user=BACKUP_SERVICE_USER)
