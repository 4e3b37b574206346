"""Drives on their own disks (storage.drivePaths), under Pulumi's mocks: each drive's volume binds its host
directory, the paths are checked before anything exists, and a deployed drive never silently moves."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import ConfigError, parse_stack_config
from tests.unit import pulumi_harness
from tests.unit.pulumi_harness import Deployment, deploy

VOLUME = "docker:index/volume:Volume"
PATHS = [f"/srv/disk{node}{drive}/minio" for node in range(1, 5) for drive in "ab"]


def minio_volumes(deployment: Deployment) -> dict[str, Any]:
    return {v.inputs["name"]: v for v in deployment.of_type(VOLUME) if "-minio" in v.inputs["name"]}


def test_each_drive_volume_binds_its_directory_in_node_major_order() -> None:
    deployment = deploy("dev", {"storage": {"drivePaths": PATHS}})
    volumes = minio_volumes(deployment)
    assert volumes["minio-dev-minio1-data2"].inputs["driverOpts"] == {"type": "none", "o": "bind", "device": "/srv/disk1b/minio"}
    assert volumes["minio-dev-minio3-data1"].inputs["driverOpts"]["device"] == "/srv/disk3a/minio"
    assert {v.inputs["driver"] for v in volumes.values()} == {"local"}
    # names, labels and protection are a volume's as before
    assert all(v.inputs["labels"] for v in volumes.values())
    assert deployment.outputs["drivePaths"]["minio4"] == ["/srv/disk4a/minio", "/srv/disk4b/minio"]


def test_without_drive_paths_docker_keeps_the_volumes_as_before() -> None:
    deployment = deploy("dev")
    assert not [v for v in minio_volumes(deployment).values() if "driver" in v.inputs or "driverOpts" in v.inputs]
    assert deployment.outputs["drivePaths"]["minio1"] == [None, None]


def test_a_second_pools_drives_follow_the_first_pools() -> None:
    paths = [*PATHS, *(f"/srv/pool2/node{node}/drive{drive}" for node in range(5, 9) for drive in range(1, 5))]
    volumes = minio_volumes(deploy("dev", {"storage": {"pools": [{"nodes": 4, "drivesPerNode": 4}], "drivePaths": paths}}))
    assert volumes["minio-dev-minio5-data1"].inputs["driverOpts"]["device"] == "/srv/pool2/node5/drive1"
    assert volumes["minio-dev-minio8-data4"].inputs["driverOpts"]["device"] == "/srv/pool2/node8/drive4"


@pytest.mark.parametrize(
    ("paths", "words"),
    [
        (PATHS[:7], "7 paths for 8 drives: give one host directory per drive, minio1's first"),
        ([*PATHS[:7], "srv/disk4b"], "'srv/disk4b' is not an absolute path"),
        ([*PATHS[:7], PATHS[0]], f"'{PATHS[0]}' and '{PATHS[0]}' overlap"),
        ([*PATHS[:7], "/srv/disk1a/minio/inner"], "'/srv/disk1a/minio/inner' and '/srv/disk1a/minio' overlap"),
    ],
)
def test_bad_drive_paths_are_refused_naming_the_key(paths: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("dev", {"storage": {"drivePaths": paths}})
    (problem,) = raised.value.problems
    assert problem.startswith("storage.drivePaths: ") and words in problem


def test_moving_a_deployed_drive_is_refused_before_any_resource() -> None:
    deployed = deploy("dev").outputs
    with pytest.raises(Exception) as raised:
        deploy("dev", {"storage": {"drivePaths": PATHS}}, previous=deployed)
    message = str(raised.value)
    assert "storage.drivePaths: minio1's drive 1 is deployed under Docker's data root and would move on /srv/disk1a/minio" in message
    assert message.count("storage.drivePaths:") == 8
    assert pulumi_harness.last_monitor is not None and pulumi_harness.last_monitor.registrations == []
    # once on those directories, the same directories again: nothing to refuse
    on_disks = deploy("dev", {"storage": {"drivePaths": PATHS}}).outputs
    again = deploy("dev", {"storage": {"drivePaths": PATHS}}, previous=on_disks)
    assert again.outputs["drivePaths"] == on_disks["drivePaths"]


def test_a_stack_deployed_before_drive_paths_existed_counts_as_docker_volumes() -> None:
    deployed = {key: value for key, value in deploy("dev").outputs.items() if key != "drivePaths"}
    deploy("dev", previous=deployed)  # nothing moves
    with pytest.raises(Exception, match="minio2's drive 2 is deployed under Docker's data root"):
        deploy("dev", {"storage": {"drivePaths": PATHS}}, previous=deployed)


def test_allow_layout_change_lets_a_copied_drive_move() -> None:
    deployed = deploy("dev").outputs
    moved = deploy("dev", {"storage": {"drivePaths": PATHS, "allowLayoutChange": True}}, previous=deployed)
    assert any(w.startswith("storage.allowLayoutChange is set, so this goes ahead: storage.drivePaths: minio1's drive 1") for w in moved.warnings)
