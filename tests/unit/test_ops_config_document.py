"""SDK-BOUNDARY tests of the configuration document's MinIO-only parts (IAM, quotas) and of its checks:
the real `Minio` and `MinioAdmin` clients are given a scripted HTTP pool instead of a network, answering
as MinIO's admin API does (encrypted where MinIO encrypts), and each test asserts what the export holds
or the exact requests an import sends. No MinIO server runs here; the S3 bucket settings are shown
against an S3 stand-in in tests/lab/test_config_export.py.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.crypto import decrypt, encrypt
from urllib3 import HTTPResponse, PoolManager

from opscli import configdoc
from opscli.failures import ChecksumMismatchError, ConfigurationError

SECRET = "ops-admin-secret-for-the-boundary"
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc)
INLINE = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::logs/*"]}]}
READONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::logs"]}]}
XML = {"Content-Type": "application/xml"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes | None


@dataclass
class Cluster:
    """A scripted MinIO: IAM as its admin API answers, one bucket `logs` with a quota, every request kept."""

    policies: dict[str, Any] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    quota: int = 0
    buckets: tuple[str, ...] = ()
    requests: list[Request] = field(default_factory=list)

    def pool(self) -> PoolManager:
        cluster = self

        class Pool(PoolManager):
            def urlopen(self, method: str, url: str, body: bytes | None = None, headers: Any = None,  # type: ignore[override]
                        preload_content: bool = True, **_: Any) -> HTTPResponse:
                parts = urlsplit(url)
                request = Request(method, parts.path, parse_qs(parts.query, keep_blank_values=True), body)
                cluster.requests.append(request)
                status, payload, extra = cluster.answer(request)
                return HTTPResponse(body=io.BytesIO(payload), status=status, headers=extra, preload_content=preload_content)

        return Pool()

    def answer(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        command = request.path.removeprefix("/minio/admin/v3/")
        query = {key: values[0] for key, values in request.query.items()}
        sealed = lambda value: (200, encrypt(json.dumps(value).encode(), SECRET), {})  # noqa: E731
        plain = lambda value: (200, json.dumps(value).encode(), {})  # noqa: E731
        if command == "list-canned-policies":
            return plain(self.policies)
        if command == "list-users":
            return sealed(self.users)
        if command == "groups":
            return plain(sorted(self.groups))
        if command == "group":
            return plain(self.groups[query["group"]])
        if command == "list-service-accounts":
            return sealed({"accounts": [{"accessKey": k, "parentUser": a["parentUser"]} for k, a in self.accounts.items()
                                        if a["parentUser"] == query["user"]]})
        if command == "info-service-account":
            if query["accessKey"] not in self.accounts:
                return 404, json.dumps({"Code": "XMinioAdminServiceAccountNotFound", "Message": "no such account"}).encode(), {}
            return sealed(self.accounts[query["accessKey"]])
        if command.startswith("idp/builtin/policy/"):
            return 204, b"", {}
        if command == "add-service-account":
            sent = decrypted(request.body)
            return sealed({"credentials": {"accessKey": sent["accessKey"], "secretKey": sent["secretKey"]}})
        if command == "get-bucket-quota":
            return plain({"quota": self.quota, "quotatype": "hard"} if self.quota else {})
        if request.path == "/" and request.method == "GET":
            names = "".join(f"<Bucket><Name>{b}</Name><CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket>" for b in self.buckets)
            return 200, f"<ListAllMyBucketsResult><Buckets>{names}</Buckets></ListAllMyBucketsResult>".encode(), XML
        if request.path.startswith("/logs") and "versioning" in query:
            return 200, b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>", XML
        if request.path.startswith("/logs") and request.method == "GET":
            missing = {"policy": "NoSuchBucketPolicy", "tagging": "NoSuchTagSet", "object-lock": "ObjectLockConfigurationNotFoundError",
                       "lifecycle": "NoSuchLifecycleConfiguration", "encryption": "ServerSideEncryptionConfigurationNotFoundError"}
            code = next(missing[name] for name in missing if name in query)
            return 404, f"<Error><Code>{code}</Code><Message>none</Message><BucketName>logs</BucketName></Error>".encode(), XML
        return 200, b"", {}

    def clients(self) -> tuple[Minio, MinioAdmin]:
        pool = self.pool()
        s3 = Minio("minio.test:9000", "ops-admin", SECRET, secure=False, region="us-east-1", http_client=pool)
        admin = MinioAdmin(endpoint="minio.test:9000", credentials=StaticProvider("ops-admin", SECRET), secure=False, http_client=pool)
        return s3, admin

    def sent(self, command: str) -> list[Request]:
        return [r for r in self.requests if r.path == f"/minio/admin/v3/{command}"]


def decrypted(body: bytes | None) -> Any:
    assert body is not None
    return json.loads(decrypt(HTTPResponse(body=io.BytesIO(body), preload_content=False), SECRET))


def populated() -> Cluster:
    return Cluster(
        policies={"readonly": READONLY},
        users={
            "alice": {"policyName": "readonly", "status": "enabled", "memberOf": ["auditors"], "secretKey": "alice-secret-never-exported"},
            "sa-ci-reader": {"policyName": "readonly", "status": "enabled"},
            "ops-admin": {"policyName": "admin", "status": "enabled"},
        },
        groups={"auditors": {"name": "auditors", "status": "enabled", "members": ["alice"], "policy": "readonly"}},
        accounts={"AKIDCIREADER": {
            "parentUser": "sa-ci-reader", "accountStatus": "on", "impliedPolicy": False, "policy": json.dumps(INLINE),
            "name": "ci-reader", "description": "policy readonly", "expiration": "9999-01-01T00:00:00Z",
            "secretKey": "sa-secret-never-exported", "sessionToken": "token-never-exported",
        }},
        quota=50 << 30, buckets=("logs",),
    )


@pytest.fixture(scope="module")
def exported() -> dict[str, Any]:
    """The populated cluster's export (each encrypted answer costs an argon2 key derivation: made once)."""
    s3, admin = populated().clients()
    return configdoc.export_document(s3, admin, "https://storage.example.com:9443", NOW)


