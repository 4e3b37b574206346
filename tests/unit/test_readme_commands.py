"""Every command in the README's shell blocks runs offline, or is listed here with the reason it cannot.

The offline ones run as an operator would type them, in a copy of the project (so nothing they
write lands in this one); `scripts/ops` commands, which need a deployed stack, are at least parsed
by its argument parser, since an example in the wrong order fails before anything else.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from opscli.cli import COMMANDS as OPS_SUBCOMMANDS
from opscli.cli import build_parser
from tests.conftest import ROOT
from tests.unit.test_deploy_script import copy_of_project

README = ROOT / "README.md"
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.S | re.M)
INLINE_OPS = re.compile(r"`(scripts/ops [^`]+)`")

# checked in this order; the first matching prefix decides
CANNOT_RUN_OFFLINE = {
    "scripts/infra preflight": "reads the Docker host a deploy would target",
    "scripts/deploy": "deploys to a Docker host",
    "scripts/smoke": "tests a deployed stack",
    "scripts/preflight": "reads the Docker host a deploy would target",
    "scripts/test": "runs every offline test layer, this test among them",
    "pulumi ": "needs the Pulumi CLI and a stack's state",
    "uv pip compile": "resolves the dependencies against the package index",
    "export ": "sets up a shell for the pulumi commands that follow it",
    "sudo ": "a benchmark, run on demand",
}
PARSED_ONLY = "scripts/ops "
RUNS_OFFLINE = ("scripts/infra ", ".venv/bin/python -m infra ")


def shell_commands(text: str) -> list[str]:
    """The commands of every shell block: continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


COMMANDS = shell_commands(README.read_text())


def kind(command: str) -> str:
    if command.startswith(RUNS_OFFLINE):
        return "runs"
    reason = next((why for prefix, why in CANNOT_RUN_OFFLINE.items() if command.startswith(prefix)), None)
    if reason:
        return f"cannot run offline: {reason}"
    if command.startswith(PARSED_ONLY):
        return "parsed"
    return "unknown"


def test_every_command_is_run_parsed_or_has_its_reason() -> None:
    unknown = [command for command in COMMANDS if kind(command) == "unknown"]
    assert not unknown, f"run these offline here, or add why they cannot to CANNOT_RUN_OFFLINE: {unknown}"
    assert any(kind(command) == "runs" for command in COMMANDS)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project sharing this one's virtual environment (stamped as installed, so nothing is installed)."""
    # stamps out of date here (a lock or pyproject.toml just edited) would make the copy's commands
    # reinstall the shared environment, the project itself from the copy: bring them up to date first
    subprocess.run(["bash", "-c", ". scripts/lib/venv.sh && ensure_venv requirements-test.lock"], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    copy = copy_of_project(tmp_path_factory.mktemp("readme"))
    shutil.copy(ROOT / "requirements-test.lock", copy / "requirements-test.lock")
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c) == "runs"])
def test_the_offline_command_runs(command: str, project: Path) -> None:
    result = subprocess.run(["bash", "-c", command], cwd=project, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def ops_examples() -> list[str]:
    text = README.read_text()
    # inline ones with options are examples too; a bare `scripts/ops backup-schedule` only names the sub-command
    inline = [match for match in INLINE_OPS.findall(text) if match.split()[1] in OPS_SUBCOMMANDS and " --" in match]
    return [c for c in COMMANDS if kind(c) == "parsed"] + inline


@pytest.mark.parametrize("command", ops_examples())
def test_the_ops_example_parses(command: str) -> None:
    argv = shlex.split(command, comments=True)[1:]
    build_parser().parse_args(argv)  # exits 2 (failing this test) on a command line scripts/ops would refuse


def test_the_ops_examples_include_the_ones_that_name_a_stack() -> None:
    assert any("--stack" in command for command in ops_examples())
