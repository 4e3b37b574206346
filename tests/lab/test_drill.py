"""`scripts/ops drill` against real PostgreSQL and two S3 STAND-INS (SeaweedFS, not MinIO) on loopback:
one plays the cluster (backups, configuration exports, the mirrored bucket), the other the offsite target."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops_servers import Postgres, S3StandIn, postgres_server, run_ops, seaweedfs_s3

pytestmark = pytest.mark.lab

BUCKET = "backups-postgresql"
MIRRORED = "artifacts"
DATABASE = "keycloak"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server("127.0.5.62") as server:
        server.create_database(DATABASE)
        server.psql(DATABASE, """
            CREATE TABLE realms (id serial PRIMARY KEY, name text NOT NULL);
            INSERT INTO realms (name) SELECT 'realm-' || g FROM generate_series(1, 500) AS g;
        """)
        yield server


@pytest.fixture(scope="module")
def cluster() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.60") as server:
        client = server.client()
        client.make_bucket(BUCKET)
        client.make_bucket(MIRRORED)
        for index in range(8):
            client.put_object(MIRRORED, f"release-{index}.tar", io.BytesIO(bytes([index]) * 4096), 4096)
        yield server


@pytest.fixture(scope="module")
def offsite() -> Iterator[S3StandIn]:
    with seaweedfs_s3("127.0.5.61") as server:
        yield server


def environ(cluster: S3StandIn, offsite: S3StandIn) -> dict[str, str]:
    return {**cluster.environ(), "OPS_TARGET_ENDPOINT": offsite.url, "OPS_TARGET_ACCESS_KEY": offsite.access_key,
            "OPS_TARGET_SECRET_KEY": offsite.secret_key}


@pytest.fixture(scope="module")
def prepared(cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A backup, a mirror and a configuration export, as the stack makes them; returns the backup's key."""
    env = environ(cluster, offsite)
    backup = run_ops(["backup-postgres", "--bucket", BUCKET, *postgres.cli_args(DATABASE)], env)
    assert backup.returncode == 0, backup.stderr
    assert run_ops(["mirror", MIRRORED], env).returncode == 0
    out = tmp_path_factory.mktemp("drill") / "export.json"
    assert run_ops(["export-config", "--s3-only", "--out", str(out)], env).returncode == 0
    return backup.stdout.split(f"s3://{BUCKET}/", 1)[1].split()[0]


def drill(cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, *extra: str) -> tuple[int, dict[str, dict[str, object]], str]:
    result = run_ops(["drill", "--bucket", BUCKET, *postgres.cli_args(DATABASE), "--mirror-bucket", MIRRORED, "--json", *extra],
                     environ(cluster, offsite))
    report = json.loads(result.stdout)
    return result.returncode, {step["step"]: step for step in report["steps"]}, result.stderr


def test_the_drill_passes_on_good_copies_and_times_each_step(cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, prepared: str) -> None:
    code, steps, _ = drill(cluster, offsite, postgres)

    assert code == 0
    assert {name: step["status"] for name, step in steps.items()} == {"postgres": "ok", "mirror": "ok", "config": "ok"}
    assert all(isinstance(step["seconds"], float) and step["seconds"] > 0 for step in steps.values())
    assert prepared in str(steps["postgres"]["detail"]) and "sha256 verified" in str(steps["postgres"]["detail"])
    assert "8 sampled object(s)" in str(steps["mirror"]["detail"])
    scratch = postgres.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'keycloak_drill_%'")
    assert scratch == "0", "the scratch database is dropped afterwards"


def test_the_text_report_names_each_step_with_its_duration_and_the_recovery_time(
    cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, prepared: str
) -> None:
    result = run_ops(["drill", "--bucket", BUCKET, *postgres.cli_args(DATABASE), "--mirror-bucket", MIRRORED],
                     environ(cluster, offsite))
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    for name in ("postgres", "mirror", "config"):
        assert any(line.split()[:2] == [name, "ok"] and line.split()[3] == "s" for line in lines), name
    assert "recovery time (sum of the steps run):" in lines[-1] and "3 passed, 0 failed, 0 skipped" in lines[-1]


def test_a_corrupted_backup_fails_the_drill_with_exit_8_and_the_other_steps_still_run(
    cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, prepared: str
) -> None:
    client = cluster.client()
    original = client.get_object(BUCKET, prepared).read()
    recorded = client.stat_object(BUCKET, prepared).metadata["x-amz-meta-sha256"]
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0xFF
    client.put_object(BUCKET, prepared, io.BytesIO(bytes(corrupted)), len(corrupted), metadata={"sha256": recorded})
    try:
        code, steps, stderr = drill(cluster, offsite, postgres)
    finally:
        client.put_object(BUCKET, prepared, io.BytesIO(original), len(original), metadata={"sha256": recorded})

    assert code == 8
    assert steps["postgres"]["status"] == "FAILED" and "is corrupt" in str(steps["postgres"]["detail"])
    assert steps["mirror"]["status"] == "ok" and steps["config"]["status"] == "ok"
    assert stderr.startswith("error: the drill failed: postgres:")


def test_an_object_missing_on_the_mirror_target_fails_the_drill(
    cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, prepared: str
) -> None:
    target = offsite.client()
    kept = target.get_object(MIRRORED, "release-3.tar").read()
    target.remove_object(MIRRORED, "release-3.tar")
    try:
        code, steps, _ = drill(cluster, offsite, postgres, "--steps", "mirror")
    finally:
        target.put_object(MIRRORED, "release-3.tar", io.BytesIO(kept), len(kept))

    assert code == 6
    assert list(steps) == ["mirror"]
    assert steps["mirror"]["status"] == "FAILED" and f"{MIRRORED}/release-3.tar" in str(steps["mirror"]["detail"])


def test_a_changed_mirrored_object_fails_by_checksum(cluster: S3StandIn, offsite: S3StandIn, postgres: Postgres, prepared: str) -> None:
    target = offsite.client()
    kept = target.get_object(MIRRORED, "release-5.tar").read()
    target.put_object(MIRRORED, "release-5.tar", io.BytesIO(b"\x00" * 4096), 4096)
    try:
        code, steps, _ = drill(cluster, offsite, postgres, "--steps", "mirror")
    finally:
        target.put_object(MIRRORED, "release-5.tar", io.BytesIO(kept), len(kept))

    assert code == 8 and "differ on" in str(steps["mirror"]["detail"])


def test_a_step_without_its_settings_is_skipped_and_said_so(cluster: S3StandIn, prepared: str, tmp_path: Path) -> None:
    result = run_ops(["drill", "--bucket", BUCKET, "--json"], cluster.environ())
    steps = {step["step"]: step for step in json.loads(result.stdout)["steps"]}

    assert result.returncode == 0, result.stderr
    assert steps["postgres"]["status"] == "skipped" and "--database" in str(steps["postgres"]["detail"])
    assert steps["mirror"]["status"] == "skipped" and steps["config"]["status"] == "ok"
    asked = run_ops(["drill", "--bucket", BUCKET, "--steps", "mirror"], cluster.environ())
    assert asked.returncode == 3, "a step asked for by name fails without its settings"
