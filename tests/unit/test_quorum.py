"""The erasure-coding model against FACTS.md's table and MinIO's set-size rules."""

from __future__ import annotations

import pytest

from infra.quorum import ErasureLayout, LayoutError


def table(layout: ErasureLayout) -> list[tuple[int, bool, bool]]:
    return [(row.nodes_down, row.reads, row.writes) for row in layout.node_loss_table()]


def test_4x1_uses_ec2_and_survives_one_node_for_writes_two_for_reads() -> None:
    layout = ErasureLayout.plan(4, 1)
    assert (layout.set_size, layout.parity, layout.read_quorum, layout.write_quorum) == (4, 2, 2, 3)
    assert table(layout) == [(0, True, True), (1, True, True), (2, True, False), (3, False, False), (4, False, False)]


def test_4x2_uses_ec4_and_survives_one_node_for_writes_two_for_reads() -> None:
    layout = ErasureLayout.plan(4, 2)
    assert (layout.set_size, layout.parity, layout.read_quorum, layout.write_quorum) == (8, 4, 4, 5)
    assert table(layout) == [(0, True, True), (1, True, True), (2, True, False), (3, False, False), (4, False, False)]


def test_usable_capacity_is_half_in_both_reference_layouts() -> None:
    assert ErasureLayout.plan(4, 1).usable_fraction == ErasureLayout.plan(4, 2).usable_fraction == 0.5


def test_8x1_keeps_writes_with_three_nodes_down_and_reads_with_four() -> None:
    layout = ErasureLayout.plan(8, 1)
    assert (layout.set_size, layout.parity, layout.write_quorum) == (8, 4, 5)
    assert layout.tolerated_node_loss(writes=True) == 3
    assert layout.tolerated_node_loss(writes=False) == 4


def test_6x2_with_explicit_parity_6_loses_writes_at_three_nodes_down() -> None:
    layout = ErasureLayout.plan(6, 2, parity=6)
    assert (layout.set_size, layout.read_quorum, layout.write_quorum) == (12, 6, 7)
    assert table(layout)[:5] == [(0, True, True), (1, True, True), (2, True, True), (3, True, False), (4, False, False)]


def test_6x2_with_parity_3_tolerates_only_one_node() -> None:
    # each node holds two drives of the single 12-drive set: two nodes down is four drives, past parity 3
    layout = ErasureLayout.plan(6, 2, parity=3)
    assert layout.tolerated_node_loss(writes=True) == layout.tolerated_node_loss(writes=False) == 1


def test_32_nodes_form_two_sets_and_only_the_set_that_loses_nodes_counts() -> None:
    layout = ErasureLayout.plan(32, 1)
    assert (layout.set_size, layout.set_count) == (16, 2)
    # nodes 1..16 hold the first set, 17..32 the second
    assert {node for node, _ in layout.erasure_sets()[0]} == set(range(1, 17))
    assert layout.with_nodes_down({1, 2, 3, 4, 5}).writes is False
    assert layout.with_nodes_down({1, 2, 17, 18}).writes is True


@pytest.mark.parametrize(
    ("nodes", "drives", "set_size"),
    [(2, 2, 4), (5, 1, 5), (7, 1, 7), (3, 4, 12), (4, 4, 16), (4, 8, 16), (16, 1, 16), (20, 1, 10)],
)
def test_set_size_is_the_largest_symmetric_divisor(nodes: int, drives: int, set_size: int) -> None:
    assert ErasureLayout.plan(nodes, drives).set_size == set_size


@pytest.mark.parametrize(("nodes", "drives"), [(3, 1), (1, 4), (17, 1), (2, 1)])
def test_layouts_minio_refuses_are_rejected(nodes: int, drives: int) -> None:
    with pytest.raises(LayoutError):
        ErasureLayout.plan(nodes, drives)


@pytest.mark.parametrize("parity", [0, 1, 5])
def test_parity_outside_2_to_half_the_set_is_rejected(parity: int) -> None:
    with pytest.raises(LayoutError, match="use 2 to 4"):
        ErasureLayout.plan(4, 2, parity=parity)


def test_every_valid_layout_degrades_monotonically() -> None:
    checked = 0
    for nodes in range(2, 33):
        for drives in range(1, 9):
            try:
                layout = ErasureLayout.plan(nodes, drives)
            except LayoutError:
                continue
            checked += 1
            assert layout.total_drives % layout.set_size == 0 and 4 <= layout.set_size <= 16
            rows = layout.node_loss_table()
            assert rows[0].reads and rows[0].writes and not rows[-1].reads
            for earlier, later in zip(rows, rows[1:]):
                assert earlier.reads >= later.reads and earlier.writes >= later.writes
                assert later.reads >= later.writes
    assert checked > 50
