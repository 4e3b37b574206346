"""MinIO's erasure-coding arithmetic: which erasure sets a layout forms and what survives node loss.

The set size follows MinIO's own choice for a single pool (cmd/endpoint-ellipses.go): among the
supported sizes 4..16 that divide the drive count and are symmetric with the node count, the
largest. Drives are ordered drive-major with the node varying fastest, and sets are contiguous
runs of that order, so each set spreads over as many nodes as it can.

A cluster grows by server pools: each pool is one argument of the server command and picks its
own set size the same way, while the storage-class parity is one value for every pool: the
configured one, or the default for the first pool's set size, and it must fit each pool's sets
(cmd/erasure-server-pool.go `newErasureServerPools`, storageclass `ValidateParity`). An existing
pool never changes: its erasure sets are written into every drive's format.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPORTED_SET_SIZES = range(4, 17)


class LayoutError(ValueError):
    """A node and drive count MinIO would refuse to start with."""


def default_parity(set_size: int) -> int:
    """MinIO's default parity (storage class STANDARD) for an erasure set of this size."""
    if set_size <= 5:
        return 2
    if set_size <= 7:
        return 3
    return 4


def choose_set_size(nodes: int, drives_per_node: int) -> int:
    total = nodes * drives_per_node
    candidates = [
        size
        for size in SUPPORTED_SET_SIZES
        if total % size == 0 and (size % nodes == 0 if size >= nodes else nodes % size == 0)
    ]
    if not candidates:
        raise LayoutError(
            f"{nodes} nodes x {drives_per_node} drives = {total} drives cannot be split into "
            f"erasure sets of 4 to 16 drives spread evenly over the nodes "
            f"(layouts that work: 4x1, 4x2, 4x4, 8x1, 6x2, 16x1)"
        )
    return max(candidates)


@dataclass(frozen=True)
class NodeLossExpectation:
    """What MinIO should still do with nodes 1..nodes_down stopped."""

    nodes_down: int
    reads: bool
    writes: bool

    def as_dict(self) -> dict[str, Any]:
        return {"nodesDown": self.nodes_down, "reads": self.reads, "writes": self.writes}


@dataclass(frozen=True)
class ErasureLayout:
    nodes: int
    drives_per_node: int
    set_size: int
    parity: int

    @classmethod
    def plan(cls, nodes: int, drives_per_node: int, parity: int | None = None) -> ErasureLayout:
        if nodes < 2:
            raise LayoutError(f"{nodes} node(s): this bundle deploys distributed MinIO, use 2 or more")
        if drives_per_node < 1:
            raise LayoutError(f"{drives_per_node} drives per node: use 1 or more")
        set_size = choose_set_size(nodes, drives_per_node)
        if parity is None:
            parity = default_parity(set_size)
        elif not 2 <= parity <= set_size // 2:
            raise LayoutError(
                f"parity EC:{parity} is not allowed for an erasure set of {set_size} drives: "
                f"use 2 to {set_size // 2}"
            )
        return cls(nodes, drives_per_node, set_size, parity)

    @property
    def total_drives(self) -> int:
        return self.nodes * self.drives_per_node

    @property
    def set_count(self) -> int:
        return self.total_drives // self.set_size

    @property
    def read_quorum(self) -> int:
        return self.set_size - self.parity

    @property
    def write_quorum(self) -> int:
        # with parity at exactly half the set, a tie would allow split-brain writes
        return self.read_quorum + (1 if self.parity * 2 == self.set_size else 0)

    @property
    def usable_fraction(self) -> float:
        return self.read_quorum / self.set_size

    def erasure_sets(self) -> list[list[tuple[int, int]]]:
        """Each set as (node, drive) pairs, both 1-based, in MinIO's order."""
        order = [
            (index % self.nodes + 1, index // self.nodes + 1) for index in range(self.total_drives)
        ]
        return [order[start : start + self.set_size] for start in range(0, self.total_drives, self.set_size)]

    def with_nodes_down(self, down: set[int]) -> NodeLossExpectation:
        """Expectation with the given 1-based nodes stopped: every set must keep its quorum."""
        online = [sum(1 for node, _ in erasure_set if node not in down) for erasure_set in self.erasure_sets()]
        return NodeLossExpectation(
            nodes_down=len(down),
            reads=all(count >= self.read_quorum for count in online),
            writes=all(count >= self.write_quorum for count in online),
        )

    def node_loss_table(self) -> list[NodeLossExpectation]:
        """For k = 0..nodes, the expectation with nodes 1..k stopped (what the smoke tests stop)."""
        return [self.with_nodes_down(set(range(1, k + 1))) for k in range(self.nodes + 1)]

    def tolerated_node_loss(self, *, writes: bool) -> int:
        """How many nodes (1..k) can be down while reads, or writes, still work."""
        return max(row.nodes_down for row in self.node_loss_table() if (row.writes if writes else row.reads))

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "drivesPerNode": self.drives_per_node,
            "totalDrives": self.total_drives,
            "setSize": self.set_size,
            "setCount": self.set_count,
            "parity": self.parity,
            "readQuorum": self.read_quorum,
            "writeQuorum": self.write_quorum,
            "usableFraction": self.usable_fraction,
            "nodeLoss": [row.as_dict() for row in self.node_loss_table()],
        }


