"""Every stack's rendered blackbox exporter configuration through the real exporter's `--config.check`
(Debian's prometheus-blackbox-exporter), and the Prometheus job that probes MinIO's health through it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.__main__ import load_stack
from infra.monitoring import blackbox_exporter
from infra.monitoring.metrics import ScrapeAddresses, prometheus_yml
from tests.conftest import require_tool
from tests.config.monitoring_render import STACKS, render


def config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("prometheus-blackbox-exporter"), "--config.check", f"--config.file={path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("stack", STACKS)
def test_the_real_exporter_accepts_the_rendered_configuration(stack: str, tmp_path: Path) -> None:
    rendered = render(stack, tmp_path) / "blackbox" / "blackbox.yml"
    result = config_check(rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config file is ok" in result.stdout + result.stderr


def test_the_real_exporter_refuses_a_misspelt_key(tmp_path: Path) -> None:
    # the check is strict, so the test above could fail
    text = blackbox_exporter.blackbox_yml(load_stack("dev", None)).replace("allow_missing:", "allow_missng:")
    (tmp_path / "blackbox.yml").write_text(text)
    result = config_check(tmp_path / "blackbox.yml")
    assert result.returncode != 0 and "allow_missng" in result.stderr


def test_the_module_fails_on_the_iam_offline_header_alone() -> None:
    document = yaml.safe_load(blackbox_exporter.blackbox_yml(load_stack("dev", None)))
    module = document["modules"][blackbox_exporter.HEALTH_MODULE]
    assert module["prober"] == "http"
    http = module["http"]
    # 503 passes: quorum loss answers 503 without the header and is not this probe's to report
    assert http["valid_status_codes"] == [200, 503] and http["method"] == "GET"
    assert http["fail_if_header_matches"] == [
        {"header": "X-Minio-Server-Status", "regexp": "^iam-offline$", "allow_missing": True}
    ]
    # unauthenticated: MinIO's health endpoints need no credentials, and IAM could check none
    assert "headers" not in http and "bearer_token" not in http and "authorization" not in http


def health_job(stack: str) -> dict[str, Any]:
    config = load_stack(stack, None)
    document = yaml.safe_load(prometheus_yml(config, ScrapeAddresses.of_stack(config)))
    jobs: list[dict[str, Any]] = [job for job in document["scrape_configs"] if job["job_name"] == blackbox_exporter.HEALTH_JOB]
    [job] = jobs
    return job


@pytest.mark.parametrize("stack", STACKS)
def test_every_node_is_probed_through_the_exporter_without_credentials(stack: str) -> None:
    job = health_job(stack)
    config = load_stack(stack, None)
    nodes = len(ScrapeAddresses.of_stack(config).minio_nodes)
    assert nodes >= 4
    assert job["metrics_path"] == "/probe"
    assert job["params"] == {"module": [blackbox_exporter.HEALTH_MODULE]}
    assert [group["targets"] for group in job["static_configs"]] == [[f"minio{i}:9000"] for i in range(1, nodes + 1)]
    assert [group["labels"] for group in job["static_configs"]] == [{"node": f"minio{i}"} for i in range(1, nodes + 1)]
    assert job["relabel_configs"] == [
        {"source_labels": ["__address__"], "target_label": "__param_target", "replacement": "http://${1}/minio/health/cluster"},
        {"source_labels": ["__address__"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": "blackbox-exporter:9115"},
    ]
    assert "authorization" not in job
