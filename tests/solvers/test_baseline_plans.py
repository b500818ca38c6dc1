"""torch's checkpointing rules as chain schedules (priced by the simulator, compared with measured
runs in tests/runtime/test_compare.py)."""

from __future__ import annotations

import pytest

import checkpoint_solver as cs
from checkpoint_solver.problem.synthetic import transformer_chain, uniform_chain
from checkpoint_solver.solvers.baseline_plans import (
    profile_blocks,
    torch_per_block,
    torch_sequential,
)


@pytest.mark.parametrize("segments", [1, 2, 3, 4, 12])
def test_sequential_valid_and_priced(segments: int) -> None:
    chain = transformer_chain(10)  # prologue + 12 blocks + epilogue
    first, count = 2, chain.length - 2
    sched = torch_sequential(chain, segments, first, count)
    report = cs.check(chain, sched)
    assert report.peak_bytes == sched.predicted.peak_bytes == sched.budget_bytes
    size = count // segments
    checkpointed = list(range(first, first + size * (segments - 1)))
    taped = [op.stage for op in sched.ops if str(op).startswith("F_all")]
    untaped = [op.stage for op in sched.ops if str(op).startswith(("F_n", "F_ck"))]
    assert sorted(taped) == list(range(1, chain.length + 1))  # each stage's tape built once
    assert untaped == checkpointed  # checkpointed blocks also run once without a tape
    if segments == 1:  # nothing checkpointed: the store-all schedule's time
        assert sched.predicted.overhead == pytest.approx(0.0)


def test_per_block_recomputes_every_block_once() -> None:
    chain = transformer_chain(4)  # prologue + blocks 2..L-1 + epilogue
    sched = torch_per_block(chain, 2, chain.length - 2)
    assert cs.check(chain, sched).valid
    blocks_forward = sum(chain.uf[1:-1])
    assert sched.predicted.overhead == pytest.approx(blocks_forward / chain.store_all_time)
    assert sched.predicted.peak_bytes < cs.solve(chain, 10**15, "store_all").predicted.peak_bytes


def test_bad_ranges() -> None:
    chain = uniform_chain(4)
    with pytest.raises(cs.InvalidOptionError, match="segments=5 is not valid for 4 blocks"):
        torch_sequential(chain, 5)
    with pytest.raises(cs.InvalidOptionError, match="not stages of a 4-stage chain"):
        torch_per_block(chain, 3, 4)
    assert profile_blocks(["blocks.0", "epilogue+loss"]) == (1, 1)
