"""Every stack's rendered log agent and Loki configuration: what they discover, label, keep and for how long.

No Alloy, Promtail or Loki binary exists here (see FACTS.md), so these read the rendered files against
the settings the programs document: Alloy's with the subset parser in alloy_syntax.py (grafana/alloy
docs/sources/reference/components: discovery.docker, discovery.relabel, loki.source.docker,
loki.process, loki.write), Promtail's and Loki's as YAML. Redaction itself is exercised in
test_log_redaction.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.__main__ import load_stack
from infra.container import SERVICE_LABEL, STACK_LABEL
from infra.monitoring.docker_api_proxy import DOCKER_API_URL
from infra.monitoring.logs import loki_yml
from tests.config.alloy_syntax import Block, Reference, parse
from tests.config.monitoring_render import STACKS, render
from tests.config.pipeline_emulator import CONFIG_FILES, Stage, read_pipeline, render_agent

LOW_CARDINALITY_LABELS = {"container", "service", "stack", "stream"}
META = "__meta_docker_container_label_"


@pytest.fixture(scope="module", params=STACKS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return request.param, render(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def alloy(rendered: tuple[str, Path]) -> Block:
    return parse((rendered[1] / CONFIG_FILES["alloy"]).read_text())


@pytest.fixture(scope="module")
def promtail(rendered: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(render_agent(rendered[0], "promtail", tmp_path_factory.mktemp("promtail")).read_text())
    return document


def load(rendered: tuple[str, Path], name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((rendered[1] / name).read_text())
    return document


def static_labels(stages: tuple[Stage, ...]) -> set[str]:
    found = set()
    for stage in stages:
        found |= set(stage.spec["values"]) if stage.kind == "static_labels" else static_labels(stage.stages)
    return found


def test_a_stack_renders_alloy_by_default_and_no_promtail(rendered: tuple[str, Path]) -> None:
    assert (rendered[1] / CONFIG_FILES["alloy"]).is_file()
    assert not (rendered[1] / "promtail").exists()


def test_alloy_discovers_only_this_stack_s_containers_through_the_socket(rendered: tuple[str, Path], alloy: Block) -> None:
    stack = load_stack(rendered[0], None)
    discovery = alloy.child("discovery.docker", "containers")
    # through the read-only Docker API proxy, never the socket itself
    assert discovery.attributes == {"host": DOCKER_API_URL, "refresh_interval": "10s"}
    (only,) = discovery.children("filter")
    assert only.attributes == {"name": "label", "values": [f"{STACK_LABEL}={stack.name}"]}
    source = alloy.child("loki.source.docker", "containers")
    assert source.attributes["host"] == discovery.attributes["host"]
    # targets straight from discovery: loki.source.docker needs __meta_docker_container_id, which relabelling drops
    assert source.attributes["targets"] == Reference("discovery.docker.containers.targets")


def test_alloy_wires_discovery_to_redaction_to_loki(alloy: Block) -> None:
    (relabel,) = alloy.children("discovery.relabel")
    (process,) = alloy.children("loki.process")
    (write,) = alloy.children("loki.write")
    source = alloy.child("loki.source.docker", "containers")
    assert source.attributes["relabel_rules"] == Reference(f"discovery.relabel.{relabel.label}.rules")
    assert source.attributes["forward_to"] == [Reference(f"loki.process.{process.label}.receiver")]
    assert process.attributes == {"forward_to": [Reference(f"loki.write.{write.label}.receiver")]}
    (endpoint,) = write.children("endpoint")
    assert endpoint.attributes == {"url": "http://loki:3100/loki/api/v1/push"}
    assert {block.name for block in alloy.blocks} == {
        "discovery.docker", "discovery.relabel", "loki.source.docker", "loki.process", "loki.write"
    }


def test_alloy_labels_streams_by_container_service_and_stack_only(alloy: Block) -> None:
    rules = {rule.attributes["target_label"]: rule.attributes["source_labels"] for rule in alloy.child("discovery.relabel", "streams").children("rule")}
    assert set(rules) == LOW_CARDINALITY_LABELS
    assert rules["container"] == ["__meta_docker_container_name"]
    assert rules["service"] == [META + SERVICE_LABEL.replace(".", "_").replace("-", "_")]
    assert rules["stack"] == [META + STACK_LABEL.replace(".", "_").replace("-", "_")]
    assert rules["stream"] == ["__meta_docker_container_log_stream"]


def test_the_audit_pipeline_adds_only_two_bounded_labels(rendered: tuple[str, Path], promtail: dict[str, Any]) -> None:
    # op_type (3 values) and security_event (2), in both renderings
    alloy = read_pipeline("alloy", (rendered[1] / CONFIG_FILES["alloy"]).read_text())
    assert static_labels(alloy.stages) == {"op_type", "security_event"}
    assert static_labels(read_pipeline("promtail", yaml.safe_dump(promtail)).stages) == {"op_type", "security_event"}


def test_promtail_discovers_only_this_stack_s_containers(rendered: tuple[str, Path], promtail: dict[str, Any]) -> None:
    stack = load_stack(rendered[0], None)
    (scrape,) = promtail["scrape_configs"]
    (discovery,) = scrape["docker_sd_configs"]
    assert discovery["host"] == DOCKER_API_URL
    assert discovery["filters"] == [{"name": "label", "values": [f"{STACK_LABEL}={stack.name}"]}]


def test_promtail_labels_streams_by_container_service_and_stack_only(promtail: dict[str, Any]) -> None:
    (scrape,) = promtail["scrape_configs"]
    targets = {rule["target_label"]: rule["source_labels"] for rule in scrape["relabel_configs"]}
    assert set(targets) == LOW_CARDINALITY_LABELS
    assert targets["container"] == ["__meta_docker_container_name"]
    assert targets["service"] == [META + SERVICE_LABEL.replace(".", "_").replace("-", "_")]
    assert targets["stack"] == [META + STACK_LABEL.replace(".", "_").replace("-", "_")]


def test_promtail_pushes_to_the_stack_s_loki_and_keeps_positions_on_its_volume(promtail: dict[str, Any]) -> None:
    assert promtail["clients"] == [{"url": "http://loki:3100/loki/api/v1/push"}]
    assert promtail["positions"]["filename"] == "/promtail/positions.yaml"
    assert promtail["server"]["http_listen_port"] == 9080


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


def test_loki_refuses_to_delete_logs_through_its_api(rendered: tuple[str, Path]) -> None:
    # Loki 3.x reads deletion_mode from limits_config only (pkg/validation/limits.go, -compactor.deletion-mode,
    # default filter-and-delete); "disabled" makes the delete endpoints answer 403 for every tenant
    # (pkg/compactor/deletion/tenant_request_handler.go). A compactor key of that name would be refused,
    # since Loki reads its file strictly (pkg/util/cfg/files.go, yaml.UnmarshalStrict).
    document = load(rendered, "loki/loki.yml")
    assert document["limits_config"]["deletion_mode"] == "disabled"
    assert "deletion_mode" not in document["compactor"]
    assert "allow_deletes" not in document["limits_config"]
    assert "runtime_config" not in document, "a per-tenant override could turn deletion back on"
