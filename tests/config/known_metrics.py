"""What each scrape job's exporter exposes (tests/config/data/*-metrics*.txt), and the selectors of a
PromQL expression, so that every dashboard query and alert rule can be held to the pinned exporters.

Each data file names its source (file and tag). A selector with a `job` matcher may name only what
that job's exporter serves (plus the series Prometheus writes for every scrape); one without names
something some job serves; recording rules of the stack's own rule files count as known too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def read_sections(path: Path) -> dict[str, frozenset[str]]:
    """Names of a data file by section: a line `# [name] ...` starts one; before any, the section is ''."""
    sections: dict[str, set[str]] = {"": set()}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("# ["):
            current = line[3 : line.index("]")]
            sections.setdefault(current, set())
        elif line and not line.startswith("#"):
            sections[current].add(line)
    return {name: frozenset(names) for name, names in sections.items() if names}


def read_names(file: str) -> frozenset[str]:
    return frozenset().union(*read_sections(DATA / file).values())


def scheduled_service_metrics() -> frozenset[str]:
    """What the backup and mirror services serve: their own exposition (scripts/opscli/scheduled.py) after a run."""
    import tempfile
    from datetime import datetime, timezone

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from infra.cron import CronSchedule
    from opscli.scheduled import JobMetrics

    with tempfile.TemporaryDirectory() as folder:
        now = datetime.now(timezone.utc)
        metrics = JobMetrics(CronSchedule.parse("30 2 * * *"), Path(folder) / "state.json", lambda: now)
        metrics.record(True, now)
        exposition = generate_latest(metrics.registry).decode()
    return frozenset(sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples)


MINIO = read_sections(DATA / "minio-metrics-v2.txt")
SCRAPE = read_names("scrape-metrics.txt")

EXPORTED: dict[str, frozenset[str]] = {
    "minio-cluster": MINIO["cluster"],
    "minio-nodes": MINIO["node"],
    "minio-bucket": MINIO["bucket"],
    "prometheus": read_names("prometheus-metrics.txt"),
    "alertmanager": read_names("alertmanager-metrics.txt"),
    "loki": read_names("loki-metrics.txt"),
    "grafana": read_names("grafana-metrics.txt"),
    "keycloak": read_names("keycloak-metrics.txt"),
    "edge-proxy": read_names("nginx-exporter-metrics.txt"),
    # every MinIO node's /minio/health/cluster, probed through the blackbox exporter
    "minio-health": read_names("blackbox-exporter-metrics.txt"),
    # the scheduled services: what our own code serves
    "backup": scheduled_service_metrics(),
    "mirror": scheduled_service_metrics(),
    # scraped for their `up` only: nothing of theirs is queried
    "alloy": frozenset(),
    "promtail": frozenset(),
    "audit-sink": frozenset(),
}
"""Job name -> what its exporter serves, besides SCRAPE."""

ANY_JOB = frozenset().union(SCRAPE, *EXPORTED.values(), *MINIO.values())


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: str
    """The text between the braces ('' for a bare name)."""

    def jobs(self) -> frozenset[str] | None:
        """The jobs a `job` matcher admits (= or an alternation with =~), None without one."""
        for label, operator, value in MATCHER.findall(self.matchers):
            if label == "job" and operator == "=":
                return frozenset([value])
            if label == "job" and operator == "=~" and re.fullmatch(r"[\w-]+(\|[\w-]+)*", value):
                return frozenset(value.split("|"))
        return None


MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACED = re.compile(r'(?<![\w:])([a-zA-Z_:][\w:]*)?\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}')
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"})


def selectors(expr: str) -> list[Selector]:
    """Every series selector of a PromQL expression: `name{...}`, and bare names."""
    found = [Selector(name, matchers) for name, matchers in _BRACED.findall(expr) if name]
    rest = _STRING.sub(" ", _RANGE.sub(" ", _BRACED.sub(" ", expr)))
    rest = _CLAUSE.sub(" ", rest)
    found += [Selector(name, "") for name in _NAME.findall(rest) if name.lower() not in KEYWORDS]
    return found


def variable_selectors(query: str) -> list[Selector]:
    """The selectors of a Grafana template variable's query (`label_values(selector, label)`)."""
    matched = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return selectors(matched.group(1) if matched else query)


def recorded_names(rule_files: dict[str, str]) -> frozenset[str]:
    """The recording rules of rule files (as text, by name), which later rules may read."""
    import yaml

    return frozenset(
        rule["record"]
        for text in rule_files.values()
        for group in yaml.safe_load(text)["groups"]
        for rule in group["rules"]
        if "record" in rule
    )


def unknown_metrics(expr: str, recorded: frozenset[str] = frozenset(), variable: bool = False) -> list[str]:
    """What an expression reads that no pinned exporter serves to the job it selects, as sentences."""
    problems = []
    for selector in variable_selectors(expr) if variable else selectors(expr):
        if selector.metric in recorded:
            continue
        jobs = selector.jobs()
        if jobs is None:
            if selector.metric not in ANY_JOB:
                problems.append(f"{selector.metric} is served by no scraped exporter")
            continue
        for job in sorted(jobs):
            if job not in EXPORTED:
                problems.append(f"{selector.metric}: job {job!r} is scraped by no job of prometheus.yml")
            elif selector.metric not in EXPORTED[job] | SCRAPE:
                problems.append(f"{selector.metric} is not served to job {job!r}")
    return problems
