"""The Pulumi program under Pulumi's mocks: the storage tier's resource graph for every stack."""

from __future__ import annotations

import pytest

from infra.config import ConfigError
from infra.config.storage import DEFAULT_MINIO_IMAGE
from infra.quorum import ClusterLayout
from tests.unit import pulumi_harness
from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"
PASSWORD = "random:index/randomPassword:RandomPassword"
STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module", params=STACKS)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deploy(request.param)


def minio_nodes(deployment: Deployment) -> list[pulumi_harness.Registration]:
    return [c for c in deployment.of_type(CONTAINER) if c.name.startswith("minio")]


def test_four_nodes_with_two_volumes_each(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    assert sorted(c.name for c in minio_nodes(deployment)) == ["minio1", "minio2", "minio3", "minio4"]
    minio_volumes = sorted(v.inputs["name"] for v in deployment.of_type(VOLUME) if "-minio" in v.inputs["name"])
    assert minio_volumes == sorted(f"{prefix}-minio{n}-data{d}" for n in range(1, 5) for d in (1, 2))
    for node in minio_nodes(deployment):
        mounts = {(m["containerPath"], m["volumeName"]) for m in node.inputs["volumes"]}
        assert mounts == {(f"/data{d}", f"{prefix}-{node.name}-data{d}") for d in (1, 2)}


def test_server_command_names_every_drive_with_minio_expansion(deployment: Deployment) -> None:
    for node in minio_nodes(deployment):
        assert node.inputs["command"] == [
            "server", "--address", ":9000", "--console-address", ":9001", "http://minio{1...4}:9000/data{1...2}",
        ]


def test_no_minio_node_publishes_a_port(deployment: Deployment) -> None:
    for node in minio_nodes(deployment):
        assert not node.inputs.get("ports")


SUBNETS = {
    "dev": {"storage": "172.40.20.0/24", "monitoring": "172.31.20.0/24", "database": "172.23.20.0/24"},
    "staging": {"storage": "172.40.10.0/24", "monitoring": "172.31.10.0/24", "database": "172.23.10.0/24"},
    "prod": {"storage": "172.40.0.0/24", "monitoring": "172.31.0.0/24", "database": "172.23.0.0/24"},
}


def test_internal_networks_have_their_subnets_gateway_and_dynamic_range(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    networks = {n.inputs["name"]: n.inputs for n in deployment.of_type(NETWORK)}
    for segment, subnet in SUBNETS[deployment.outputs["environment"]].items():
        network = networks[f"{prefix}-{segment}-net"]
        assert network["internal"] is True
        base = subnet.rsplit(".", 1)[0]
        assert network["ipamConfigs"] == [{"subnet": subnet, "gateway": f"{base}.1", "ipRange": f"{base}.64/26"}]
    assert networks[f"{prefix}-edge-net"]["internal"] is False


def test_nodes_sit_only_on_storage_net_at_fixed_addresses(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    storage_base = SUBNETS[deployment.outputs["environment"]]["storage"].rsplit(".", 1)[0]
    for index, node in enumerate(sorted(minio_nodes(deployment), key=lambda c: c.name), start=1):
        assert node.inputs["networksAdvanced"] == [
            {"name": f"{prefix}-storage-net", "aliases": [f"minio{index}"], "ipv4Address": f"{storage_base}.{9 + index}"}
        ]


def test_every_image_is_pinned_and_referenced_by_id(deployment: Deployment) -> None:
    images = {i.name: i.inputs for i in deployment.of_type(IMAGE)}
    assert images, "no RemoteImage registered"
    for inputs in images.values():
        tag = inputs["name"].rsplit(":", 1)[-1]
        assert ("@sha256:" in inputs["name"] or ":" in inputs["name"].split("/")[-1]) and tag != "latest"
        assert inputs["keepLocally"] is True
    for container in deployment.of_type(CONTAINER):
        assert container.inputs["image"].startswith("sha256:"), f"{container.name} uses a tag, not the image id"


def test_minio_runs_the_maintained_server_image_whose_console_keeps_sso(deployment: Deployment) -> None:
    assert deployment.named("minio-image").inputs["name"] == DEFAULT_MINIO_IMAGE
    assert DEFAULT_MINIO_IMAGE.startswith("docker.io/pgsty/silo:RELEASE.")


def test_containers_follow_the_conventions(deployment: Deployment) -> None:
    prefix = deployment.outputs["name"]
    for container in deployment.of_type(CONTAINER):
        inputs = container.inputs
        labels = {label["label"]: label["value"] for label in inputs["labels"]}
        assert labels["io.minio-platform.stack"] == prefix and labels["io.minio-platform.service"]
        assert inputs["logDriver"] == "json-file" and set(inputs["logOpts"]) == {"max-size", "max-file"}
        assert inputs["restart"] == "unless-stopped"
        assert inputs["memory"] > 0
        assert "no-new-privileges:true" in inputs["securityOpts"]
        assert inputs["healthcheck"]["tests"]
        assert container.delete_before_replace and "healthcheck" in container.replace_on_changes
        assert inputs["name"] == f"{prefix}-{container.name}"


def test_minio_liveness_probe_does_not_depend_on_quorum(deployment: Deployment) -> None:
    for node in minio_nodes(deployment):
        probe = node.inputs["healthcheck"]["tests"]
        assert probe[0] == "CMD" and probe[-1] == "http://localhost:9000/minio/health/live"


def test_credentials_reach_minio_only_as_secrets(deployment: Deployment) -> None:
    for node in minio_nodes(deployment):
        assert "uploads" in node.secret_paths
        assert not any("PASSWORD" in env for env in node.inputs["envs"])
        assert node.inputs["envs"] == ["MINIO_CONFIG_ENV_FILE=/etc/minio/config.env"]
    assert {"minioRootUser", "minioRootPassword"} <= deployment.secret_outputs


def test_generated_credentials_come_from_pulumi_random(deployment: Deployment) -> None:
    generated = {p.name for p in deployment.of_type(PASSWORD)}
    assert {"secrets-minioRootUser", "secrets-minioRootPassword"} <= generated
    password = deployment.outputs["minioRootPassword"]
    config_env = minio_nodes(deployment)[0].uploads()["/etc/minio/config.env"]
    assert f"MINIO_ROOT_PASSWORD={password}\n" in config_env


def test_layout_output_is_the_quorum_model(deployment: Deployment) -> None:
    model = ClusterLayout.plan([(4, 2)]).as_dict()
    layout = deployment.outputs["layout"]
    assert {key: layout[key] for key in model} == model
    # every node on the one host: losing it loses the cluster
    assert layout["hosts"] == 1 and layout["hostLoss"][-1] == {"hostsDown": 1, "reads": False, "writes": False}


def test_data_volumes_are_protected_and_retained_on_prod_only() -> None:
    for stack, keep in (("dev", False), ("prod", True)):
        volumes = [v for v in deploy(stack).of_type(VOLUME) if "-minio" in v.inputs["name"]]
        assert len(volumes) == 8
        assert all(v.protect is keep and v.retain_on_delete is keep for v in volumes), stack


def test_supplied_root_password_replaces_the_generated_one() -> None:
    deployment = deploy("dev", secrets={"minioRootPassword": "operator-chosen-password-0123"})
    assert "secrets-minioRootPassword" not in {p.name for p in deployment.of_type(PASSWORD)}
    assert deployment.outputs["minioRootPassword"] == "operator-chosen-password-0123"
    assert "minioRootPassword" in deployment.secret_outputs


def test_other_layouts_change_nodes_drives_and_command() -> None:
    deployment = deploy("dev", overrides={"storage": {"nodes": 8, "drivesPerNode": 1}})
    nodes = minio_nodes(deployment)
    assert len(nodes) == 8
    assert nodes[0].inputs["command"][-1] == "http://minio{1...8}:9000/data1"
    assert deployment.outputs["layout"]["writeQuorum"] == 5


def test_explicit_parity_becomes_the_standard_storage_class() -> None:
    deployment = deploy("dev", overrides={"storage": {"nodes": 4, "drivesPerNode": 2, "parity": 3}})
    config_env = minio_nodes(deployment)[0].uploads()["/etc/minio/config.env"]
    assert "MINIO_STORAGE_CLASS_STANDARD=EC:3\n" in config_env
    assert deployment.outputs["layout"]["parity"] == 3


def test_bad_stack_creates_no_resource() -> None:
    with pytest.raises(Exception, match="storage.drivesPerNode"):
        deploy("dev", overrides={"storage": {"nodes": 3, "drivesPerNode": 1}})
    assert pulumi_harness.last_monitor is not None
    assert pulumi_harness.last_monitor.registrations == []


@pytest.mark.parametrize(("stack", "memory"), [("dev", 1024), ("staging", 2048), ("prod", 4096)])
def test_stack_file_settings_reach_the_containers(stack: str, memory: int) -> None:
    assert {node.inputs["memory"] for node in minio_nodes(deploy(stack))} == {memory}
