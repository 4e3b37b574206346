"""`scripts/ops purge` on versioned buckets of S3 STAND-INS (SeaweedFS, not MinIO) on loopback: deletion on
request leaves no version and no delete marker, on the cluster and on its offsite copy."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from minio.versioningconfig import VersioningConfig

from ops_servers import S3StandIn, run_ops, seaweedfs_s3

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cluster() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.70") as server:
        yield server


@pytest.fixture(scope="module")
def offsite() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.71") as server:
        yield server


def history(client: Minio, bucket: str, key: str) -> None:
    """Three versions and a delete marker: what a versioned bucket keeps of an object 'deleted' three times over."""
    for text in (b"v1 personal data", b"v2 personal data", b"v3 personal data"):
        client.put_object(bucket, key, io.BytesIO(text), len(text))
    client.remove_object(bucket, key)


def everything(client: Minio, bucket: str) -> list[tuple[str, bool]]:
    return sorted((o.object_name or "", o.is_delete_marker) for o in client.list_objects(bucket, recursive=True, include_version=True))


def audit_records(output: str) -> list[dict[str, object]]:
    return [json.loads(line.split("audit ", 1)[1]) for line in output.splitlines() if line.startswith("audit ")]


def versioned(client: Minio, bucket: str) -> None:
    client.make_bucket(bucket)
    client.set_bucket_versioning(bucket, VersioningConfig("Enabled"))


def test_purge_leaves_no_version_or_delete_marker_and_writes_one_audit_line_per_object(cluster: S3StandIn, tmp_path: Path) -> None:
    client = cluster.client()
    versioned(client, "p-users")
    history(client, "p-users", "users/42/profile.json")
    client.put_object("p-users", "users/42/avatar.png", io.BytesIO(b"png"), 3)
    client.put_object("p-users", "users/7/profile.json", io.BytesIO(b"other user"), 10)
    audit_log = tmp_path / "purge-audit.jsonl"

    result = run_ops(["purge", "p-users", "--prefix", "users/42/", "--reason", "request 2026-118", "--audit-log", str(audit_log)],
                     cluster.environ())

    assert result.returncode == 0, result.stderr
    assert everything(client, "p-users") == [("users/7/profile.json", False)]
    records = audit_records(result.stdout)
    assert [(r["key"], r["versions"], r["deleteMarkers"], r["result"]) for r in records] == [
        ("users/42/avatar.png", 1, 0, "purged"), ("users/42/profile.json", 3, 1, "purged"),
    ]
    assert all(r["reason"] == "request 2026-118" and r["by"] == cluster.access_key and r["bucket"] == "p-users" for r in records)
    assert [json.loads(line.split("audit ", 1)[1]) for line in audit_log.read_text().splitlines()] == records
    assert stat.S_IMODE(audit_log.stat().st_mode) == 0o600, "the keys it names may be personal data"


def test_a_dry_run_lists_what_would_go_and_removes_nothing(cluster: S3StandIn) -> None:
    client = cluster.client()
    versioned(client, "p-dry")
    history(client, "p-dry", "invoice.pdf")
    before = everything(client, "p-dry")

    result = run_ops(["purge", "p-dry", "invoice.pdf", "--dry-run"], cluster.environ())

    assert result.returncode == 0, result.stderr
    assert everything(client, "p-dry") == before
    [record] = audit_records(result.stdout)
    assert (record["versions"], record["deleteMarkers"], record["result"]) == (3, 1, "dry run: would be removed")
    assert "dry run: nothing was removed" in result.stdout


def test_purge_also_removes_the_offsite_copy_when_asked(cluster: S3StandIn, offsite: S3StandIn) -> None:
    client, copy = cluster.client(), offsite.client()
    versioned(client, "p-mirrored")
    client.put_object("p-mirrored", "contract.pdf", io.BytesIO(b"first"), 5)
    env = {**cluster.environ(), "OPS_TARGET_ENDPOINT": offsite.url, "OPS_TARGET_ACCESS_KEY": offsite.access_key,
           "OPS_TARGET_SECRET_KEY": offsite.secret_key}
    assert run_ops(["mirror", "p-mirrored"], env).returncode == 0
    client.put_object("p-mirrored", "contract.pdf", io.BytesIO(b"second"), 6)
    assert run_ops(["mirror", "p-mirrored"], env).returncode == 0
    assert len(everything(copy, "p-mirrored")) == 2, "the versioned copy kept both"

    result = run_ops(["purge", "p-mirrored", "contract.pdf", "--also-target"], env)

    assert result.returncode == 0, result.stderr
    assert everything(client, "p-mirrored") == [] and everything(copy, "p-mirrored") == []
    assert [r["endpoint"] for r in audit_records(result.stdout)] == [cluster.url, offsite.url]


def test_purge_refuses_a_whole_bucket_and_says_when_nothing_matched(cluster: S3StandIn) -> None:
    cluster.client().make_bucket("p-empty")
    whole = run_ops(["purge", "p-empty"], cluster.environ())
    nothing = run_ops(["purge", "p-empty", "no-such-key"], cluster.environ())

    assert whole.returncode == 3 and "never purged by accident" in whole.stderr
    assert nothing.returncode == 6 and "nothing matched" in nothing.stderr
