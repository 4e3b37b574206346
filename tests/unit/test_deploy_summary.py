"""The summary a deploy ends with: URLs, how to read each credential, the smoke tests' result, how to tear down.

It is made from the stack's outputs as `pulumi stack output --json` prints them, so it is shown here
from outputs saved offline, and at the end of scripts/deploy run against stand-ins for the Pulumi
CLI, the Docker host, scripts/ops and scripts/smoke.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.inventory import Inventory, inventory, offline_run
from infra.summary import SECRET_PLACEHOLDER
from tests.conftest import ROOT
from tests.unit import fake_docker
from tests.unit.test_deploy_script import borrowed_venv, copy_of_project, deploy_env, run
from tests.unit.test_preflight import clean_host

PYTEST_TALLY = "========== 31 passed, 3 skipped in 212.40s (0:03:32) =========="


def saved_outputs(stack: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What `pulumi stack output --json` prints for the stack (secrets as "[secret]"), and the hidden values."""
    run_ = offline_run(stack).run
    outputs = {key: SECRET_PLACEHOLDER if key in run_.secret_outputs else value for key, value in run_.outputs.items()}
    hidden = {key: str(run_.outputs[key]) for key in run_.secret_outputs}
    return json.loads(json.dumps(outputs)), hidden


def summary(tmp_path: Path, stack: str, *smoke: str, environ: dict[str, str] | None = None) -> tuple[int, str, str, dict[str, str]]:
    outputs, hidden = saved_outputs(stack)
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
        "PULUMI_BACKEND_URL": f"file://{tmp_path}/state",
        "PULUMI_CONFIG_PASSPHRASE_FILE": f"{tmp_path}/passphrase",
        **(environ or {}),
    }
    result = run(ROOT, env, sys.executable, "-m", "infra", "summary", "--stack", stack, "--outputs-file", str(outputs_file), *smoke)
    return result.returncode, result.stdout, result.stderr, hidden


def test_the_summary_names_the_urls_and_a_command_for_every_credential_but_no_secret(tmp_path: Path) -> None:
    code, out, err, hidden = summary(tmp_path, "dev", "--smoke-skipped", "SKIP_SMOKE is set")
    assert code == 0, err
    outputs, _ = saved_outputs("dev")
    for key in ("s3", "console", "grafana", "keycloak", "runbook"):
        assert outputs["endpoints"][key] in out
    assert f"export PATH=\"$HOME/.pulumi/bin:$PATH\" PULUMI_BACKEND_URL=file://{tmp_path}/state PULUMI_CONFIG_PASSPHRASE_FILE={tmp_path}/passphrase" in out
    for key in hidden:
        assert any(line.split("#")[0].split() == ["pulumi", "stack", "output", "--show-secrets", key, "--stack", "dev"] for line in out.splitlines()), key
    assert "keycloakAdminUser: admin" in out
    for value in hidden.values():
        assert value not in out, "a secret value was printed"
    assert "smoke tests: not run (SKIP_SMOKE is set); run them with scripts/smoke dev" in out


def test_a_file_made_with_show_secrets_still_prints_no_secret(tmp_path: Path) -> None:
    run_ = offline_run("dev").run
    outputs_file = tmp_path / "revealed.json"
    outputs_file.write_text(json.dumps(run_.outputs))
    result = run(ROOT, dict(os.environ), sys.executable, "-m", "infra", "summary", "--stack", "dev", "--outputs-file", str(outputs_file))
    assert result.returncode == 0, result.stderr
    for key in run_.secret_outputs:
        assert str(run_.outputs[key]) not in result.stdout


@pytest.mark.parametrize(("exit_code", "expected"), [
    ("0", "smoke tests: passed (31 passed, 3 skipped)"),
    ("1", "smoke tests: FAILED (31 passed, 3 skipped), exit code 1; the failures are above, rerun them with scripts/smoke dev"),
])
def test_the_summary_says_what_the_smoke_tests_found(tmp_path: Path, exit_code: str, expected: str) -> None:
    log = tmp_path / "smoke.log"
    log.write_text(f"collected 34 items\n...\n{PYTEST_TALLY}\n")
    code, out, err, _ = summary(tmp_path, "dev", "--smoke-exit", exit_code, "--smoke-log", str(log))
    assert code == 0, err
    assert expected in out.splitlines()


