"""The scheduled offsite mirror under Pulumi's mocks: present only with `replication`, its credentials only
in a secret settings file, on storage-net plus edge-net (the one segment with a route out), built like
the backup image; and its source policy, evaluated with the same IAM rules as policies/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from infra.backups import image_sources_digest
from infra.config import ConfigError, parse_stack_config
from opscli.mirror import source_policy
from tests.conftest import ROOT
from tests.unit.pulumi_harness import Deployment, deploy
from tests.unit.test_policies import ADMIN_ACTIONS, CREDENTIAL_ACTIONS, S3_ACTIONS, allows

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
TARGET = "https://s3.offsite.example.com"
REPLICATION = {"target": TARGET, "buckets": ["artifacts", "backups-postgresql"], "bucketPrefix": "acme-", "schedule": "15 4 * * *"}
TARGET_SECRETS = {"replicationTargetAccessKey": "AKIAOFFSITEMIRROR", "replicationTargetSecretKey": "offsite-secret-key-value"}


@pytest.fixture(scope="module")
def mirrored() -> Deployment:
    return deploy("dev", overrides={"replication": REPLICATION}, secrets=TARGET_SECRETS)


def test_without_replication_no_mirror_runs(mirrored: Deployment) -> None:
    plain = deploy("dev")
    assert not [r for r in plain.of_type(CONTAINER) if r.name == "mirror"]
    assert "mirror" not in plain.outputs["containers"]
    assert "mirror" in mirrored.outputs["containers"]


def test_the_mirror_runs_mirror_schedule_with_the_stacks_replication_settings(mirrored: Deployment) -> None:
    command = mirrored.named("mirror", CONTAINER).inputs["command"]
    assert command[0] == "mirror-schedule"
    assert command[command.index("--schedule") + 1] == "15 4 * * *"
    assert command[command.index("--target-endpoint") + 1] == TARGET
    assert command[command.index("--target-bucket-prefix") + 1] == "acme-"
    assert command[-2:] == ["artifacts", "backups-postgresql"]
    assert "--delete" not in command and "--all-versions" not in command, "deletions reach the target only when asked"


def test_the_mirrors_credentials_reach_it_only_in_a_secret_settings_file(mirrored: Deployment) -> None:
    container = mirrored.named("mirror", CONTAINER)
    assert container.inputs["envs"] == ["OPS_ENV_FILE=/etc/ops/ops.env"], "no credential in docker inspect"
    assert "uploads" in container.secret_paths
    visible = json.dumps({key: container.inputs.get(key) for key in ("command", "envs", "labels", "healthcheck")})
    assert not any(secret in visible for secret in TARGET_SECRETS.values())
    lines = container.uploads()["/etc/ops/ops.env"].splitlines()
    assert "OPS_ACCESS_KEY=mirror-service" in lines
    assert f"OPS_SECRET_KEY={mirrored.outputs['mirrorServiceSecretKey']}" in lines
    assert "OPS_TARGET_ACCESS_KEY=AKIAOFFSITEMIRROR" in lines and "OPS_TARGET_SECRET_KEY=offsite-secret-key-value" in lines
    assert "OPS_FALLBACK_ENDPOINTS=http://minio2:9000,http://minio3:9000,http://minio4:9000" in lines
    assert "mirrorServiceSecretKey" in mirrored.secret_outputs
    [upload] = container.inputs["uploads"]["value"]
    assert (upload["permissions"], upload["owner"], upload["group"]) == ("0600", "70", "70"), "the postgres user of the Alpine image"


def test_the_mirror_joins_storage_net_and_edge_net_and_publishes_nothing(mirrored: Deployment) -> None:
    container = mirrored.named("mirror", CONTAINER)
    assert mirrored.outputs["containers"]["mirror"]["networks"] == ["minio-dev-edge-net", "minio-dev-storage-net"]
    assert not container.inputs.get("ports")
    addresses = {attachment["name"]: attachment.get("ipv4Address") for attachment in container.inputs["networksAdvanced"]}
    # a fixed address on storage-net only, where its metrics listen for Prometheus; nothing on edge-net connects to it
    assert addresses == {"minio-dev-storage-net": "172.40.20.55", "minio-dev-edge-net": None}
    command = container.inputs["command"]
    assert command[command.index("--metrics-listen") + 1] == "172.40.20.55:9108"
    assert {dep.rsplit("::", 1)[1] for dep in container.dependencies} >= {f"minio{n}" for n in range(1, 5)}


def test_the_mirror_image_is_the_operations_image_built_for_the_mirror(mirrored: Deployment) -> None:
    image, backup_image = mirrored.named("mirror-image", REMOTE_IMAGE), mirrored.named("backup-image", REMOTE_IMAGE)
    assert image.inputs["build"]["dockerfile"] == backup_image.inputs["build"]["dockerfile"] == "scripts/opscli/Dockerfile"
    assert image.inputs["build"]["label"]["io.minio-platform.service"] == "mirror"
    assert image.inputs["name"] == f"minio-dev-mirror:{image_sources_digest()[:16]}"
    healthcheck = mirrored.named("mirror", CONTAINER).inputs["healthcheck"]["tests"]
    assert "/var/lib/postgresql/ops-mirror-heartbeat" in healthcheck[1]


def test_the_backup_container_and_image_are_the_same_with_or_without_the_mirror(mirrored: Deployment) -> None:
    plain = deploy("dev")
    for name, kind in (("backup", CONTAINER), ("backup-image", REMOTE_IMAGE)):
        before, after = plain.named(name, kind), mirrored.named(name, kind)
        assert (before.urn, before.parent) == (after.urn, after.parent)
        assert before.inputs == after.inputs, name


def test_replication_without_the_target_credentials_is_refused_naming_both_keys() -> None:
    with pytest.raises(Exception) as refused:
        deploy("dev", overrides={"replication": {"target": TARGET}})
    assert "replicationTargetAccessKey" in str(refused.value) and "replicationTargetSecretKey" in str(refused.value)
    from tests.unit import pulumi_harness

    assert pulumi_harness.last_monitor is not None
    assert pulumi_harness.last_monitor.registrations == [], "refused before any resource"


def test_target_credentials_in_plain_text_are_refused() -> None:
    with pytest.raises(Exception, match="replicationTargetSecretKey: stored in plain text"):
        deploy("dev", overrides={"replication": {"target": TARGET}}, plain={"replicationTargetSecretKey": "visible"},
               secrets={"replicationTargetAccessKey": "AKIA"})


def test_a_target_ca_certificate_is_uploaded_and_named_on_the_command_line() -> None:
    text = "-----BEGIN CERTIFICATE-----\nMIIBofftarget\n-----END CERTIFICATE-----\n"
    deployment = deploy("dev", overrides={"replication": {"target": TARGET, "caCertificate": text}}, secrets=TARGET_SECRETS)
    container = deployment.named("mirror", CONTAINER)
    command = container.inputs["command"]
    assert command[command.index("--target-ca-file") + 1] == "/etc/ops/target-ca.pem"
    assert container.uploads()["/etc/ops/target-ca.pem"] == text


@pytest.mark.parametrize(
    ("replication", "key", "words"),
    [
        ({"target": "s3.example.com"}, "replication.target", "is not an S3 endpoint"),
        ({"target": "https://s3.example.com/backups"}, "replication.target", "has a path"),
        ({"target": TARGET, "buckets": ["not-catalogued"]}, "replication", "not in the bucket catalogue"),
        ({"target": TARGET, "schedule": "*/2 * * * *"}, "replication.schedule", "more than 12 mirrors an hour"),
        ({"target": TARGET, "bucketPrefix": "Upper_"}, "replication.bucketPrefix", "cannot start a bucket name"),
        ({"target": TARGET, "partSizeMib": 2}, "replication.partSizeMib", "greater than or equal to 5"),
        ({"target": TARGET, "deletes": "sometimes"}, "replication.deletes", "valid boolean"),
    ],
)
def test_bad_replication_settings_are_reported_with_their_key_path(replication: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_stack_config("dev", {"replication": replication})
    assert any(problem.startswith(f"{key}:") and words in problem for problem in refused.value.problems), refused.value.problems


def test_the_mirror_service_policy_reads_the_mirrored_buckets_and_nothing_else() -> None:
    never_mint = next(s for s in json.loads((ROOT / "policies" / "readonly-policy.json").read_text())["Statement"]
                      if s["Sid"] == "NeverMintOrChangeCredentials")
    policy = source_policy(["artifacts", "logs"], never_mint)
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert actions <= S3_ACTIONS | ADMIN_ACTIONS, actions - S3_ACTIONS - ADMIN_ACTIONS
    for action, resource in [("s3:ListBucket", "arn:aws:s3:::logs"), ("s3:ListBucketVersions", "arn:aws:s3:::artifacts"),
                             ("s3:GetObject", "arn:aws:s3:::logs/a/b"), ("s3:GetObjectVersion", "arn:aws:s3:::artifacts/x")]:
        assert allows(policy, action, resource), action
    for action, resource in [("s3:PutObject", "arn:aws:s3:::logs/a"), ("s3:DeleteObject", "arn:aws:s3:::logs/a"),
                             ("s3:GetObject", "arn:aws:s3:::backups-postgresql/keycloak/x.sql.gz"),
                             ("s3:PutBucketVersioning", "arn:aws:s3:::logs")]:
        assert not allows(policy, action, resource), action
    for action in CREDENTIAL_ACTIONS:
        assert not allows(policy, action, deny_only=True), action


def test_mirror_schedule_logs_each_run_as_a_mirror_and_outlives_a_failed_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infra.cron import CronSchedule
    from opscli.failures import UnreachableError
    from opscli.scheduled import run_schedule

    now = [datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc)]
    runs: list[datetime] = []

    def mirror() -> str:
        runs.append(now[0])
        if len(runs) == 1:
            raise UnreachableError("cannot reach https://s3.offsite.example.com to list bucket acme-logs: timed out")
        return "mirrored 3 object(s)"

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    failures = run_schedule(CronSchedule.parse("15 4 * * *"), mirror, tmp_path / "beat", clock=lambda: now[0], sleep=sleep,
                            max_runs=2, job="mirror")

    log = capsys.readouterr().err
    assert failures == 1 and len(runs) == 2
    assert "scheduled mirrors: '15 4 * * *'" in log and "mirror failed: cannot reach" in log and "mirror done: mirrored 3" in log


def test_the_mirror_image_runs_mirror_schedule_with_only_its_own_dependencies(tmp_path: Path) -> None:
    """As the image holds it (opscli, infra/cron.py, the lock's packages): settings are checked at start, without
    the Pulumi program, and a missing target secret is named before the first run."""
    image_tree = tmp_path / "ops"
    shutil.copytree(ROOT / "scripts" / "opscli", image_tree / "opscli")
    (image_tree / "infra").mkdir()
    for name in ("__init__.py", "cron.py"):
        shutil.copy(ROOT / "infra" / name, image_tree / "infra" / name)
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'pulumi', 'pulumi_docker', 'pydantic', 'jinja2', 'yaml'}:\n"
        "            raise ImportError(f'{name} is not in the image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from opscli.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    settings = tmp_path / "ops.env"
    settings.write_text("OPS_ENDPOINT=http://minio1:9000\nOPS_ACCESS_KEY=mirror-service\nOPS_SECRET_KEY=s\nOPS_TARGET_ACCESS_KEY=AKIA\n")
    result = subprocess.run(
        [sys.executable, "-c", blocker, "mirror-schedule", "--schedule", "15 4 * * *", "--target-endpoint", TARGET,
         "--heartbeat", str(tmp_path / "beat"), "logs"],
        cwd=image_tree, env={"PYTHONPATH": str(image_tree), "PATH": "/usr/bin:/bin", "OPS_ENV_FILE": str(settings)},
        capture_output=True, text=True, timeout=60,
    )
    assert "is not in the image" not in result.stderr, result.stderr
    assert result.returncode == 3 and "OPS_TARGET_SECRET_KEY" in result.stderr, (result.returncode, result.stderr)


def test_render_writes_the_mirrors_settings_file_only_when_the_stack_mirrors() -> None:
    from infra.secrets import SecretValues
    from infra.stack_files import render_stack_files

    plain = {f.path for f in render_stack_files(parse_stack_config("dev", {}), SecretValues.throwaway())}
    mirrored = {f.path: f for f in render_stack_files(parse_stack_config("dev", {"replication": {"target": TARGET}}), SecretValues.throwaway())}
    assert "mirror/ops.env" not in plain
    assert mirrored["mirror/ops.env"].secret and "OPS_TARGET_SECRET_KEY=throwaway-replicationTargetSecretKey" in mirrored["mirror/ops.env"].content


def test_bootstrap_creates_the_mirror_service_user_read_only_on_the_mirrored_buckets_sdk_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_ops_cli_minio_admin import STACK, Cluster, bootstrap

    stack_file = tmp_path / "Pulumi.lab.yaml"
    stack_file.write_text(
        "config:\n  minio-platform:environment: dev\n  minio-platform:replication:\n"
        f"    target: {TARGET}\n    buckets: [artifacts, logs]\n"
    )
    cluster = Cluster({"ops-admin": ("ops-admin-secret", ["admin"])})

    code, _ = bootstrap(cluster, tmp_path, monkeypatch, "--stack", "lab", "--config-file", str(stack_file),
                        outputs={**STACK, "mirrorServiceSecretKey": "mirror-secret"})

    assert code == 0, capsys.readouterr().err
    assert cluster.users["mirror-service"] == ("mirror-secret", ["mirror-service"])
    [policy] = [r for r in cluster.pool.requests if r.command == "add-canned-policy" and r.query["name"] == ["mirror-service"]]
    resources = {resource for statement in json.loads(policy.body or b"")["Statement"] for resource in statement.get("Resource", [])}
    assert resources == {"arn:aws:s3:::artifacts", "arn:aws:s3:::logs", "arn:aws:s3:::artifacts/*", "arn:aws:s3:::logs/*"}
    assert policy.signer == "ops-admin"


def test_validate_refuses_replication_without_the_target_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infra.__main__ import main

    stack_file = tmp_path / "Pulumi.offsite.yaml"
    stack_file.write_text(f"config:\n  minio-platform:environment: dev\n  minio-platform:replication:\n    target: {TARGET}\n")

    # exit 3, as for prod's certificate: valid but for what only the operator can give (scripts/deploy asks for it)
    assert main(["validate", "--stack", "offsite", "--config-file", str(stack_file)]) == 3
    err = capsys.readouterr().err
    assert "replicationTargetAccessKey" in err and "pulumi config set --secret replicationTargetSecretKey" in err
