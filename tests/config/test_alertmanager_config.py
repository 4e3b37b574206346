"""Every stack's rendered Alertmanager configuration through amtool: Debian's, and the pinned release's."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infra.__main__ import load_stack
from infra.config.images import ALERTMANAGER
from infra.config.monitoring import DEFAULT_WEBHOOK_URL
from infra.monitoring.metrics import WEBHOOK_TOKEN_FILE, alertmanager_files
from infra.secrets import SecretValues
from tests.conftest import require_pinned_tool, require_tool
from tests.config.monitoring_render import STACKS, render

# labels of an alert -> the receiver it must reach
ROUTES = [
    ({"alertname": "MinIONodeDown", "severity": "critical"}, "critical"),
    ({"alertname": "MinIOReadQuorumLost", "severity": "critical", "pool": "0", "set": "0"}, "critical"),
    ({"alertname": "MinIOHighStorageUsage", "severity": "warning"}, "warning"),
    ({"alertname": "SomethingInformational", "severity": "info"}, "info"),
    ({"alertname": "Watchdog", "severity": "none"}, "watchdog"),
    # an alert without a known severity still reaches someone
    ({"alertname": "Unlabelled"}, "warning"),
]


@pytest.fixture(scope="module", params=["debian", "pinned"])
def amtool_binary(request: pytest.FixtureRequest) -> str:
    if request.param == "debian":
        return require_tool("amtool")
    return require_pinned_tool("amtool", ALERTMANAGER.reference.rsplit(":", 1)[1])


@pytest.fixture
def amtool(amtool_binary: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([amtool_binary, *args], capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture(scope="module", params=STACKS)
def config_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(request.param, tmp_path_factory.mktemp(request.param)) / "alertmanager" / "alertmanager.yml"


def test_amtool_accepts_the_rendered_configuration(config_file: Path, amtool: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = amtool("check-config", str(config_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "3 inhibit rules" in result.stdout


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=[labels["alertname"] for labels, _ in ROUTES])
def test_each_severity_is_routed_to_its_receiver(
    config_file: Path, labels: dict[str, str], receiver: str, amtool: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = amtool(
        "config", "routes", "test", f"--config.file={config_file}", f"--verify.receivers={receiver}",
        *(f"{key}={value}" for key, value in labels.items()),
    )
    assert result.returncode == 0, f"{labels} went to {result.stdout.strip()!r}, not {receiver!r}"
    assert result.stdout.strip() == receiver


def test_every_receiver_posts_to_the_stack_webhook_with_resolved_notices(config_file: Path) -> None:
    document = yaml.safe_load(config_file.read_text())
    assert {receiver["name"] for receiver in document["receivers"]} == {"watchdog", "critical", "warning", "info"}
    for receiver in document["receivers"]:
        (hook,) = receiver["webhook_configs"]
        assert hook["url"] == DEFAULT_WEBHOOK_URL
        assert hook["send_resolved"] is True
        # the default receiver is the stack's own audit sink, which wants its token
        assert hook["http_config"]["authorization"]["credentials_file"] == WEBHOOK_TOKEN_FILE


def test_quorum_loss_inhibits_the_per_node_alerts(config_file: Path) -> None:
    rules = yaml.safe_load(config_file.read_text())["inhibit_rules"]
    quorum = next(rule for rule in rules if "MinIOWriteQuorumLost" in rule["source_matchers"][0])
    assert "MinIONodeDown" in quorum["target_matchers"][0]
    assert "MinIONodesOffline" in quorum["target_matchers"][0]
    assert quorum["equal"] == ["stack"]
    critical_over_warning = next(rule for rule in rules if rule["source_matchers"] == ['severity="critical"'])
    assert critical_over_warning["equal"] == ["alertname", "stack"]


def test_an_outside_webhook_gets_no_token_and_grouping_follows_the_stack(
    tmp_path: Path, amtool: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    config = load_stack("prod", None)
    outside = config.model_copy(
        update={
            "monitoring": config.monitoring.model_copy(
                update={"webhook_url": "https://alerts.example.com/hooks/minio", "alert_group_wait": "10s"}
            )
        }
    )
    files = alertmanager_files(outside, SecretValues.throwaway())
    assert [item.path for item in files] == ["alertmanager/alertmanager.yml"]
    document = yaml.safe_load(files[0].content)
    assert document["route"]["group_wait"] == "10s"
    for receiver in document["receivers"]:
        assert receiver["webhook_configs"][0]["url"] == "https://alerts.example.com/hooks/minio"
        assert "http_config" not in receiver["webhook_configs"][0]
    (tmp_path / "alertmanager.yml").write_text(files[0].content)
    assert amtool("check-config", str(tmp_path / "alertmanager.yml")).returncode == 0
