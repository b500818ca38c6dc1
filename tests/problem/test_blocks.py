"""`backward_blocks`: which block's backward each backward node runs in."""

from __future__ import annotations

from checkpoint_solver.problem.blocks import backward_blocks

# Nodes: 0 a parameter (source), 1 h (block 1's forward, only block 1 reads it), 2 f1 (block 1's
# output), 3 f2 (block 2's forward), 4 the tangent (a root), 5 g2 = d f2 (reads f2: block 2's
# own), 6 m = g2 @ W (reads only the gradient and the parameter: the backward of block 1's last
# op), 7 g1 (reads h and m).
PREDS = [[], [0], [1, 0], [2, 0], [3], [4, 3], [5, 0], [6, 1]]
IS_OP = [False, True, True, True, True, True, True, True]
BACKWARD = [False, False, False, False, True, True, True, True]


def _blocks(sizes: list[int] | None) -> list[int]:
    labelled = [-1, 1, 1, 2, 0, 0, 0, 0]
    return backward_blocks(labelled, PREDS, IS_OP, BACKWARD, [4], None, 2, sizes)


def test_a_gradient_only_node_goes_with_the_block_that_reads_it() -> None:
    # Without sizes: the block of the gradient it reads (2), so its output waits through
    # block 1's recomputation.
    assert _blocks(None)[5:] == [2, 2, 1]
    # Its output (32) is larger than the gradient it reads (8): it runs in block 1, beside its
    # reader, as eager's per-block backward runs it.
    assert _blocks([0, 8, 8, 8, 4, 8, 32, 8])[5:] == [2, 1, 1]


def test_a_node_that_shrinks_its_gradient_stays_where_the_gradient_is() -> None:
    # Output (2) smaller than its input (8): moving it would hold the larger input instead.
    assert _blocks([0, 8, 8, 8, 4, 8, 2, 8])[5:] == [2, 2, 1]
