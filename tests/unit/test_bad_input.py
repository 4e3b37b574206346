"""Every bad input an operator can give gets one clear line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.edge import throwaway_certificate
from opscli import cli
from opscli.failures import ExitCode
from tests.conftest import ROOT

SHIPPED = "the stacks here are dev, staging, prod"


def infra(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The offline command line as an operator runs it, through scripts/infra."""
    return subprocess.run([str(ROOT / "scripts" / "infra"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the accepted-with-a-warning lines (the shipped stacks use 172.40.0.0/16)."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def stack_file(tmp_path: Path, text: str, name: str = "Pulumi.broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["render", "--out", "OUT"]])
def test_broken_yaml_names_file_line_and_column(tmp_path: Path, command: list[str]) -> None:
    path = stack_file(tmp_path, "config:\n  minio-platform:environment: dev\n   storage: [\n")
    args = [arg.replace("OUT", str(tmp_path / "out")) for arg in command]
    result = infra(*args, "--stack", "broken", "--config-file", str(path))
    assert result.returncode == 2
    assert error_lines(result) == [f"error: {path}:3:11: not valid YAML: mapping values are not allowed here"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("minio-platfrom:storage", "minio-platfrom:storage: namespace 'minio-platfrom' is not this project's"),
        ("minio_platform:storage", "minio_platform:storage: namespace 'minio_platform' is not this project's"),
        ("storage", "storage: key without a namespace"),
    ],
)
def test_a_key_under_a_misspelled_or_missing_prefix_is_refused_not_ignored(tmp_path: Path, key: str, expected: str) -> None:
    # a 3-node layout: were the key ignored, the default 4 nodes would deploy
    path = stack_file(tmp_path, f"config:\n  minio-platform:environment: dev\n  {key}:\n    nodes: 3\n    drivesPerNode: 1\n")
    result = infra("validate", "--stack", "typo", "--config-file", str(path))
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: stack 'typo' has 1 configuration error: {expected}, so the program never reads it; write it as minio-platform:storage"
    ]


def test_other_providers_namespaces_are_theirs(tmp_path: Path) -> None:
    path = stack_file(tmp_path, "config:\n  minio-platform:environment: dev\n  docker:host: unix:///var/run/docker.sock\n  aws:region: eu-west-1\n")
    result = infra("validate", "--stack", "mine", "--config-file", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["validate", "plan", "preflight"])
def test_an_unknown_stack_lists_the_real_ones(command: str) -> None:
    result = infra(command, "--stack", "qa")
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: no configuration for stack 'qa': {ROOT}/Pulumi.qa.yaml does not exist; {SHIPPED} "
        "(a new stack starts as a copy of one of their files)"
    ]


def test_deploy_lists_the_real_stacks_for_an_unknown_one() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "deploy"), "qa"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: no stack file Pulumi.qa.yaml; the stacks here are dev prod staging; copy one of their files to start a new stack."
    ]


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    result = infra("validate", "--stack", "dev", "--config-file", str(tmp_path / "Pulumi.nope.yaml"))
    assert result.returncode == 2
    assert error_lines(result) == [f"error: stack file {tmp_path}/Pulumi.nope.yaml does not exist"]


def test_prod_without_its_operator_inputs_is_not_valid() -> None:
    result = infra("validate", "--stack", "prod")
    assert result.returncode == 3, "valid but for the operator's inputs"
    lines = error_lines(result)
    assert lines[0] == "error: stack 'prod' has 3 configuration error(s):"
    assert [line.split(":")[0] for line in lines[1:]] == ["  - edge.publicHost", "  - tlsCertificate", "  - tlsPrivateKey"]


def test_render_out_pointing_at_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "build"
    target.write_text("not a folder")
    result = infra("render", "--stack", "dev", "--out", str(target))
    assert result.returncode == 2
    assert error_lines(result) == [f"error: --out {target} is a file; give a folder that is new or empty"]


def test_render_into_a_folder_holding_another_render_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "build"
    assert infra("render", "--stack", "prod", "--out", str(out)).returncode == 0
    before = sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*"))
    result = infra("render", "--stack", "dev", "--out", str(out))
    assert result.returncode == 2
    [line] = error_lines(result)
    assert line.startswith(f"error: --out {out} is not empty (") and "render writes only into a new or empty folder" in line
    assert sorted((p, p.stat().st_mtime_ns) for p in out.rglob("*")) == before


