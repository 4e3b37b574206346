"""sync-buckets, create-bucket and list-buckets against an S3 STAND-IN (SeaweedFS, not MinIO).

What the stand-in implements and is asserted here: bucket creation, versioning, lifecycle
configuration read back (expiry is not waited for), bucket policies that really let anonymous
clients download. What it does not implement the way MinIO does is not asserted: SSE-S3 bucket
encryption needs a KMS it is not given, and quotas are MinIO's admin API (tested at the SDK
boundary in tests/unit/test_ops_cli_minio_admin.py; the live smoke suite exercises them on MinIO).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from ops_servers import OPS_ADMIN_SECRET_KEY, S3StandIn, free_port, run_ops, seaweedfs_s3
from tests.conftest import ROOT

pytestmark = pytest.mark.lab

CATALOGUE = {
    "backups-postgresql": {"purpose": "dumps", "retentionDays": 30, "versioning": True},
    "logs": {"purpose": "logs", "retentionDays": 90},
    "artifacts": {"purpose": "releases", "versioning": True, "anonymousRead": True},
    "temp": {"purpose": "scratch", "retentionDays": 7},
}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.20") as server:
        yield server


def stack_file(tmp_path: Path, catalogue: dict[str, object]) -> Path:
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump({"config": {"minio-platform:environment": "dev", "minio-platform:buckets": catalogue}}))
    return path


def sync(s3: S3StandIn, config: Path, *extra: str) -> tuple[int, str, str]:
    result = run_ops(["sync-buckets", "--stack", "lab", "--config-file", str(config), *extra], s3.environ())
    return result.returncode, result.stdout, result.stderr


def test_sync_buckets_twice_changes_nothing_the_second_time(s3: S3StandIn, tmp_path: Path) -> None:
    config = stack_file(tmp_path, CATALOGUE)

    first = sync(s3, config)
    second = sync(s3, config)

    assert first[0] == 0, first[2]
    assert "+ create bucket backups-postgresql" in first[1]
    assert second[0] == 0, second[2]
    assert "(0 change(s))" in second[1] and "no changes: the cluster matches the catalogue" in second[1]
    assert {b.name for b in s3.client().list_buckets()} >= set(CATALOGUE)


def test_catalogue_settings_read_back_as_configured_on_the_stand_in(s3: S3StandIn, tmp_path: Path) -> None:
    assert sync(s3, stack_file(tmp_path, CATALOGUE))[0] == 0
    client = s3.client()

    assert client.get_bucket_versioning("backups-postgresql").status == "Enabled"
    assert client.get_bucket_versioning("artifacts").status == "Enabled"
    assert client.get_bucket_versioning("logs").status in (None, "Off")
    rules = {name: client.get_bucket_lifecycle(name).rules for name in ("backups-postgresql", "logs", "temp")}
    assert {name: rule[0].expiration.days for name, rule in rules.items()} == {"backups-postgresql": 30, "logs": 90, "temp": 7}
    # the versioned bucket also expires old versions, or deleted dumps would be kept forever
    assert rules["backups-postgresql"][0].noncurrent_version_expiration.noncurrent_days == 30
    assert client.get_bucket_lifecycle("artifacts") is None

    client.put_object("artifacts", "release.txt", io.BytesIO(b"public"), 6)
    client.put_object("logs", "private.txt", io.BytesIO(b"secret"), 6)
    assert requests.get(f"{s3.url}/artifacts/release.txt", timeout=10).content == b"public"
    assert requests.get(f"{s3.url}/logs/private.txt", timeout=10).status_code == 403


def test_sync_corrects_drift_and_keeps_foreign_policy_statements(s3: S3StandIn, tmp_path: Path) -> None:
    config = stack_file(tmp_path, CATALOGUE)
    assert sync(s3, config)[0] == 0
    client = s3.client()
    foreign = {"Sid": "SomeoneElses", "Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
               "Resource": ["arn:aws:s3:::temp/shared/*"]}
    client.set_bucket_policy("temp", json.dumps({"Version": "2012-10-17", "Statement": [foreign]}))
    client.delete_bucket_lifecycle("logs")
    changed = dict(CATALOGUE, artifacts={"purpose": "releases", "versioning": True})  # anonymous read withdrawn

    code, plan, _ = sync(s3, stack_file(tmp_path, changed))

    assert code == 0
    assert "~ logs: retention kept forever -> expire after 90 days" in plan
    assert "~ artifacts: anonymous read on -> off" in plan
    assert client.get_bucket_lifecycle("logs").rules[0].expiration.days == 90
    assert "SomeoneElses" in client.get_bucket_policy("temp")
    assert requests.get(f"{s3.url}/artifacts/release.txt", timeout=10).status_code == 403


def test_dry_run_shows_the_plan_and_changes_nothing(s3: S3StandIn, tmp_path: Path) -> None:
    config = stack_file(tmp_path, dict(CATALOGUE, **{"dry-run-only": {"purpose": "never created", "retentionDays": 3}}))

    code, out, _ = sync(s3, config, "--dry-run")

    assert code == 0
    assert "+ create bucket dry-run-only" in out and "dry run: nothing was changed" in out
    assert not s3.client().bucket_exists("dry-run-only")


def test_prune_deletes_empty_uncatalogued_buckets_and_refuses_ones_holding_objects(s3: S3StandIn, tmp_path: Path) -> None:
    client = s3.client()
    client.make_bucket("stray-empty")
    client.make_bucket("stray-full")
    client.put_object("stray-full", "keep-me", io.BytesIO(b"data"), 4)
    config = stack_file(tmp_path, CATALOGUE)

    refused = sync(s3, config, "--prune")
    assert refused[0] == 7 and "stray-full" in refused[2] and "nothing was changed" in refused[2]
    assert client.bucket_exists("stray-empty"), "a refused plan changes nothing"

    kept = sync(s3, config)
    assert kept[0] == 0 and "? stray-full: not in the catalogue" in kept[1]
    assert client.bucket_exists("stray-full") and client.bucket_exists("stray-empty")

    client.remove_object("stray-full", "keep-me")
    pruned = sync(s3, config, "--prune")
    assert pruned[0] == 0, pruned[2]
    assert not client.bucket_exists("stray-empty") and not client.bucket_exists("stray-full")


def test_create_bucket_with_retention_and_list_buckets_counts_objects(s3: S3StandIn) -> None:
    created = run_ops(["create-bucket", "reports", "--retention-days", "14"], s3.environ())
    client = s3.client()
    for index in range(3):
        client.put_object("reports", f"r{index}", io.BytesIO(b"x" * 1000), 1000)

    listed = run_ops(["list-buckets", "--json"], s3.environ())
    bad_name = run_ops(["create-bucket", "Not_A_Bucket"], s3.environ())

    assert created.returncode == 0, created.stderr
    assert client.get_bucket_lifecycle("reports").rules[0].expiration.days == 14
    usage = {item["name"]: item for item in json.loads(listed.stdout)}
    assert (usage["reports"]["objects"], usage["reports"]["bytes"]) == (3, 3000)
    assert bad_name.returncode == 3 and "not a bucket name" in bad_name.stderr


def test_the_shipped_stacks_catalogues_sync_cleanly_on_the_stand_in(s3: S3StandIn) -> None:
    # dev's catalogue asks nothing the stand-in lacks (no encryption, no quota)
    first = run_ops(["sync-buckets", "--stack", "dev", "--config-file", str(ROOT / "Pulumi.dev.yaml")], s3.environ())
    again = run_ops(["sync-buckets", "--stack", "dev", "--config-file", str(ROOT / "Pulumi.dev.yaml")], s3.environ())

    assert first.returncode == 0, first.stderr
    assert "no changes" in again.stdout


def test_create_bucket_on_an_existing_bucket_changes_only_what_it_is_asked(s3: S3StandIn) -> None:
    client = s3.client()
    assert run_ops(["create-bucket", "kept-versioned", "--versioning"], s3.environ()).returncode == 0

    again = run_ops(["create-bucket", "kept-versioned", "--retention-days", "5"], s3.environ())

    assert again.returncode == 0, again.stderr
    assert client.get_bucket_versioning("kept-versioned").status == "Enabled"
    rule = client.get_bucket_lifecycle("kept-versioned").rules[0]
    assert rule.expiration.days == 5 and rule.noncurrent_version_expiration.noncurrent_days == 5


def outputs_file(tmp_path: Path, s3: S3StandIn, **extra: object) -> Path:
    # root's credentials are in every stack's outputs; the stand-in does not know them
    values = {"endpoints": {"s3": s3.url}, "minioRootUser": "root-not-on-the-stand-in", "minioRootPassword": "x" * 24, **extra}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(values))
    return path


def test_from_stack_outputs_the_cli_signs_in_as_ops_admin_never_as_root(s3: S3StandIn, tmp_path: Path) -> None:
    with_ops_admin = outputs_file(tmp_path, s3, opsAdminSecretKey=OPS_ADMIN_SECRET_KEY)
    listed = run_ops(["list-buckets", "--outputs-file", str(with_ops_admin), "--json"], {})
    assert listed.returncode == 0, listed.stderr

    root_only = outputs_file(tmp_path, s3)
    refused = run_ops(["list-buckets", "--outputs-file", str(root_only)], {})
    assert refused.returncode == 3 and "opsAdminSecretKey" in refused.stderr and "bootstrap" in refused.stderr


def test_s3_calls_keep_the_s3_endpoint_when_the_outputs_name_an_admin_listener(s3: S3StandIn, tmp_path: Path) -> None:
    # the admin listener is closed: any S3 call sent there would fail as unreachable
    closed = f"http://127.0.5.20:{free_port('127.0.5.20')}"
    outputs = outputs_file(tmp_path, s3, opsAdminSecretKey=OPS_ADMIN_SECRET_KEY, endpoints={"s3": s3.url, "minioAdmin": closed})
    config = stack_file(tmp_path, dict(CATALOGUE, **{"admin-listener-check": {"purpose": "made through the S3 endpoint"}}))

    synced = run_ops(["sync-buckets", "--stack", "lab", "--config-file", str(config), "--outputs-file", str(outputs)], {})
    policies = run_ops(["install-policies", "readonly", "--outputs-file", str(outputs)], {})

    assert synced.returncode == 0, synced.stderr
    assert s3.client().bucket_exists("admin-listener-check")
    # admin calls do go to the admin listener (here closed), and the error names it
    assert policies.returncode == 4 and f"cannot reach {closed}" in policies.stderr
