"""Stack configuration: the shipped stacks are valid, and each rule rejects its bad value by key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    ConfigError,
    StackConfig,
    StackFileError,
    known_stacks,
    namespace_problem,
    parse_stack_config,
    read_stack_file,
    split_config,
    stack_file,
)
from infra.config.stack import OTHER_NAMESPACES
from infra.secrets import SECRET_CONFIG_KEYS
from tests.conftest import ROOT


def problems_of(values: dict[str, Any], stack: str = "dev") -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(stack, values)
    return raised.value.problems


def only_problem(values: dict[str, Any]) -> str:
    problems = problems_of(values)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stack_files_are_valid(stack: str) -> None:
    values, encrypted = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    config, _ = split_config(stack, values, SECRET_CONFIG_KEYS, encrypted)
    assert config.environment == stack
    assert config.name == f"minio-{stack}"


def test_defaults_are_minio_reference_layout() -> None:
    config = parse_stack_config("dev", {})
    assert (config.storage.nodes, config.storage.drives_per_node) == (4, 2)
    assert config.networks.storage.subnet == "172.40.0.0/24"
    assert config.networks.monitoring.subnet == "172.31.0.0/24"
    assert config.networks.database.subnet == "172.23.0.0/24"


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("quay.io/minio/minio:latest", "moving tag 'latest'"),
        ("quay.io/minio/minio", "not pinned"),
        ("Quay.io/minio minio:1", "not an image reference"),
    ],
)
def test_unpinned_or_malformed_images_are_rejected(image: str, reason: str) -> None:
    problem = only_problem({"storage": {"image": image}})
    assert problem.startswith("storage.image:") and reason in problem and image in problem


@pytest.mark.parametrize(
    "image",
    ["quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z", "minio/minio@sha256:" + "a" * 64, "localhost:5000/minio:1.0"],
)
def test_pinned_images_are_accepted(image: str) -> None:
    assert parse_stack_config("dev", {"storage": {"image": image}}).storage.image == image


def test_layout_minio_refuses_names_nodes_and_drives() -> None:
    problem = only_problem({"storage": {"nodes": 3, "drivesPerNode": 1}})
    assert problem.startswith("storage.drivesPerNode:") and "3 nodes x 1 drives" in problem


def test_parity_outside_range_names_allowed_range() -> None:
    problem = only_problem({"storage": {"parity": 1}})
    assert problem.startswith("storage.parity:") and "use 2 to 4" in problem


def test_single_node_is_rejected() -> None:
    assert only_problem({"storage": {"nodes": 1}}).startswith("storage.nodes:")


def test_bad_subnet_is_rejected_with_its_value() -> None:
    problem = only_problem({"networks": {"storage": {"subnet": "172.40.0.1/33"}}})
    assert problem.startswith("networks.storage.subnet:") and "172.40.0.1/33" in problem


def test_overlapping_subnets_name_both_segments() -> None:
    problem = only_problem({"networks": {"database": {"subnet": "172.31.0.0/16"}}})
    assert "monitoring.subnet 172.31.0.0/24 overlaps database.subnet 172.31.0.0/16" in problem


def test_public_subnet_is_accepted_with_a_warning_that_names_the_risk() -> None:
    config = parse_stack_config("dev", {})
    assert [w for w in config.warnings() if w.startswith("networks.storage.subnet 172.40.0.0/24 is not private")]
    private = parse_stack_config("dev", {"networks": {"storage": {"subnet": "172.30.0.0/24"}}})
    assert private.warnings() == []


@pytest.mark.parametrize("port", [0, 65536])
def test_ports_outside_1_to_65535_are_rejected(port: int) -> None:
    problem = only_problem({"edge": {"s3Port": port}})
    assert problem.startswith("edge.s3Port:") and str(port) in problem


def test_duplicate_ports_are_rejected() -> None:
    assert "s3Port and httpPort are both 8080" in only_problem({"edge": {"s3Port": 8080, "httpPort": 8080}})


@pytest.mark.parametrize("name", ["Minio", "minio_dev", "-minio", "x" * 64])
def test_names_must_be_dns_labels(name: str) -> None:
    problem = only_problem({"name": name})
    assert problem.startswith("name:") and "DNS label" in problem


def test_memory_limits_must_be_positive() -> None:
    assert only_problem({"storage": {"memoryMb": -1}}).startswith("storage.memoryMb:")


def test_unknown_keys_are_rejected_at_any_depth() -> None:
    problems = problems_of({"storage": {"node": 4}, "storrage": {}})
    assert {p.split(":")[0] for p in problems} == {"storage.node", "storrage"}


def test_environment_is_inferred_for_shipped_stack_names_and_required_for_others() -> None:
    assert parse_stack_config("staging", {}).environment == "staging"
    assert problems_of({}, stack="eu-west") == ["environment: required key is missing"]


def test_every_problem_is_reported_together() -> None:
    problems = problems_of(
        {
            "name": "Bad_Name",
            "storage": {"nodes": 3, "drivesPerNode": 1, "image": "minio:latest", "memoryMb": 0},
            "edge": {"httpPort": 9000},
            "networks": {"edge": {"subnet": "not-a-subnet"}},
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "name",
        "storage.drivesPerNode",
        "storage.image",
        "storage.memoryMb",
        "networks.edge.subnet",
        "edge",
    ]


def test_secret_stored_in_plain_text_is_refused() -> None:
    values = {"minio-platform:environment": "dev", "minio-platform:minioRootPassword": "hunter2hunter2"}
    with pytest.raises(ConfigError, match="minioRootPassword: stored in plain text"):
        split_config("dev", values, SECRET_CONFIG_KEYS, supplied_as_secret=set())
    config, secrets = split_config(
        "dev", values, SECRET_CONFIG_KEYS, supplied_as_secret={"minio-platform:minioRootPassword"}
    )
    assert isinstance(config, StackConfig) and set(secrets) == {"minioRootPassword"}


def test_other_namespaces_are_left_to_their_providers() -> None:
    config, _ = split_config("dev", {"docker:host": "ssh://ops@storage-1"}, SECRET_CONFIG_KEYS, set())
    assert config.environment == "dev"


def test_data_is_kept_on_destroy_on_prod_only_by_default() -> None:
    assert parse_stack_config("prod", {}).keep_data_on_destroy is True
    assert parse_stack_config("dev", {}).keep_data_on_destroy is False
    assert parse_stack_config("dev", {"storage": {"keepDataOnDestroy": True}}).keep_data_on_destroy is True


@pytest.mark.parametrize(
    "key", ["minio-platfrom:storage", "minio_platform:storage", "minioplatform:storage", "minio:storage", "platform:storage", "storage"]
)
def test_keys_meant_for_the_project_under_a_wrong_or_missing_namespace_are_refused(key: str) -> None:
    values = {"minio-platform:environment": "dev", key: {"nodes": 3, "drivesPerNode": 1}}
    with pytest.raises(ConfigError) as raised:
        split_config("dev", values, SECRET_CONFIG_KEYS, set())
    [problem] = raised.value.problems
    assert problem.startswith(f"{key}: ") and problem.endswith("write it as minio-platform:storage")


@pytest.mark.parametrize("key", ["docker:host", "pulumi:tags", "random:seed", "tls:x", "aws:region", "kubernetes:context"])
def test_keys_of_pulumi_the_providers_and_unrelated_namespaces_are_left_alone(key: str) -> None:
    assert namespace_problem(key) is None
    config, _ = split_config("dev", {key: "value"}, SECRET_CONFIG_KEYS, set())
    assert config.environment == "dev"


def test_the_known_namespaces_are_pulumis_and_the_programs_providers() -> None:
    providers = {line.strip().strip('",').split("==")[0].removeprefix("pulumi-") for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.strip().startswith('"pulumi-')}
    assert set(OTHER_NAMESPACES) == {"pulumi"} | providers


def test_a_stack_file_that_is_not_yaml_is_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  minio-platform:storage:\n    nodes: [4\n")
    with pytest.raises(StackFileError) as raised:
        read_stack_file(path)
    assert str(raised.value).startswith(f"{path}:4:1: not valid YAML: ")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "config: [1, 2]\n"])
def test_a_stack_file_of_the_wrong_shape_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Pulumi.shape.yaml"
    path.write_text(text)
    with pytest.raises(StackFileError, match="a stack file is a mapping whose 'config' maps keys"):
        read_stack_file(path)


def test_an_unknown_stack_names_the_stacks_there_are_shipped_ones_first(tmp_path: Path) -> None:
    for name in ("prod", "eu-west", "dev", "staging"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text("config: {}\n")
    assert known_stacks(tmp_path) == ["dev", "staging", "prod", "eu-west"]
    with pytest.raises(StackFileError, match="the stacks here are dev, staging, prod, eu-west"):
        stack_file("qa", tmp_path)


def test_a_single_problem_is_one_line() -> None:
    assert "\n" not in str(ConfigError("dev", ["storage.nodes: too few"]))


def test_a_published_port_cannot_be_the_proxys_internal_status_listener() -> None:
    problem = only_problem({"edge": {"httpPort": 8081}})
    assert problem == "edge: httpPort 8081 is the proxy's internal status listener: choose another port"
