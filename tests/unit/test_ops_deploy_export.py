"""scripts/deploy's configuration export before `pulumi up`: run for a stack already deployed, skipped for a
new one, and stopping the update when it fails (unless SKIP_CONFIG_EXPORT). The Pulumi CLI and
scripts/ops are stand-ins that record their calls."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def project(tmp_path: Path, deployed: bool, export_status: int = 0) -> Path:
    root = tmp_path / "project"
    (root / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "lib" / "config_export.sh", root / "scripts" / "lib" / "config_export.sh")
    calls = tmp_path / "calls.log"
    ops = root / "scripts" / "ops"
    ops.write_text(f'#!/bin/sh\necho "ops $*" >> \'{calls}\'\nexit {export_status}\n')
    ops.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    # `stack output endpoints` answers only for a stack that has been deployed
    pulumi.write_text(f'#!/bin/sh\necho "pulumi $*" >> \'{calls}\'\nexit {0 if deployed else 255}\n')
    pulumi.chmod(0o755)
    return root


def export_step(root: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", ". scripts/lib/config_export.sh && export_configuration_before_update prod"],
        cwd=root, capture_output=True, text=True, timeout=30,
        env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env},
    )


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_deployed_stack_is_exported_before_the_update(tmp_path: Path) -> None:
    root = project(tmp_path, deployed=True)

    result = export_step(root, tmp_path)

    assert result.returncode == 0, result.stderr
    pulumi_call, ops_call = calls(tmp_path)
    assert pulumi_call == "pulumi stack output endpoints --stack prod"
    assert ops_call.startswith("ops export-config --stack prod --out build/config-exports/prod-") and ops_call.endswith(".json")
    assert (root / "build" / "config-exports").is_dir()


def test_a_new_stack_has_nothing_to_export(tmp_path: Path) -> None:
    root = project(tmp_path, deployed=False)

    result = export_step(root, tmp_path)

    assert result.returncode == 0, result.stderr
    assert [call for call in calls(tmp_path) if call.startswith("ops ")] == []


@pytest.mark.parametrize(("skip", "status"), [("", 1), ("1", 0)])
def test_a_failed_export_stops_the_update_unless_skipped(tmp_path: Path, skip: str, status: int) -> None:
    root = project(tmp_path, deployed=True, export_status=4)

    result = export_step(root, tmp_path, **({"SKIP_CONFIG_EXPORT": skip} if skip else {}))

    assert result.returncode == status
    if skip:
        assert result.stderr.startswith("warning: the configuration export failed")
    else:
        assert "was not updated" in result.stderr and "SKIP_CONFIG_EXPORT=1 scripts/deploy prod" in result.stderr


def test_the_deploy_exports_right_before_pulumi_up() -> None:
    lines = [line.strip() for line in (ROOT / "scripts" / "deploy").read_text().splitlines()]
    up = lines.index('pulumi up --yes --stack "$stack" "$@"')
    assert lines[up - 2 : up] == [". scripts/lib/config_export.sh", 'export_configuration_before_update "$stack" || exit 1']
