"""The README's diagram of tiers and networks is the program's: each container in its tier, on exactly its networks."""

from __future__ import annotations

import re

from infra.inventory import CONTAINER, NETWORK
from tests.conftest import ROOT
from tests.unit.pulumi_harness import Deployment, deploy

MERMAID = re.compile(r"^```mermaid\n(.*?)^```", re.S | re.M)
SUBGRAPH = re.compile(r"^\s*subgraph (\w+)_tier \[[^\]]*\]\n(.*?)^\s*end$", re.S | re.M)
NODE = re.compile(r"^\s*(\w+)", re.M)
EDGE = re.compile(r"^\s*(\w+) --- (\w+)_net$", re.M)


def diagram() -> str:
    [text] = MERMAID.findall((ROOT / "README.md").read_text())
    return text


def short(docker_name: str, deployment: Deployment) -> str:
    """'minio-dev-minio3' -> 'minio' (the diagram draws the nodes as one), 'minio-dev-edge-proxy' -> 'edge_proxy'."""
    name = docker_name.removeprefix(f"{deployment.outputs['name']}-")
    return "minio" if re.fullmatch(r"minio\d+", name) else name.replace("-", "_")


def tier_of(urn: str, deployment: Deployment) -> str:
    """The name of the top-level component (tier) a resource belongs to."""
    by_urn = {r.urn: r for r in deployment.resources}
    registration = by_urn[urn]
    while registration.parent in by_urn:
        registration = by_urn[registration.parent]
    return registration.name


def test_every_container_is_drawn_in_its_tier_on_exactly_its_networks() -> None:
    deployment = deploy("dev")
    networks = {n.inputs["name"]: n.name.removesuffix("-net") for n in deployment.of_type(NETWORK)}
    drawn_edges = set(EDGE.findall(diagram()))
    drawn_tiers = {node: tier for tier, body in SUBGRAPH.findall(diagram()) for node in NODE.findall(body)}
    program_edges = {
        (short(c.inputs["name"], deployment), networks[a["name"]])
        for c in deployment.of_type(CONTAINER)
        for a in c.inputs["networksAdvanced"]
    }
    program_tiers = {short(c.inputs["name"], deployment): tier_of(c.urn, deployment) for c in deployment.of_type(CONTAINER)}
    assert drawn_edges == program_edges
    assert drawn_tiers == program_tiers
