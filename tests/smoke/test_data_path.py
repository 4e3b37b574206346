"""The data path through the proxy: objects in and out intact, multipart, presigned URLs, refusals, the catalogue."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, BinaryIO, cast

import pytest
import requests
from minio import Minio, MinioAdmin
from minio.error import S3Error

from tests.conftest import ROOT
from tests.smoke import live
from tests.smoke.stack import PatternStream, StackOutputs, mismatch, multipart_parts, policy_buckets

pytestmark = pytest.mark.smoke

MIB = 1024 * 1024
MULTIPART_SIZE = 72 * MIB  # over the 64 MiB the suite promises, not a multiple of the part size
PART_SIZE = 16 * MIB
READONLY_POLICY = "readonly"
POLICY_DIR = ROOT / "policies"


def sha256_of_object(client: Minio, bucket: str, key: str) -> str:
    response = client.get_object(bucket, key)
    digest = hashlib.sha256()
    try:
        for chunk in response.stream(MIB):
            digest.update(chunk)
    finally:
        response.close()
        response.release_conn()
    return digest.hexdigest()


def test_put_get_delete_keeps_every_byte(root_s3: Minio, scratch_bucket: str) -> None:
    body = secrets.token_bytes(MIB + 7)
    key = "smoke/put-get-delete.bin"
    root_s3.put_object(scratch_bucket, key, io.BytesIO(body), len(body))
    assert sha256_of_object(root_s3, scratch_bucket, key) == hashlib.sha256(body).hexdigest(), "object read back differs"
    root_s3.remove_object(scratch_bucket, key)
    with pytest.raises(S3Error) as refused:
        root_s3.stat_object(scratch_bucket, key)
    assert refused.value.code in {"NoSuchKey", "ResourceNotFound"}, mismatch("object after delete", "NoSuchKey", refused.value.code)


def test_multipart_upload_over_64_mib_reads_back_intact(root_s3: Minio, scratch_bucket: str) -> None:
    key = "smoke/multipart.bin"
    stream = PatternStream(MULTIPART_SIZE, secrets.token_bytes(MIB + 13))
    result = root_s3.put_object(scratch_bucket, key, cast(BinaryIO, stream), MULTIPART_SIZE, part_size=PART_SIZE)
    expected_parts = -(-MULTIPART_SIZE // PART_SIZE)
    assert multipart_parts(result.etag or "") == expected_parts, mismatch("parts in the upload's ETag", expected_parts, result.etag)
    assert root_s3.stat_object(scratch_bucket, key).size == MULTIPART_SIZE
    assert sha256_of_object(root_s3, scratch_bucket, key) == stream.sha256.hexdigest(), "multipart object read back differs"


def test_presigned_get_through_the_proxy_returns_the_object(root_s3: Minio, scratch_bucket: str, http: requests.Session) -> None:
    body = secrets.token_bytes(4096)
    key = "smoke/presigned.bin"
    root_s3.put_object(scratch_bucket, key, io.BytesIO(body), len(body))
    url = root_s3.presigned_get_object(scratch_bucket, key, expires=timedelta(minutes=5))
    answer = live.get(http, url)
    assert answer.status_code == 200, mismatch("presigned GET", 200, f"{answer.status_code} {answer.text[:200]}")
    assert hashlib.sha256(answer.content).hexdigest() == hashlib.sha256(body).hexdigest(), "presigned GET returned other bytes"


def test_storage_path_on_the_web_listener_says_where_s3_is(stack: StackOutputs, http: requests.Session) -> None:
    answer = live.get(http, f"{stack.endpoint('web')}/storage/some-bucket/some-key")
    s3 = stack.endpoint("s3")
    assert 400 <= answer.status_code < 500, mismatch("/storage/ on the web listener", "a 4xx", answer.status_code)
    assert s3 in answer.text, mismatch("/storage/ answer body", f"the S3 endpoint {s3} named", answer.text[:300])


def _operations_package() -> Any | None:
    """The operations command line's IAM module, when this checkout has it."""
    try:
        from opscli import iam

        return iam
    except ImportError:
        return None


