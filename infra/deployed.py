"""The stack as its last update left it: its own outputs, read through the engine before any resource.

Three decisions need the previous deployment: an update must not reshape a server pool that holds
data (MinIO reads a pool's erasure sets from its drives), must not move a deployed drive or node
(its volume would be replaced, or left on the old host, and the data left behind), and must say so
before it replaces every MinIO node.
Each compares the stack's previous outputs with what this run would deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.config import StackConfig
from infra.quorum import ClusterLayout
from infra.hosts import node_hosts_output
from infra.storage import node_name, stack_server_command

# the engine's builtin provider answers this from the backend's latest checkpoint of the named stack
# (pulumi/pulumi pkg/resource/deploy/builtins.go `readStackReference`: `outputs` is empty before the
# first update); the root stack resource keeps its previous outputs until the program ends and
# registers new ones, so reading our own stack at the start sees the last update's outputs
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


def own_stack_name() -> str:
    """organization/project/stack: the name a stack reference to this stack takes (the local backend's org is 'organization')."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def previous_outputs() -> dict[str, Any] | None:
    """The outputs of this stack's last update, {} before its first one; None when the backend cannot say."""
    try:
        result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": own_stack_name()})
    except Exception as error:  # noqa: BLE001 - any engine or backend failure means "unknown"
        pulumi.log.warn(f"the stack's previous outputs could not be read ({error}): its deployed pools are not checked")
        return None
    return dict((result.value or {}).get("outputs") or {})


@dataclass(frozen=True)
class DeployedComparison:
    """What this update would do to the MinIO cluster the stack last deployed."""

    refusals: list[str]
    notices: list[str]


def compare_with_deployed(config: StackConfig, previous: dict[str, Any] | None) -> DeployedComparison:
    """Refusals (a deployed pool would change or go) and notices (every node will be replaced, and why)."""
    if not previous or "layout" not in previous:
        return DeployedComparison([], [])
    layout = config.storage.layout()
    refusals = [f"storage.pools: {problem}" for problem in layout.changes_from(previous["layout"])]
    refusals += [f"storage.drivePaths: {problem}" for problem in moved_drives(config, previous)]
    refusals += [f"storage.hosts: {problem}" for problem in moved_nodes(config, previous)]
    if refusals and config.storage.allow_layout_change:
        notices = [f"storage.allowLayoutChange is set, so this goes ahead: {problem}" for problem in refusals]
        refusals = []
    else:
        notices = []
    notices += node_replacements(config, layout, previous)
    return DeployedComparison(refusals, notices)


def drive_placement(config: StackConfig) -> dict[str, list[str | None]]:
    """Where each node's drives live: a host directory, or None for a volume under Docker's data root."""
    storage = config.storage
    return {
        node_name(index): [storage.drive_path(index, drive) for drive in range(1, drive_count + 1)]
        for index, drive_count in storage.layout().node_drives()
    }


def was_deployed(node: str, recorded: dict[str, Any], previous: dict[str, Any]) -> bool:
    """Whether the last update deployed `node`: named in the output that `recorded` is, or among its containers
    (an output newer than that update records nothing of it); a node this update adds was not."""
    return node in recorded or node in previous.get("containers", {})


def moved_drives(config: StackConfig, previous: dict[str, Any]) -> list[str]:
    """Deployed drives whose volume would change place: the volume is replaced, and its data stays behind."""
    # a stack deployed before drivePaths existed keeps every drive in a volume Docker manages
    deployed = previous.get("drivePaths") or {}
    now = drive_placement(config)
    problems = []
    for node, placements in now.items():
        if not was_deployed(node, deployed, previous):
            continue
        for drive, placement in enumerate(placements, start=1):
            old_places = deployed.get(node) or []
            old = old_places[drive - 1] if drive <= len(old_places) else None
            if old != placement:
                problems.append(
                    f"{node}'s drive {drive} is deployed {describe_place(old)} and would move {describe_place(placement)}: "
                    "its volume would be replaced and the data left behind (a volume under Docker's data root is deleted "
                    "with it); copy the data over with the node stopped, then set storage.allowLayoutChange for that update"
                )
    return problems


def moved_nodes(config: StackConfig, previous: dict[str, Any]) -> list[str]:
    """Deployed nodes that would run on another Docker host: their drives stay on the old one."""
    # a stack deployed before storage.hosts existed runs every node on its own host
    deployed = previous.get("nodeHosts") or {}
    problems = []
    for node, host in node_hosts_output(config).items():
        if not was_deployed(node, deployed, previous):
            continue
        old = deployed.get(node)
        old_endpoint, new_endpoint = (old or {}).get("dockerHost"), (host or {}).get("dockerHost")
        if old_endpoint != new_endpoint:
            problems.append(
                f"{node} is deployed {describe_host(old_endpoint)} and would move {describe_host(new_endpoint)}: its "
                "drives stay behind and it would start empty; move the data with the node stopped (or let MinIO heal "
                "one node at a time), then set storage.allowLayoutChange for that update"
            )
    return problems


def describe_host(endpoint: str | None) -> str:
    return f"on {endpoint}" if endpoint else "on the stack's own Docker host"


def describe_place(path: str | None) -> str:
    return f"on {path}" if path else "under Docker's data root"


def node_replacements(config: StackConfig, layout: ClusterLayout, previous: dict[str, Any]) -> list[str]:
    """Why every MinIO node container is replaced by this update, if it is (image or server command)."""
    reasons = []
    deployed_image = previous.get("minioImage")
    if deployed_image and deployed_image != config.storage.image:
        reasons.append(f"the MinIO image changes from {deployed_image} to {config.storage.image}")
    deployed_command = previous.get("minioCommand")
    if deployed_command and list(deployed_command) != stack_server_command(config):
        added = len(layout.pools) - len(previous.get("layout", {}).get("pools") or [None])
        reasons.append(f"the server command changes ({added} pool(s) added)" if added > 0 else "the server command changes")
    if not reasons:
        return []
    return [
        f"{' and '.join(reasons)}: every MinIO node (minio1..{layout.total_nodes}) is replaced in this update, all at "
        "once, so the S3 API is unavailable until the new nodes have started and formed quorum again (see the "
        "README, 'Upgrades'); scripts/deploy exports the configuration before it and runs the smoke tests after"
    ]
