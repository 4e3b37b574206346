"""scripts/ops without servers: argument parsing, help, exit codes, where connection settings come
from, how SDK and network failures become one sentence, and secrets handling."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3

from minio.error import S3Error

from opscli import cli, iam
from opscli.connection import Connection, explained, fallback_endpoints, normalise_url, resolve_connection
from opscli.failures import EXIT_CODE_MEANINGS, ExitCode, OpsError
from tests.conftest import ROOT

SUBCOMMANDS = sorted(cli.COMMANDS)
CONNECTION = Connection("http://127.0.0.1:9000", "opsadmin", "not-a-real-secret")


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "ops"), *argv],
        capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OPS_")}, **(environ or {})},
    )
    return out.returncode, out.stdout, out.stderr


def test_ops_help_lists_every_subcommand_and_the_exit_codes() -> None:
    code, out, _ = run(["--help"])
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out
    for exit_code in ExitCode:
        assert f"  {exit_code.value:<3} " in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])
    assert exited.value.code == 0
    assert f"usage: scripts/ops {name}" in capsys.readouterr().out


def test_every_exit_code_is_documented() -> None:
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)


def test_unknown_subcommand_and_missing_argument_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["no-such-command"], ["create-bucket"], ["create-service-account", "x"], ["assign-policy", "readonly"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == ExitCode.USAGE


def test_the_secret_key_cannot_be_given_as_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["list-buckets", "--secret-key", "visible-in-ps"])
    assert exited.value.code == ExitCode.USAGE


def test_missing_connection_settings_exit_3_naming_every_source() -> None:
    code, out, err = run(["list-buckets"])
    assert code == ExitCode.CONFIGURATION
    assert err.startswith("error: no connection settings for:") and err.count("\n") == 1
    assert "OPS_SECRET_KEY" in err and "--outputs-file" in err


STACK_OUTPUTS = {
    "endpoints": {"s3": "https://storage.example.com:9443"},
    "minioRootUser": "root", "minioRootPassword": "root-secret", "opsAdminSecretKey": "ops-admin-secret",
}


def test_connection_settings_come_from_flags_then_environment_then_stack_outputs() -> None:
    outputs = STACK_OUTPUTS
    from_outputs = resolve_connection(endpoint=None, access_key=None, outputs=outputs, environ={})
    from_env = resolve_connection(endpoint=None, access_key=None, outputs=outputs,
                                  environ={"OPS_ENDPOINT": "http://env:9000", "OPS_ACCESS_KEY": "env-key", "OPS_SECRET_KEY": "env-secret"})
    from_flags = resolve_connection(endpoint="http://flag-host:9000", access_key="flag-key", outputs=outputs, environ={"OPS_ACCESS_KEY": "env-key"})

    # from the outputs the CLI is ops-admin, never root (whose credentials the outputs also hold)
    assert (from_outputs.url, from_outputs.access_key, from_outputs.secret_key, from_outputs.secure) == (
        "https://storage.example.com:9443", "ops-admin", "ops-admin-secret", True)
    assert (from_env.url, from_env.access_key, from_env.secret_key) == ("http://env:9000", "env-key", "env-secret")
    assert (from_flags.url, from_flags.access_key, from_flags.secret_key) == ("http://flag-host:9000", "flag-key", "ops-admin-secret")
    assert "ops-admin-secret" not in repr(from_flags)


def test_stack_outputs_with_only_root_credentials_are_refused_not_used() -> None:
    outputs = {key: value for key, value in STACK_OUTPUTS.items() if key != "opsAdminSecretKey"}
    with pytest.raises(OpsError) as refused:
        resolve_connection(endpoint=None, access_key=None, outputs=outputs, environ={})
    assert refused.value.code == ExitCode.CONFIGURATION
    assert "opsAdminSecretKey" in refused.value.sentence and "bootstrap" in refused.value.sentence


def test_admin_calls_go_to_the_stacks_admin_listener_and_s3_calls_to_the_s3_endpoint() -> None:
    outputs = {**STACK_OUTPUTS, "endpoints": {"s3": "https://storage.example.com:9443", "minioAdmin": "https://127.0.0.1:9444"}}
    connection = resolve_connection(endpoint=None, access_key=None, outputs=outputs, environ={})

    admin, s3 = connection.admin(), connection.s3()
    assert admin._url.netloc == "127.0.0.1:9444" and admin._secure
    assert s3._base_url.host == "storage.example.com:9443"
    # the admin listener is the same proxy: its certificate is checked for the S3 host name
    assert admin._http.connection_pool_kw["assert_hostname"] == "storage.example.com"
    assert s3._http.connection_pool_kw["assert_hostname"] is None


def test_without_an_admin_listener_admin_calls_use_the_s3_endpoint() -> None:
    plain = resolve_connection(endpoint=None, access_key=None, outputs=STACK_OUTPUTS, environ={})
    # an S3 endpoint from a flag may be another cluster's: the stack's admin listener is not mixed in
    outputs = {**STACK_OUTPUTS, "endpoints": {"s3": "https://storage.example.com:9443", "minioAdmin": "https://127.0.0.1:9444"}}
    elsewhere = resolve_connection(endpoint="https://other.example.com", access_key=None, outputs=outputs, environ={})
    chosen = resolve_connection(endpoint=None, access_key=None, outputs=STACK_OUTPUTS, environ={"OPS_ADMIN_ENDPOINT": "https://10.0.0.5:9444"})

    assert plain.admin_endpoint == "https://storage.example.com:9443" and plain.admin()._url.netloc == "storage.example.com:9443"
    assert elsewhere.admin_endpoint == "https://other.example.com"
    assert chosen.admin_endpoint == "https://10.0.0.5:9444"


def test_outputs_file_is_read_like_pulumi_stack_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"endpoints": {"s3": "http://127.0.0.1:1"}, "opsAdminSecretKey": "p"}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")

    assert cli.main(["list-buckets", "--outputs-file", str(broken)], environ={}) == ExitCode.CONFIGURATION
    assert "is not JSON" in capsys.readouterr().err
    # settings resolved from the file; the endpoint is closed, so this is a clean "unreachable"
    assert cli.main(["list-buckets", "--outputs-file", str(outputs)], environ={}) == ExitCode.UNREACHABLE
    assert "cannot reach http://127.0.0.1:1" in capsys.readouterr().err


def test_an_unreachable_admin_listener_is_named_not_the_s3_endpoint() -> None:
    connection = Connection("https://storage.example.com:9443", "ops-admin", "s", admin_url="http://127.0.0.1:1")
    with pytest.raises(OpsError) as unreachable, explained(connection, "install IAM policies"):
        iam.install_policies(connection.admin(), ROOT / "policies", ["readonly"])
    assert unreachable.value.code == ExitCode.UNREACHABLE
    assert "cannot reach http://127.0.0.1:1 to install IAM policies" in unreachable.value.sentence


def test_an_endpoint_without_a_scheme_is_refused_naming_the_two_forms_it_accepts() -> None:
    with pytest.raises(OpsError) as refused:
        normalise_url("minio1:9000")
    assert refused.value.sentence == (
        "endpoint 'minio1:9000' has no scheme: write 'https://minio1:9000' (TLS) or 'http://minio1:9000' (plain HTTP)"
    )


def test_endpoints_under_a_path_are_refused_because_sigv4_signs_the_path() -> None:
    assert normalise_url("http://minio1:9000") == "http://minio1:9000"
    assert normalise_url("https://s3.example.com/") == "https://s3.example.com"
    with pytest.raises(OpsError, match="must be served at the root"):
        normalise_url("https://example.com/storage")


def test_fallback_endpoints_are_read_in_order_and_a_bad_one_is_named_with_its_variable() -> None:
    assert fallback_endpoints({}) == []
    listed = {"OPS_FALLBACK_ENDPOINTS": "https://minio2:9000, https://minio3:9000/,"}
    assert fallback_endpoints(listed) == ["https://minio2:9000", "https://minio3:9000"]
    with pytest.raises(OpsError) as refused:
        fallback_endpoints({"OPS_FALLBACK_ENDPOINTS": "https://minio2:9000,minio3:9000"})
    assert refused.value.code == ExitCode.CONFIGURATION
    assert refused.value.sentence.startswith("OPS_FALLBACK_ENDPOINTS: endpoint 'minio3:9000' has no scheme")


def _s3_error(code: str, bucket: str | None = None, key: str | None = None) -> S3Error:
    return S3Error(None, code, "message", "/resource", "request", "host", bucket_name=bucket, object_name=key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raised", "exit_code", "words"),
    [
        (_s3_error("SignatureDoesNotMatch"), ExitCode.ACCESS_DENIED, "rejected the credentials"),
        (_s3_error("InvalidAccessKeyId"), ExitCode.ACCESS_DENIED, "unknown access key or wrong secret key"),
        (_s3_error("AccessDenied"), ExitCode.ACCESS_DENIED, "may not list"),
        (_s3_error("NoSuchBucket", bucket="gone"), ExitCode.NOT_FOUND, "bucket 'gone' does not exist"),
        (_s3_error("NoSuchKey", bucket="b", key="k"), ExitCode.NOT_FOUND, "object 'k' does not exist"),
        (urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.NewConnectionError(None, "Connection refused")),  # type: ignore[arg-type]
         ExitCode.UNREACHABLE, "cannot reach"),
        (urllib3.exceptions.SSLError("certificate verify failed"), ExitCode.UNREACHABLE, "--ca-file"),
    ],
)
def test_sdk_and_network_failures_become_one_sentence_with_an_exit_code(raised: Exception, exit_code: ExitCode, words: str) -> None:
    with pytest.raises(OpsError) as caught:
        with explained(CONNECTION, "list the buckets"):
            raise raised
    assert caught.value.code == exit_code
    assert words in caught.value.sentence and "\n" not in caught.value.sentence


def test_policies_are_loaded_from_their_files_never_retyped() -> None:
    files = iam.policy_files(ROOT / "policies")
    assert set(files) == {"backup-service", "readonly", "admin", "metrics-reader"}
    assert iam.load_policy(ROOT / "policies", "readonly") == json.loads((ROOT / "policies" / "readonly-policy.json").read_text())
    with pytest.raises(OpsError) as missing:
        iam.load_policy(ROOT / "policies", "superuser")
    assert missing.value.code == ExitCode.NOT_FOUND and "backup-service" in missing.value.sentence


def test_secret_file_is_created_0600_and_never_overwritten(tmp_path: Path) -> None:
    account = iam.ServiceAccount("AKIDEXAMPLE", "shown-once-secret", "ci", "readonly")
    path = tmp_path / "ci.env"
    iam.write_secret_file(path, account)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "OPS_ACCESS_KEY=AKIDEXAMPLE\nOPS_SECRET_KEY=shown-once-secret\n"
    assert "shown-once-secret" not in repr(account)
    with pytest.raises(OpsError) as again:
        iam.write_secret_file(path, account)
    assert again.value.code == ExitCode.REFUSED


class _Accounts:
    """Stands in for iam.create_service_account (its requests are tested at the SDK boundary)."""

    def __init__(self, fails: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fails = fails

    def __call__(self, admin: Any, policy_dir: Path, name: str, policy: str, description: str = "") -> iam.ServiceAccount:
        self.calls.append({"name": name, "policy": policy, "policy_dir": policy_dir})
        if self.fails is not None:
            raise self.fails
        return iam.ServiceAccount("AKIDNEW", "the-one-time-secret", name, policy, iam.owner_of(name))


ENVIRON = {"OPS_ENDPOINT": "http://127.0.0.1:9000", "OPS_ACCESS_KEY": "ops-admin", "OPS_SECRET_KEY": "ops-admin-secret"}


def test_create_service_account_with_secret_file_prints_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = _Accounts()
    monkeypatch.setattr(iam, "create_service_account", accounts)
    secret_file = tmp_path / "backup.env"

    code = cli.main(["create-service-account", "nightly-backup", "--policy", "backup-service", "--secret-file", str(secret_file)], ENVIRON)

    captured = capsys.readouterr()
    assert code == ExitCode.OK
    assert "the-one-time-secret" not in captured.out + captured.err
    assert "AKIDNEW" in captured.out and "the-one-time-secret" in secret_file.read_text()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert accounts.calls[0]["policy"] == "backup-service" and accounts.calls[0]["policy_dir"] == ROOT / "policies"
    assert "owner sa-nightly-backup" in captured.out


def test_create_service_account_writes_a_0600_file_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(iam, "create_service_account", _Accounts())
    monkeypatch.chdir(tmp_path)

    assert cli.main(["create-service-account", "ci", "--policy", "readonly"], ENVIRON) == ExitCode.OK

    captured = capsys.readouterr()
    written = tmp_path / "ci.env"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text() == "OPS_ACCESS_KEY=AKIDNEW\nOPS_SECRET_KEY=the-one-time-secret\n"
    assert "the-one-time-secret" not in captured.out + captured.err and "ci.env" in captured.out


def test_create_service_account_prints_the_secret_once_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(iam, "create_service_account", _Accounts())
    monkeypatch.chdir(tmp_path)

    assert cli.main(["create-service-account", "ci", "--policy", "readonly", "--print-secret"], ENVIRON) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.count("the-one-time-secret") == 1 and "shown only this once" in out
    assert list(tmp_path.iterdir()) == []


def test_an_existing_secret_file_is_refused_before_any_key_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = _Accounts()
    monkeypatch.setattr(iam, "create_service_account", accounts)
    taken = tmp_path / "ci.env"
    taken.write_text("someone else's\n")

    assert cli.main(["create-service-account", "ci", "--policy", "readonly", "--secret-file", str(taken)], ENVIRON) == ExitCode.REFUSED
    assert accounts.calls == [] and taken.read_text() == "someone else's\n"


def test_a_failed_creation_leaves_no_empty_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from minio.error import MinioAdminException

    monkeypatch.setattr(iam, "create_service_account", _Accounts(MinioAdminException("403", '{"Code":"AccessDenied"}')))
    secret_file = tmp_path / "ci.env"

    code = cli.main(["create-service-account", "ci", "--policy", "readonly", "--secret-file", str(secret_file)], ENVIRON)

    assert code == ExitCode.ACCESS_DENIED and not secret_file.exists()


def test_bad_account_names_and_unknown_policies_fail_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"OPS_ENDPOINT": "http://127.0.0.1:1", "OPS_ACCESS_KEY": "root", "OPS_SECRET_KEY": "root-secret"}
    assert cli.main(["create-service-account", "9bad name", "--policy", "readonly"], environ) == ExitCode.CONFIGURATION
    assert cli.main(["create-service-account", "ok", "--policy", "superuser"], environ) == ExitCode.NOT_FOUND


def test_sync_buckets_needs_a_stack_for_its_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"OPS_ENDPOINT": "http://127.0.0.1:1", "OPS_ACCESS_KEY": "root", "OPS_SECRET_KEY": "root-secret"}
    assert cli.main(["sync-buckets"], environ) == ExitCode.CONFIGURATION
    assert "--stack" in capsys.readouterr().err


def test_a_bad_stack_catalogue_is_a_configuration_error_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text("config:\n  minio-platform:environment: dev\n  minio-platform:buckets:\n    logs:\n      purpose: x\n      retentionDays: -1\n")
    environ = {"OPS_ENDPOINT": "http://127.0.0.1:1", "OPS_ACCESS_KEY": "root", "OPS_SECRET_KEY": "root-secret"}
    assert cli.main(["sync-buckets", "--stack", "bad", "--config-file", str(stack)], environ) == ExitCode.CONFIGURATION
    assert "buckets.logs.retentionDays" in capsys.readouterr().err


def test_backup_schedule_runs_at_each_scheduled_minute_and_outlives_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime, timedelta, timezone

    from infra.cron import CronSchedule
    from opscli.failures import ToolFailedError
    from opscli.scheduled import run_schedule

    now = [datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)]
    ran_at: list[datetime] = []

    def backup() -> str:
        ran_at.append(now[0])
        if len(ran_at) == 1:
            raise ToolFailedError("pg_dump failed (exit 1): connection refused")
        return "s3://backups-postgresql/keycloak/x.sql.gz"

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    heartbeat = tmp_path / "heartbeat"
    failures = run_schedule(CronSchedule.parse("30 2 * * *"), backup, heartbeat, clock=lambda: now[0], sleep=sleep, max_runs=2)

    assert ran_at == [datetime(2026, 11, 21, 2, 30, tzinfo=timezone.utc), datetime(2026, 11, 22, 2, 30, tzinfo=timezone.utc)]
    assert failures == 1 and heartbeat.exists()
    log = capsys.readouterr().err
    assert "backup failed: pg_dump failed (exit 1): connection refused" in log and "backup done: s3://" in log


def _samples(metrics: Any) -> dict[str, float]:
    """The registry's samples as Prometheus reads them: the text exposition, parsed back."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    exposition = generate_latest(metrics.registry).decode()
    return {
        sample.name + (f"{{result={sample.labels['result']}}}" if "result" in sample.labels else ""): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_the_scheduled_services_metrics_follow_each_run_and_survive_a_restart(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    from infra.cron import CronSchedule
    from opscli.failures import ToolFailedError
    from opscli.scheduled import JobMetrics, run_schedule, state_file

    start = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)
    now = [start]
    outcomes = iter([ToolFailedError("pg_dump failed (exit 1): connection refused"), None])

    def backup() -> str:
        failure = next(outcomes)
        if failure:
            raise failure
        return "s3://backups-postgresql/keycloak/x.sql.gz"

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    schedule, heartbeat = CronSchedule.parse("30 2 * * *"), tmp_path / "heartbeat"
    metrics = JobMetrics(schedule, state_file(heartbeat), lambda: now[0])
    before = _samples(metrics)
    # nothing has run: no outcome yet, and the first start counts as the last success
    assert "ops_scheduled_last_run_success" not in before
    assert before["ops_scheduled_last_success_timestamp_seconds"] == start.timestamp()
    assert before["ops_scheduled_interval_seconds"] == 86400
    assert before["ops_scheduled_next_run_timestamp_seconds"] == datetime(2026, 11, 21, 2, 30, tzinfo=timezone.utc).timestamp()

    run_schedule(schedule, backup, heartbeat, clock=lambda: now[0], sleep=sleep, max_runs=1, metrics=metrics)
    failed = _samples(metrics)
    first_run = datetime(2026, 11, 21, 2, 30, tzinfo=timezone.utc).timestamp()
    assert failed["ops_scheduled_last_run_success"] == 0 and failed["ops_scheduled_runs_total{result=failed}"] == 1
    assert failed["ops_scheduled_last_run_timestamp_seconds"] == first_run
    assert failed["ops_scheduled_last_success_timestamp_seconds"] == start.timestamp()

    # a restarted service still reports the failure, until a run succeeds
    restarted = JobMetrics(schedule, state_file(heartbeat), lambda: now[0])
    assert _samples(restarted)["ops_scheduled_last_run_success"] == 0
    run_schedule(schedule, backup, heartbeat, clock=lambda: now[0], sleep=sleep, max_runs=1, metrics=restarted)
    done = _samples(restarted)
    second_run = datetime(2026, 11, 22, 2, 30, tzinfo=timezone.utc).timestamp()
    assert done["ops_scheduled_last_run_success"] == 1 and done["ops_scheduled_runs_total{result=done}"] == 1
    assert done["ops_scheduled_last_success_timestamp_seconds"] == second_run
    assert done["ops_scheduled_next_run_timestamp_seconds"] == second_run
    assert json.loads(state_file(heartbeat).read_text())["last_success"] == second_run


@pytest.mark.parametrize("listen", ["9108", "0.0.0.0:http", "0.0.0.0:70000"])
def test_a_metrics_listener_that_is_not_address_and_port_is_refused_naming_the_option(tmp_path: Path, listen: str) -> None:
    from infra.cron import CronSchedule
    from opscli.scheduled import start_metrics

    with pytest.raises(OpsError) as refused:
        start_metrics(listen, CronSchedule.parse("30 2 * * *"), tmp_path / "heartbeat")
    assert refused.value.code == ExitCode.CONFIGURATION
    assert refused.value.sentence == f"--metrics-listen {listen!r} is not ADDRESS:PORT (e.g. 0.0.0.0:9108)"


def test_the_backup_image_runs_with_only_its_own_dependencies(tmp_path: Path) -> None:
    """The backup image holds opscli, infra/cron.py and its lock's packages: nothing of the Pulumi program."""
    image_tree = tmp_path / "ops"
    shutil.copytree(ROOT / "scripts" / "opscli", image_tree / "opscli")
    (image_tree / "infra").mkdir()
    for name in ("__init__.py", "cron.py"):
        shutil.copy(ROOT / "infra" / name, image_tree / "infra" / name)
    allowed = {line.split("==")[0] for line in (ROOT / "scripts/opscli/requirements.in").read_text().splitlines() if "==" in line}
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'pulumi', 'pulumi_docker', 'pydantic', 'jinja2', 'yaml'}:\n"
        "            raise ImportError(f'{name} is not in the backup image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from opscli.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker, "backup-schedule", "--schedule", "not a schedule"],
        cwd=image_tree, env={"PYTHONPATH": str(image_tree), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert allowed == {"minio", "tqdm", "prometheus-client"}
    assert "is not in the backup image" not in result.stderr, result.stderr
    assert result.returncode == 3 and "schedule" in result.stderr, (result.returncode, result.stderr)


def test_settings_file_fills_the_environment_without_overriding_it(tmp_path: Path) -> None:
    settings = tmp_path / "ops.env"
    settings.write_text("# the backup container's settings\nOPS_ACCESS_KEY=from-file\nPGPASSWORD=p=w\n\n")
    environ = {"OPS_ENV_FILE": str(settings), "OPS_ACCESS_KEY": "from-environment"}
    cli.load_env_file(environ)
    assert environ["OPS_ACCESS_KEY"] == "from-environment"
    assert environ["PGPASSWORD"] == "p=w"


@pytest.mark.parametrize(("content", "words"), [(None, "cannot read the settings file"), ("no separator\n", "line 1")])
def test_unreadable_or_malformed_settings_file_is_a_configuration_error(tmp_path: Path, content: str | None, words: str) -> None:
    settings = tmp_path / "ops.env"
    if content is not None:
        settings.write_text(content)
    with pytest.raises(OpsError, match=words) as raised:
        cli.load_env_file({"OPS_ENV_FILE": str(settings)})
    assert raised.value.code == ExitCode.CONFIGURATION
