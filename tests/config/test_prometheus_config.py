"""Every stack's rendered Prometheus configuration and alert rules, through promtool (Prometheus 2.42 here).

The rendered prometheus.yml names container paths (/etc/prometheus/...); promtool reads the
same file with that prefix pointed at the rendered folder, so the rule files and the token
file it names are the rendered ones.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from infra.__main__ import load_stack
from infra.monitoring.metrics import (
    ALERTS_DIR,
    METRICS_TOKEN_EXPIRES,
    PLATFORM_JOBS,
    THRESHOLD_RULES_FILE,
    alert_rule_files,
    monitoring_jobs,
    rule_files,
    threshold_rules,
)
from infra.runbook import COMMITTED_RUNBOOK_URL, runbook_url
from infra.secrets import SecretValues
from tests.conftest import require_tool
from tests.config.known_metrics import EXPORTED, recorded_names, unknown_metrics
from tests.config.monitoring_render import STACKS, render

SEVERITIES = {"critical", "warning", "info", "none"}
REQUIRED_ALERTS = {
    "MinIONodeDown",
    "MinIONodesOffline",
    "MinIODrivesOffline",
    "MinIOWriteQuorumLost",
    "MinIOReadQuorumLost",
    "MinIOHighStorageUsage",
    "MinIOHighErrorRate",
    "MinIOAuthFailures",
    "MinIOHighRequestLatency",
    "MinIOIdentityOffline",
    "MonitoringTargetDown",
    "PlatformTargetDown",
    "PlatformEdgeProxyDown",
    "PrometheusRuleFailures",
    "PrometheusNotConnectedToAlertmanagers",
    "PrometheusErrorSendingAlerts",
    "AlertmanagerFailedToSendAlerts",
    "LokiRequestErrors",
    "LokiIngestionErrors",
    "Watchdog",
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def rendered_config(rendered: Path) -> Path:
    """The rendered prometheus.yml with its container prefix pointed at the rendered folder."""
    text = (rendered / "prometheus" / "prometheus.yml").read_text()
    local = rendered / "prometheus-local.yml"
    local.write_text(text.replace("/etc/prometheus/", f"{rendered / 'prometheus'}/"))
    return local


def alert_rules(rendered: Path) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted((rendered / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


@pytest.fixture(scope="module", params=STACKS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(request.param, tmp_path_factory.mktemp(request.param))


def test_promtool_accepts_the_rendered_configuration_with_its_rules(rendered: Path) -> None:
    result = promtool("check", "config", str(rendered_config(rendered)))
    assert result.returncode == 0, result.stdout + result.stderr
    # every rule file was found and checked, not just the main file: the stack's thresholds too
    names = rule_files(load_stack("dev", None))
    assert THRESHOLD_RULES_FILE in names
    for name in names:
        assert f"{name}" in result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alert_rule_unit_tests_pass() -> None:
    tests = sorted(path.name for path in ALERTS_DIR.glob("*.test.yml"))
    # every rule file has its tests beside it
    assert tests == sorted(path.name.replace(".rules.yml", ".rules.test.yml") for path in ALERTS_DIR.glob("*.rules.yml"))
    assert {"minio.rules.test.yml", "monitoring.rules.test.yml", "platform.rules.test.yml"} <= set(tests)
    result = promtool("test", "rules", *tests, cwd=ALERTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired: set[str] = set()
    for path in ALERTS_DIR.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {check["alertname"] for check in case.get("alert_rule_test", []) if check.get("exp_alerts")}
    alerts = {rule["alert"] for path in ALERTS_DIR.glob("*.rules.yml") for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]}
    assert alerts >= REQUIRED_ALERTS
    assert fired == alerts


def test_every_alert_carries_severity_summary_description_and_a_link_to_its_section_on_the_stacks_proxy(
    rendered: Path, request: pytest.FixtureRequest
) -> None:
    config = load_stack(request.node.callspec.params["rendered"], None)
    served = (rendered / "nginx" / "runbook" / "index.html").read_text()
    for rule in alert_rules(rendered):
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        anchor = rule["alert"].lower()
        url = rule["annotations"]["runbook_url"]
        assert url == f"{config.edge.public_urls(config.environment).web}/runbook/#{anchor}", rule["alert"]
        assert f'id="{anchor}"' in served, f"RUNBOOK.md has no section for {rule['alert']}"


def test_the_committed_runbook_links_are_the_dev_stacks_own() -> None:
    # so the promtool tests of the committed files show what dev really sends
    assert runbook_url(load_stack("dev", None)) == COMMITTED_RUNBOOK_URL
    for path in ALERTS_DIR.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule["annotations"]["runbook_url"] == f"{COMMITTED_RUNBOOK_URL}#{rule['alert'].lower()}"


def test_monitoring_runbook_url_points_every_link_at_the_operators_copy() -> None:
    config = load_stack("dev", None)
    custom = config.monitoring.model_copy(update={"runbook_url": "https://wiki.example.com/storage/runbook"})
    files = alert_rule_files(config.model_copy(update={"monitoring": custom}))
    assert COMMITTED_RUNBOOK_URL not in "".join(files.values())
    assert "runbook_url: https://wiki.example.com/storage/runbook#minionodedown\n" in files["minio.rules.yml"]


def test_rules_name_only_what_each_jobs_pinned_exporter_serves(rendered: Path) -> None:
    recorded = recorded_names({path.name: path.read_text() for path in (rendered / "prometheus" / "rules").glob("*.yml")})
    assert recorded == {"minio_platform:s3_ttfb_p99_threshold_seconds"}
    for rule in alert_rules(rendered):
        assert not unknown_metrics(rule["expr"], recorded), f"{rule['alert']}: {unknown_metrics(rule['expr'], recorded)}"


def test_every_scrape_job_has_its_exporters_list_of_metrics(rendered: Path) -> None:
    document = yaml.safe_load((rendered / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in document["scrape_configs"]} <= set(EXPORTED)


@pytest.mark.parametrize("stack", STACKS)
def test_grafana_keycloak_and_the_edge_proxy_are_scraped_where_they_serve_metrics(stack: str) -> None:
    from infra.monitoring.metrics import ScrapeAddresses, prometheus_yml

    config = load_stack(stack, None)
    document = yaml.safe_load(prometheus_yml(config, ScrapeAddresses.of_stack(config)))
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    expected = {
        # Grafana's /metrics answers at its root, sub-path or not; Keycloak's on its management port
        "grafana": ("/metrics", ["grafana:3000"]),
        "keycloak": ("/metrics", ["keycloak:9000"]),
        "edge-proxy": ("/metrics", ["nginx-exporter:9113"]),
    }
    assert tuple(expected) == PLATFORM_JOBS
    for job, (path, targets) in expected.items():
        assert jobs[job]["metrics_path"] == path
        assert [target for group in jobs[job]["static_configs"] for target in group["targets"]] == targets
        assert "authorization" not in jobs[job]


def test_the_latency_threshold_is_the_stack_setting_as_a_recording_rule() -> None:
    config = load_stack("dev", None)
    tuned = config.model_copy(update={"monitoring": config.monitoring.model_copy(update={"s3_latency_p99_seconds": 0.75})})
    for settings, value in ((config, 2.0), (tuned, 0.75)):
        document = yaml.safe_load(threshold_rules(settings))
        [rule] = document["groups"][0]["rules"]
        assert rule == {"record": "minio_platform:s3_ttfb_p99_threshold_seconds", "expr": f"vector({value})"}
        assert "labels" not in document["groups"][0]  # Prometheus 2.42 refuses group labels
    # the alert reads the recorded series, never a number of its own
    groups = yaml.safe_load(alert_rule_files(config)["minio.rules.yml"])["groups"]
    [latency] = [rule for group in groups for rule in group["rules"] if rule.get("alert") == "MinIOHighRequestLatency"]
    assert "> on () group_left () minio_platform:s3_ttfb_p99_threshold_seconds" in latency["expr"]


def test_each_scheduled_service_is_scraped_where_it_listens_and_only_when_the_stack_runs_it() -> None:
    from infra.backups import metrics_listen
    from infra.monitoring.metrics import ScrapeAddresses, prometheus_yml

    def jobs(config: Any) -> dict[str, list[str]]:
        document = yaml.safe_load(prometheus_yml(config, ScrapeAddresses.of_stack(config)))
        return {
            job["job_name"]: [target for group in job["static_configs"] for target in group["targets"]]
            for job in document["scrape_configs"] if job["job_name"] in ("backup", "mirror")
        }

    config = load_stack("dev", None)
    assert jobs(config) == {"backup": ["backup:9108"]}
    assert metrics_listen(config, "backup").endswith(":9108")
    without = config.model_copy(update={"backup": config.backup.model_copy(update={"enabled": False})})
    assert jobs(without) == {}
    rules = yaml.safe_load((ALERTS_DIR / "operations.rules.yml").read_text())
    watched = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    assert all('job=~"backup|mirror"' in expr for expr in watched.values()), watched


def test_minio_jobs_scrape_every_node_with_the_bearer_token_file(rendered: Path) -> None:
    document = yaml.safe_load((rendered / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    nodes = [f"minio{index}:9000" for index in range(1, 5)]
    paths = {"minio-cluster": "cluster", "minio-nodes": "node", "minio-bucket": "bucket"}
    for job, endpoint in paths.items():
        scrape = jobs[job]
        assert scrape["metrics_path"] == f"/minio/v2/metrics/{endpoint}"
        assert [target for group in scrape["static_configs"] for target in group["targets"]] == nodes
        assert [group["labels"]["node"] for group in scrape["static_configs"]] == ["minio1", "minio2", "minio3", "minio4"]
        assert scrape["authorization"] == {
            "type": "Bearer",
            "credentials_file": "/etc/prometheus/secrets/minio-metrics-token",
        }
    # the shipped stacks all run the default log agent
    for job in monitoring_jobs(load_stack("dev", None)):
        assert job in jobs
    assert document["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert document["rule_files"] == ["/etc/prometheus/rules/*.yml"]


# MinIO's secret keys are shorter than RFC 7518 recommends for HS512; MinIO signs with them all the same
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_the_metrics_token_is_minio_s_hs512_jwt_and_deterministic(rendered: Path, tmp_path: Path) -> None:
    secrets = SecretValues.throwaway()
    token = (rendered / "prometheus" / "secrets" / "minio-metrics-token").read_text().strip()
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    claims = jwt.decode(token, secrets.metrics_reader_secret_key, algorithms=["HS512"], issuer="prometheus")
    assert claims == {"sub": "metrics-reader", "iss": "prometheus", "exp": METRICS_TOKEN_EXPIRES}
    # no issued-at, fixed expiry: the same credentials always give the same file, so updates leave Prometheus alone
    again = render("dev", tmp_path / "again") / "prometheus" / "secrets" / "minio-metrics-token"
    assert again.read_text().strip() == token
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-key", algorithms=["HS512"])


def test_intervals_and_stack_label_come_from_the_stack(tmp_path: Path) -> None:
    from infra.monitoring.metrics import ScrapeAddresses, prometheus_yml

    config = load_stack("staging", None)
    tuned = config.model_copy(
        update={"monitoring": config.monitoring.model_copy(update={"scrape_interval": "30s", "evaluation_interval": "1m"})}
    )
    document = yaml.safe_load(prometheus_yml(tuned, ScrapeAddresses.of_stack(tuned)))
    assert document["global"]["scrape_interval"] == "30s"
    assert document["global"]["evaluation_interval"] == "1m"
    assert document["global"]["external_labels"] == {"stack": config.name}
