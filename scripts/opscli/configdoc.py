"""The configuration document: what defines a deployment beyond its data, exported and applied again.

One JSON document, versioned (`format`, `version`) and checksummed (`sha256` over the rest, in
canonical form): IAM policies, users with their policies and groups, groups, service accounts
(metadata and inline policy; never a secret key: MinIO does not hand them out, and anything named
`secretKey` is dropped on the way), and each bucket's versioning, lifecycle, quota, encryption,
bucket policy (anonymous access lives there), tags and object-lock default.

Bucket settings are S3 calls; IAM and quotas are MinIO's admin API (`MinioAdmin`), which other S3
servers lack: `covers` says which parts a document holds. `plan_import` compares a document with a
cluster and lists the changes; applying them creates what is missing and sets what differs. A user
or service account the cluster lacks gets a new secret key, written to a new 0600 file; the stack's
own users are left to `bootstrap`, which sets them from the stack's secrets.
"""

from __future__ import annotations

import hashlib
import json
import secrets as random_secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from minio import Minio, MinioAdmin
from minio.commonconfig import Tags
from minio.crypto import decrypt, encrypt
from minio.error import MinioAdminException, S3Error
from minio.lifecycleconfig import LifecycleConfig
from minio.minioadmin import _COMMAND
from minio.objectlockconfig import ObjectLockConfig
from minio.sseconfig import SSEConfig
from minio.versioningconfig import VersioningConfig
from minio.xml import marshal, unmarshal

from opscli import iam
from opscli.failures import ChecksumMismatchError, ConfigurationError

FORMAT = "minio-platform-configuration"
VERSION = 1
SUPPORTED_VERSIONS = (1,)
EXPORT_PREFIX = "config-exports/"
COVERS_BUCKETS, COVERS_IAM, COVERS_QUOTAS = "bucket settings", "iam", "quotas"
# S3 answers meaning "this server does not have that feature": recorded as not set
_UNSUPPORTED = {"NotImplemented", "XNotImplemented", "MethodNotAllowed"}


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(document: Mapping[str, Any]) -> str:
    """sha256 of the document without its own `sha256` field, in canonical JSON."""
    return hashlib.sha256(canonical({key: value for key, value in document.items() if key != "sha256"})).hexdigest()


def _without_secrets(value: Any) -> Any:
    """The same structure with every `secretKey` (and `sessionToken`) removed, however deep."""
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if k.lower() not in ("secretkey", "sessiontoken")}
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def _s3_setting(read: Callable[[], Any], missing: Collection[str] = ()) -> Any:
    try:
        return read()
    except S3Error as error:
        if error.code in missing or error.code in _UNSUPPORTED:
            return None
        raise


def _xml(value: Any) -> str | None:
    return None if value is None else marshal(value).decode()


def bucket_settings(client: Minio, bucket: str, admin: MinioAdmin | None) -> dict[str, Any]:
    """One bucket's settings as the document holds them (XML where S3 defines the wire format)."""
    versioning = _s3_setting(lambda: client.get_bucket_versioning(bucket).status) or "Off"
    policy_text = _s3_setting(lambda: client.get_bucket_policy(bucket), {"NoSuchBucketPolicy"})
    tags = _s3_setting(lambda: client.get_bucket_tags(bucket), {"NoSuchTagSet"})
    lock = _s3_setting(lambda: client.get_object_lock_config(bucket), {"ObjectLockConfigurationNotFoundError"})
    settings: dict[str, Any] = {
        "versioning": versioning,
        "lifecycle": _xml(_s3_setting(lambda: client.get_bucket_lifecycle(bucket), {"NoSuchLifecycleConfiguration"})),
        "encryption": _xml(_s3_setting(
            lambda: client.get_bucket_encryption(bucket), {"ServerSideEncryptionConfigurationNotFoundError"}
        )),
        "policy": json.loads(policy_text) if policy_text and policy_text.strip() else None,
        "tags": dict(tags) if tags else {},
        "objectLock": _xml(lock),
    }
    if admin is not None:
        quota = json.loads(admin.bucket_quota_get(bucket) or "{}")
        size = int(quota.get("quota") or quota.get("size") or 0)
        settings["quota"] = {"bytes": size, "type": quota.get("quotatype") or "hard"} if size else None
    return settings


def _json(text: str) -> Any:
    return json.loads(text) if text and text.strip() else {}


