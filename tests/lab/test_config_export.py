"""export-config and import-config between two S3 STAND-INS (SeaweedFS, not MinIO) on loopback.

The stand-ins have bucket settings (versioning, lifecycle, bucket policy, tags, SSE-S3
configuration, object lock) but no MinIO admin API, so these run with --s3-only: IAM and quotas are
shown at the SDK boundary instead (tests/unit/test_ops_config_document.py).
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio.commonconfig import ENABLED, Filter, Tags
from minio.lifecycleconfig import Expiration, LifecycleConfig, NoncurrentVersionExpiration, Rule
from minio.sseconfig import Rule as EncryptionRule
from minio.sseconfig import SSEConfig
from minio.versioningconfig import VersioningConfig

from ops_servers import S3StandIn, run_ops, seaweedfs_s3

pytestmark = pytest.mark.lab

BACKUPS = "backups-postgresql"


@pytest.fixture(scope="module")
def configured() -> Iterator[S3StandIn]:
    """A stand-in with every bucket setting it supports set on some bucket."""
    with seaweedfs_s3("127.0.5.50") as server:
        client = server.client()
        client.make_bucket(BACKUPS)
        client.make_bucket("logs")
        client.set_bucket_versioning("logs", VersioningConfig(ENABLED))
        client.set_bucket_lifecycle("logs", LifecycleConfig([Rule(
            ENABLED, rule_filter=Filter(prefix=""), rule_id="catalogue-retention", expiration=Expiration(days=90),
            noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=90),
        )]))
        tags = Tags.new_bucket_tags()
        tags["team"] = "platform"
        client.set_bucket_tags("logs", tags)
        client.set_bucket_encryption("logs", SSEConfig(EncryptionRule.new_sse_s3_rule()))
        client.make_bucket("artifacts")
        client.set_bucket_policy("artifacts", json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "CatalogueAnonymousRead", "Effect": "Allow", "Principal": {"AWS": ["*"]},
            "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::artifacts/*"],
        }]}))
        client.make_bucket("records", object_lock=True)
        yield server


@pytest.fixture(scope="module")
def empty() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.51") as server:
        yield server


def export(server: S3StandIn, out: Path, *extra: str) -> dict[str, object]:
    result = run_ops(["export-config", "--s3-only", "--out", str(out), *extra], server.environ())
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(out.read_text())
    return loaded


def test_export_then_import_into_an_empty_stand_in_reproduces_its_bucket_settings(
    configured: S3StandIn, empty: S3StandIn, tmp_path: Path
) -> None:
    document = export(configured, tmp_path / "source.json", "--no-bucket-copy")

    planned = run_ops(["import-config", str(tmp_path / "source.json"), "--s3-only", "--dry-run"], empty.environ())
    assert planned.returncode == 0, planned.stderr
    assert "+ bucket records: create with object lock" in planned.stdout and "dry run: nothing was changed" in planned.stdout
    assert not empty.client().bucket_exists("logs"), "a dry run changes nothing"

    applied = run_ops(["import-config", str(tmp_path / "source.json"), "--s3-only"], empty.environ())
    again = run_ops(["import-config", str(tmp_path / "source.json"), "--s3-only"], empty.environ())
    rebuilt = export(empty, tmp_path / "rebuilt.json", "--no-bucket-copy")

    assert applied.returncode == 0, applied.stderr
    assert "applied" in applied.stdout
    assert again.returncode == 0 and "no changes: the cluster holds the document's settings" in again.stdout
    assert rebuilt["buckets"] == document["buckets"]
    logs = rebuilt["buckets"]["logs"]  # type: ignore[index]
    assert logs["versioning"] == "Enabled" and logs["tags"] == {"team": "platform"} and "<Days>90</Days>" in logs["lifecycle"]
    assert "AES256" in logs["encryption"]
    assert rebuilt["buckets"]["artifacts"]["policy"]["Statement"][0]["Sid"] == "CatalogueAnonymousRead"  # type: ignore[index]
    assert "<ObjectLockEnabled>Enabled</ObjectLockEnabled>" in rebuilt["buckets"]["records"]["objectLock"]  # type: ignore[index]


def test_the_export_is_versioned_checksummed_private_and_also_kept_in_the_backup_bucket(configured: S3StandIn, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    result = run_ops(["export-config", "--s3-only", "--out", str(out)], configured.environ())

    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert (document["format"], document["version"], len(document["sha256"])) == ("minio-platform-configuration", 1, 64)
    assert document["covers"] == ["bucket settings"] and document["iam"] is None
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = result.stdout.split(f"s3://{BACKUPS}/", 1)[1].split()[0]
    assert key.startswith("config-exports/") and key.endswith(".json")
    stored = configured.client().get_object(BACKUPS, key).read()
    assert stored == out.read_bytes()
    assert configured.client().stat_object(BACKUPS, key).metadata["x-amz-meta-sha256"] == document["sha256"]

    refused = run_ops(["export-config", "--s3-only", "--out", str(out)], configured.environ())
    assert refused.returncode == 7 and "never overwritten" in refused.stderr


def test_a_changed_or_foreign_document_is_refused_before_anything_is_applied(
    configured: S3StandIn, empty: S3StandIn, tmp_path: Path
) -> None:
    document = export(configured, tmp_path / "good.json", "--no-bucket-copy")
    tampered = dict(document, buckets={**document["buckets"], "injected": {"versioning": "Enabled"}})  # type: ignore[dict-item]
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    future = dict(document, version=99)
    (tmp_path / "future.json").write_text(json.dumps(future))

    changed = run_ops(["import-config", str(tmp_path / "tampered.json"), "--s3-only"], empty.environ())
    newer = run_ops(["import-config", str(tmp_path / "future.json"), "--s3-only"], empty.environ())

    assert changed.returncode == 8 and "does not match its recorded sha256" in changed.stderr
    assert newer.returncode == 3 and "version 99" in newer.stderr
    assert not empty.client().bucket_exists("injected")


def test_import_latest_reads_the_newest_export_from_the_backup_bucket(configured: S3StandIn, tmp_path: Path) -> None:
    assert run_ops(["export-config", "--s3-only", "--out", str(tmp_path / "e.json")], configured.environ()).returncode == 0

    latest = run_ops(["import-config", "--latest", "--s3-only", "--dry-run"], configured.environ())

    assert latest.returncode == 0, latest.stderr
    assert f"s3://{BACKUPS}/config-exports/" in latest.stdout and "sha256 verified" in latest.stdout
    assert "(0 change(s))" in latest.stdout, "the cluster an export came from already holds it"
