"""scripts/deploy and scripts/preflight before any state: the Docker check, the preflight, contexts, hashing.

The Docker host is a stand-in docker CLI (tests/unit/fake_docker.py) and the Pulumi CLI a stand-in
that records its calls, so these tests show what the scripts do before and instead of a real deploy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.container import STACK_LABEL
from infra.inventory import Inventory, inventory
from tests.conftest import ROOT
from tests.unit import fake_docker
from tests.unit.test_preflight import clean_host, network

# what the program and its templates read, so the preflight can run the program in the copy
PROGRAM_DIRS = ["scripts", "infra", "templates", "dashboards", "alerts", "policies"]
UNTOUCHED = (".pulumi-state", ".pulumi-passphrase")


def copy_of_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", ".mypy_cache")
    for name in PROGRAM_DIRS:
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    for name in ["pyproject.toml", "requirements.lock", "Pulumi.yaml", ".dockerignore", *(p.name for p in ROOT.glob("Pulumi.*.yaml"))]:
        shutil.copy(ROOT / name, project / name)
    return project


def borrowed_venv(tmp_path: Path, project: Path) -> Path:
    """A virtual environment made of links to the one running these tests, stamped as installed from
    requirements.lock, so ensure_venv installs nothing and nothing is written into the real one."""
    real = Path(sys.prefix)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(real / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "bin" / "python").symlink_to(real / "bin" / "python")
    (venv / "lib").symlink_to(real / "lib")
    (venv / ".installed-requirements.lock").write_text(hashlib.sha256((project / "requirements.lock").read_bytes()).hexdigest() + "\n")
    stamp_project(venv, project)
    return venv


def stamp_project(venv: Path, project: Path) -> None:
    """Mark the project as installed into `venv` (scripts/lib/venv.sh `ensure_project`)."""
    (venv / ".installed-project").write_text(hashlib.sha256((project / "pyproject.toml").read_bytes()).hexdigest() + "\n")


def fake_pulumi(bin_dir: Path) -> Path:
    """A Pulumi CLI stand-in at the pinned version that records every call and refuses all but `version`."""
    version = next(line.split("==")[1].strip('",') for line in (ROOT / "pyproject.toml").read_text().split() if line.startswith('"pulumi=='))
    log = bin_dir / "pulumi-calls.log"
    script = bin_dir / "pulumi"
    script.write_text(f'#!/bin/sh\nif [ "$1" = version ]; then echo v{version}; exit 0; fi\necho "$@" >> \'{log}\'\nexit 1\n')
    script.chmod(0o755)
    return log


@pytest.fixture(scope="module")
def dev() -> Inventory:
    return inventory("dev")


def deploy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", **extra}
    for key in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL", "DOCKER_CONTEXT"):
        env.pop(key, None)
    return env


def run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=project, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_deploy_stops_at_once_when_no_docker_daemon_answers(tmp_path: Path) -> None:
    project = copy_of_project(tmp_path)
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "HOME": str(tmp_path)}
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    result = run(project, env, "scripts/deploy", "dev")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no Docker daemon is reachable at unix://{tmp_path}/no-docker.sock; start Docker Engine "
        "(or point DOCKER_HOST at one) and run scripts/deploy dev again."
    ]
    for untouched in (*UNTOUCHED, ".venv"):
        assert not (project / untouched).exists(), f"{untouched} was created before the Docker check"


def test_deploy_names_the_stacks_when_called_without_one(tmp_path: Path) -> None:
    result = subprocess.run(["scripts/deploy"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "dev" in result.stderr and "prod" in result.stderr


def test_deploy_refuses_a_stack_without_a_stack_file() -> None:
    result = subprocess.run(["scripts/deploy", "qa"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Pulumi.qa.yaml" in result.stderr


@pytest.mark.parametrize("script", ["scripts/deploy", "scripts/preflight"])
def test_help_exits_0_with_the_usage(script: str) -> None:
    result = subprocess.run([script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert f"usage: {script} <stack>" in result.stdout


def test_deploy_stops_before_any_state_when_the_preflight_finds_a_problem(tmp_path: Path, dev: Inventory) -> None:
    project = copy_of_project(tmp_path)
    host = clean_host(dev, tmp_path, local=False)
    storage = next(n for n in dev.networks if n.segment == "storage")
    host["networks"].append(network("n-other", "someone-elses-net", storage.subnet, {STACK_LABEL: "other"}))
    fake_docker.install(tmp_path / "bin", host)
    pulumi_calls = fake_pulumi(tmp_path / "bin")
    env = deploy_env(tmp_path, VENV=str(borrowed_venv(tmp_path, project)))
    env.pop("DOCKER_HOST", None)
    result = run(project, env, "scripts/deploy", "dev")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"  problem: subnet {storage.subnet} of {storage.name} overlaps {storage.subnet} of network 'someone-elses-net'" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("error: the preflight found 1 problem(s) on unix:///var/run/docker.sock")
    for untouched in UNTOUCHED:
        assert not (project / untouched).exists(), f"{untouched} was created although the preflight failed"
    assert not pulumi_calls.exists(), "pulumi was called although the preflight failed"


def test_deploy_goes_on_to_the_pulumi_state_once_the_preflight_passes(tmp_path: Path, dev: Inventory) -> None:
    project = copy_of_project(tmp_path)
    fake_docker.install(tmp_path / "bin", clean_host(dev, tmp_path, local=False))
    pulumi_calls = fake_pulumi(tmp_path / "bin")
    env = deploy_env(tmp_path, VENV=str(borrowed_venv(tmp_path, project)))
    env.pop("DOCKER_HOST", None)
    result = run(project, env, "scripts/deploy", "dev")
    assert "preflight of stack 'dev': no problems, 0 warning(s)" in result.stdout, result.stdout + result.stderr
    assert (project / ".pulumi-state").is_dir() and (project / ".pulumi-passphrase").is_file()
    assert pulumi_calls.read_text().splitlines()[0] == "stack select --create --secrets-provider passphrase dev"


def test_deploy_exports_docker_host_from_the_active_docker_context(tmp_path: Path) -> None:
    project = copy_of_project(tmp_path)
    log = tmp_path / "docker-calls.jsonl"
    socket = f"unix://{tmp_path}/colima/docker.sock"
    fixture: dict[str, Any] = {
        "context": {"Name": "colima", "Endpoints": {"docker": {"Host": socket}}},
        "down": f"Cannot connect to the Docker daemon at {socket}. Is the docker daemon running?",
        "log": str(log),
    }
    fake_docker.install(tmp_path / "bin", fixture)
    env = deploy_env(tmp_path)
    env.pop("DOCKER_HOST", None)
    result = run(project, env, "scripts/deploy", "dev")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no Docker daemon is reachable at {socket}; start Docker Engine (or point DOCKER_HOST at one) and run scripts/deploy dev again."
    ]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    version = next(call for call in calls if call["args"][0] == "version")
    assert version["DOCKER_HOST"] == socket, "what the docker provider reads is the context's endpoint"


def test_an_explicit_docker_host_wins_over_the_context(tmp_path: Path) -> None:
    project = copy_of_project(tmp_path)
    log = tmp_path / "docker-calls.jsonl"
    fake_docker.install(tmp_path / "bin", {"down": "Cannot connect", "log": str(log)})
    result = run(project, deploy_env(tmp_path, DOCKER_HOST="tcp://10.0.0.5:2376"), "scripts/deploy", "dev")
    assert result.returncode == 1
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call["args"][0] for call in calls] == ["version"], "no context lookup when DOCKER_HOST is set"
    assert calls[0]["DOCKER_HOST"] == "tcp://10.0.0.5:2376"


def test_scripts_preflight_checks_the_host_with_the_projects_venv(tmp_path: Path, dev: Inventory) -> None:
    project = copy_of_project(tmp_path)
    host = clean_host(dev, tmp_path, local=False)
    host["server"] = {"Version": "19.03.15"}
    fake_docker.install(tmp_path / "bin", host)
    env = deploy_env(tmp_path, VENV=str(borrowed_venv(tmp_path, project)))
    env.pop("DOCKER_HOST", None)
    result = run(project, env, "scripts/preflight", "dev", "--timeout", "10")
    assert result.returncode == 1
    assert "  problem: Docker Engine 19.03.15 is older than 20.10" in result.stdout
    assert "installing" not in result.stdout


def tool_dir(tmp_path: Path, tools: list[str]) -> Path:
    """A PATH holding only `tools` (links to the real ones): no sha256sum unless asked for."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} is needed by this test"
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def test_ensure_venv_hashes_with_shasum_where_sha256sum_is_missing(tmp_path: Path) -> None:
    project = copy_of_project(tmp_path)
    lock = project / "requirements.lock"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    # a python that fails if ensure_venv tries to install: the stamp must match without sha256sum
    (venv / "bin" / "python").write_text("#!/bin/sh\necho \"pip was run: $*\" >&2\nexit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".installed-requirements.lock").write_text(hashlib.sha256(lock.read_bytes()).hexdigest() + "\n")
    stamp_project(venv, project)
    bin_dir = tool_dir(tmp_path, ["basename", "cut", "cat", "rm"])
    calls = tmp_path / "shasum-calls.log"
    # stock macOS's shasum prints the same '<hash>  <file>' line as sha256sum
    (bin_dir / "shasum").write_text(f"#!/bin/sh\necho \"$@\" >> '{calls}'\nexec '{shutil.which('sha256sum')}' \"$3\"\n")
    (bin_dir / "shasum").chmod(0o755)
    bash = shutil.which("bash")
    assert bash and not (bin_dir / "sha256sum").exists()
    result = subprocess.run(
        [bash, "-c", ". scripts/lib/venv.sh && ensure_venv requirements.lock"],
        cwd=project, env={"PATH": str(bin_dir), "VENV": str(venv)}, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout and "pip was run" not in result.stderr
    assert calls.read_text().splitlines() == ["-a 256 requirements.lock", "-a 256 pyproject.toml"]
