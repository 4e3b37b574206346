"""The IAM policy documents in policies/: MinIO's grammar, only actions MinIO knows, and exactly the
access their names promise (evaluated here with IAM's rules as minio/pkg's Policy.IsAllowed applies
them: explicit Deny wins, otherwise any matching Allow, otherwise denied; and MinIO's deny-only
check, where only an explicit Deny refuses)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import read_stack_file, split_config
from infra.secrets import SECRET_CONFIG_KEYS
from opscli.pgbackup import INCOMING
from tests.conftest import ROOT

POLICY_DIR = ROOT / "policies"
KNOWN = json.loads((Path(__file__).parent / "data" / "minio-iam-actions.json").read_text())
S3_ACTIONS = set(KNOWN["s3Actions"])
OBJECT_ACTIONS = set(KNOWN["s3ObjectActions"])
ADMIN_ACTIONS = set(KNOWN["adminActions"]) | set(KNOWN["kmsActions"])
EXPECTED = {"backup-service", "readonly", "admin", "metrics-reader"}
# what mints a key, sets a secret, or changes what a key may do. MinIO checks the first two only for
# an explicit Deny when the target is the caller itself or its parent (cmd/admin-handlers-users.go:
# AddUser's checkDenyOnly, commonAddServiceAccount's denyOnly); attaching needs either of the two
# policy-association actions (validateAdminReq in AttachDetachPolicyBuiltin)
CREDENTIAL_ACTIONS = (
    "admin:CreateServiceAccount",
    "admin:CreateUser",
    "admin:UpdateServiceAccount",
    "admin:RemoveServiceAccount",
    "admin:AddUserToGroup",
    "admin:AttachUserOrGroupPolicy",
    "admin:UpdatePolicyAssociation",
    "admin:CreatePolicy",
)
BACKUP_BUCKET = "backups-postgresql"
FINAL_KEY = f"arn:aws:s3:::{BACKUP_BUCKET}/keycloak/20260101T000000Z.sql.gz"
STAGED_KEY = f"arn:aws:s3:::{BACKUP_BUCKET}/{INCOMING}keycloak/20260101T000000Z.sql.gz"


def policies() -> dict[str, dict[str, Any]]:
    return {path.name.removesuffix("-policy.json"): json.loads(path.read_text()) for path in POLICY_DIR.glob("*-policy.json")}


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _applies(statement: dict[str, Any], action: str, resource: str | None) -> bool:
    if not _matches(action, _as_list(statement["Action"])):
        return False
    if action.startswith(("admin:", "kms:")):
        return True  # MinIO ignores resources on admin statements
    if resource is None:
        return False
    if "NotResource" in statement:
        return not _matches(resource, _as_list(statement["NotResource"]))
    return _matches(resource, _as_list(statement.get("Resource")))


def allows(document: dict[str, Any], action: str, resource: str | None = None, deny_only: bool = False) -> bool:
    """With `deny_only`, as MinIO asks for actions on one's own account: allowed unless explicitly denied."""
    applying = [statement for statement in statements(document) if _applies(statement, action, resource)]
    if any(statement["Effect"] == "Deny" for statement in applying):
        return False
    return deny_only or any(statement["Effect"] == "Allow" for statement in applying)


def minio_allows_versioned_delete(document: dict[str, Any], resource: str) -> bool:
    """A DELETE with a versionId, as cmd/auth-handler.go authorizeRequest decides it: s3:DeleteObject must
    be allowed, s3:DeleteObjectVersion is only checked for an explicit Deny."""
    return allows(document, "s3:DeleteObject", resource) and allows(document, "s3:DeleteObjectVersion", resource, deny_only=True)