def iam_settings(admin: MinioAdmin) -> dict[str, Any]:
    """Policies, users, groups and service accounts, without any secret."""
    policies = _json(admin.policy_list())
    users = {
        name: {
            "status": info.get("status") or "enabled",
            "policies": sorted(p for p in str(info.get("policyName") or "").split(",") if p),
            "memberOf": sorted(info.get("memberOf") or []),
        }
        for name, info in _json(admin.user_list()).items()
    }
    groups = {}
    for name in _json(admin.group_list()) or []:
        info = _json(admin.group_info(name))
        groups[name] = {
            "status": info.get("status") or "enabled",
            "members": sorted(info.get("members") or []),
            "policies": sorted(p for p in str(info.get("policy") or "").split(",") if p),
        }
    accounts = {}
    for user in sorted(users):
        for listed in _json(admin.list_service_account(user)).get("accounts") or []:
            key = str(listed["accessKey"])
            info = _json(admin.get_service_account(key))
            policy = info.get("policy")
            accounts[key] = {
                "parent": info.get("parentUser") or user,
                "name": info.get("name") or "",
                "description": info.get("description") or "",
                "status": info.get("accountStatus") or "on",
                "expiration": info.get("expiration"),
                # an implied policy is the parent's; otherwise the inline one
                "policy": None if info.get("impliedPolicy") else (json.loads(policy) if isinstance(policy, str) else policy),
            }
    cleaned: dict[str, Any] = _without_secrets({"policies": policies, "users": users, "groups": groups, "serviceAccounts": accounts})
    return cleaned


def export_document(
    client: Minio, admin: MinioAdmin | None, source: str, now: datetime, buckets: Collection[str] | None = None
) -> dict[str, Any]:
    """The whole document; `admin` None (an S3 server that is not MinIO) leaves out IAM and quotas."""
    names = sorted(buckets) if buckets is not None else sorted(b.name for b in client.list_buckets())
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "exportedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source,
        "covers": [COVERS_BUCKETS] + ([COVERS_IAM, COVERS_QUOTAS] if admin is not None else []),
        "buckets": {name: bucket_settings(client, name, admin) for name in names},
        "iam": iam_settings(admin) if admin is not None else None,
    }
    document["sha256"] = checksum(document)
    return document


def export_key(now: datetime) -> str:
    return f"{EXPORT_PREFIX}{now:%Y%m%dT%H%M%SZ}.json"


