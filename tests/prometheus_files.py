"""prometheus.yml as infra/monitoring/metrics.py renders it, beside the files it names: the stack's rule
files and a bearer token file. What promtool and the labs' real Prometheus read."""

from __future__ import annotations

from pathlib import Path

from infra.config import StackConfig
from infra.monitoring.metrics import ScrapeAddresses, prometheus_yml, rule_files


def write_prometheus_files(
    config: StackConfig, addresses: ScrapeAddresses, folder: Path, *, token: str = "token", ca_file: Path | None = None
) -> Path:
    """`folder`/prometheus.yml, its rules in `folder`/rules and `token` in `folder`/minio-metrics-token;
    `ca_file` where a multi-host stack's configuration names the cluster CA."""
    rules = folder / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    for name, content in rule_files(config).items():
        (rules / name).write_text(content)
    token_file = folder / "minio-metrics-token"
    token_file.write_text(token + "\n")
    extra = {"ca_file": str(ca_file)} if ca_file is not None else {}
    path = folder / "prometheus.yml"
    path.write_text(prometheus_yml(config, addresses, str(rules), str(token_file), **extra))
    return path
