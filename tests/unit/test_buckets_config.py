"""The bucket catalogue and backup schedule in stack config, the KMS key they imply, and the
scheduled backup service in the program (under Pulumi's mocks)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from infra.backups import IMAGE_SOURCES, image_sources_digest
from infra.config import ConfigError, parse_stack_config, read_stack_file, split_config
from infra.config.buckets import bucket_name_problem
from infra.cron import CronSchedule
from infra.secrets import SECRET_SPECS, SecretValues
from infra.storage import KMS_KEY_NAME, minio_files
from tests.conftest import ROOT
from tests.unit.pulumi_harness import deploy

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"


def problems(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("dev", values)
    return raised.value.problems


def shipped(stack: str) -> Any:
    values, encrypted = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    return split_config(stack, values, frozenset(), encrypted)[0]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_carry_the_catalogue_with_its_retentions(stack: str) -> None:
    buckets = shipped(stack).buckets
    assert {name: b.retention_days for name, b in buckets.items()} == {
        "backups-postgresql": 30, "logs": 90, "artifacts": None, "temp": 7,
    }
    assert buckets["backups-postgresql"].versioning
    assert not any(b.anonymous_read for b in buckets.values())


def test_a_stack_without_a_catalogue_gets_the_default_one() -> None:
    config = parse_stack_config("dev", {})
    assert set(config.buckets) == {"backups-postgresql", "logs", "artifacts", "temp"}
    assert config.backup.bucket == "backups-postgresql" and config.backup.schedule == "30 2 * * *"


def test_bad_bucket_settings_are_reported_with_their_key_path() -> None:
    found = problems({
        "buckets": {
            "logs": {"purpose": "logs", "retentionDays": 0},
            "temp": {"purpose": "scratch", "quota": "lots"},
            "artifacts": {"purpose": "x", "anonymousReed": True},
            "backups-postgresql": {"retentionDays": 30},
        }
    })
    joined = "\n".join(found)
    assert "buckets.logs.retentionDays: Input should be greater than or equal to 1 (got 0)" in joined
    assert "buckets.temp.quota: 'lots' is not a size" in joined
    assert "buckets.artifacts.anonymousReed: unknown key" in joined
    assert "buckets.backups-postgresql.purpose: required key is missing" in joined
    assert len(found) == 4, "every problem at once"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Logs", "lower-case"), ("ab", "3 to 63"), ("a" * 64, "3 to 63"), ("-logs", "starting and ending"),
        ("my..bucket", "next to another"), ("192.168.1.10", "IP address"), ("xn--bucket", "prefix"),
        ("data-s3alias", "suffix"), ("under_score", "lower-case"),
    ],
)
def test_bucket_names_follow_s3_naming_rules(name: str, why: str) -> None:
    problem = bucket_name_problem(name)
    assert problem is not None and why in problem
    found = problems({"buckets": {name: {"purpose": "x"}}, "backup": {"enabled": False}})
    assert any(line.startswith("buckets.") and why in line for line in found), found


def test_valid_bucket_names_are_accepted() -> None:
    for name in ("backups-postgresql", "logs", "a.b-c", "123"):
        assert bucket_name_problem(name) is None


def test_backup_bucket_must_be_in_the_catalogue_unless_backups_are_off() -> None:
    found = problems({"buckets": {"logs": {"purpose": "logs"}}})
    assert found == ["backup: bucket 'backups-postgresql' is not in the bucket catalogue (buckets: logs)"]
    parse_stack_config("dev", {"buckets": {"logs": {"purpose": "logs"}}, "backup": {"enabled": False}})


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("daily", "five fields"),
        ("61 2 * * *", "minute field"),
        ("0 24 * * *", "hour field"),
        ("0 2 * * 8", "day of week field"),
        ("* * * * *", "more than 12 backups an hour"),
        ("0 2 */0 * *", "step"),
    ],
)
def test_bad_backup_schedules_are_rejected_with_their_key_path(schedule: str, message: str) -> None:
    found = problems({"backup": {"schedule": schedule}})
    assert len(found) == 1 and found[0].startswith("backup.schedule: ") and message in found[0]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("30 2 * * *", datetime(2026, 11, 21, 20, 0), datetime(2026, 11, 22, 2, 30)),
        ("30 2 * * *", datetime(2026, 11, 22, 2, 30), datetime(2026, 11, 23, 2, 30)),
        ("0 */6 * * *", datetime(2026, 11, 21, 13, 5), datetime(2026, 11, 21, 18, 0)),
        ("15 3 * * 0", datetime(2026, 11, 21, 20, 0), datetime(2026, 11, 22, 3, 15)),  # 2026-11-22 is a Sunday
        ("0 4 1 * 1", datetime(2026, 11, 21, 20, 0), datetime(2026, 11, 23, 4, 0)),  # day or weekday: Monday first
        ("0 3 29 2 *", datetime(2026, 3, 1, 0, 0), datetime(2028, 2, 29, 3, 0)),
    ],
)
def test_backup_schedule_next_run_follows_cron_rules(expression: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_run(after) == expected


def test_kms_key_is_a_32_byte_key_secret_and_reaches_minio_only_when_a_bucket_encrypts() -> None:
    spec = SECRET_SPECS["minio_kms_secret_key"]
    assert (spec.kind, spec.length, spec.key) == ("key", 32, "minioKmsSecretKey")
    secrets = SecretValues.throwaway()
    plain = parse_stack_config("dev", {})
    encrypted = parse_stack_config("dev", {"buckets": {"backups-postgresql": {"purpose": "d", "encryption": True}}})

    assert "MINIO_KMS_SECRET_KEY" not in minio_files(plain, secrets)[0].content
    rendered = minio_files(encrypted, secrets)[0]
    assert f"MINIO_KMS_SECRET_KEY={KMS_KEY_NAME}:{secrets.minio_kms_secret_key}\n" in rendered.content
    assert rendered.secret


def test_prod_encrypts_its_backups_so_its_minio_gets_the_kms_key() -> None:
    config = shipped("prod")
    assert config.needs_kms and config.buckets["backups-postgresql"].encryption


@pytest.fixture(scope="module")
def dev() -> Any:
    return deploy("dev")


def test_backup_service_runs_the_same_backup_command_on_storage_and_database_nets(dev: Any) -> None:
    container = dev.named("backup", CONTAINER)
    command = container.inputs["command"]
    assert command[0] == "backup-schedule"
    assert command[command.index("--schedule") + 1] == "30 2 * * *"
    assert command[command.index("--bucket") + 1] == "backups-postgresql"
    assert command[command.index("--pg-host") + 1] == "172.23.20.9", "the fixed address of postgres on dev's database-net"
    # its runs' metrics on its own storage-net address, where Prometheus reads them (no other segment reaches them)
    assert command[command.index("--metrics-listen") + 1] == "172.40.20.50:9108"
    assert dev.outputs["containers"]["backup"]["networks"] == ["minio-dev-database-net", "minio-dev-storage-net"]
    assert any(dep.endswith("::postgres") for dep in container.dependencies)


def test_backup_service_credentials_reach_it_only_in_a_secret_settings_file(dev: Any) -> None:
    container = dev.named("backup", CONTAINER)
    assert container.inputs["envs"] == ["OPS_ENV_FILE=/etc/ops/ops.env"], "no credential in docker inspect"
    assert "uploads" in container.secret_paths
    assert not any("generated" in part for part in container.inputs["command"])
    assert list(container.uploads()) == ["/etc/ops/ops.env"]
    lines = container.uploads()["/etc/ops/ops.env"].splitlines()
    assert "OPS_ACCESS_KEY=backup-service" in lines
    assert f"OPS_SECRET_KEY={dev.outputs['backupServiceSecretKey']}" in lines
    assert any(line.startswith("PGPASSWORD=") for line in lines)
    assert "backupServiceSecretKey" in dev.secret_outputs
    # minio1 first, then every other node in order for a run minio1 cannot answer
    assert "OPS_ENDPOINT=http://minio1:9000" in lines
    assert "OPS_FALLBACK_ENDPOINTS=http://minio2:9000,http://minio3:9000,http://minio4:9000" in lines


def test_backup_image_is_built_at_deploy_on_the_stacks_own_postgres_image(dev: Any) -> None:
    image = dev.named("backup-image", REMOTE_IMAGE)
    build = image.inputs["build"]
    assert build["dockerfile"] == "scripts/opscli/Dockerfile" and build["context"] == str(ROOT)
    assert build["buildArgs"] == {"POSTGRES_IMAGE": shipped("dev").identity.postgres_image}
    assert image.inputs["triggers"]["sources"] == image_sources_digest()
    assert image.inputs["name"].endswith(f":{image_sources_digest()[:16]}")
    dockerfile = (ROOT / "scripts/opscli/Dockerfile").read_text()
    assert "--require-hashes -r /opt/ops/requirements.lock" in dockerfile
    assert 'ENTRYPOINT ["python3", "-m", "opscli"]' in dockerfile


def test_backup_image_sources_digest_changes_when_the_command_line_changes(tmp_path: Path) -> None:
    for name in IMAGE_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    package = tmp_path / "scripts" / "opscli"
    (package / "cli.py").write_text("one")
    before = image_sources_digest(tmp_path)
    (package / "cli.py").write_text("two")
    assert image_sources_digest(tmp_path) != before


def test_backups_can_be_switched_off() -> None:
    deployment = deploy("dev", overrides={"backup": {"enabled": False}})
    assert not [r for r in deployment.of_type(CONTAINER) if r.name == "backup"]
    assert "backup" not in deployment.outputs["containers"]