def read_document(text: str, where: str) -> dict[str, Any]:
    """A document checked for format, version and checksum; raises naming what is wrong."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{where} is not JSON: {error.msg} (line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigurationError(f"{where} is not a configuration export of this bundle (no \"format\": \"{FORMAT}\")")
    if document.get("version") not in SUPPORTED_VERSIONS:
        raise ConfigurationError(
            f"{where} has version {document.get('version')!r}; this scripts/ops reads version(s) "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    if document.get("sha256") != checksum(document):
        raise ChecksumMismatchError(
            f"{where} does not match its recorded sha256 (recorded {document.get('sha256')}, computed {checksum(document)}): "
            "it was changed or damaged; nothing was applied"
        )
    return document


def describe(document: Mapping[str, Any]) -> str:
    iam_part = document.get("iam") or {}
    counts = [f"{len(document.get('buckets') or {})} bucket(s)"]
    if iam_part:
        counts += [
            f"{len(iam_part.get('policies') or {})} policies", f"{len(iam_part.get('users') or {})} user(s)",
            f"{len(iam_part.get('groups') or {})} group(s)", f"{len(iam_part.get('serviceAccounts') or {})} service account(s)",
        ]
    return f"version {document.get('version')}, exported {document.get('exportedAt')} from {document.get('source')}: " + ", ".join(counts)


@dataclass(frozen=True)
class Change:
    subject: str
    """'bucket logs', 'policy readonly', 'user alice', 'service account AKID...'"""
    what: str
    apply: Callable[[], object] = field(compare=False, repr=False)
    new_secret: tuple[str, str] | None = field(default=None, compare=False)
    """(kind, access key) when applying it makes a secret key for the secrets file."""
    minio_only: bool = False

    def describe(self) -> str:
        return f"{'+' if self.what.startswith('create') else '~'} {self.subject}: {self.what}"


@dataclass
class ImportPlan:
    changes: list[Change] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    """What the document holds that another command sets (the stack's own users: bootstrap)."""
    notes: list[str] = field(default_factory=list)
    """What the document holds that is not applied, and why."""

    @property
    def needs_secrets_file(self) -> bool:
        return any(change.new_secret for change in self.changes)

    def lines(self) -> list[str]:
        return (
            [c.describe() for c in self.changes] + [f"= {s}: as in the document" for s in self.same]
            + [f"= {s}" for s in self.left] + [f"! {n}" for n in self.notes]
        )


def _versioning_change(client: Minio, bucket: str, wanted: str, current: str) -> Change | None:
    if wanted == current or (wanted == "Off" and current in ("Off", "")):
        return None
    if wanted == "Off":
        # a versioned bucket can only be suspended, never "un-versioned"
        return None if current == "Suspended" else Change(f"bucket {bucket}", "versioning -> Suspended", _set_versioning(client, bucket, "Suspended"))
    return Change(f"bucket {bucket}", f"versioning {current or 'Off'} -> {wanted}", _set_versioning(client, bucket, wanted))


def _set_versioning(client: Minio, bucket: str, status: str) -> Callable[[], None]:
    return lambda: client.set_bucket_versioning(bucket, VersioningConfig(status))


def _bucket_changes(client: Minio, admin: Callable[[], MinioAdmin] | None, name: str, wanted: Mapping[str, Any], exists: bool) -> tuple[list[Change], list[str]]:
    changes: list[Change] = []
    notes: list[str] = []
    subject = f"bucket {name}"
    current = bucket_settings(client, name, None) if exists else {
        "versioning": "Off", "lifecycle": None, "encryption": None, "policy": None, "tags": {}, "objectLock": None,
    }
    locked = wanted.get("objectLock") is not None
    if not exists:
        changes.append(Change(subject, "create" + (" with object lock" if locked else ""), lambda: client.make_bucket(name, object_lock=locked)))
        current = dict(current, objectLock=wanted.get("objectLock") if locked else None)
        if locked:
            current["versioning"] = "Enabled"  # object lock turns versioning on
    elif locked and current.get("objectLock") is None:
        notes.append(f"{subject}: object lock can only be enabled when a bucket is created; recreate it to have it")
    versioning = _versioning_change(client, name, str(wanted.get("versioning") or "Off"), str(current.get("versioning") or "Off"))
    if versioning:
        changes.append(versioning)
    if locked and wanted["objectLock"] != current.get("objectLock") and (not exists or current.get("objectLock") is not None):
        config = unmarshal(ObjectLockConfig, wanted["objectLock"])
        if config.mode is not None:
            changes.append(Change(subject, f"object-lock default {config.mode} {config.duration} {config.duration_unit}",
                                  lambda: client.set_object_lock_config(name, config)))
    if wanted.get("lifecycle") != current.get("lifecycle"):
        if wanted.get("lifecycle") is None:
            changes.append(Change(subject, "lifecycle removed", lambda: client.delete_bucket_lifecycle(name)))
        else:
            lifecycle = unmarshal(LifecycleConfig, wanted["lifecycle"])
            changes.append(Change(subject, f"lifecycle ({len(lifecycle.rules)} rule(s))", lambda: client.set_bucket_lifecycle(name, lifecycle)))
    if wanted.get("encryption") != current.get("encryption") and wanted.get("encryption") is not None:
        encryption = unmarshal(SSEConfig, wanted["encryption"])
        changes.append(Change(subject, "encryption (SSE-S3 with the cluster's KMS key)", lambda: client.set_bucket_encryption(name, encryption)))
    if wanted.get("policy") != current.get("policy"):
        if wanted.get("policy") is None:
            changes.append(Change(subject, "bucket policy removed", lambda: client.delete_bucket_policy(name)))
        else:
            text = json.dumps(wanted["policy"])
            changes.append(Change(subject, "bucket policy (anonymous access included)", lambda: client.set_bucket_policy(name, text)))
    if dict(wanted.get("tags") or {}) != dict(current.get("tags") or {}):
        if wanted.get("tags"):
            tags = Tags.new_bucket_tags()
            tags.update(wanted["tags"])
            changes.append(Change(subject, f"tags {dict(wanted['tags'])}", lambda: client.set_bucket_tags(name, tags)))
        else:
            changes.append(Change(subject, "tags removed", lambda: client.delete_bucket_tags(name)))
    quota = wanted.get("quota")
    if quota is not None:
        if admin is None:
            notes.append(f"{subject}: quota {quota['bytes']} bytes is MinIO's admin API: not applied (--s3-only)")
        else:
            current_quota = json.loads(admin().bucket_quota_get(name) or "{}") if exists else {}
            if int(current_quota.get("quota") or current_quota.get("size") or 0) != int(quota["bytes"]):
                size = int(quota["bytes"])
                changes.append(Change(subject, f"quota {size} bytes {quota.get('type', 'hard')}", lambda: admin().bucket_quota_set(name, size), minio_only=True))
    return changes, notes


def _new_secret() -> str:
    return random_secrets.token_urlsafe(30)


def _add_service_account(admin: MinioAdmin, access_key: str, secret_key: str, account: Mapping[str, Any]) -> None:
    # minio-py 7.2 cannot name the owner; the admin API takes it as `targetUser` (madmin-go AddServiceAccountReq)
    request: dict[str, Any] = {
        "accessKey": access_key, "secretKey": secret_key, "targetUser": account["parent"],
        "name": account.get("name") or "", "description": account.get("description") or "",
        "status": "enabled" if account.get("status") in ("on", "enabled", None) else "disabled",
    }
    if account.get("policy") is not None:
        request["policy"] = account["policy"]
    if account.get("expiration") and not str(account["expiration"]).startswith(("1970-01-01", "9999-")):
        request["expiration"] = account["expiration"]
    secret = admin._provider.retrieve().secret_key
    response = admin._url_open(
        method="PUT", command=_COMMAND.SERVICE_ACCOUNT_ADD, body=encrypt(json.dumps(request).encode(), secret), preload_content=False
    )
    decrypt(response, secret)


def _is_missing(error: MinioAdminException) -> bool:
    return str(error._code) == "404" or "NoSuch" in str(error._body)


class _Secrets:
    """New secret keys made while applying, until they are written to the secrets file."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, str]] = []

    def new(self, kind: str, access_key: str) -> str:
        secret = _new_secret()
        self.made.append((kind, access_key, secret))
        return secret


def _iam_changes(
    admin: MinioAdmin, wanted: Mapping[str, Any], stack_users: Collection[str], made: _Secrets
) -> tuple[list[Change], list[str], list[str]]:
    changes: list[Change] = []
    same: list[str] = []
    left: list[str] = []
    current_policies = _json(admin.policy_list())
    for name, document in sorted((wanted.get("policies") or {}).items()):
        if current_policies.get(name) == document:
            same.append(f"policy {name}")
        else:
            changes.append(Change(f"policy {name}", "create" if name not in current_policies else "update",
                                  _adder(admin, name, document)))
    current_users = _json(admin.user_list())
    for name, user in sorted((wanted.get("users") or {}).items()):
        if name in stack_users:
            left.append(f"user {name}: the stack's own, left to bootstrap (it sets its secret and policy)")
            continue
        owner = name.startswith(iam.OWNER_PREFIX)
        policies = list(user.get("policies") or [])
        if name not in current_users:
            changes.append(Change(
                f"user {name}", "create" + (f" with policies {', '.join(policies)}" if policies else "")
                + ("" if owner else "; a new secret key goes to the secrets file"),
                _user_creator(admin, name, policies, user.get("status") == "disabled", owner, made),
                new_secret=None if owner else ("user", name),
            ))
            continue
        have = sorted(p for p in str(current_users[name].get("policyName") or "").split(",") if p)
        if have != sorted(policies):
            changes.append(Change(f"user {name}", f"policies {', '.join(have) or 'none'} -> {', '.join(policies) or 'none'}",
                                  _policy_setter(admin, name, have, policies)))
        else:
            same.append(f"user {name}")
    current_groups = set(_json(admin.group_list()) or [])
    for name, group in sorted((wanted.get("groups") or {}).items()):
        members, policies = list(group.get("members") or []), list(group.get("policies") or [])
        if name in current_groups:
            info = _json(admin.group_info(name))
            if sorted(info.get("members") or []) == sorted(members) and sorted(p for p in str(info.get("policy") or "").split(",") if p) == sorted(policies):
                same.append(f"group {name}")
                continue
        changes.append(Change(f"group {name}", f"{'create' if name not in current_groups else 'set'} members {', '.join(members) or 'none'}"
                              f"; policies {', '.join(policies) or 'none'}", _group_setter(admin, name, members, policies)))
    for key, account in sorted((wanted.get("serviceAccounts") or {}).items()):
        try:
            admin.get_service_account(key)
        except MinioAdminException as error:
            if not _is_missing(error):
                raise
            changes.append(Change(
                f"service account {key}",
                f"create under {account['parent']} ({account.get('name') or 'unnamed'}, "
                f"{'inline policy' if account.get('policy') else 'its parent policy'}); a new secret key goes to the secrets file",
                _account_creator(admin, key, account, made), new_secret=("service account", key),
            ))
            continue
        same.append(f"service account {key}")
    return changes, same, left


def _adder(admin: MinioAdmin, name: str, document: Any) -> Callable[[], object]:
    return lambda: admin.policy_add(name, policy=document)


def _user_creator(admin: MinioAdmin, name: str, policies: list[str], disabled: bool, owner: bool, made: _Secrets) -> Callable[[], None]:
    def create() -> None:
        # an sa-NAME owner is never signed in as: its secret is thrown away, as create-service-account does
        admin.user_add(name, _new_secret() if owner else made.new("user", name))
        if policies:
            admin.attach_policy(policies, user=name)
        if disabled:
            admin.user_disable(name)
    return create


def _policy_setter(admin: MinioAdmin, user: str, have: list[str], wanted: list[str]) -> Callable[[], None]:
    def set_policies() -> None:
        if add := [p for p in wanted if p not in have]:
            admin.attach_policy(add, user=user)
        if remove := [p for p in have if p not in wanted]:
            admin.detach_policy(remove, user=user)
    return set_policies


def _group_setter(admin: MinioAdmin, group: str, members: list[str], policies: list[str]) -> Callable[[], None]:
    def set_group() -> None:
        admin.group_add(group, members)  # type: ignore[arg-type]  # the admin API takes a list of members
        if policies:
            try:
                admin.attach_policy(policies, group=group)
            except MinioAdminException as error:
                if "AlreadyApplied" not in str(error._body):
                    raise
    return set_group


def _account_creator(admin: MinioAdmin, key: str, account: Mapping[str, Any], made: _Secrets) -> Callable[[], None]:
    return lambda: _add_service_account(admin, key, made.new("service account", key), account)


@dataclass
class Importer:
    """A plan for one cluster, and the secrets its changes make."""

    plan: ImportPlan
    secrets: _Secrets


def plan_import(
    client: Minio, admin: Callable[[], MinioAdmin] | None, document: Mapping[str, Any], stack_users: Collection[str]
) -> Importer:
    """What it takes to make the cluster hold the document's settings; reads only. `admin` None: S3 only."""
    made = _Secrets()
    plan = ImportPlan()
    existing = {bucket.name for bucket in client.list_buckets()}
    for name, wanted in sorted((document.get("buckets") or {}).items()):
        changes, notes = _bucket_changes(client, admin, name, wanted, name in existing)
        plan.changes += changes
        plan.notes += notes
        if not changes:
            plan.same.append(f"bucket {name}")
    wanted_iam = document.get("iam")
    if wanted_iam:
        if admin is None:
            plan.notes.append("IAM (policies, users, groups, service accounts) is MinIO's admin API: not applied (--s3-only)")
        else:
            changes, same, left = _iam_changes(admin(), wanted_iam, stack_users, made)
            plan.changes += changes
            plan.same += same
            plan.left += left
    return Importer(plan, made)


def apply_import(importer: Importer, report: Callable[[str], None], secrets_out: IO[str] | None) -> int:
    """Apply every change in order; new secret keys go to `secrets_out` as they are made."""
    if importer.plan.needs_secrets_file and secrets_out is None:
        raise ConfigurationError("the plan creates users or service accounts: name a new file for their secret keys with --secrets-file")
    written = 0
    for change in importer.plan.changes:
        change.apply()
        report(f"done: {change.describe()}")
        if secrets_out is not None:
            for kind, access_key, secret in importer.secrets.made[written:]:
                secrets_out.write(f"# {kind} {access_key}\n{access_key}={secret}\n")
                secrets_out.flush()
            written = len(importer.secrets.made)
    return len(importer.plan.changes)

