"""The users' end-to-end workflow (.github/workflows/e2e.yml), checked by GitHub's workflow schema and a workflow linter.

It cannot run here (it needs a runner with Docker); these checks make sure it would be accepted
and that it keeps its promises: pinned actions, the Pulumi CLI at the pinned version, deploy
with the smoke tests, and a destroy that runs whatever happened.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yml"


def venv_tool(name: str) -> str:
    """A tool the test extra installs beside this interpreter; skip without it (fail under CI)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        message = f"{name} is not installed (it is in the test extra of pyproject.toml)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def workflow() -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return document


def steps() -> list[dict[str, Any]]:
    jobs = workflow()["jobs"]
    assert len(jobs) == 1
    found: list[dict[str, Any]] = next(iter(jobs.values()))["steps"]
    return found


def pinned_pulumi() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return str(next(dep.split("==")[1] for dep in dependencies if dep.startswith("pulumi==")))


def test_workflow_matches_githubs_workflow_schema() -> None:
    result = subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_linter_finds_nothing_even_pedantic() -> None:
    result = subprocess.run(
        [venv_tool("zizmor"), "--offline", "--pedantic", "--no-progress", str(WORKFLOW)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_to_a_commit_with_its_version_named() -> None:
    uses = [line.strip() for line in WORKFLOW.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert uses
    for line in uses:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


def test_pulumi_cli_version_is_read_from_pyproject_and_verified() -> None:
    script = next(step["run"] for step in steps() if "get.pulumi.com" in step.get("run", ""))
    assert pinned_pulumi() not in script, "the version is read from pyproject.toml, never retyped"
    assert "sha256sum --check" in script
    # the line that reads the version, run here against this checkout's pyproject.toml
    line = next(line for line in script.splitlines() if line.startswith("version="))
    result = subprocess.run(["bash", "-c", f"{line}\necho \"$version\""], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == pinned_pulumi(), result.stderr


def test_workflow_deploys_dev_with_python_311_local_state_and_a_generated_passphrase() -> None:
    all_steps = steps()
    setup_python = next(step for step in all_steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup_python["with"]["python-version"] == "3.11"
    runs = "\n".join(step.get("run", "") for step in all_steps)
    assert "PULUMI_BACKEND_URL=file://" in runs
    assert "PULUMI_CONFIG_PASSPHRASE_FILE=" in runs and "secrets.token_urlsafe" in runs
    assert "secrets." not in WORKFLOW.read_text().replace("secrets.token_urlsafe", ""), "no repository secret is needed"
    job = next(iter(workflow()["jobs"].values()))
    assert job["env"]["STACK"] == "dev"
    assert any(step.get("run", "").strip() == 'scripts/deploy "$STACK"' for step in all_steps)


def test_destroy_runs_last_and_whatever_happened() -> None:
    all_steps = steps()
    deploy = next(index for index, step in enumerate(all_steps) if "scripts/deploy" in step.get("run", ""))
    destroy = next(index for index, step in enumerate(all_steps) if "pulumi destroy" in step.get("run", ""))
    assert destroy == len(all_steps) - 1 and destroy > deploy
    assert all_steps[destroy]["if"] == "always()"


def test_deploy_ends_with_the_smoke_tests_the_workflow_relies_on() -> None:
    deploy = (ROOT / "scripts" / "deploy").read_text()
    assert re.search(r"^\s*scripts/smoke \"\$stack\"", deploy, flags=re.MULTILINE), "scripts/deploy no longer runs the smoke tests"
