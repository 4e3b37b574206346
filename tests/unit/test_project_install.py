"""The project is an installable package: the program, the tests and the wrappers import it normally."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib

from tests.conftest import ROOT
from tests.unit.pulumi_harness import engine_working_directory


def test_every_package_of_the_checkout_is_declared() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "infra").rglob("__init__.py")
    } | {"opscli"}
    assert declared == found


def test_the_venv_holds_the_checkout_in_editable_mode_with_both_commands() -> None:
    distribution = importlib.metadata.distribution("minio-platform")
    commands = {entry.name: entry.value for entry in distribution.entry_points.select(group="console_scripts")}
    assert commands == {"minio-platform": "infra.__main__:main", "minio-platform-ops": "opscli.cli:main"}
    import infra
    import opscli

    assert infra.__file__ == str(ROOT / "infra" / "__init__.py")
    assert opscli.__file__ == str(ROOT / "scripts" / "opscli" / "__init__.py")


def test_the_program_imports_the_project_when_run_by_path_from_the_engines_directory() -> None:
    # the engine runs `main` by path with the directory of main as working directory: no sys.path edits
    assert "sys.path" not in (ROOT / "infra" / "program.py").read_text()
    result = subprocess.run(
        [sys.executable, "program.py"], cwd=engine_working_directory(), capture_output=True, text=True, timeout=120
    )
    assert "ModuleNotFoundError" not in result.stderr and "ImportError" not in result.stderr, result.stderr[-2000:]
    # without the engine it gets as far as reading the (absent) stack config
    assert "configuration error" in result.stderr