@pytest.fixture
def readonly_account(stack: StackOutputs, tls_verify: bool | str) -> Iterator[tuple[str, str]]:
    """A service account restricted to policies/readonly-policy.json, deleted afterwards."""
    admin = live.admin_client(stack, tls_verify)
    iam = _operations_package()
    name = f"smoke-{secrets.token_hex(4)}"
    if iam is not None:
        account = iam.create_service_account(admin, POLICY_DIR, name, READONLY_POLICY, "smoke test, deleted at its end")
        access_key, secret_key = account.access_key, account.secret_key
    else:
        answer = json.loads(admin.add_service_account(name=name, policy=readonly_policy()))
        credentials = answer.get("credentials") or answer
        access_key, secret_key = credentials["accessKey"], credentials["secretKey"]
    try:
        yield access_key, secret_key
    finally:
        if iam is not None:
            # also removes the key's dedicated owner user
            iam.delete_service_account(admin, access_key)
        else:
            admin.delete_service_account(access_key)


def readonly_policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((POLICY_DIR / f"{READONLY_POLICY}-policy.json").read_text())
    return document


def test_readonly_service_account_may_list_but_is_refused_a_write(
    stack: StackOutputs, root_s3: Minio, tls_verify: bool | str, readonly_account: tuple[str, str], scratch_bucket: str
) -> None:
    named = policy_buckets(readonly_policy())
    existing = {bucket.name for bucket in root_s3.list_buckets()}
    target = scratch_bucket if "*" in named else next((bucket for bucket in sorted(named) if bucket in existing), None)
    assert target is not None, mismatch(
        "buckets the readonly policy names", f"one of {sorted(named)} on the cluster (scripts/ops sync-buckets creates them)", sorted(existing)
    )
    access_key, secret_key = readonly_account
    reader = live.s3_client(stack.endpoint("s3"), tls_verify, access_key=access_key, secret_key=secret_key)
    list(reader.list_objects(target, recursive=False))  # allowed: proves the account works at all
    with pytest.raises(S3Error) as refused:
        reader.put_object(target, "smoke/readonly-must-not-write.txt", io.BytesIO(b"x"), 1)
    assert refused.value.code == "AccessDenied", mismatch(f"write to {target} with the readonly policy", "AccessDenied", refused.value.code)


def _bucket_problems(client: Minio, admin: MinioAdmin, bucket: str, wanted: Any) -> list[str]:
    problems = []
    versioning = client.get_bucket_versioning(bucket).status
    if (versioning == "Enabled") != wanted.versioning:
        problems.append(mismatch(f"{bucket} versioning", "Enabled" if wanted.versioning else "Off or Suspended", versioning))
    if wanted.retention_days is not None:
        lifecycle = client.get_bucket_lifecycle(bucket)
        days = sorted(rule.expiration.days for rule in (lifecycle.rules if lifecycle else []) if rule.expiration and rule.expiration.days)
        if wanted.retention_days not in days:
            problems.append(mismatch(f"{bucket} lifecycle expiry days", wanted.retention_days, days or "no expiry rule"))
    if wanted.quota is not None:
        answer = json.loads(admin.bucket_quota_get(bucket) or "{}")
        quota = int(answer.get("quota") or answer.get("size") or 0)
        if quota != wanted.quota_bytes:
            problems.append(mismatch(f"{bucket} quota bytes", wanted.quota_bytes, quota))
    if wanted.encryption:
        encryption = client.get_bucket_encryption(bucket)
        if encryption is None or encryption.rule is None:
            problems.append(mismatch(f"{bucket} default encryption", "SSE-S3", "none"))
    return problems


def test_bucket_catalogue_settings_read_back(
    stack: StackOutputs, stack_config: Any, root_s3: Minio, tls_verify: bool | str, http: requests.Session
) -> None:
    catalogue = dict(stack_config.buckets)
    admin = live.admin_client(stack, tls_verify)
    existing = {bucket.name for bucket in root_s3.list_buckets()}
    missing = sorted(set(catalogue) - existing)
    assert not missing, mismatch("catalogue buckets on the cluster", sorted(catalogue), f"{missing} missing (run scripts/ops sync-buckets)")
    problems = [problem for bucket, wanted in sorted(catalogue.items()) for problem in _bucket_problems(root_s3, admin, bucket, wanted)]
    for bucket, wanted in sorted(catalogue.items()):
        # an unsigned listing: refused unless the catalogue makes the bucket public (objects only, never listings)
        anonymous = live.get(http, f"{stack.endpoint('s3')}/{bucket}?list-type=2").status_code
        if not wanted.anonymous_read and anonymous != 403:
            problems.append(mismatch(f"{bucket} unsigned listing", 403, anonymous))
    assert not problems, "bucket settings differ from the catalogue:\n  " + "\n  ".join(problems)
