"""Growing capacity by server pools, under Pulumi's mocks: the command, the volumes, the quorum table per
pool, and an update that would reshape a deployed pool refused before any resource is registered."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import ConfigError, parse_stack_config
from infra.plan import plan
from infra.quorum import ClusterLayout, ErasureLayout
from tests.unit import pulumi_harness
from tests.unit.pulumi_harness import Deployment, deploy

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
SECOND_POOL = {"storage": {"pools": [{"nodes": 4, "drivesPerNode": 4}]}}
NEWER_MINIO = "docker.io/pgsty/silo:RELEASE.2026-10-01T00-00-00Z"


@pytest.fixture(scope="module")
def grown() -> Deployment:
    return deploy("dev", SECOND_POOL)


def nodes(deployment: Deployment) -> dict[str, Any]:
    return {c.name: c for c in deployment.of_type(CONTAINER) if c.name.startswith("minio")}


def test_every_node_runs_the_same_command_naming_every_pool_in_order(grown: Deployment) -> None:
    assert sorted(nodes(grown), key=lambda name: int(name.removeprefix("minio"))) == [f"minio{n}" for n in range(1, 9)]
    commands = {tuple(node.inputs["command"]) for node in nodes(grown).values()}
    assert commands == {(
        "server", "--address", ":9000", "--console-address", ":9001",
        "http://minio{1...4}:9000/data{1...2}", "http://minio{5...8}:9000/data{1...4}",
    )}


def test_each_node_mounts_its_own_pools_drives(grown: Deployment) -> None:
    prefix = grown.outputs["name"]
    for name, node in nodes(grown).items():
        drives = 2 if int(name.removeprefix("minio")) <= 4 else 4
        assert {(m["containerPath"], m["volumeName"]) for m in node.inputs["volumes"]} == {
            (f"/data{d}", f"{prefix}-{name}-data{d}") for d in range(1, drives + 1)
        }
    assert len([v for v in grown.of_type(VOLUME) if "-minio" in v.inputs["name"]]) == 4 * 2 + 4 * 4


def test_the_new_nodes_get_fixed_addresses_and_reach_the_proxy_and_prometheus(grown: Deployment) -> None:
    addresses = {name: node.inputs["networksAdvanced"][0]["ipv4Address"] for name, node in nodes(grown).items()}
    assert addresses["minio5"].endswith(".14") and addresses["minio8"].endswith(".17")
    nginx = grown.named("edge-proxy", CONTAINER).uploads()["/etc/nginx/nginx.conf"]
    assert all(f"server {addresses[f'minio{n}']}:9000" in nginx for n in range(1, 9))
    prometheus = grown.named("prometheus", CONTAINER).uploads()["/etc/prometheus/prometheus.yml"]
    assert "minio8:9000" in prometheus


def test_the_layout_output_has_a_quorum_table_per_pool(grown: Deployment) -> None:
    layout = grown.outputs["layout"]
    assert layout["totalNodes"] == 8
    first, second = layout["pools"]
    assert {key: first[key] for key in ErasureLayout.plan(4, 2).as_dict()} == ErasureLayout.plan(4, 2).as_dict()
    # one parity for the cluster: the first pool's default (EC:4), which fits a set of 16
    assert (second["firstNode"], second["lastNode"], second["setSize"], second["parity"]) == (5, 8, 16, 4)
    assert [(row["nodesDown"], row["writes"]) for row in second["nodeLoss"]][:3] == [(0, True), (1, True), (2, False)]
    assert grown.outputs["minioCommand"] == list(nodes(grown)["minio1"].inputs["command"])


def test_plan_prints_each_pools_table() -> None:
    lines = "\n".join(plan_with(SECOND_POOL).lines())
    assert "erasure layout of pool 1 (minio1..4): 4 nodes x 2 drives" in lines
    assert "erasure layout of pool 2 (minio5..8): 4 nodes x 4 drives = 16 drives in 1 set(s) of 16, parity EC:4" in lines
    assert "every pool must keep quorum" in lines


def plan_with(overrides: dict[str, Any], previous: dict[str, Any] | None = None) -> Any:
    # the plan reads the stack file; the override goes through a temporary stack file
    source = yaml.safe_load(Path(pulumi_harness.ROOT / "Pulumi.dev.yaml").read_text())
    source["config"]["minio-platform:storage"] = {**source["config"].get("minio-platform:storage", {}), **overrides["storage"]}
    with tempfile.TemporaryDirectory() as folder:
        stack_file = Path(folder) / "Pulumi.dev.yaml"
        stack_file.write_text(yaml.safe_dump(source))
        return plan("dev", stack_file, previous)


def test_a_pools_parity_must_fit_its_sets() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("dev", {"storage": {"pools": [{"nodes": 4, "drivesPerNode": 1}]}})
    assert raised.value.problems == [
        "storage.pools: pool 2: parity EC:4 is not allowed for an erasure set of 4 drives: use 2 to 2 "
        "(the parity of every pool is the first pool's)"
    ]
    # with EC:2 for the cluster, the same pool fits
    parse_stack_config("dev", {"storage": {"parity": 2, "pools": [{"nodes": 4, "drivesPerNode": 1}]}})


def test_the_nodes_of_every_pool_share_the_fixed_addresses() -> None:
    with pytest.raises(ConfigError, match=r"storage.pools: 36 nodes in all pools: the storage network has fixed addresses for 32"):
        parse_stack_config("dev", {"storage": {"pools": [{"nodes": 16, "drivesPerNode": 1}, {"nodes": 16, "drivesPerNode": 1}]}})


def test_the_program_reads_its_own_stacks_last_outputs() -> None:
    deploy("dev")
    assert pulumi_harness.last_monitor is not None
    assert pulumi_harness.last_monitor.mocks.stack_reads == ["organization/minio-platform/dev"]


@pytest.fixture(scope="module")
def deployed() -> dict[str, Any]:
    return dict(deploy("dev").outputs)


def test_reshaping_a_deployed_pool_is_refused_before_any_resource(deployed: dict[str, Any]) -> None:
    with pytest.raises(Exception) as raised:
        deploy("dev", {"storage": {"drivesPerNode": 4}}, previous=deployed)
    assert "storage.pools: pool 1 is deployed as minio1..4, 4 nodes x 2 drives, sets of 8, parity EC:4 and would " in str(raised.value)
    assert "would become minio1..4, 4 nodes x 4 drives, sets of 16" in str(raised.value)
    assert pulumi_harness.last_monitor is not None and pulumi_harness.last_monitor.registrations == []


def test_a_new_parity_for_a_deployed_pool_is_refused(deployed: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"parity EC:4 and would become .* parity EC:3"):
        deploy("dev", {"storage": {"parity": 3}}, previous=deployed)


def test_a_layout_from_before_pools_is_read_as_its_one_pool(deployed: dict[str, Any]) -> None:
    legacy = {**deployed, "layout": ErasureLayout.plan(4, 2).as_dict()}
    with pytest.raises(Exception, match="storage.pools: pool 1 is deployed as minio1..4, 4 nodes x 2 drives"):
        deploy("dev", {"storage": {"nodes": 8, "drivesPerNode": 1}}, previous=legacy)
    assert ClusterLayout.plan([(4, 2)]).changes_from(legacy["layout"]) == []


def test_adding_a_pool_goes_ahead_and_says_every_node_is_replaced(deployed: dict[str, Any]) -> None:
    deployment = deploy("dev", SECOND_POOL, previous=deployed)
    (notice,) = [w for w in deployment.warnings if "MinIO node" in w]
    assert notice.startswith("the server command changes (1 pool(s) added): every MinIO node (minio1..8) is replaced")


def test_removing_a_deployed_pool_is_refused_until_allowed(grown: Deployment) -> None:
    with pytest.raises(Exception, match=r"pool 2 \(minio5..8, .*\) is deployed and would be removed: decommission it first"):
        deploy("dev", previous=grown.outputs)
    allowed = deploy("dev", {"storage": {"allowLayoutChange": True}}, previous=grown.outputs)
    assert any(w.startswith("storage.allowLayoutChange is set, so this goes ahead: storage.pools: pool 2") for w in allowed.warnings)


def test_a_new_minio_image_says_every_node_is_replaced(deployed: dict[str, Any]) -> None:
    deployment = deploy("dev", {"storage": {"image": NEWER_MINIO}}, previous=deployed)
    (notice,) = [w for w in deployment.warnings if "MinIO node" in w]
    assert f"the MinIO image changes from {deployed['minioImage']} to {NEWER_MINIO}: every MinIO node (minio1..4)" in notice


def test_an_unchanged_update_and_a_first_deploy_say_nothing_about_the_nodes(deployed: dict[str, Any]) -> None:
    assert not [w for w in deploy("dev", previous=deployed).warnings if "MinIO node" in w]
    assert not [w for w in deploy("dev", previous={}).warnings if "MinIO node" in w]


def test_plan_against_the_deployed_outputs_refuses_and_notices_as_the_deploy(deployed: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="storage.pools: pool 1 is deployed as"):
        plan_with({"storage": {"drivesPerNode": 4}}, deployed)
    planned = plan_with({"storage": {"image": NEWER_MINIO}}, deployed)
    assert any("every MinIO node (minio1..4) is replaced" in notice for notice in planned.notices)
    assert any("every MinIO node (minio1..4) is replaced" in line for line in planned.lines())
