"""Every stack's rendered nginx.conf, exactly as the container receives it, accepted by real nginx (`nginx -t`).

The file names container paths (/etc/nginx/..., /var/cache/nginx), so nginx runs in a private
mount namespace where the rendered folder is /etc/nginx and /var/cache is a scratch tmpfs.
The upstreams are fixed addresses: nginx resolves no name, so none needs pointing anywhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.__main__ import main as infra_command
from tests.conftest import require_root, require_tool

STACKS = ["dev", "staging", "prod"]


def nginx_test_in_namespace(rendered: Path) -> subprocess.CompletedProcess[str]:
    nginx, unshare = require_tool("nginx"), require_tool("unshare")
    require_root("mounting the rendered files over /etc/nginx in a private mount namespace")
    script = (
        "mount --make-rprivate / && "
        f"mount --bind '{rendered / 'nginx'}' /etc/nginx && "
        "mount -t tmpfs tmpfs /var/cache && mkdir -p /var/cache/nginx && "
        f"'{nginx}' -t -c /etc/nginx/nginx.conf"
    )
    return subprocess.run([unshare, "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stack", STACKS)
def test_nginx_accepts_the_rendered_configuration_of_every_stack(stack: str, tmp_path: Path) -> None:
    assert infra_command(["render", "--stack", stack, "--out", str(tmp_path)]) == 0
    result = nginx_test_in_namespace(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_accepts_the_plain_http_variant(tmp_path: Path) -> None:
    stack_file = tmp_path / "Pulumi.plain.yaml"
    stack_file.write_text(
        "config:\n  minio-platform:environment: dev\n  minio-platform:edge:\n    tls:\n      mode: 'off'\n"
    )
    out = tmp_path / "out"
    assert infra_command(["render", "--stack", "plain", "--config-file", str(stack_file), "--out", str(out)]) == 0
    assert not (out / "nginx" / "tls").exists()
    result = nginx_test_in_namespace(out)
    assert result.returncode == 0, result.stderr


def test_nginx_rejects_a_broken_file_so_the_check_above_means_something(tmp_path: Path) -> None:
    assert infra_command(["render", "--stack", "dev", "--out", str(tmp_path)]) == 0
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("proxy_request_buffering off;", "proxy_request_buffering maybe;"))
    result = nginx_test_in_namespace(tmp_path)
    assert result.returncode != 0 and "proxy_request_buffering" in result.stderr
