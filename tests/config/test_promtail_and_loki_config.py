"""Every stack's rendered Promtail and Loki configuration: what they discover, label, keep and for how long.

No Promtail or Loki binary exists here (see FACTS.md), so these read the rendered YAML against the
settings both programs document; redaction itself is exercised in test_promtail_redaction.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.__main__ import load_stack
from infra.container import SERVICE_LABEL, STACK_LABEL
from infra.monitoring.logs import loki_yml
from tests.config.monitoring_render import STACKS, render

LOW_CARDINALITY_LABELS = {"container", "service", "stack", "stream"}


@pytest.fixture(scope="module", params=STACKS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return request.param, render(request.param, tmp_path_factory.mktemp(request.param))


def load(rendered: tuple[str, Path], name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((rendered[1] / name).read_text())
    return document


def test_promtail_discovers_only_this_stack_s_containers(rendered: tuple[str, Path]) -> None:
    stack = load_stack(rendered[0], None)
    (scrape,) = load(rendered, "promtail/promtail.yml")["scrape_configs"]
    (discovery,) = scrape["docker_sd_configs"]
    assert discovery["host"] == "unix:///var/run/docker.sock"
    assert discovery["filters"] == [{"name": "label", "values": [f"{STACK_LABEL}={stack.name}"]}]


def test_promtail_labels_streams_by_container_service_and_stack_only(rendered: tuple[str, Path]) -> None:
    (scrape,) = load(rendered, "promtail/promtail.yml")["scrape_configs"]
    targets = {rule["target_label"]: rule["source_labels"] for rule in scrape["relabel_configs"]}
    assert set(targets) == LOW_CARDINALITY_LABELS
    assert targets["container"] == ["__meta_docker_container_name"]
    meta = "__meta_docker_container_label_"
    assert targets["service"] == [meta + SERVICE_LABEL.replace(".", "_").replace("-", "_")]
    assert targets["stack"] == [meta + STACK_LABEL.replace(".", "_").replace("-", "_")]
    # the audit pipeline adds only two bounded labels: op_type (3 values) and security_event (2)
    text = (rendered[1] / "promtail" / "promtail.yml").read_text()
    static = [line.split(":")[0].strip() for line in text.splitlines() if line.strip().startswith(("op_type:", "security_event:"))]
    assert set(static) == {"op_type", "security_event"}


def test_promtail_pushes_to_the_stack_s_loki_and_keeps_positions_on_its_volume(rendered: tuple[str, Path]) -> None:
    document = load(rendered, "promtail/promtail.yml")
    assert document["clients"] == [{"url": "http://loki:3100/loki/api/v1/push"}]
    assert document["positions"]["filename"] == "/promtail/positions.yaml"
    assert document["server"]["http_listen_port"] == 9080


def test_loki_is_a_single_binary_on_filesystem_tsdb_schema_v13(rendered: tuple[str, Path]) -> None:
    document = load(rendered, "loki/loki.yml")
    assert document["auth_enabled"] is False
    assert document["common"]["replication_factor"] == 1
    assert document["common"]["ring"]["kvstore"]["store"] == "inmemory"
    assert set(document["common"]["storage"]) == {"filesystem"}
    (schema,) = document["schema_config"]["configs"]
    assert (schema["store"], schema["object_store"], schema["schema"]) == ("tsdb", "filesystem", "v13")
    assert schema["index"]["period"] == "24h"


def test_loki_retention_comes_from_the_stack_and_the_compactor_applies_it(rendered: tuple[str, Path]) -> None:
    document = load(rendered, "loki/loki.yml")
    assert document["limits_config"]["retention_period"] == load_stack(rendered[0], None).monitoring.loki_retention
    assert document["compactor"]["retention_enabled"] is True
    assert document["compactor"]["delete_request_store"] == "filesystem"
    config = load_stack("prod", None)
    month = config.model_copy(update={"monitoring": config.monitoring.model_copy(update={"loki_retention": "30d"})})
    assert yaml.safe_load(loki_yml(month))["limits_config"]["retention_period"] == "30d"