def test_summary_with_an_unreadable_outputs_file_says_so(tmp_path: Path) -> None:
    result = infra("summary", "--stack", "dev", "--outputs-file", str(tmp_path / "none.json"))
    assert result.returncode == 2
    assert error_lines(result) == [f"error: cannot read the outputs file {tmp_path}/none.json: No such file or directory"]


# ---- scripts/ops ---------------------------------------------------------------------------------

CREDENTIALS = {"OPS_ACCESS_KEY": "ops-admin", "OPS_SECRET_KEY": "not-a-real-secret"}


@pytest.fixture(scope="module")
def https_but_not_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS server on loopback answering every request with a web page: a web listener, not S3."""
    material = throwaway_certificate("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_text(material.certificate)
    (folder / "key.pem").write_text(material.key)

    class WebPage(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = b"<html><body>console</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WebPage)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    "argv",
    [["list-buckets"], ["create-bucket", "logs"], ["list-backups", "--database", "keycloak"], ["assign-policy", "readonly", "--user", "u"]],
)
def test_an_https_endpoint_that_is_not_s3_exits_with_the_not_an_s3_server_code(
    https_but_not_s3: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([*argv, "--endpoint", https_but_not_s3, "--insecure"], {**CREDENTIALS})
    assert code == ExitCode.UNREACHABLE
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {https_but_not_s3} answered, but not like an S3 server")


def test_scripts_ops_against_a_web_server_prints_one_line_without_a_traceback(https_but_not_s3: str) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "ops"), "list-buckets", "--endpoint", https_but_not_s3, "--insecure"],
        capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OPS_")}, **CREDENTIALS},
    )
    assert result.returncode == ExitCode.UNREACHABLE
    assert len(result.stderr.splitlines()) == 1 and "not like an S3 server" in result.stderr, result.stderr


def test_a_missing_ca_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "stack-ca.pem"
    code = cli.main(["list-buckets", "--endpoint", "https://127.0.0.1:1", "--ca-file", str(missing)], {**CREDENTIALS})
    assert code == ExitCode.CONFIGURATION
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: --ca-file {missing}: no such file")


def test_an_endpoint_without_a_scheme_is_refused_naming_the_two_forms(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["list-buckets", "--endpoint", "storage.example.com"], {**CREDENTIALS})
    assert code == ExitCode.CONFIGURATION
    assert capsys.readouterr().err.splitlines() == [
        "error: endpoint 'storage.example.com' has no scheme: write 'https://storage.example.com:PORT' (TLS) "
        "or 'http://storage.example.com:PORT' (plain HTTP)"
    ]
    assert cli.main(["list-buckets", "--endpoint", "storage.example.com:9443"], {**CREDENTIALS}) == ExitCode.CONFIGURATION
    assert "write 'https://storage.example.com:9443' (TLS) or 'http://storage.example.com:9443'" in capsys.readouterr().err


def test_plain_http_to_a_tls_port_suggests_https(https_but_not_s3: str, capsys: pytest.CaptureFixture[str]) -> None:
    netloc = https_but_not_s3.removeprefix("https://")
    code = cli.main(["list-buckets", "--endpoint", f"http://{netloc}"], {**CREDENTIALS})
    assert code == ExitCode.UNREACHABLE
    assert capsys.readouterr().err.rstrip().endswith(f"if that port speaks TLS, write https://{netloc}")


def test_ops_names_the_real_stacks_for_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sync-buckets", "--stack", "qa"], {**CREDENTIALS, "OPS_ENDPOINT": "http://127.0.0.1:1"}) == ExitCode.CONFIGURATION
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no configuration for stack 'qa'") and SHIPPED in line


def test_ops_names_the_line_of_a_broken_stack_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_file(tmp_path, "config:\n  minio-platform:buckets: [\n")
    argv = ["sync-buckets", "--stack", "broken", "--config-file", str(path)]
    assert cli.main(argv, {**CREDENTIALS, "OPS_ENDPOINT": "http://127.0.0.1:1"}) == ExitCode.CONFIGURATION
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {path}:3:1: not valid YAML")


# ---- the smoke suite without a deployment ------------------------------------------------------------


def test_the_smoke_suites_skip_reason_is_printed_once() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOKE_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/smoke", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1 and skipped[0].endswith("tests/smoke: no deployed stack: run scripts/smoke <stack> or pass --outputs FILE (environment SMOKE_OUTPUTS)")
