"""scripts/deploy without a Docker daemon: one sentence, non-zero exit, no state touched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def copy_of_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "scripts", project / "scripts")
    for name in ["pyproject.toml", "requirements.lock", "Pulumi.yaml", *(p.name for p in ROOT.glob("Pulumi.*.yaml"))]:
        shutil.copy(ROOT / name, project / name)
    return project


def test_deploy_stops_at_once_when_no_docker_daemon_answers(tmp_path: Path) -> None:
    project = copy_of_project(tmp_path)
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "HOME": str(tmp_path)}
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    result = subprocess.run(
        ["scripts/deploy", "dev"], cwd=project, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no Docker daemon is reachable at unix://{tmp_path}/no-docker.sock; start Docker Engine "
        "(or point DOCKER_HOST at one) and run scripts/deploy dev again."
    ]
    for untouched in (".pulumi-state", ".pulumi-passphrase", ".venv"):
        assert not (project / untouched).exists(), f"{untouched} was created before the Docker check"


def test_deploy_names_the_stacks_when_called_without_one(tmp_path: Path) -> None:
    result = subprocess.run(["scripts/deploy"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "dev" in result.stderr and "prod" in result.stderr


def test_deploy_refuses_a_stack_without_a_stack_file() -> None:
    result = subprocess.run(["scripts/deploy", "qa"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Pulumi.qa.yaml" in result.stderr
