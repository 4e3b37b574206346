"""SDK-BOUNDARY tests of the MinIO-only admin calls (policies, service accounts, policy attachment,
users, bucket quotas, bootstrap's identities) and of bucket encryption: the real `MinioAdmin`
client is given a recording HTTP pool instead of a network, and each test asserts the exact request
MinIO's admin API would receive (method, path, query, who signed it, decrypted body). No MinIO
server runs here; the live smoke suite exercises the same functions against the deployed cluster.
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
from opscli import catalogue, cli, iam
from opscli.connection import Connection, explained
from opscli.failures import ExitCode, OpsError
from tests.conftest import ROOT

POLICY_DIR = ROOT / "policies"
ROOT_SECRET = "root-secret-key-for-the-boundary"
NO_SUCH_USER = json.dumps({"Code": "XMinioAdminNoSuchUser", "Message": "The specified user does not exist."}).encode()


@dataclass
class Request:
    method: str
    command: str
    query: dict[str, list[str]]
    body: bytes | None
    signer: str = ""
    """The access key in the SigV4 Authorization header."""
    host: str = ""


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
        credential = str((headers or {}).get("Authorization", "")).partition("Credential=")[2]
        request = Request(
            method, parts.path.removeprefix("/minio/admin/v3/"), parse_qs(parts.query), body,
            signer=credential.split("/")[0], host=parts.netloc,
        )
        self.requests.append(request)
        status, payload = self._answer(request)
        return HTTPResponse(body=io.BytesIO(payload), status=status, preload_content=preload_content)


def admin_with(pool: RecordingPool) -> MinioAdmin:
    return MinioAdmin(endpoint="minio.test:9000", credentials=StaticProvider("root", ROOT_SECRET), secure=False,
                      http_client=pool)


def decrypted(body: bytes | None, secret: str = ROOT_SECRET) -> Any:
    assert body is not None
    return json.loads(decrypt(HTTPResponse(body=io.BytesIO(body), preload_content=False), secret))


def commands(pool: RecordingPool) -> list[tuple[str, str]]:
    return [(r.method, r.command) for r in pool.requests]


def test_install_policies_sends_each_policy_file_verbatim_as_a_canned_policy_sdk_boundary() -> None:
    pool = RecordingPool()
    names = iam.install_policies(admin_with(pool), POLICY_DIR)

    assert sorted(names) == ["admin", "backup-service", "metrics-reader", "readonly"]
    for request in pool.requests:
        assert (request.method, request.command) == ("PUT", "add-canned-policy")
        name = request.query["name"][0]
        assert json.loads(request.body or b"") == json.loads((POLICY_DIR / f"{name}-policy.json").read_text())


def _new_account_answer(request: Request) -> tuple[int, bytes]:
    if request.command == "user-info":
        return 404, NO_SUCH_USER
    if request.command.startswith("idp/"):
        return 204, b""
    if request.command == "add-service-account":
        answer = {"credentials": {"accessKey": "AKIDSERVER", "secretKey": "server-made-secret"}}
        return 200, encrypt(json.dumps(answer).encode(), ROOT_SECRET)
    return 200, b""


def test_create_service_account_sends_the_policy_inline_and_returns_the_one_time_secret_sdk_boundary() -> None:
    pool = RecordingPool(_new_account_answer)

    account = iam.create_service_account(admin_with(pool), POLICY_DIR, "nightly-backup", "backup-service")

    request = pool.requests[-1]
    assert (request.method, request.command) == ("PUT", "add-service-account")
    sent = decrypted(request.body)
    assert sent["name"] == "nightly-backup" and sent["status"] == "enabled"
    assert sent["policy"] == json.loads((POLICY_DIR / "backup-service-policy.json").read_text())
    assert "accessKey" not in sent and "secretKey" not in sent, "MinIO generates the key pair"
    assert (account.access_key, account.secret_key) == ("AKIDSERVER", "server-made-secret")


def test_a_service_account_belongs_to_its_own_user_with_the_same_policy_never_to_the_signer_sdk_boundary() -> None:
    pool = RecordingPool(_new_account_answer)

    account = iam.create_service_account(admin_with(pool), POLICY_DIR, "nightly-backup", "backup-service")

    assert commands(pool) == [
        ("GET", "user-info"), ("PUT", "add-user"), ("POST", "idp/builtin/policy/attach"), ("PUT", "add-service-account"),
    ]
    lookup, add_user, attach, add_account = pool.requests
    assert lookup.query["accessKey"] == add_user.query["accessKey"] == ["sa-nightly-backup"]
    assert len(decrypted(add_user.body)["secretKey"]) >= 8, "MinIO's minimum; nobody signs in with it"
    assert decrypted(attach.body) == {"policies": ["backup-service"], "user": "sa-nightly-backup"}
    # without targetUser MinIO makes the key the signer's: root's, on a root-signed request
    assert decrypted(add_account.body)["targetUser"] == "sa-nightly-backup" != add_account.signer
    assert account.owner == "sa-nightly-backup"


def test_another_key_for_an_existing_owner_reuses_it_and_a_different_policy_is_refused_sdk_boundary() -> None:
    def existing(policy: str) -> Callable[[Request], tuple[int, bytes]]:
        def answer(request: Request) -> tuple[int, bytes]:
            if request.command == "user-info":
                return 200, json.dumps({"policyName": policy, "status": "enabled"}).encode()
            return _new_account_answer(request)
        return answer

    same, other = RecordingPool(existing("readonly")), RecordingPool(existing("admin"))
    iam.create_service_account(admin_with(same), POLICY_DIR, "ci", "readonly")
    with pytest.raises(OpsError) as refused:
        iam.create_service_account(admin_with(other), POLICY_DIR, "ci", "readonly")

    assert commands(same) == [("GET", "user-info"), ("PUT", "add-service-account")]
    assert refused.value.code == ExitCode.REFUSED and "carries policy admin" in refused.value.sentence
    assert commands(other) == [("GET", "user-info")], "nothing is created for an owner with another policy"


def test_deleting_the_last_key_of_an_owner_removes_the_owner_too_sdk_boundary() -> None:
    def cluster(others: list[str]) -> RecordingPool:
        def answer(request: Request) -> tuple[int, bytes]:
            if request.command == "info-service-account":
                return 200, encrypt(json.dumps({"parentUser": "sa-ci", "accountStatus": "on"}).encode(), ROOT_SECRET)
            if request.command == "list-service-accounts":
                listed = {"accounts": [{"accessKey": key, "parentUser": "sa-ci"} for key in others]}
                return 200, encrypt(json.dumps(listed).encode(), ROOT_SECRET)
            return 204, b""
        return RecordingPool(answer)

    last, shared = cluster([]), cluster(["AKIDSIBLING"])
    iam.delete_service_account(admin_with(last), "AKIDOLD")
    iam.delete_service_account(admin_with(shared), "AKIDOLD")

    assert commands(last) == [
        ("GET", "info-service-account"), ("DELETE", "delete-service-account"), ("GET", "list-service-accounts"),
        ("DELETE", "remove-user"),
    ]
    assert last.requests[1].query["accessKey"] == ["AKIDOLD"] and last.requests[3].query["accessKey"] == ["sa-ci"]
    assert ("DELETE", "remove-user") not in commands(shared)


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
    # a key made before owners existed (its parent is some other user): only its inline policy changes
    info = json.dumps({"parentUser": "legacy-user"}).encode()
    pool = RecordingPool(lambda request: (200, encrypt(info, ROOT_SECRET)) if request.command == "info-service-account" else (200, b""))
    iam.assign_policy(admin_with(pool), POLICY_DIR, "readonly", access_key="AKIDSERVER")

    assert commands(pool) == [("GET", "info-service-account"), ("POST", "update-service-account")]
    request = pool.requests[-1]
    assert (request.method, request.command, request.query["accessKey"]) == ("POST", "update-service-account", ["AKIDSERVER"])
    assert decrypted(request.body)["newPolicy"] == json.loads((POLICY_DIR / "readonly-policy.json").read_text())


def test_assign_policy_to_a_key_of_an_owner_moves_the_owner_and_all_its_keys_sdk_boundary() -> None:
    def answer(request: Request) -> tuple[int, bytes]:
        if request.command == "info-service-account":
            return 200, encrypt(json.dumps({"parentUser": "sa-ci"}).encode(), ROOT_SECRET)
        if request.command == "user-info":
            return 200, json.dumps({"policyName": "readonly,admin"}).encode()
        if request.command == "list-service-accounts":
            listed = {"accounts": [{"accessKey": "AKIDONE"}, {"accessKey": "AKIDTWO"}]}
            return 200, encrypt(json.dumps(listed).encode(), ROOT_SECRET)
        return 204, b""

    pool = RecordingPool(answer)
    iam.assign_policy(admin_with(pool), POLICY_DIR, "readonly", access_key="AKIDONE")

    detach = next(r for r in pool.requests if r.command == "idp/builtin/policy/detach")
    assert decrypted(detach.body) == {"policies": ["admin"], "user": "sa-ci"}
    updated = [r for r in pool.requests if r.command == "update-service-account"]
    assert [r.query["accessKey"] for r in updated] == [["AKIDONE"], ["AKIDTWO"]]
    readonly = json.loads((POLICY_DIR / "readonly-policy.json").read_text())
    assert all(decrypted(r.body)["newPolicy"] == readonly for r in updated)


def test_backup_service_user_gets_the_stack_secret_and_only_its_policy_sdk_boundary() -> None:
    # MinIO answers a successful attach with 201/204 and no body
    pool = RecordingPool(lambda request: (204, b"") if request.command.startswith("idp/") else (200, b""))
    iam.ensure_backup_service_user(admin_with(pool), POLICY_DIR, "generated-by-the-stack")

    assert commands(pool) == [
        ("PUT", "add-canned-policy"), ("PUT", "add-user"), ("POST", "idp/builtin/policy/attach"), ("GET", "user-info"),
    ]
    assert pool.requests[1].query["accessKey"] == ["backup-service"]
    assert decrypted(pool.requests[1].body) == {"status": "enabled", "secretKey": "generated-by-the-stack"}
    assert decrypted(pool.requests[2].body) == {"policies": ["backup-service"], "user": "backup-service"}


def test_a_stack_user_keeps_exactly_its_own_policy_sdk_boundary() -> None:
    def answer(request: Request) -> tuple[int, bytes]:
        if request.command == "user-info":
            return 200, json.dumps({"policyName": "metrics-reader,readwrite", "status": "enabled"}).encode()
        return (204, b"") if request.command.startswith("idp/") else (200, b"")

    pool = RecordingPool(answer)
    message = iam.ensure_user(admin_with(pool), POLICY_DIR, "metrics-reader", "metrics-reader", "generated")

    detach = pool.requests[-1]
    assert (detach.method, detach.command) == ("POST", "idp/builtin/policy/detach")
    assert decrypted(detach.body) == {"policies": ["readwrite"], "user": "metrics-reader"}
    assert "detached readwrite" in message


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


class Cluster:
    """A scripted MinIO admin API for bootstrap: its users (secret, policies), root's service accounts,
    and every request, with who signed it. An unknown signer is refused the way MinIO refuses it."""

    def __init__(self, users: dict[str, tuple[str, list[str]]] | None = None, root_keys: tuple[str, ...] = ()) -> None:
        self.users = {"rootuser": (ROOT_SECRET, ["(owner)"]), **(users or {})}
        self.root_keys = root_keys
        self.pool = RecordingPool(self.answer)

    def answer(self, request: Request) -> tuple[int, bytes]:
        if request.signer not in self.users:
            return 403, json.dumps({"Code": "InvalidAccessKeyId", "Message": "unknown access key"}).encode()
        signer_secret = self.users[request.signer][0]
        subject = (request.query.get("accessKey") or [""])[0]
        if request.command == "user-info":
            if subject not in self.users:
                return 404, NO_SUCH_USER
            return 200, json.dumps({"policyName": ",".join(self.users[subject][1]), "status": "enabled"}).encode()
        if request.command == "add-user":
            policies = self.users.get(subject, ("", []))[1]
            self.users[subject] = (decrypted(request.body, signer_secret)["secretKey"], policies)
        if request.command == "idp/builtin/policy/attach":
            sent = decrypted(request.body, signer_secret)
            self.users[sent["user"]][1].extend(p for p in sent["policies"] if p not in self.users[sent["user"]][1])
            return 204, b""
        if request.command == "list-service-accounts":
            listed = {"accounts": [{"accessKey": key, "parentUser": "rootuser"} for key in self.root_keys]}
            return 200, encrypt(json.dumps(listed).encode(), signer_secret)
        return 200, b""

    def signed_by(self, signer: str) -> list[tuple[str, str, str]]:
        return [(r.method, r.command, (r.query.get("accessKey") or r.query.get("name") or [""])[0])
                for r in self.pool.requests if r.signer == signer]


STACK = {
    "endpoints": {"s3": "https://storage.example.com:9443", "minioAdmin": "https://127.0.0.1:9444"},
    "minioRootUser": "rootuser", "minioRootPassword": ROOT_SECRET, "opsAdminSecretKey": "ops-admin-secret",
    "backupServiceSecretKey": "backup-secret", "metricsReaderSecretKey": "metrics-secret",
}


def bootstrap(
    cluster: Cluster, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, *extra: str, outputs: dict[str, Any] | None = None
) -> tuple[int, list[str]]:
    synced_as: list[str] = []
    monkeypatch.setattr(Connection, "_http", lambda self, url=None: cluster.pool)
    monkeypatch.setattr(cli, "cmd_sync_buckets", lambda ctx: synced_as.append(ctx.connection().access_key) or ExitCode.OK)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(STACK if outputs is None else outputs))
    return cli.main(["bootstrap", "--outputs-file", str(path), *extra], environ={}), synced_as


def test_bootstrap_on_a_new_cluster_uses_root_only_to_create_ops_admin_sdk_boundary(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = Cluster()

    code, synced_as = bootstrap(cluster, tmp_path, monkeypatch)

    assert code == ExitCode.OK, capsys.readouterr().err
    assert cluster.signed_by("rootuser") == [
        ("PUT", "add-canned-policy", "admin"), ("PUT", "add-user", "ops-admin"),
        ("POST", "idp/builtin/policy/attach", ""), ("GET", "user-info", "ops-admin"),
    ]
    assert cluster.users["ops-admin"] == ("ops-admin-secret", ["admin"])
    # everything else as ops-admin, admin calls on the loopback admin listener
    assert synced_as == ["ops-admin"]
    assert {r.signer for r in cluster.pool.requests} == {"rootuser", "ops-admin"}
    assert {r.host for r in cluster.pool.requests} == {"127.0.0.1:9444"}
    assert cluster.users["backup-service"] == ("backup-secret", ["backup-service"])
    assert cluster.users["metrics-reader"] == ("metrics-secret", ["metrics-reader"])
    installed = {name for method, command, name in cluster.signed_by("ops-admin") if command == "add-canned-policy"}
    assert installed == {"admin", "backup-service", "readonly", "metrics-reader"}


def test_bootstrap_again_never_signs_in_as_root_sdk_boundary(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = Cluster({"ops-admin": ("ops-admin-secret", ["admin"])})
    without_root = {k: v for k, v in STACK.items() if not k.startswith("minioRoot")}

    code, synced_as = bootstrap(cluster, tmp_path, monkeypatch, outputs=without_root)

    assert code == ExitCode.OK, capsys.readouterr().err
    assert cluster.signed_by("rootuser") == [] and synced_as == ["ops-admin"]
    assert cluster.users["metrics-reader"] == ("metrics-secret", ["metrics-reader"])
    assert "root is not needed" in capsys.readouterr().out


def test_bootstrap_repairs_an_ops_admin_that_lost_its_policy_with_root_sdk_boundary(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = Cluster({"ops-admin": ("ops-admin-secret", [])})

    assert bootstrap(cluster, tmp_path, monkeypatch)[0] == ExitCode.OK
    assert ("PUT", "add-user", "ops-admin") in cluster.signed_by("rootuser")
    assert cluster.users["ops-admin"][1] == ["admin"]


def test_bootstrap_warns_about_service_accounts_that_belong_to_root_sdk_boundary(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = Cluster({"ops-admin": ("ops-admin-secret", ["admin"])}, root_keys=("AKIDOLDROOTKEY",))

    assert bootstrap(cluster, tmp_path, monkeypatch)[0] == ExitCode.OK

    out = capsys.readouterr().out
    assert "warning: 1 service account(s) belong to root: AKIDOLDROOTKEY" in out and "delete-service-account" in out
    listing = next(r for r in cluster.pool.requests if r.command == "list-service-accounts")
    assert listing.query["user"] == ["rootuser"] and listing.signer == "ops-admin"
    assert "rootuser" not in out, "root's access key is a secret output: never printed"


def test_bootstrap_dry_run_before_ops_admin_exists_signs_in_as_nobody_else_sdk_boundary(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = Cluster()

    code, synced_as = bootstrap(cluster, tmp_path, monkeypatch, "--dry-run")

    assert code == ExitCode.OK and synced_as == []
    assert cluster.signed_by("rootuser") == [] and "ops-admin" not in cluster.users
    assert "creates it with the root credentials" in capsys.readouterr().out


def test_bootstrap_names_every_missing_secret_and_needs_root_only_for_a_missing_ops_admin(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = {k: v for k, v in STACK.items() if k not in ("opsAdminSecretKey", "metricsReaderSecretKey")}
    code, _ = bootstrap(Cluster(), tmp_path, monkeypatch, outputs=missing)
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIGURATION and "opsAdminSecretKey" in err and "metricsReaderSecretKey" in err

    without_root = {k: v for k, v in STACK.items() if not k.startswith("minioRoot")}
    code, _ = bootstrap(Cluster(), tmp_path, monkeypatch, outputs=without_root)
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIGURATION and "only root can create it" in err and "OPS_ROOT_SECRET_KEY" in err
