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


def test_a_node_of_no_activation_bytes_stays_where_its_gradient_is() -> None:
    # A parameter-gradient sum (0 activation bytes: it is model-state memory) reading only
    # gradients: moving it to its reader's block would keep every contribution it sums live
    # until then (an unrolled RNN's weight summed at the end of the backward).
    assert _blocks([0, 8, 8, 8, 4, 8, 0, 8])[5:] == [2, 2, 1]
    assert _blocks([0, 8, 8, 8, 4, 0, 0, 8])[5:] == [2, 2, 1]


def test_a_node_reading_a_value_made_before_its_block_goes_with_that_blocks_forward() -> None:
    # A U-Net up block: 1 h (block 1's), 2 c = cat(skip, h), made in block 1 (between the blocks)
    # and read only by block 2's forward (3: the block's conv); block 3 (4) reads 3; 5 the
    # tangent. Backward: 6 g3 = d(block 3), 7 the conv's backward (reads g3 and c: c is local to
    # no block, and the gradient comes from block 3), 8 g1 (reads 7 and h). Node 7
    # differentiates block 2's conv (the one block whose forward reads c), so it is block 2's,
    # not block 3's, where its output would wait through block 2's recomputation.
    preds = [[], [0], [1], [2, 0], [3, 0], [4], [5, 4], [6, 2, 0], [7, 1]]
    is_op = [False] + [True] * 8
    backward = [False] * 5 + [True] * 4
    labelled = [-1, 1, 1, 2, 3, 0, 0, 0, 0]
    got = backward_blocks(labelled, preds, is_op, backward, [5], None, 3)
    assert got[5:] == [3, 3, 2, 1]


def test_a_value_many_blocks_read_does_not_move_a_node() -> None:
    # A mask made before the blocks (1) that blocks 1 and 2 both read (2, 3): 6 reads the mask
    # and block 2's gradient; the latest block reading the mask no later than 2 is 2 itself.
    preds = [[], [0], [1, 0], [2, 1], [3], [4, 3], [5, 1], [6, 2]]
    labelled = [-1, 0, 1, 2, 0, 0, 0, 0]
    got = backward_blocks(labelled, preds, IS_OP, BACKWARD, [4], None, 2)
    assert got[5:7] == [2, 2]
