"""The README's membership table is the program's: every container joins exactly the segments listed."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.unit.pulumi_harness import deploy

SEGMENT_COLUMNS = ("edge-net", "storage-net", "monitoring-net", "database-net")
CONTAINER = "docker:index/container:Container"
# the offsite mirror exists only with `replication` set: the stacks are checked with it, so every row of the table is
REPLICATION = {"replication": {"target": "https://s3.offsite.example.com"}}
TARGET_SECRETS = {"replicationTargetAccessKey": "offsite-access-key", "replicationTargetSecretKey": "offsite-secret-key"}


def readme_membership() -> dict[str, set[str]]:
    """Rows of the table under '### Membership' in README.md: container -> segments marked 'x'."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Membership", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[0] == "container" and tuple(header[1:5]) == SEGMENT_COLUMNS, header
    table = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        table[cells[0].strip("`")] = {SEGMENT_COLUMNS[i] for i, cell in enumerate(cells[1:5]) if cell == "x"}
    return table


def expand(table: dict[str, set[str]], nodes: int) -> dict[str, set[str]]:
    expanded = {}
    for name, segments in table.items():
        ranged = re.fullmatch(r"(\w+?)1\.\.\1N", name)
        names = [f"{ranged[1]}{i}" for i in range(1, nodes + 1)] if ranged else [name]
        expanded.update({n: segments for n in names})
    return expanded


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_container_joins_exactly_the_segments_the_readme_lists(stack: str) -> None:
    deployment = deploy(stack, overrides=REPLICATION, secrets=TARGET_SECRETS)
    prefix = deployment.outputs["name"]
    expected = expand(readme_membership(), deployment.outputs["layout"]["nodes"])
    actual = {
        name: {network.removeprefix(f"{prefix}-") for network in described["networks"]}
        for name, described in deployment.outputs["containers"].items()
    }
    assert actual == expected


def test_only_the_edge_proxy_publishes_ports_and_only_the_offsite_mirror_shares_its_network() -> None:
    # edge-net is the one segment with a route out: the mirror needs one to reach its target
    assert [name for name, segments in readme_membership().items() if "edge-net" in segments] == ["edge-proxy", "mirror"]
    deployment = deploy("dev", overrides=REPLICATION, secrets=TARGET_SECRETS)
    assert [container.name for container in deployment.of_type(CONTAINER) if container.inputs.get("ports")] == ["edge-proxy"]


def test_the_served_certificate_is_exported_in_the_clear_for_clients_to_trust() -> None:
    deployment = deploy("dev")
    assert deployment.outputs["tlsCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "tlsCertificate" not in deployment.secret_outputs