def test_the_export_holds_iam_and_service_account_metadata_but_never_a_secret_key_sdk_boundary(exported: dict[str, Any]) -> None:
    document = exported

    text = json.dumps(document)
    assert "secretKey" not in text and "never-exported" not in text and "sessionToken" not in text
    assert document["covers"] == ["bucket settings", "iam", "quotas"]
    iam = document["iam"]
    assert iam["users"]["alice"] == {"status": "enabled", "policies": ["readonly"], "memberOf": ["auditors"]}
    assert iam["groups"]["auditors"] == {"status": "enabled", "members": ["alice"], "policies": ["readonly"]}
    assert iam["serviceAccounts"]["AKIDCIREADER"] == {
        "parent": "sa-ci-reader", "name": "ci-reader", "description": "policy readonly", "status": "on",
        "expiration": "9999-01-01T00:00:00Z", "policy": INLINE,
    }
    assert document["buckets"]["logs"]["quota"] == {"bytes": 50 << 30, "type": "hard"}
    assert document["buckets"]["logs"]["versioning"] == "Enabled"
    assert configdoc.read_document(json.dumps(document), "export.json") == document


def test_a_changed_document_or_an_unknown_version_is_refused(exported: dict[str, Any]) -> None:
    document = json.loads(json.dumps(exported))
    document["iam"]["users"]["mallory"] = {"status": "enabled", "policies": ["admin"], "memberOf": []}

    with pytest.raises(ChecksumMismatchError, match="does not match its recorded sha256"):
        configdoc.read_document(json.dumps(document), "export.json")
    with pytest.raises(ConfigurationError, match="version 2"):
        configdoc.read_document(json.dumps({**document, "version": 2}), "export.json")
    with pytest.raises(ConfigurationError, match="not a configuration export"):
        configdoc.read_document(json.dumps({"hello": 1}), "other.json")


def test_import_into_an_empty_cluster_recreates_iam_with_new_secret_keys_and_leaves_the_stacks_users_sdk_boundary(exported: dict[str, Any]) -> None:
    document = exported
    rebuilt = Cluster(buckets=("logs",))
    s3, admin = rebuilt.clients()

    importer = configdoc.plan_import(s3, lambda: admin, document, stack_users=["ops-admin", "backup-service"])
    secrets_file = io.StringIO()
    configdoc.apply_import(importer, lambda line: None, secrets_file)

    assert "= user ops-admin: the stack's own, left to bootstrap (it sets its secret and policy)" in importer.plan.lines()
    assert [r.query["name"][0] for r in rebuilt.sent("add-canned-policy")] == ["readonly"]
    added = {r.query["accessKey"][0]: decrypted(r.body)["secretKey"] for r in rebuilt.sent("add-user")}
    assert set(added) == {"alice", "sa-ci-reader"}, "the stack's own users are bootstrap's"
    [account_request] = rebuilt.sent("add-service-account")
    account = decrypted(account_request.body)
    assert (account["accessKey"], account["targetUser"], account["name"], account["policy"]) == (
        "AKIDCIREADER", "sa-ci-reader", "ci-reader", INLINE)
    written = dict(line.split("=", 1) for line in secrets_file.getvalue().splitlines() if not line.startswith("#"))
    # new secrets for whoever signs in; an sa-NAME owner's is thrown away, as create-service-account does
    assert written == {"alice": added["alice"], "AKIDCIREADER": account["secretKey"]}
    assert "sa-ci-reader" not in written
    [members] = rebuilt.sent("update-group-members")
    assert json.loads(members.body or b"") == {"group": "auditors", "members": ["alice"], "isRemove": False}
    [quota] = rebuilt.sent("set-bucket-quota")
    assert quota.query["bucket"] == ["logs"] and json.loads(quota.body or b"")["quota"] == 50 << 30


def test_a_plan_that_makes_secret_keys_is_refused_without_a_secrets_file(exported: dict[str, Any]) -> None:
    document = exported
    rebuilt = Cluster(buckets=("logs",))
    s3, admin = rebuilt.clients()
    importer = configdoc.plan_import(s3, lambda: admin, document, stack_users=["ops-admin"])

    with pytest.raises(ConfigurationError, match="--secrets-file"):
        configdoc.apply_import(importer, lambda line: None, None)
    assert not rebuilt.sent("add-user"), "nothing applied"


def test_an_s3_only_import_names_what_it_leaves_out(exported: dict[str, Any]) -> None:
    document = exported
    s3, _ = Cluster(buckets=("logs",)).clients()

    plan = configdoc.plan_import(s3, None, document, stack_users=[]).plan

    assert any("quota" in note and "--s3-only" in note for note in plan.notes)
    assert any(note.startswith("IAM (policies, users, groups, service accounts)") for note in plan.notes)
    assert not plan.needs_secrets_file