@dataclass(frozen=True)
class Pool:
    """One server pool: its erasure layout and the 1-based number of its first node."""

    first_node: int
    layout: ErasureLayout

    @property
    def nodes(self) -> range:
        return range(self.first_node, self.first_node + self.layout.nodes)

    def signature(self) -> dict[str, int]:
        """What must never change once the pool holds data."""
        layout = self.layout
        return {
            "firstNode": self.first_node,
            "nodes": layout.nodes,
            "drivesPerNode": layout.drives_per_node,
            "setSize": layout.set_size,
            "parity": layout.parity,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"firstNode": self.first_node, "lastNode": self.nodes[-1], **self.layout.as_dict()}


@dataclass(frozen=True)
class ClusterLayout:
    """Every pool of the cluster, in the order of the server command; the first is the original one."""

    pools: tuple[Pool, ...]

    @classmethod
    def plan(cls, shapes: list[tuple[int, int]], parity: int | None = None) -> ClusterLayout:
        """Pools of (nodes, drives per node), numbered on from the first; one parity for all of them."""
        first_nodes, drives = shapes[0]
        first = ErasureLayout.plan(first_nodes, drives, parity)
        pools, next_node = [Pool(1, first)], first_nodes + 1
        for index, (nodes, drives_per_node) in enumerate(shapes[1:], start=2):
            try:
                layout = ErasureLayout.plan(nodes, drives_per_node, first.parity)
            except LayoutError as error:
                raise LayoutError(f"pool {index}: {error} (the parity of every pool is the first pool's)") from None
            pools.append(Pool(next_node, layout))
            next_node += nodes
        return cls(tuple(pools))

    @property
    def first(self) -> ErasureLayout:
        return self.pools[0].layout

    @property
    def total_nodes(self) -> int:
        return sum(pool.layout.nodes for pool in self.pools)

    def node_drives(self) -> list[tuple[int, int]]:
        """(node, drives of that node) for every node of every pool, in node order: minio1 first."""
        return [(node, pool.layout.drives_per_node) for pool in self.pools for node in pool.nodes]

    def as_dict(self) -> dict[str, Any]:
        """The first pool's figures at the top (what the smoke suite's failover stops nodes of), then every pool."""
        return {**self.first.as_dict(), "totalNodes": self.total_nodes, "pools": [pool.as_dict() for pool in self.pools]}

    def changes_from(self, deployed: Any) -> list[str]:
        """Why this layout cannot replace `deployed` (a previous `layout` output), one line per pool; none if it can.

        Pools may only be added after the deployed ones: MinIO reads an existing pool's erasure sets
        from its drives, so a changed node count, drive count or parity leaves its data unreadable, and
        a pool leaves the command only after `mc admin decommission` has emptied it.
        """
        previous = deployed_pools(deployed)
        problems = []
        for index, old in enumerate(previous, start=1):
            if index > len(self.pools):
                problems.append(
                    f"pool {index} ({describe_signature(old)}) is deployed and would be removed: decommission it first "
                    "(mc admin decommission start), then set storage.allowLayoutChange to remove it"
                )
                continue
            new = self.pools[index - 1].signature()
            if new != old:
                problems.append(
                    f"pool {index} is deployed as {describe_signature(old)} and would become {describe_signature(new)}: "
                    "MinIO cannot reshape an existing pool (its data would be unreadable); keep it as it is and add "
                    "capacity as a new pool under storage.pools"
                )
        return problems


def describe_signature(signature: dict[str, int]) -> str:
    last = signature["firstNode"] + signature["nodes"] - 1
    return (
        f"minio{signature['firstNode']}..{last}, {signature['nodes']} nodes x {signature['drivesPerNode']} drives, "
        f"sets of {signature['setSize']}, parity EC:{signature['parity']}"
    )


def deployed_pools(deployed: Any) -> list[dict[str, int]]:
    """The pool signatures of a previous `layout` output; its one pool when it predates pools."""
    if not isinstance(deployed, dict):
        return []
    pools = deployed.get("pools") or [{"firstNode": 1, **deployed}]
    keys = ("firstNode", "nodes", "drivesPerNode", "setSize", "parity")
    return [{key: int(pool[key]) for key in keys} for pool in pools if all(key in pool for key in keys)]