def test_tear_down_keeps_the_stack_file_and_on_prod_names_the_protected_volumes(tmp_path: Path) -> None:
    _, dev, _, _ = summary(tmp_path, "dev")
    assert "  pulumi destroy --yes --stack dev && pulumi stack rm --yes --preserve-config dev" in dev.splitlines()
    _, prod, _, _ = summary(tmp_path, "prod")
    volumes = saved_outputs("prod")[0]["volumes"]
    assert "pulumi destroy --yes --exclude-protected --stack prod" in prod
    assert "pulumi state unprotect --all --yes --stack prod && pulumi destroy --yes --stack prod" in prod
    assert "docker volume rm " + " ".join(volumes) in prod


# ---- the end of scripts/deploy ------------------------------------------------------------------


def working_pulumi(bin_dir: Path, outputs: dict[str, Any]) -> Path:
    """A Pulumi CLI stand-in at the pinned version whose every command works; `stack output --json` prints `outputs`."""
    version = next(line.split("==")[1].strip('",') for line in (ROOT / "pyproject.toml").read_text().split() if line.startswith('"pulumi=='))
    log = bin_dir / "pulumi-calls.log"
    (bin_dir / "outputs.json").write_text(json.dumps(outputs))
    script = bin_dir / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo v{version}; exit 0; fi\n'
        f"echo \"$@\" >> '{log}'\n"
        f"if [ \"$1 $2\" = 'stack output' ]; then cat '{bin_dir / 'outputs.json'}'; fi\n"
    )
    script.chmod(0o755)
    return log


def stand_in(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def dev() -> Inventory:
    return inventory("dev")


@pytest.mark.parametrize("smoke_exit", [0, 1])
def test_deploy_ends_with_the_summary_and_the_smoke_tests_exit_code(tmp_path: Path, dev: Inventory, smoke_exit: int) -> None:
    project = copy_of_project(tmp_path)
    fake_docker.install(tmp_path / "bin", clean_host(dev, tmp_path, local=False))
    outputs, hidden = saved_outputs("dev")
    calls = working_pulumi(tmp_path / "bin", outputs)
    ops_calls = tmp_path / "ops-calls.log"
    stand_in(project / "scripts" / "ops", f"echo \"$@\" >> '{ops_calls}'")
    stand_in(project / "scripts" / "smoke", f"echo '{PYTEST_TALLY}'\nexit {smoke_exit}")
    env = deploy_env(tmp_path, VENV=str(borrowed_venv(tmp_path, project)))
    env.pop("DOCKER_HOST", None)

    result = run(project, env, "scripts/deploy", "dev")

    assert result.returncode == smoke_exit, result.stdout + result.stderr
    # an existing stack's configuration is exported before the update; every sub-command comes before --stack
    export, bootstrap = ops_calls.read_text().splitlines()
    assert re.fullmatch(r"export-config --stack dev --out build/config-exports/dev-\d{8}T\d{6}Z\.json", export), export
    assert bootstrap == "bootstrap --stack dev"
    assert "stack output --json --stack dev" in calls.read_text().splitlines()
    out = result.stdout
    assert "==> minio-dev is deployed (stack 'dev')" in out
    assert f"PULUMI_BACKEND_URL=file://{project}/.pulumi-state PULUMI_CONFIG_PASSPHRASE_FILE={project}/.pulumi-passphrase" in out
    assert ("smoke tests: passed (31 passed, 3 skipped)" if smoke_exit == 0 else "smoke tests: FAILED (31 passed, 3 skipped)") in out
    assert out.rstrip().splitlines()[-1] == "  pulumi destroy --yes --stack dev && pulumi stack rm --yes --preserve-config dev"
    for value in hidden.values():
        assert value not in out


def test_prod_without_its_operator_inputs_gets_its_stack_and_stops_before_deploying(tmp_path: Path) -> None:
    project = copy_of_project(tmp_path)
    fake_docker.install(tmp_path / "bin", clean_host(inventory("prod"), tmp_path, local=False))
    calls = working_pulumi(tmp_path / "bin", {})
    env = deploy_env(tmp_path, VENV=str(borrowed_venv(tmp_path, project)))
    env.pop("DOCKER_HOST", None)

    result = run(project, env, "scripts/deploy", "prod")

    assert result.returncode == 3, result.stdout + result.stderr
    pulumi_calls = calls.read_text().splitlines()
    assert pulumi_calls == ["stack select --create --secrets-provider passphrase prod"], "the stack exists, nothing is deployed"
    err = result.stderr
    assert "edge.publicHost: prod needs the host name clients use" in err and "tlsPrivateKey: " in err
    assert f"  cd {project} && export PATH=\"$HOME/.pulumi/bin:$PATH\" PULUMI_BACKEND_URL=file://{project}/.pulumi-state" in err
    assert f"PULUMI_CONFIG_PASSPHRASE_FILE={project}/.pulumi-passphrase" in err
