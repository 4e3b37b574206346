"""`scripts/ops mirror` between two S3 STAND-INS (SeaweedFS, not MinIO) on loopback, through the command
line as an operator runs it: one stand-in plays the cluster, the other the offsite target.

What is asserted is S3 behaviour both servers implement (versions, multipart uploads and their
listing, If-Match); nothing here is reported as MinIO behaviour.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import resource
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from minio import Minio
from minio.versioningconfig import VersioningConfig

from ops_servers import S3StandIn, run_ops, seaweedfs_s3
from tests.conftest import ROOT

pytestmark = pytest.mark.lab

MIB = 1 << 20


# a pair of servers per test: the stand-in gives each bucket its own volumes and runs out after five
@pytest.fixture
def source() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.40") as server:
        yield server


@pytest.fixture
def target() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.41") as server:
        yield server


def both(source: S3StandIn, target: S3StandIn, **extra: str) -> dict[str, str]:
    return {
        **source.environ(), "OPS_TARGET_ENDPOINT": target.url, "OPS_TARGET_ACCESS_KEY": target.access_key,
        "OPS_TARGET_SECRET_KEY": target.secret_key, **extra,
    }


class PatternStream:
    """`size` bytes of seeded pseudo-random data, generated as read: large objects without large memory."""

    def __init__(self, size: int, seed: int) -> None:
        self.left = size
        self._random = random.Random(seed)

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return self._random.randbytes(size)


def put_large(client: Minio, bucket: str, key: str, size: int, seed: int) -> None:
    client.put_object(bucket, key, PatternStream(size, seed), size, part_size=16 * MIB)  # type: ignore[arg-type]


def sha256_of(client: Minio, bucket: str, key: str, version_id: str | None = None) -> str:
    digest = hashlib.sha256()
    response = client.get_object(bucket, key, version_id=version_id)
    try:
        for chunk in response.stream(MIB):
            digest.update(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest()


def versions(client: Minio, bucket: str) -> dict[str, list[str]]:
    """Every version id (delete markers as 'delete-marker'), by key; versions newest first, then markers (the SDK
    reads them as two lists)."""
    found: dict[str, list[str]] = {}
    for item in client.list_objects(bucket, recursive=True, include_version=True):
        found.setdefault(item.object_name or "", []).append("delete-marker" if item.is_delete_marker else str(item.version_id))
    return found


def unfinished_uploads(client: Minio, bucket: str) -> list[str]:
    return [upload.object_name for upload in client._list_multipart_uploads(bucket).uploads]


def versioned_bucket(client: Minio, name: str) -> None:
    client.make_bucket(name)
    client.set_bucket_versioning(name, VersioningConfig("Enabled"))


def copied_lines(output: str) -> list[str]:
    return sorted(line.split()[1] for line in output.splitlines() if line.strip().startswith("copied "))


def test_mirror_copies_exactly_the_new_and_changed_objects_on_s3_stand_ins(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    versioned_bucket(here, "m-changed")  # the target bucket is created versioned too: every write shows as a version
    for index in range(6):
        data = f"object {index} ".encode() * 100
        here.put_object("m-changed", f"docs/{index}.txt", io.BytesIO(data), len(data), content_type="text/plain",
                        metadata={"owner": f"team-{index}"})
    put_large(here, "m-changed", "large.bin", 12 * MIB, seed=1)  # copied as a multipart upload: its ETag differs there

    first = run_ops(["mirror", "m-changed", "--part-size-mib", "5"], both(source, target))
    assert first.returncode == 0, first.stderr
    assert len(copied_lines(first.stdout)) == 7
    assert "+ create bucket m-changed on the target (versioned)" in first.stdout

    # same size, other content: only the ETag tells them apart
    here.put_object("m-changed", "docs/2.txt", io.BytesIO(b"OBJECT 2 " * 100), 900, content_type="text/plain")
    here.put_object("m-changed", "docs/new.txt", io.BytesIO(b"new"), 3)
    second = run_ops(["mirror", "m-changed", "--part-size-mib", "5"], both(source, target))
    third = run_ops(["mirror", "m-changed", "--part-size-mib", "5"], both(source, target))

    assert second.returncode == 0, second.stderr
    assert copied_lines(second.stdout) == ["m-changed/docs/2.txt", "m-changed/docs/new.txt"]
    assert "+ m-changed/docs/2.txt 900 B (changed)" in second.stdout and "+ m-changed/docs/new.txt 3 B (new)" in second.stdout
    assert third.returncode == 0 and copied_lines(third.stdout) == [] and "plan: 0 to copy" in third.stdout
    written = {key: len(ids) for key, ids in versions(there, "m-changed").items()}
    assert written == {**{f"docs/{i}.txt": 1 for i in range(6)}, "docs/2.txt": 2, "docs/new.txt": 1, "large.bin": 1}
    for key in [*(f"docs/{i}.txt" for i in range(6)), "docs/new.txt", "large.bin"]:
        assert sha256_of(there, "m-changed", key) == sha256_of(here, "m-changed", key), key
    copy = there.stat_object("m-changed", "docs/4.txt")
    assert copy.content_type == "text/plain" and copy.metadata["x-amz-meta-owner"] == "team-4"
    assert "-" in (there.stat_object("m-changed", "large.bin").etag or ""), "the copy is multipart, so its ETag is not the source's"


def _mirror_process(source: S3StandIn, target: S3StandIn, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "opscli", "mirror", *args],
        env={**os.environ, **both(source, target)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_a_mirror_killed_mid_transfer_resumes_without_duplicating_or_losing_an_object(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    versioned_bucket(here, "m-resume")
    small = [f"a-{index:02}" for index in range(5)] + [f"c-{index:02}" for index in range(5)]
    for key in small:
        here.put_object("m-resume", key, io.BytesIO(key.encode() * 50), len(key) * 50)
    put_large(here, "m-resume", "b-large.bin", 200 * MIB, seed=2)  # copied after the a-*, before the c-*

    process = _mirror_process(source, target, "m-resume", "--part-size-mib", "5")
    parts = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            uploads = there._list_multipart_uploads("m-resume").uploads if there.bucket_exists("m-resume") else []
            if uploads and uploads[0].upload_id:
                parts = len(there._list_parts("m-resume", "b-large.bin", uploads[0].upload_id).parts)
                if parts >= 3:
                    process.send_signal(signal.SIGKILL)  # no cleanup of any kind: a power cut
                    break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    assert parts >= 3, "the mirror was not caught in the middle of the large object"
    assert unfinished_uploads(there, "m-resume") == ["b-large.bin"]
    assert "b-large.bin" not in {o.object_name for o in there.list_objects("m-resume")}

    again = run_ops(["mirror", "m-resume", "--part-size-mib", "5"], both(source, target))

    assert again.returncode == 0, again.stderr
    resumed = next(line for line in again.stdout.splitlines() if "b-large.bin" in line and line.strip().startswith("copied"))
    assert "(resumed from part" in resumed and "of 40)" in resumed
    assert not [key for key in copied_lines(again.stdout) if key.startswith("m-resume/a-")], "finished objects are not copied again"
    assert {key: len(ids) for key, ids in versions(there, "m-resume").items()} == {key: 1 for key in [*small, "b-large.bin"]}
    for key in [*small, "b-large.bin"]:
        assert sha256_of(there, "m-resume", key) == sha256_of(here, "m-resume", key), key
    assert unfinished_uploads(there, "m-resume") == []


# the child's address-space limit; the object below is larger than this
MEMORY_LIMIT_MIB = 128


def _limit_memory() -> None:
    limit = MEMORY_LIMIT_MIB * MIB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_an_object_larger_than_the_process_memory_limit_streams_through(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    here.make_bucket("m-memory")
    put_large(here, "m-memory", "huge.bin", 3 * MEMORY_LIMIT_MIB * MIB // 2 + 3 * MIB, seed=3)

    # glibc reserves 64 MiB of address space per thread arena: keep to two so the limit measures our buffers
    result = run_ops(["mirror", "m-memory", "--part-size-mib", "8"], both(source, target, MALLOC_ARENA_MAX="2"), preexec=_limit_memory)

    assert result.returncode == 0, result.stderr[-2000:]
    assert (there.stat_object("m-memory", "huge.bin").size or 0) > MEMORY_LIMIT_MIB * MIB
    assert sha256_of(there, "m-memory", "huge.bin") == sha256_of(here, "m-memory", "huge.bin")


def test_deletions_reach_the_target_only_when_asked(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    versioned_bucket(here, "m-deletes")
    for key in ("keep", "drop"):
        here.put_object("m-deletes", key, io.BytesIO(key.encode()), len(key))
    assert run_ops(["mirror", "m-deletes"], both(source, target)).returncode == 0
    here.remove_object("m-deletes", "drop")

    kept = run_ops(["mirror", "m-deletes"], both(source, target))
    assert kept.returncode == 0, kept.stderr
    assert "1 object(s) deleted here stay on the target (--delete removes them)" in kept.stdout
    assert {o.object_name for o in there.list_objects("m-deletes")} == {"keep", "drop"}

    removed = run_ops(["mirror", "m-deletes", "--delete"], both(source, target))
    assert removed.returncode == 0, removed.stderr
    assert "removed m-deletes/drop from the target" in removed.stdout
    assert {o.object_name for o in there.list_objects("m-deletes")} == {"keep"}
    # on a versioned target the copy's history stays: a delete marker over the old version
    assert sorted(versions(there, "m-deletes")["drop"])[-1] == "delete-marker" and len(versions(there, "m-deletes")["drop"]) == 2


def test_dry_run_shows_the_plan_and_copies_nothing(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    here.make_bucket("m-dry")
    here.put_object("m-dry", "report.csv", io.BytesIO(b"a,b\n"), 4)

    planned = run_ops(["mirror", "m-dry", "--dry-run"], both(source, target))

    assert planned.returncode == 0, planned.stderr
    assert "+ create bucket m-dry on the target" in planned.stdout and "+ m-dry/report.csv 4 B (new)" in planned.stdout
    assert "dry run: nothing was copied or removed" in planned.stdout
    assert not there.bucket_exists("m-dry")


def test_all_versions_are_copied_in_order_where_both_buckets_are_versioned(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    versioned_bucket(here, "m-history")
    for text in (b"first", b"second", b"third"):
        here.put_object("m-history", "notes.txt", io.BytesIO(text), len(text))

    first = run_ops(["mirror", "m-history", "--all-versions"], both(source, target))
    again = run_ops(["mirror", "m-history", "--all-versions"], both(source, target))

    assert first.returncode == 0, first.stderr
    assert "(noncurrent version)" in first.stdout
    ids = versions(there, "m-history")["notes.txt"]
    assert [there.get_object("m-history", "notes.txt", version_id=v).read() for v in ids] == [b"third", b"second", b"first"]
    assert again.returncode == 0 and copied_lines(again.stdout) == []


def test_target_failures_are_one_sentence_naming_the_target(source: S3StandIn, target: S3StandIn) -> None:
    source.client().make_bucket("m-errors")
    bad_key = run_ops(["mirror", "m-errors"], both(source, target, OPS_TARGET_SECRET_KEY="wrong-secret"))
    no_target = run_ops(["mirror", "m-errors"], source.environ())

    assert bad_key.returncode == 5 and target.url in bad_key.stderr and bad_key.stderr.count("\n") == 1
    assert no_target.returncode == 3 and "OPS_TARGET_SECRET_KEY" in no_target.stderr


def test_the_copy_is_mirrored_back_into_a_named_bucket_after_a_loss(source: S3StandIn, target: S3StandIn) -> None:
    here, there = source.client(), target.client()
    here.make_bucket("m-back")
    here.put_object("m-back", "ledger.csv", io.BytesIO(b"1,2,3\n"), 6)
    assert run_ops(["mirror", "m-back", "--target-bucket-prefix", "off-"], both(source, target)).returncode == 0

    # the roles swapped: the offsite copy is the source, the rebuilt cluster the target
    swapped = {**target.environ(), "OPS_TARGET_ENDPOINT": source.url, "OPS_TARGET_ACCESS_KEY": source.access_key,
               "OPS_TARGET_SECRET_KEY": source.secret_key}
    back = run_ops(["mirror", "off-m-back:m-back-restored"], swapped)

    assert back.returncode == 0, back.stderr
    assert here.get_object("m-back-restored", "ledger.csv").read() == b"1,2,3\n"
    assert there.bucket_exists("off-m-back")
    bad = run_ops(["mirror", "Not_A_Bucket"], both(source, target))
    assert bad.returncode == 3 and "not a bucket name" in bad.stderr


def test_the_mirror_reads_from_the_next_node_that_answers_when_its_endpoint_does_not(source: S3StandIn, target: S3StandIn) -> None:
    """As the mirror service runs it: OPS_ENDPOINT names minio1, OPS_FALLBACK_ENDPOINTS the other nodes;
    here nothing listens at the first and the source stand-in is the 'next node'."""
    source.client().make_bucket("m-failover")
    source.client().put_object("m-failover", "kept.txt", io.BytesIO(b"kept"), 4)
    stopped = "http://127.0.5.42:9"

    done = run_ops(["mirror", "m-failover"], both(source, target, OPS_ENDPOINT=stopped, OPS_FALLBACK_ENDPOINTS=source.url))

    assert done.returncode == 0, done.stderr
    assert f"mirror {source.url} -> {target.url}:" in done.stdout
    assert f"{stopped} does not answer, trying the next node" in done.stderr
    assert target.client().get_object("m-failover", "kept.txt").read() == b"kept"