def test_the_policies_exist_and_parse() -> None:
    assert set(policies()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_policy_uses_minio_grammar_and_only_actions_minio_understands(name: str) -> None:
    document = policies()[name]
    assert set(document) == {"Version", "Statement"} and document["Version"] in KNOWN["versions"]
    for statement in statements(document):
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "NotResource", "Condition"}, statement
        assert statement["Effect"] in KNOWN["effects"]
        actions = _as_list(statement["Action"])
        assert actions
        for action in actions:
            assert action in S3_ACTIONS | ADMIN_ACTIONS, f"{name}: MinIO does not know {action}"
        if any(action.startswith(("admin:", "kms:")) for action in actions):
            # minio/pkg: a statement with an admin action must hold admin actions only
            assert all(action.startswith(("admin:", "kms:")) for action in actions), statement
            assert "Resource" not in statement and "NotResource" not in statement, "MinIO's admin and KMS statements carry no Resource"
            continue
        assert ("Resource" in statement) != ("NotResource" in statement), "exactly one of Resource and NotResource"
        for resource in _as_list(statement.get("Resource") or statement.get("NotResource")):
            assert resource.startswith("arn:aws:s3:::"), resource
            if "/" not in resource and resource != "arn:aws:s3:::*":
                # bucket ARNs only make sense for bucket-level actions
                assert not set(actions) & (OBJECT_ACTIONS - {"s3:*"}), f"{name}: object action on bucket ARN {resource}"


def test_backup_policy_reads_and_writes_only_the_backup_bucket() -> None:
    backup = policies()["backup-service"]
    for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"):
        assert allows(backup, action, FINAL_KEY)
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert allows(backup, action, STAGED_KEY)
    assert allows(backup, "s3:ListBucket", "arn:aws:s3:::backups-postgresql")
    assert allows(backup, "s3:ListAllMyBuckets", "arn:aws:s3:::*")


@pytest.mark.parametrize("bucket", ["logs", "artifacts", "temp", "backups-postgresql-other"])
def test_backup_policy_cannot_read_write_or_delete_outside_its_bucket(bucket: str) -> None:
    backup = policies()["backup-service"]
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObject", "s3:GetObject"):
        assert not allows(backup, action, f"arn:aws:s3:::{bucket}/anything")
    assert not allows(backup, "s3:DeleteBucket", f"arn:aws:s3:::{bucket}")


def test_backup_policy_cannot_administer_or_reconfigure_anything() -> None:
    backup = policies()["backup-service"]
    for action in ("admin:CreateUser", "admin:ServerInfo", "admin:SetBucketQuota", "kms:*"):
        assert not allows(backup, action)
    for action in ("s3:DeleteBucket", "s3:PutBucketPolicy", "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning",
                   "s3:CreateBucket", "s3:BypassGovernanceRetention"):
        assert not allows(backup, action, "arn:aws:s3:::backups-postgresql")


