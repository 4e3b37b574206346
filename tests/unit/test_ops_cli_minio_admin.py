"""SDK-BOUNDARY tests of the MinIO-only admin calls (policies, service accounts, policy attachment,
users, bucket quotas) and of bucket encryption: the real `MinioAdmin` client is given a recording
HTTP pool instead of a network, and each test asserts the exact request MinIO's admin API would
receive (method, path, query, decrypted body). No MinIO server runs here; the live smoke suite
exercises the same functions against the deployed cluster.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.crypto import decrypt, encrypt
from minio.versioningconfig import VersioningConfig
from urllib3 import HTTPResponse, PoolManager

from infra.config.buckets import BucketSettings
from opscli import catalogue, iam
from opscli.connection import Connection, explained
from opscli.failures import ExitCode, OpsError
from tests.conftest import ROOT

POLICY_DIR = ROOT / "policies"
ROOT_SECRET = "root-secret-key-for-the-boundary"


@dataclass
class Request:
    method: str
    command: str
    query: dict[str, list[str]]
    body: bytes | None


class RecordingPool(PoolManager):
    """Stands where urllib3's PoolManager would be: records each request, answers from a script."""

    def __init__(self, answer: Callable[[Request], tuple[int, bytes]] | None = None) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self._answer = answer or (lambda request: (200, b""))

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, body: bytes | None = None, headers: Any = None, preload_content: bool = True, **_: Any
    ) -> HTTPResponse:
        parts = urlsplit(url)
        request = Request(method, parts.path.removeprefix("/minio/admin/v3/"), parse_qs(parts.query), body)
        self.requests.append(request)
        status, payload = self._answer(request)
        return HTTPResponse(body=io.BytesIO(payload), status=status, preload_content=preload_content)


def admin_with(pool: RecordingPool) -> MinioAdmin:
    return MinioAdmin(endpoint="minio.test:9000", credentials=StaticProvider("root", ROOT_SECRET), secure=False,
                      http_client=pool)


def decrypted(body: bytes | None) -> Any:
    assert body is not None
    return json.loads(decrypt(HTTPResponse(body=io.BytesIO(body), preload_content=False), ROOT_SECRET))


def test_install_policies_sends_each_policy_file_verbatim_as_a_canned_policy_sdk_boundary() -> None:
    pool = RecordingPool()
    names = iam.install_policies(admin_with(pool), POLICY_DIR)

    assert sorted(names) == ["admin", "backup-service", "readonly"]
    for request in pool.requests:
        assert (request.method, request.command) == ("PUT", "add-canned-policy")
        name = request.query["name"][0]
        assert json.loads(request.body or b"") == json.loads((POLICY_DIR / f"{name}-policy.json").read_text())


def test_create_service_account_sends_the_policy_inline_and_returns_the_one_time_secret_sdk_boundary() -> None:
    answer = json.dumps({"credentials": {"accessKey": "AKIDSERVER", "secretKey": "server-made-secret"}}).encode()
    pool = RecordingPool(lambda request: (200, encrypt(answer, ROOT_SECRET)))

    account = iam.create_service_account(admin_with(pool), POLICY_DIR, "nightly-backup", "backup-service")

    (request,) = pool.requests
    assert (request.method, request.command) == ("PUT", "add-service-account")
    sent = decrypted(request.body)
    assert sent["name"] == "nightly-backup" and sent["status"] == "enabled"
    assert sent["policy"] == json.loads((POLICY_DIR / "backup-service-policy.json").read_text())
    assert sent["accessKey"] is None and sent["secretKey"] is None, "MinIO generates the key pair"
    assert (account.access_key, account.secret_key) == ("AKIDSERVER", "server-made-secret")


def test_assign_policy_attaches_to_a_user_and_treats_already_attached_as_done_sdk_boundary() -> None:
    already = json.dumps({"Code": "XMinioAdminPolicyChangeAlreadyApplied", "Message": "already in effect"}).encode()
    pool = RecordingPool(lambda request: (400, already) if len(pool.requests) > 1 else (204, b""))
    admin = admin_with(pool)

    first = iam.assign_policy(admin, POLICY_DIR, "readonly", user="auditor")
    second = iam.assign_policy(admin, POLICY_DIR, "readonly", user="auditor")

    assert first == second == "policy readonly is attached to user auditor"
    request = pool.requests[0]
    assert (request.method, request.command) == ("POST", "idp/builtin/policy/attach")
    assert decrypted(request.body) == {"policies": ["readonly"], "user": "auditor"}


def test_assign_policy_to_a_service_account_replaces_its_inline_policy_sdk_boundary() -> None:
    pool = RecordingPool()
    iam.assign_policy(admin_with(pool), POLICY_DIR, "readonly", access_key="AKIDSERVER")

    (request,) = pool.requests
    assert (request.method, request.command, request.query["accessKey"]) == ("POST", "update-service-account", ["AKIDSERVER"])
    assert decrypted(request.body)["newPolicy"] == json.loads((POLICY_DIR / "readonly-policy.json").read_text())


