"""`plan` lists what the program registers and exports under mocks, for every stack, and sizes the host by the preflight's rules."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from infra.inventory import CONTAINER, REMOTE_IMAGE, VOLUME
from infra.plan import Plan, plan, sizing_table
from infra.preflight import DATA_HEADROOM_GIB, IMAGE_DISK_ALLOWANCE_GIB, check_memory
from tests.conftest import ROOT
from tests.unit.pulumi_harness import Deployment, deploy

STACKS = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
MIB = 1024 * 1024
planned_once = functools.cache(plan)


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[Plan, Deployment]:
    name = str(request.param)
    return planned_once(name), deploy(name)


def test_every_shipped_stack_is_planned() -> None:
    assert {"dev", "staging", "prod"} <= set(STACKS)


def test_containers_images_and_memory_total_are_what_the_program_registers(stack: tuple[Plan, Deployment]) -> None:
    planned, deployment = stack
    images = {i.inputs["imageId"]: i.inputs["name"] for i in deployment.of_type(REMOTE_IMAGE)}
    registered = {c.inputs["name"]: c.inputs for c in deployment.of_type(CONTAINER)}
    listed = planned.as_dict()["containers"]
    assert {c["name"]: (c["image"], c["memoryMb"]) for c in listed} == {
        name: (images[i["image"]], int(i["memory"])) for name, i in registered.items()
    }
    assert planned.as_dict()["memoryMb"] == planned.sizing.memory_mb == sum(int(i["memory"]) for i in registered.values())


def test_published_ports_are_what_the_program_registers_each_with_its_setting(stack: tuple[Plan, Deployment]) -> None:
    planned, deployment = stack
    registered = {
        (p["ip"], int(p["external"]), c.inputs["name"], int(p["internal"]))
        for c in deployment.of_type(CONTAINER)
        for p in c.inputs.get("ports") or []
    }
    assert {(r.host_ip, r.host_port, r.container, r.container_port) for r in planned.ports} == registered
    assert all(r.setting.startswith("edge.") and r.serves for r in planned.ports), planned.ports


def test_volumes_and_whether_they_survive_a_destroy_are_what_the_program_registers(stack: tuple[Plan, Deployment]) -> None:
    planned, deployment = stack
    assert {(v["name"], v["survivesDestroy"]) for v in planned.as_dict()["volumes"]} == {
        (v.inputs["name"], v.retain_on_delete) for v in deployment.of_type(VOLUME)
    }
    mounted = {m["volumeName"]: c.inputs["name"] for c in deployment.of_type(CONTAINER) for m in c.inputs.get("volumes") or [] if m.get("volumeName")}
    assert {v["name"]: v["mountedBy"] for v in planned.as_dict()["volumes"]} == mounted


def test_layout_endpoints_and_credentials_are_the_programs_outputs(stack: tuple[Plan, Deployment]) -> None:
    planned, deployment = stack
    assert planned.layout == deployment.outputs["layout"]
    assert planned.endpoints == deployment.outputs["endpoints"]
    assert set(planned.credentials) == deployment.secret_outputs


def test_the_text_form_shows_every_container_port_volume_and_node_loss_row(stack: tuple[Plan, Deployment]) -> None:
    planned, _ = stack
    text = "\n".join(planned.lines())
    for container in planned.inventory.containers:
        assert container.name in text and container.image in text
    for route in planned.ports:
        assert f"{route.host_ip}:{route.host_port}" in text and f"-> {route.container}:{route.container_port}/" in text
    for volume in planned.inventory.volumes:
        assert volume.name in text
    assert f"limits add up to {planned.inventory.memory_mb} MiB" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit() and line.split()[-1] in ("yes", "no")]
    assert [(int(r[0]), r[1] == "yes", r[2] == "yes") for r in rows] == [
        (row["nodesDown"], row["reads"], row["writes"]) for row in planned.layout["nodeLoss"]
    ]


def test_prod_is_planned_with_its_missing_operator_inputs_named() -> None:
    planned = planned_once("prod")
    assert planned.inventory.assumed == ("edge.publicHost", "tlsCertificate", "tlsPrivateKey")
    assert "assumed: Pulumi.prod.yaml does not set edge.publicHost, tlsCertificate, tlsPrivateKey" in "\n".join(planned.lines())


def test_the_json_form_is_the_same_plan_without_docker_or_pulumi() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra", "plan", "--stack", "dev", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(planned_once("dev").as_dict()))


def test_the_sizing_follows_the_preflights_thresholds() -> None:
    sizing = planned_once("dev").sizing
    logs_gib = sum(c.log_ceiling_mb for c in planned_once("dev").inventory.containers) / 1024
    assert sizing.disk_floor_gib == pytest.approx(IMAGE_DISK_ALLOWANCE_GIB + logs_gib)
    assert sizing.disk_gib == pytest.approx(sizing.disk_floor_gib + DATA_HEADROOM_GIB)
    inventory = planned_once("dev").inventory
    # the recommended host memory is the least whole GiB on which the preflight has no memory warning
    assert check_memory({"MemTotal": sizing.host_memory_gib * 1024 * MIB}, inventory)[0].severity == "info"
    assert check_memory({"MemTotal": (sizing.host_memory_gib - 1) * 1024 * MIB}, inventory)[0].severity == "warning"


def test_the_readme_sizing_table_is_plans_figures() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    table = sizing_table([planned_once(stack) for stack in ("dev", "staging", "prod")])
    start = readme.index(table[0])
    assert readme[start : start + len(table)] == table, "rerun `scripts/infra sizing` and paste its table into README.md"
