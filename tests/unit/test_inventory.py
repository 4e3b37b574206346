"""The inventory lists exactly what the program registers, for every shipped stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.inventory import Inventory, inventory
from tests.conftest import ROOT
from tests.unit.multi_host_stack import DRIVE_PATHS, HOSTS, MAIN_HOST_ADDRESS, on_hosts
from tests.unit.pulumi_harness import Deployment, Registration, deploy

STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
PROVIDER = "pulumi:providers:docker"


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[Inventory, Deployment]:
    name = str(request.param)
    return inventory(name), deploy(name)


def containers(deployment: Deployment) -> dict[str, dict[str, Any]]:
    return {c.inputs["name"]: c.inputs for c in deployment.of_type(CONTAINER)}


def test_the_shipped_stacks_are_all_covered() -> None:
    assert {"dev", "staging", "prod"} <= set(STACKS)


def test_containers_and_their_memory_are_what_the_program_registers(stack: tuple[Inventory, Deployment]) -> None:
    listed, deployment = stack
    registered = containers(deployment)
    assert {c.name: c.memory_mb for c in listed.containers} == {name: int(i["memory"]) for name, i in registered.items()}
    assert listed.memory_mb == sum(int(i["memory"]) for i in registered.values())


def test_each_container_names_the_image_reference_the_program_pulls(stack: tuple[Inventory, Deployment]) -> None:
    listed, deployment = stack
    reference = {i.inputs["imageId"]: i.inputs["name"] for i in deployment.of_type(REMOTE_IMAGE)}
    assert {c.name: c.image for c in listed.containers} == {n: reference[i["image"]] for n, i in containers(deployment).items()}
    assert {(i.reference, i.built) for i in listed.images} == {
        (i.inputs["name"], "build" in i.inputs) for i in deployment.of_type(REMOTE_IMAGE)
    }


def test_published_ports_and_networks_with_fixed_addresses_are_what_the_program_registers(stack: tuple[Inventory, Deployment]) -> None:
    listed, deployment = stack
    for name, inputs in containers(deployment).items():
        entry = next(c for c in listed.containers if c.name == name)
        assert {(p.host_ip, p.external, p.internal) for p in entry.ports} == {
            (p["ip"], int(p["external"]), int(p["internal"])) for p in inputs.get("ports") or []
        }
        assert {(a.network, a.ipv4_address) for a in entry.networks} == {
            (a["name"], a.get("ipv4Address")) for a in inputs["networksAdvanced"]
        }
    assert {(n.name, n.subnet) for n in listed.networks} == {
        (n.inputs["name"], n.inputs["ipamConfigs"][0]["subnet"]) for n in deployment.of_type(NETWORK)
    }


def test_volumes_and_whether_a_destroy_keeps_them_are_what_the_program_registers(stack: tuple[Inventory, Deployment]) -> None:
    listed, deployment = stack
    assert {(v.name, v.retained) for v in listed.volumes} == {(v.inputs["name"], v.retain_on_delete) for v in deployment.of_type(VOLUME)}
    assert any(v.retained for v in listed.volumes) == (listed.stack == "prod"), "prod keeps its data on destroy"


def test_prod_without_operator_inputs_is_listed_with_throwaway_values_named_as_assumed() -> None:
    assert inventory("prod").assumed == ("edge.publicHost", "tlsCertificate", "tlsPrivateKey")
    assert inventory("dev").assumed == ()


def test_the_inventory_follows_the_stack_file_and_stands_in_for_encrypted_secrets(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    config = document["config"]
    config["minio-platform:storage"] = {**config["minio-platform:storage"], "nodes": 6, "drivesPerNode": 1}
    config["minio-platform:edge"] = {"publicHost": "storage.example.com"}
    # what `pulumi config set --secret` writes; nothing offline can decrypt it
    for key in ("tlsCertificate", "tlsPrivateKey", "minioRootPassword"):
        config[f"minio-platform:{key}"] = {"secure": "v1:AAAAAAAAAAAAAAAA:BBBBBBBB"}
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(document))
    listed = inventory("prod", stack_file)
    assert listed.assumed == ()
    assert sorted(c.name for c in listed.containers if "-minio" in c.name) == [f"minio-prod-minio{i}" for i in range(1, 7)]
    assert len([v for v in listed.volumes if "-minio" in v.name]) == 6


def test_each_entry_is_on_the_docker_host_its_provider_points_at(tmp_path: Path) -> None:
    listed = inventory("dev", on_hosts(tmp_path))
    deployment = deploy("dev", {"storage": {"hosts": HOSTS, "mainHostAddress": MAIN_HOST_ADDRESS, "drivePaths": DRIVE_PATHS}})
    providers = {p.urn: p.inputs["host"] for p in deployment.of_type(PROVIDER)}

    def host(r: Registration) -> str | None:
        return providers[r.provider.rsplit("::", 1)[0]] if r.provider else None

    assert {(c.name, c.host) for c in listed.containers} == {(r.inputs["name"], host(r)) for r in deployment.of_type(CONTAINER)}
    assert {(v.name, v.host) for v in listed.volumes} == {(r.inputs["name"], host(r)) for r in deployment.of_type(VOLUME)}
    assert {(n.name, n.host) for n in listed.networks} == {(r.inputs["name"], host(r)) for r in deployment.of_type(NETWORK)}
    assert {(i.reference, i.host) for i in listed.images} == {(r.inputs["name"], host(r)) for r in deployment.of_type(REMOTE_IMAGE)}
    assert set(listed.hosts) == {h["dockerHost"] for h in HOSTS}
    assert {c.host for c in listed.containers if c.service == "minio"} == set(listed.hosts)
    # on one host, everything is on the stack's own
    assert inventory("dev").hosts == ()
