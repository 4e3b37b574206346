"""The IAM policy documents in policies/: MinIO's grammar, only actions MinIO knows, and exactly the
access their names promise (evaluated here with IAM's rules: explicit Deny wins, otherwise any
matching Allow, otherwise denied)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import read_stack_file, split_config
from infra.secrets import SECRET_CONFIG_KEYS
from tests.conftest import ROOT

POLICY_DIR = ROOT / "policies"
KNOWN = json.loads((Path(__file__).parent / "data" / "minio-iam-actions.json").read_text())
S3_ACTIONS = set(KNOWN["s3Actions"])
OBJECT_ACTIONS = set(KNOWN["s3ObjectActions"])
ADMIN_ACTIONS = set(KNOWN["adminActions"]) | set(KNOWN["kmsActions"])
EXPECTED = {"backup-service", "readonly", "admin"}


def policies() -> dict[str, dict[str, Any]]:
    return {path.name.removesuffix("-policy.json"): json.loads(path.read_text()) for path in POLICY_DIR.glob("*-policy.json")}


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def allows(document: dict[str, Any], action: str, resource: str | None = None) -> bool:
    matched_allow = False
    for statement in statements(document):
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in _as_list(statement["Action"])):
            continue
        resources = _as_list(statement.get("Resource"))
        if action.startswith(("admin:", "kms:")):
            applies = True
        else:
            applies = resource is not None and any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources)
        if applies and statement["Effect"] == "Deny":
            return False
        matched_allow |= applies and statement["Effect"] == "Allow"
    return matched_allow


def test_the_three_policies_exist_and_parse() -> None:
    assert set(policies()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_policy_uses_minio_grammar_and_only_actions_minio_understands(name: str) -> None:
    document = policies()[name]
    assert set(document) == {"Version", "Statement"} and document["Version"] in KNOWN["versions"]
    for statement in statements(document):
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        assert statement["Effect"] in KNOWN["effects"]
        actions = _as_list(statement["Action"])
        assert actions
        for action in actions:
            assert action in S3_ACTIONS | ADMIN_ACTIONS, f"{name}: MinIO does not know {action}"
        if all(action.startswith(("admin:", "kms:")) for action in actions):
            assert "Resource" not in statement, "MinIO's admin and KMS statements carry no Resource"
            continue
        for resource in _as_list(statement["Resource"]):
            assert resource.startswith("arn:aws:s3:::"), resource
            if "/" not in resource and resource != "arn:aws:s3:::*":
                # bucket ARNs only make sense for bucket-level actions
                assert not set(actions) & (OBJECT_ACTIONS - {"s3:*"}), f"{name}: object action on bucket ARN {resource}"


def test_backup_policy_reads_and_writes_only_the_backup_bucket() -> None:
    backup = policies()["backup-service"]
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert allows(backup, action, "arn:aws:s3:::backups-postgresql/keycloak/20260101T000000Z.sql.gz")
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
    named = {r.removeprefix("arn:aws:s3:::").split("/")[0] for s in statements(readonly) for r in _as_list(s["Resource"])}
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


def test_admin_policy_grants_full_admin_kms_and_s3() -> None:
    admin = policies()["admin"]
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
        for resource in _as_list(statement.get("Resource"))
    } - {"*"}
    assert named <= set(config.buckets)
    # the scheduled backup writes where the backup-service policy lets it
    assert allows(policies()["backup-service"], "s3:PutObject", f"arn:aws:s3:::{config.backup.bucket}/x")
