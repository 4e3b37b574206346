"""`python -m infra render` and `validate`: offline, no Pulumi CLI, no Docker."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infra.__main__ import load_stack, main
from infra.secrets import SecretValues
from infra.stack_files import render_stack_files
from tests.conftest import ROOT


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_render_writes_every_file_of_the_stack(stack: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra", "render", "--stack", stack, "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    expected = render_stack_files(load_stack(stack, None), SecretValues.throwaway())
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(item.path for item in expected)
    config_env = (tmp_path / "minio" / "config.env").read_text()
    assert "MINIO_ROOT_PASSWORD=throwaway-minioRootPassword" in config_env


def test_files_holding_secrets_are_written_owner_only(tmp_path: Path) -> None:
    assert main(["render", "--stack", "dev", "--out", str(tmp_path)]) == 0
    mode = stat.S_IMODE((tmp_path / "minio" / "config.env").stat().st_mode)
    assert mode == 0o600


def test_render_refuses_an_invalid_stack_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack_file = tmp_path / "Pulumi.broken.yaml"
    stack_file.write_text("config:\n  minio-platform:environment: dev\n  minio-platform:storage:\n    nodes: 3\n    drivesPerNode: 1\n")
    out = tmp_path / "out"
    assert main(["render", "--stack", "broken", "--config-file", str(stack_file), "--out", str(out)]) == 2
    assert "storage.drivesPerNode" in capsys.readouterr().err
    assert not out.exists()


def test_validate_reports_a_missing_stack_file() -> None:
    with pytest.raises(SystemExit, match="Pulumi.nosuch.yaml does not exist"):
        main(["validate", "--stack", "nosuch"])


def test_throwaway_secrets_are_marked_as_such() -> None:
    values = SecretValues.throwaway(nodes_on_hosts=4)
    plain = [value for name, value in vars(values).items() if name != "cluster_tls"]
    assert all("throwaway" in value.lower() or value.startswith("VEhST1dBV0FZ") for value in plain)
    assert values.cluster_tls is not None
    pems = [values.cluster_tls.ca_certificate, *(pair.certificate + pair.key for pair in values.cluster_tls.nodes.values())]
    assert all(pem.startswith("THROWAWAY") for pem in pems) and len(values.cluster_tls.nodes) == 4


def test_render_writes_into_an_existing_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["render", "--stack", "dev", "--out", str(out)]) == 0
    assert (out / "nginx" / "nginx.conf").is_file()


def test_render_refuses_a_folder_that_already_holds_files_and_keeps_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as refused:
        main(["render", "--stack", "dev", "--out", str(tmp_path)])
    assert refused.value.code == 2
    assert "is not empty (1 file(s), such as notes.txt)" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_validate_runs_the_program_with_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--stack", "dev"]) == 0
    assert "stack 'dev': configuration is valid, and the program runs with it" in capsys.readouterr().out


def test_validate_refuses_prod_for_the_same_missing_inputs_as_the_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.pulumi_harness import deploy

    assert main(["validate", "--stack", "prod"]) == 3
    refused_offline = [line.removeprefix("  - ").split(":")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("  - ")]
    with pytest.raises(Exception) as refused_by_program:
        deploy("prod", operator_tls=False)
    assert refused_offline == ["edge.publicHost", "tlsCertificate", "tlsPrivateKey"]
    assert all(key in str(refused_by_program.value) for key in refused_offline)


def test_render_of_a_multi_host_stack_writes_each_nodes_certificate_and_the_gateways(tmp_path: Path) -> None:
    from tests.unit.multi_host_stack import on_hosts

    out = tmp_path / "out"
    assert main(["render", "--stack", "dev", "--config-file", str(on_hosts(tmp_path)), "--out", str(out)]) == 0
    for node in range(1, 5):
        assert (out / "minio" / f"minio{node}" / "certs" / "public.crt").read_text().startswith("THROWAWAY")
    assert (out / "nginx" / "tls" / "gateway.key").is_file()
    assert "proxy_ssl_name minio-cluster;" in (out / "nginx" / "nginx.conf").read_text()
