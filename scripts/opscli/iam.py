"""IAM on the cluster from the policy documents in policies/: install them, create the stack's own
users, create service accounts (access keys) restricted to one of them, attach them to users and
groups.

No key is ever created under root. Each service account NAME belongs to a dedicated MinIO user,
`sa-NAME`, which carries exactly the account's policy: the key is restricted to that policy inline
and its parent can do no more. MinIO lets a key create keys for its own parent unless a policy
denies it explicitly (cmd/admin-handlers-users.go, commonAddServiceAccount: `DenyOnly` when the
target is the requester or its parent); before RELEASE.2025-10-15T17-29-55Z the key's inline
policy was checked the same deny-only way (GHSA-jjjj-jwhf-8rgr), so a key whose parent is root
could mint an unrestricted root key. Under `sa-NAME` such a key gets nothing its parent lacks, and
the policies' explicit Deny stops the minting itself.

Every call here is a MinIO admin API call (MinioAdmin); other S3 servers do not have them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from minio import MinioAdmin
from minio.crypto import decrypt, encrypt
from minio.error import MinioAdminException
from minio.minioadmin import _COMMAND

from opscli.failures import ConfigurationError, NotFoundError, RefusedError

POLICY_SUFFIX = "-policy.json"
ADMIN_POLICY = "admin"
# the MinIO user the scheduled backup service signs in as; its secret is the stack's backupServiceSecretKey
BACKUP_SERVICE_USER = "backup-service"
BACKUP_SERVICE_POLICY = "backup-service"
METRICS_POLICY = "metrics-reader"
# service account NAME belongs to user sa-NAME
OWNER_PREFIX = "sa-"
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
    owner: str = ""
    """The MinIO user the key belongs to: sa-NAME."""


def check_account_name(name: str) -> str:
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a service account name: use 1 to 32 letters, digits, '_' and '-', starting with a letter"
        )
    return name


def owner_of(name: str) -> str:
    return OWNER_PREFIX + check_account_name(name)


def _is_missing(error: MinioAdminException) -> bool:
    return str(error._code) == "404" or "NoSuch" in str(error._body)


def attached_policies(admin: MinioAdmin, user: str) -> list[str] | None:
    """The policies attached to a MinIO user directly; None when there is no such user."""
    try:
        answer = json.loads(admin.user_info(user) or "{}")
    except MinioAdminException as error:
        if _is_missing(error):
            return None
        raise
    return [name for name in str(answer.get("policyName") or "").split(",") if name]


def _attach(admin: MinioAdmin, policies: list[str], user: str) -> None:
    try:
        admin.attach_policy(policies, user=user)
    except MinioAdminException as error:
        if not _already_applied(error):
            raise


def ensure_user(admin: MinioAdmin, policy_dir: Path, user: str, policy: str, secret_key: str) -> str:
    """A MinIO user with this secret and exactly this one policy attached (idempotent)."""
    load_policy(policy_dir, policy)
    admin.user_add(user, secret_key)  # creates it, or sets the secret of an existing one (and enables it)
    _attach(admin, [policy], user)
    extra = [name for name in attached_policies(admin, user) or [] if name != policy]
    if extra:
        admin.detach_policy(extra, user=user)
        return f"user {user} has policy {policy} only (detached {', '.join(extra)})"
    return f"user {user} has policy {policy}"


def ensure_backup_service_user(admin: MinioAdmin, policy_dir: Path, secret_key: str) -> str:
    """The backup service's user with the stack's generated secret and only the backup-service policy (idempotent)."""
    install_policies(admin, policy_dir, [BACKUP_SERVICE_POLICY])
    return ensure_user(admin, policy_dir, BACKUP_SERVICE_USER, BACKUP_SERVICE_POLICY, secret_key)


def _ensure_owner(admin: MinioAdmin, owner: str, policy: str) -> None:
    """The owner of a service account: exists, and carries exactly `policy` (never silently another)."""
    policies = attached_policies(admin, owner)
    if policies is None:
        # nobody signs in as the owner: its secret is thrown away, its keys are what get used
        admin.user_add(owner, secrets.token_urlsafe(30))
        policies = []
    others = [name for name in policies if name != policy]
    if others:
        raise RefusedError(
            f"user {owner} carries policy {', '.join(others)}, not {policy}: its keys share one policy; "
            f"choose another account name, or change them all with 'assign-policy {policy} --service-account KEY'"
        )
    if policy not in policies:
        _attach(admin, [policy], owner)


def _add_service_account(admin: MinioAdmin, target_user: str, name: str, description: str, policy: dict[str, Any]) -> Any:
    # minio-py 7.2 cannot name the owner; the admin API takes it as `targetUser` (madmin-go AddServiceAccountReq)
    secret = admin._provider.retrieve().secret_key
    body = json.dumps(
        {"status": "enabled", "targetUser": target_user, "name": name, "description": description, "policy": policy}
    ).encode()
    response = admin._url_open(
        method="PUT", command=_COMMAND.SERVICE_ACCOUNT_ADD, body=encrypt(body, secret), preload_content=False
    )
    return json.loads(decrypt(response, secret))


def create_service_account(admin: MinioAdmin, policy_dir: Path, name: str, policy: str, description: str = "") -> ServiceAccount:
    """A new access key of user sa-NAME (created if missing, with `policy` attached), restricted to `policy` inline."""
    owner = owner_of(name)
    document = load_policy(policy_dir, policy)
    _ensure_owner(admin, owner, policy)
    answer = _add_service_account(admin, owner, name, description or f"policy {policy}", document)
    credentials = answer.get("credentials") or answer
    return ServiceAccount(credentials["accessKey"], credentials["secretKey"], name, policy, owner)


def service_account_owner(admin: MinioAdmin, access_key: str) -> str:
    answer = json.loads(admin.get_service_account(access_key) or "{}")
    return str(answer.get("parentUser") or "")


def service_accounts_of(admin: MinioAdmin, user: str) -> list[str]:
    """Access keys of the service accounts that belong to `user`."""
    answer = json.loads(admin.list_service_account(user) or "{}")
    return [str(account["accessKey"]) for account in answer.get("accounts") or []]


def delete_service_account(admin: MinioAdmin, access_key: str) -> str:
    """Delete a key; its sa-NAME owner goes with its last key."""
    owner = service_account_owner(admin, access_key)
    admin.delete_service_account(access_key)
    if owner.startswith(OWNER_PREFIX) and not service_accounts_of(admin, owner):
        admin.user_remove(owner)
        return f"service account {access_key} is deleted, and its owner {owner} with it (it had no other key)"
    return f"service account {access_key} is deleted (owner {owner or 'unknown'})"


def secret_file_text(account: ServiceAccount) -> str:
    return f"OPS_ACCESS_KEY={account.access_key}\nOPS_SECRET_KEY={account.secret_key}\n"


def open_secret_file(path: Path) -> IO[str]:
    """A new file only its owner can read, opened for writing; refuses to overwrite an existing file."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RefusedError(f"{path} already exists: choose a new file, secrets are never overwritten") from None
    except OSError as error:
        raise ConfigurationError(f"cannot create the secret file {path}: {error.strerror}") from None
    os.fchmod(descriptor, 0o600)  # whatever the umask
    return os.fdopen(descriptor, "w")


def write_secret_file(path: Path, account: ServiceAccount) -> None:
    """The credentials in a new file only its owner can read; refuses to overwrite an existing file."""
    with open_secret_file(path) as handle:
        handle.write(secret_file_text(account))


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
    """Attach an installed policy to a user or group, or make it a service account's inline policy.

    A key of sa-NAME shares its policy with its owner and the owner's other keys: all of them change.
    """
    if access_key is not None:
        document = load_policy(policy_dir, policy)
        owner = service_account_owner(admin, access_key)
        if not owner.startswith(OWNER_PREFIX):
            admin.update_service_account(access_key=access_key, policy=document)
            return f"service account {access_key} is now restricted to policy {policy} (owner {owner or 'unknown'})"
        _attach(admin, [policy], owner)
        extra = [name for name in attached_policies(admin, owner) or [] if name != policy]
        if extra:
            admin.detach_policy(extra, user=owner)
        keys = service_accounts_of(admin, owner) or [access_key]
        for key in keys:
            admin.update_service_account(access_key=key, policy=document)
        return f"user {owner} and its service account(s) {', '.join(keys)} are now restricted to policy {policy}"
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