def test_readonly_policy_gets_and_lists_the_buckets_it_names_and_writes_nothing() -> None:
    readonly = policies()["readonly"]
    named = {r.removeprefix("arn:aws:s3:::").split("/")[0] for s in statements(readonly) for r in _as_list(s.get("Resource"))}
    assert named == {"artifacts", "logs"}
    for bucket in named:
        assert allows(readonly, "s3:GetObject", f"arn:aws:s3:::{bucket}/file")
        assert allows(readonly, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
    assert not allows(readonly, "s3:GetObject", "arn:aws:s3:::backups-postgresql/dump.sql.gz")
    every_action = S3_ACTIONS - {"s3:*", "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
    for action in every_action:
        for bucket in named:
            assert not allows(readonly, action, f"arn:aws:s3:::{bucket}/file"), action
            assert not allows(readonly, action, f"arn:aws:s3:::{bucket}"), action
    assert not allows(readonly, "admin:ServerInfo")


def test_backup_policy_can_delete_its_staging_copies_and_no_backup() -> None:
    backup = policies()["backup-service"]
    # what backup-postgres does: remove the exact version it staged under .incoming/
    assert minio_allows_versioned_delete(backup, STAGED_KEY)
    assert allows(backup, "s3:DeleteObject", STAGED_KEY)
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
        assert not allows(backup, action, FINAL_KEY, deny_only=True), f"{action} on a backup is not explicitly denied"
        assert not allows(backup, action, f"arn:aws:s3:::logs/{INCOMING}x", deny_only=True)
    assert not minio_allows_versioned_delete(backup, FINAL_KEY)


def test_minio_lets_an_allowed_delete_remove_any_version_unless_a_deny_says_otherwise() -> None:
    # why the Deny is needed: allowing DeleteObject alone lets a versionId delete destroy old versions
    delete_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": [f"arn:aws:s3:::{BACKUP_BUCKET}/*"]},
    ]}
    assert minio_allows_versioned_delete(delete_only, FINAL_KEY)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_an_overwrite_keeps_the_old_version_because_backup_service_cannot_touch_versioning(stack: str) -> None:
    # IAM cannot refuse a PutObject to an existing key while allowing new ones; on a versioned bucket
    # the overwritten dump stays as a noncurrent version, and the service may not change that
    backup = policies()["backup-service"]
    values, encrypted = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    config, _ = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    assert config.buckets[config.backup.bucket].versioning
    assert allows(backup, "s3:PutObject", f"arn:aws:s3:::{config.backup.bucket}/keycloak/x.sql.gz")
    for action in ("s3:PutBucketVersioning", "s3:PutLifecycleConfiguration", "s3:PutReplicationConfiguration",
                   "s3:PutBucketPolicy", "s3:DeleteBucket", "s3:ForceDeleteBucket"):
        assert not allows(backup, action, f"arn:aws:s3:::{config.backup.bucket}", deny_only=True), action
    for action in ("s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:BypassGovernanceRetention"):
        assert not allows(backup, action, FINAL_KEY, deny_only=True), action


def test_the_staging_prefix_the_backup_policy_spares_is_the_one_backups_use() -> None:
    spared = {r for s in statements(policies()["backup-service"]) if s["Effect"] == "Deny" for r in _as_list(s.get("NotResource"))}
    assert spared == {f"arn:aws:s3:::{BACKUP_BUCKET}/{INCOMING}*"}


@pytest.mark.parametrize("name", ["readonly", "backup-service", "metrics-reader"])
def test_non_admin_policies_explicitly_deny_minting_or_changing_credentials(name: str) -> None:
    document = policies()[name]
    for action in CREDENTIAL_ACTIONS:
        assert action in ADMIN_ACTIONS
        # deny-only: how MinIO decides a key for oneself, or one's own new password
        assert not allows(document, action, deny_only=True), f"{name} does not explicitly deny {action}"


def test_metrics_reader_may_only_scrape_metrics() -> None:
    metrics = policies()["metrics-reader"]
    assert allows(metrics, "admin:Prometheus")
    assert [a for a in sorted(ADMIN_ACTIONS - {"admin:*", "kms:*", "admin:Prometheus"}) if allows(metrics, a)] == []
    assert [a for a in sorted(S3_ACTIONS) if allows(metrics, a, "arn:aws:s3:::logs/x") or allows(metrics, a, "arn:aws:s3:::logs")] == []


def test_admin_policy_grants_full_admin_kms_and_s3() -> None:
    admin = policies()["admin"]
    # ops-admin signs in with it and creates every other user, policy and key
    for action in ("admin:CreateUser", "admin:CreatePolicy", "admin:AttachUserOrGroupPolicy", "admin:ListServiceAccounts"):
        assert allows(admin, action)
    assert not any(statement["Effect"] == "Deny" for statement in statements(admin))
    assert allows(admin, "admin:CreateServiceAccount") and allows(admin, "admin:SetBucketQuota")
    assert allows(admin, "kms:*")
    assert allows(admin, "s3:DeleteBucket", "arn:aws:s3:::anything")
    assert allows(admin, "s3:PutObject", "arn:aws:s3:::anything/key")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_bucket_a_policy_names_is_in_each_shipped_catalogue(stack: str) -> None:
    values, encrypted = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    config, _ = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    named = {
        resource.removeprefix("arn:aws:s3:::").split("/")[0]
        for document in policies().values()
        for statement in statements(document)
        for resource in _as_list(statement.get("Resource")) + _as_list(statement.get("NotResource"))
    } - {"*"}
    assert named <= set(config.buckets)
    # the scheduled backup writes where the backup-service policy lets it
    assert allows(policies()["backup-service"], "s3:PutObject", f"arn:aws:s3:::{config.backup.bucket}/x")