def test_backup_service_user_gets_the_stack_secret_and_only_its_policy_sdk_boundary() -> None:
    # MinIO answers a successful attach with 201/204 and no body
    pool = RecordingPool(lambda request: (204, b"") if request.command.startswith("idp/") else (200, b""))
    iam.ensure_backup_service_user(admin_with(pool), POLICY_DIR, "generated-by-the-stack")

    commands = [(r.method, r.command) for r in pool.requests]
    assert commands == [("PUT", "add-canned-policy"), ("PUT", "add-user"), ("POST", "idp/builtin/policy/attach")]
    assert pool.requests[1].query["accessKey"] == ["backup-service"]
    assert decrypted(pool.requests[1].body) == {"status": "enabled", "secretKey": "generated-by-the-stack"}
    assert decrypted(pool.requests[2].body) == {"policies": ["backup-service"], "user": "backup-service"}


def test_admin_api_refusals_become_one_sentence_with_an_exit_code_sdk_boundary() -> None:
    connection = Connection("http://minio.test:9000", "readonly-user", "secret")
    denied = RecordingPool(lambda request: (403, b'{"Code":"AccessDenied","Message":"Access Denied."}'))
    not_minio = RecordingPool(lambda request: (404, b"<html>404 page not found</html>"))

    with pytest.raises(OpsError) as refused, explained(connection, "install IAM policies"):
        iam.install_policies(admin_with(denied), POLICY_DIR, ["readonly"])
    with pytest.raises(OpsError) as absent, explained(connection, "install IAM policies"):
        iam.install_policies(admin_with(not_minio), POLICY_DIR, ["readonly"])

    assert refused.value.code == ExitCode.ACCESS_DENIED and "admin policy" in refused.value.sentence
    assert absent.value.code == ExitCode.UNEXPECTED and "is it a MinIO server" in absent.value.sentence


class _BucketsStub:
    """An S3 client whose buckets already match the catalogue except for what a test leaves out."""

    def __init__(self, encryption: Any = None) -> None:
        self.encryption = encryption
        self.calls: list[tuple[str, Any]] = []

    def list_buckets(self) -> list[Any]:
        return [type("Bucket", (), {"name": "backups-postgresql"})()]

    def get_bucket_versioning(self, bucket: str) -> VersioningConfig:
        return VersioningConfig("Enabled")

    def get_bucket_lifecycle(self, bucket: str) -> Any:
        return catalogue.LifecycleConfig([catalogue.retention_rule(30, True)])

    def get_bucket_policy(self, bucket: str) -> str:
        return "{}"

    def get_bucket_encryption(self, bucket: str) -> Any:
        return self.encryption

    def set_bucket_encryption(self, bucket: str, config: Any) -> None:
        self.calls.append(("set_bucket_encryption", config))


def test_quota_is_read_and_set_through_minios_admin_api_sdk_boundary() -> None:
    quota_answers = iter([b'{"quota":0,"quotatype":"hard"}', b""])
    pool = RecordingPool(lambda request: (200, next(quota_answers)))
    wanted = {"backups-postgresql": BucketSettings(purpose="d", retention_days=30, versioning=True, quota="500GiB")}

    plan = catalogue.plan_sync(_BucketsStub(), lambda: admin_with(pool), wanted)  # type: ignore[arg-type]
    catalogue.apply(plan, lambda line: None)

    assert [c.describe() for c in plan.changes] == ["~ backups-postgresql: quota none -> 500GiB hard"]
    assert plan.changes[0].minio_only
    get, put = pool.requests
    assert (get.method, get.command, get.query) == ("GET", "get-bucket-quota", {"bucket": ["backups-postgresql"]})
    assert (put.method, put.command) == ("PUT", "set-bucket-quota")
    assert json.loads(put.body or b"") == {"quota": 500 * (1 << 30), "quotatype": "hard"}


def test_encryption_asks_for_sse_s3_with_the_cluster_kms_key_sdk_boundary() -> None:
    stub = _BucketsStub()
    wanted = {"backups-postgresql": BucketSettings(purpose="d", retention_days=30, versioning=True, encryption=True)}

    plan = catalogue.plan_sync(stub, lambda: pytest.fail("no admin call"), wanted)  # type: ignore[arg-type]
    catalogue.apply(plan, lambda line: None)

    assert [c.describe() for c in plan.changes] == ["~ backups-postgresql: encryption none -> SSE-S3 (cluster KMS key)"]
    ((_, config),) = stub.calls
    assert config.rule.sse_algorithm == "AES256"
    assert catalogue.plan_sync(_BucketsStub(encryption=config), lambda: pytest.fail("no admin call"), wanted).changes == []  # type: ignore[arg-type]
