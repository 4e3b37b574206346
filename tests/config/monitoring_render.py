"""What the monitoring config tests share: a stack's rendered tree, and the metric names MinIO exports."""

from __future__ import annotations

import re
from pathlib import Path

from infra.__main__ import PROJECT_ROOT, main as infra_command
from infra.config import PROJECT, StackConfig, parse_stack_config, read_stack_file, stack_file
from tests.unit.multi_host_stack import STORAGE_ON_HOSTS

STACKS = ["dev", "staging", "prod"]
DATA = Path(__file__).resolve().parent / "data"

MINIO_METRICS: frozenset[str] = frozenset(
    line.strip()
    for line in (DATA / "minio-metrics-v2.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
# besides MinIO's own, queries may read Prometheus' synthetic `up` of a MinIO scrape job
ALLOWED_METRICS = MINIO_METRICS | {"up"}

_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_MINIO_NAME = re.compile(r"\bminio_[a-z0-9_]+\b")


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (each selector here carries label matchers)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_SELECTOR.findall(without_strings)) | set(_MINIO_NAME.findall(without_strings))


def render(stack: str, out: Path) -> Path:
    """`python -m infra render` of a stack into `out`, as an operator runs it."""
    assert infra_command(["render", "--stack", stack, "--out", str(out)]) == 0
    return out


def on_node_hosts(stack: str, **settings: object) -> StackConfig:
    """`stack`'s configuration with every node on a host of its own (STORAGE_ON_HOSTS), plus top-level `settings`."""
    values, _ = read_stack_file(stack_file(stack, PROJECT_ROOT))
    plain = {key.partition(":")[2]: value for key, value in values.items() if key.startswith(f"{PROJECT}:")}
    storage = {**(plain.get("storage") or {}), **STORAGE_ON_HOSTS}
    return parse_stack_config(stack, {**plain, **settings, "storage": storage})
