"""Which block of a chain of blocks each backward node of a training graph belongs to, from the
data flow: shared by the op-level capture (`checkpoint_solver.profiling.region`) and the
segments `hierarchical` cuts from a graph without blocks (`checkpoint_solver.solvers._segments`).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["backward_blocks"]


def backward_blocks(
    blocks: list[int],
    preds: Sequence[Sequence[int]],
    is_op: Sequence[bool],
    backward: Sequence[bool],
    roots: Sequence[int],
    sink: int | None,
    n_blocks: int,
    sizes: Sequence[int] | None = None,
) -> list[int]:
    """Fill in the blocks of the backward nodes of `blocks` (forward nodes already labelled,
    1-based; sources -1), in place, and return it.

    A backward node on the gradient path (a root, i.e. a tangent, or a node reading one) runs no
    later than the block of the gradients it reads (``g``, the smallest of their blocks: the
    backward reaches blocks in decreasing order) and belongs to the block whose own forward values
    it reads (``f``: the ops it differentiates), so it is in block ``min(g, f)``. When every
    forward value it reads is read by other blocks too, ``f`` is the latest block no later than
    ``g`` whose forward reads them all: a U-Net up block's shortcut conv reads the skip
    concatenated between the blocks, so its backward is that block's, not the next one's where
    the gradient comes from; a rotary table or a mask read by every block leaves it at ``g``. A node off the gradient path (a constant, a mask's expansion) goes with its first
    reader. Hooks on the blocks' inputs cannot say this: a tensor read by many blocks (a U-Net's
    skip, a time embedding) gets its full gradient only at the end, which would put many blocks'
    backward nodes in one late block.

    With `sizes` (each node's output bytes), a node on the gradient path that reads none of its
    own block's forward values (``grad @ W`` of a linear, ``grad * gamma`` of a layer scale)
    moves to the latest block among its readers when its output is at least as large as the
    gradients it reads (and not empty): it is the backward of an earlier block's op (its readers say which),
    and in the later block its output would wait through the earlier block's recomputation, as
    eager's per-block backward never holds it (ConvNeXt's MLP: a hidden-sized gradient held
    across each block's rerun, 14 % of the peak).
    """
    size = len(blocks)
    succs: list[list[int]] = [[] for _ in range(size)]
    for v in range(size):
        for u in preds[v]:
            succs[u].append(v)
    # Forward values no other block's forward reads: what a block's backward alone needs.
    local = [
        is_op[u]
        and not backward[u]
        and all(backward[w] or blocks[w] == blocks[u] for w in succs[u] if is_op[w])
        for u in range(size)
    ]
    on_path = [False] * size
    for r in roots:
        on_path[r] = True
        own = [blocks[u] for u in preds[r] if local[u]]
        blocks[r] = min(n_blocks + 1, max(own)) if own else n_blocks + 1
    free = []
    movable = []  # on the path, reading no forward values at all (gradients and parameters)
    for v in range(size):  # the numbering is topological
        if not (is_op[v] and backward[v]) or on_path[v] or v == sink:
            continue
        grads = [blocks[u] for u in preds[v] if on_path[u]]
        if not grads:
            free.append(v)
            continue
        on_path[v] = True
        own = [blocks[u] for u in preds[v] if local[u]]
        g = min(grads)
        if own:
            blocks[v] = min(g, max(own))
        else:
            blocks[v] = min(g, _readers_block(v, g, preds, succs, is_op, backward, blocks))
        if not any(is_op[u] and not backward[u] for u in preds[v]):
            movable.append(v)
    if sizes is not None:
        for v in reversed(movable):  # readers first: their blocks are final
            readers = [blocks[w] for w in succs[v] if w != sink and backward[w] and is_op[w]]
            grads_in = sum(sizes[u] for u in preds[v] if on_path[u])
            # A node of no activation bytes holds nothing across a rerun, so it stays: the sums
            # of a shared weight's gradient are parameter-gradient memory (0 bytes here), and
            # moved along their chain to the last one they would keep every use's
            # contribution live until the end of the backward (an unrolled RNN's step
            # measured 2.2x its whole-step prediction).
            if readers and max(readers) < blocks[v] and 0 < sizes[v] and grads_in <= sizes[v]:
                blocks[v] = max(readers)
    for v in reversed(free):
        readers = [blocks[w] for w in succs[v] if w != sink]
        blocks[v] = max(readers) if readers else n_blocks + 1
    if sink is not None:
        blocks[sink] = 0
    return blocks


def _readers_block(
    v: int,
    g: int,
    preds: Sequence[Sequence[int]],
    succs: Sequence[Sequence[int]],
    is_op: Sequence[bool],
    backward: Sequence[bool],
    blocks: Sequence[int],
) -> int:
    """The latest block no later than `g` whose forward reads every forward value `v` reads:
    where the op `v` differentiates runs (a U-Net up block's shortcut conv reads the skip
    concatenated before the block). `g` when `v` reads no forward values or no block reads
    them all."""
    common: set[int] | None = None
    for u in preds[v]:
        if not is_op[u] or backward[u]:
            continue
        mine = {blocks[w] for w in succs[u] if is_op[w] and not backward[w]}
        common = mine if common is None else common & mine
    below = [b for b in common or () if b <= g]
    return max(below) if below else g
