"""The chain executor: replayed schedules give plain autograd's loss, gradients and BatchNorm
statistics bitwise, run exactly the schedule's ops, and stay within the predicted peak."""

from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import models  # noqa: E402
from checkpoint_solver.runtime import ReplayPlan  # noqa: E402
from checkpoint_solver.runtime.executor import apply, is_applied, last_trace, remove  # noqa: E402
from checkpoint_solver.runtime.measure import measure_step, train_step  # noqa: E402
from checkpoint_solver.schedule.ops import FreeActivation, parse_op  # noqa: E402

SOLVERS = ("dp", "revolve", "sqrt", "uniform")
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _hf_gpt2() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    pytest.importorskip("transformers")
    return models.hf_gpt2(layers=3, dim=64, heads=4, context=32, vocab=300, batch=2)


BUILDERS = {
    "mlp": lambda: models.mlp(depth=4, width=32, hidden=64, batch=8),
    "resnet": lambda: models.resnet(widths=(8, 16), blocks_per_stage=2, image=12, batch=4),
    "gpt": lambda: models.gpt(layers=4, dim=32, heads=4, context=16, batch=2, vocab=64),
    "hf-gpt2": _hf_gpt2,
}


@pytest.fixture(scope="module")
def profiled() -> dict[str, Any]:
    out = {}
    for name, build in BUILDERS.items():
        model, inputs = build()
        model.train()
        prof = cs.profile(model, inputs, warmup=1, repeats=1, graph=False)
        out[name] = (model, inputs, prof)
    return out


def _first_step(model: nn.Module, inputs: Any) -> None:
    """One step that leaves the model as it was (buffers, gradients, RNG). The executor learns in
    its first step which values its reruns read, so that step keeps more until its forward ends;
    the memory promise is for the steps after it."""
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    train_step(model, inputs)
    with torch.no_grad():
        for b, v in zip(model.buffers(), buffers, strict=True):
            b.copy_(v)
    for p in model.parameters():
        p.grad = None
    torch.set_rng_state(rng)


def _reference(model: nn.Module, inputs: Any) -> tuple[Any, ...]:
    m = copy.deepcopy(model)
    torch.manual_seed(1234)
    loss = train_step(m, inputs)
    return loss, [p.grad for p in m.parameters()], [b.clone() for b in m.buffers()]


def _block_calls(model: nn.Module, prof: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for st in prof.stages:
        for name in st.modules:
            model.get_submodule(name).register_forward_pre_hook(
                lambda m, a, name=name: counts.update([name])
            )
    return counts


def _budgets(chain: cs.Chain, solver: str) -> list[int]:
    low = cs.min_budget(chain, solver)
    high = cs.min_budget(chain, "store_all")
    return sorted({int(low + f * (max(high, low) - low)) for f in FRACTIONS})


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("solver", SOLVERS)
def test_replay_is_exact_and_within_the_predicted_peak(
    profiled: dict[str, Any], name: str, solver: str
) -> None:
    """At budgets from the solver's minimum to store-all: loss, every gradient and every buffer
    bitwise equal to plain autograd; the ops run are the schedule's; each block ran as often as
    the schedule runs its stage; the measured peak (after a first step) is within 3 % of the
    prediction, both ways, and of the budget."""
    model, inputs, prof = profiled[name]
    chain = prof.chain
    loss, grads, buffers = _reference(model, inputs)
    budgets = _budgets(chain, solver)
    assert len(budgets) == len(FRACTIONS)
    recomputing = 0
    for budget in budgets:
        sched = cs.solve(chain, budget, solver)
        m = copy.deepcopy(model)
        calls = _block_calls(m, prof)
        apply(m, sched, prof, record=True)
        _first_step(m, inputs)
        calls.clear()
        torch.manual_seed(1234)
        got = measure_step(m, inputs)
        assert torch.equal(got.loss, loss)
        for p, g in zip(m.parameters(), grads, strict=True):
            assert torch.equal(p.grad, g)
        for b, ref in zip(m.buffers(), buffers, strict=True):
            assert torch.equal(b, ref)
        want = [str(op) for op in sched.ops if not isinstance(op, FreeActivation)]
        assert last_trace(m) == want
        runs = Counter(op.stage for op in sched.ops if str(op).startswith("F_"))
        for s, st in enumerate(prof.stages, start=1):
            for block in st.modules:
                assert calls[block] == runs[s], (block, calls[block], runs[s])
        recomputing += sum(runs.values()) > chain.length
        predicted = cs.simulate(chain, sched).peak_bytes
        assert predicted == sched.predicted.peak_bytes
        # Predictions are exact to a few percent both ways, so a schedule that fills its budget
        # may measure a little above it.
        assert abs(got.peak_bytes / predicted - 1) <= 0.03, (got.peak_bytes, predicted)
        assert got.peak_bytes <= budget * 1.03
    assert recomputing >= 2  # the budgets do exercise recomputation


def test_autograd_grad_and_applying_without_a_profile(profiled: dict[str, Any]) -> None:
    """``torch.autograd.grad`` works; with no profile the default blocks give the stage count."""
    model, inputs, prof = profiled["gpt"]
    loss, grads, _ = _reference(model, inputs)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    m = apply(copy.deepcopy(model), sched)
    torch.manual_seed(1234)
    out = m(*inputs)
    got = torch.autograd.grad(out, list(m.parameters()))
    assert torch.equal(out.detach(), loss)
    assert all(torch.equal(a, b) for a, b in zip(got, grads, strict=True))


def test_refusals(profiled: dict[str, Any]) -> None:
    model, _, prof = profiled["gpt"]
    other = profiled["mlp"][2]
    sched_other = cs.solve(other.chain, cs.min_budget(other.chain, "dp"), "dp")
    with pytest.raises(cs.FingerprintMismatchError, match="solve again for this profile"):
        apply(copy.deepcopy(model), sched_other, prof)
    with pytest.raises(cs.ApplyError, match=r"7 stages but GPT has 4 blocks \(5 stages"):
        apply(copy.deepcopy(model), sched_other)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    m = apply(copy.deepcopy(model), sched, prof)
    assert is_applied(m)
    with pytest.raises(cs.ApplyError, match="remove"):
        apply(m, sched, prof)
    with pytest.raises(cs.ApplyError, match="record=True"):
        last_trace(m)
    graph_sched = cs.solve(cs.load_problem("example:vgg16-graph"), 10**12, "store_all")
    with pytest.raises(cs.ApplyError, match="graph schedule"):
        apply(copy.deepcopy(model), graph_sched, prof)
    # remove: plain again.
    remove(m)
    assert not is_applied(m)
    with pytest.raises(cs.ApplyError, match="no schedule"):
        remove(m)


def test_larger_inputs_than_profiled_warn(profiled: dict[str, Any]) -> None:
    model, inputs, prof = profiled["mlp"]
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    m = apply(copy.deepcopy(model), sched, prof)
    with pytest.warns(UserWarning, match="memory promise holds only for the profiled size"):
        train_step(m, (torch.cat([inputs[0], inputs[0]]),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_step(m, (inputs[0][:2],))  # smaller: no warning


def test_second_backward_is_refused(profiled: dict[str, Any]) -> None:
    model, inputs, prof = profiled["mlp"]
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    m = apply(copy.deepcopy(model), sched, prof)
    loss = m(*inputs).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(cs.ReplayError, match="retain_graph"):
        loss.backward()


def test_eval_and_no_grad_forwards_run_plain(profiled: dict[str, Any]) -> None:
    model, inputs, prof = profiled["gpt"]
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    m = apply(copy.deepcopy(model), sched, prof, record=True)
    with torch.no_grad():
        m(*inputs)
    assert last_trace(m) == []


class TupleBlock(nn.Module):
    """Takes ``(x, mask, scale=...)`` with a non-tensor keyword, returns ``(x, aux)``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(0.2)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, *, scale: float, extra: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.drop(torch.tanh(self.fc(x))) * mask * scale
        return x + h, {"aux": h.sum(), "gate": extra["gate"]}


class TupleNet(nn.Module):
    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(width, width)
        self.blocks = nn.ModuleList(TupleBlock(width) for _ in range(depth))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        extra = {"gate": torch.ones(1)}
        aux = h.new_zeros(())
        for blk in self.blocks:
            h, out = blk(h, mask, scale=0.5, extra=extra)
            aux = aux + out["aux"]
        return h.pow(2).mean() + 0.01 * aux


def test_structured_boundaries_and_non_tensor_arguments() -> None:
    """Tuple/dict outputs, a mask passed to every block, keyword flags and dicts: exact."""
    torch.manual_seed(0)
    model = TupleNet()
    inputs = (torch.randn(6, 16), (torch.rand(6, 16) > 0.3).float())
    prof = cs.profile(model, inputs, warmup=1, repeats=1, graph=False)
    loss, grads, _ = _reference(model, inputs)
    for budget in _budgets(prof.chain, "dp"):
        sched = cs.solve(prof.chain, budget, "dp")
        m = apply(copy.deepcopy(model), sched, prof)
        torch.manual_seed(1234)
        assert torch.equal(train_step(m, inputs), loss)
        assert all(torch.equal(p.grad, g) for p, g in zip(m.parameters(), grads, strict=True))


class GlueNet(nn.Module):
    """Computes each block's input between two blocks (glue the executor records and reruns)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = torch.tanh(blk(x)) * 0.5
        return x.sum()


def test_code_between_blocks_that_makes_an_input_is_rerun() -> None:
    model = GlueNet()
    x = torch.randn(4, 8)
    prof = cs.profile(model, (x,), warmup=1, repeats=1, graph=False)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    assert any(str(op).startswith("F_n") for op in sched.ops)
    loss, grads, _ = _reference(model, (x,))
    m = apply(copy.deepcopy(model), sched, prof)
    _first_step(m, (x,))
    torch.manual_seed(1234)
    got = measure_step(m, (x,))
    assert torch.equal(got.loss, loss)
    assert all(torch.equal(p.grad, g) for p, g in zip(m.parameters(), grads, strict=True))
    assert abs(got.peak_bytes / cs.simulate(prof.chain, sched).peak_bytes - 1) <= 0.03


def test_a_failed_forward_leaves_autograd_as_it_was() -> None:
    class Fails(GlueNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.blocks[0](x) * 2
            raise RuntimeError("boom")

    model = GlueNet()
    x = torch.randn(4, 8)
    prof = cs.profile(model, (x,), warmup=1, repeats=1, graph=False)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    m = copy.deepcopy(model)
    m.__class__ = Fails
    apply(m, sched, prof)
    with pytest.raises(RuntimeError, match="boom"):
        m(x)
    # The failed forward left autograd's saved-tensor hooks and torch's modes as they were.
    from torch.overrides import _get_current_function_mode_stack

    assert not _get_current_function_mode_stack()
    y = torch.randn(3, requires_grad=True)
    (y.exp() * 2).sum().backward()
    assert torch.equal(y.grad, 2 * y.exp().detach())


def test_autocast_is_replayed(profiled: dict[str, Any]) -> None:
    model, inputs, prof = profiled["gpt"]
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")

    def step(m: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(1234)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = m(*inputs)
        loss.backward()
        return loss.detach(), [p.grad for p in m.parameters()]

    ref_loss, ref_grads = step(copy.deepcopy(model))
    loss, grads = step(apply(copy.deepcopy(model), sched, prof))
    assert torch.equal(loss, ref_loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))


def test_plan_checks_the_shape_of_the_schedule() -> None:
    def ops(text: str) -> list[Any]:
        return [parse_op(s) for s in text.split()]

    plan = ReplayPlan.from_ops(ops("F_ck(1) F_all(2) F_all(3) B(3) B(2) F_all(1) B(1)"), 3)
    assert plan.forward_kinds == ("ck", "all", "all") and plan.replayed == {1}
    # a[1] from F_all(1)'s tape feeds a later F_ck(2): kept until B(1).
    plan = ReplayPlan.from_ops(
        ops("F_ck(1) F_n(2) F_all(3) B(3) F_all(1) F_ck(2) F_all(2) B(2) B(1)"), 3
    )
    assert plan.keep_taped == {1}
    bad = {
        "F_ck(2) F_all(1) F_all(3) B(3) B(2) B(1)": "stage 1 comes next",
        "F_all(1) F_all(2) F_ck(3) B(3) B(2) B(1)": "last stage",
        "F_all(1) F_all(2) B(2) B(1)": "runs 2 of the 3 stages",
        "F_all(1) F_all(2) F_all(3) B(3) B(1) B(2)": "B(2) comes next",
        "F_ck(1) F_all(2) F_all(3) B(3) B(2) B(1)": "stage 1 has no tape",
        "F_all(1) compute(2)": "not a chain op",
    }
    for text, reason in bad.items():
        with pytest.raises(cs.InvalidScheduleError, match=re.escape(reason)):
            ReplayPlan.from_ops(ops(text), 3)


class _GradOnlyGlue(nn.Module):
    """Glue between blocks that runs an extra call only with grad enabled, so the no-grad probe
    before the first step records other calls than the step makes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.Tanh()) for _ in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
            if torch.is_grad_enabled():
                x = x * 1.0
        return x.sum()


def test_a_forward_that_differs_without_grad_still_trains_exactly() -> None:
    """The first step falls back to keeping every live value when the probe saw other calls;
    later steps are the usual ones; every step bitwise."""
    torch.manual_seed(0)
    model, x = _GradOnlyGlue(), torch.randn(8, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, x, blocks="blocks", warmup=0, repeats=1, graph=False)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    assert any(str(op).startswith("F_n") for op in sched.ops)  # reruns from kept boundaries
    mine, ref = copy.deepcopy(model), copy.deepcopy(model)
    apply(mine, sched, prof)
    for _ in range(3):
        for m in (mine, ref):
            for p in m.parameters():
                p.grad = None
        a, b = train_step(mine, x), train_step(ref, x)
        assert torch.equal(a, b)
        for p, q in zip(mine.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p.grad, q.grad)


def test_a_call_with_other_arguments_learns_its_boundaries_again() -> None:
    # transformers' Trainer passes num_items_in_batch beside the batch: another tensor among the
    # inputs renumbers the step's values, so what the first step learnt does not apply.
    model, batch = _hf_gpt2()
    plain = copy.deepcopy(model)
    prof = cs.profile(copy.deepcopy(model), batch, graph=False)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    assert any(str(op).startswith(("F_n", "F_ck")) for op in sched.ops)
    apply(model, sched, prof)
    count = torch.tensor(int(batch["labels"].numel()))
    for kwargs in ({}, {"num_items_in_batch": count}, {}):
        for m in (model, plain):
            m.zero_grad(set_to_none=True)
            torch.manual_seed(5)
            m(**batch, **kwargs).loss.backward()
        for a, b in zip(model.parameters(), plain.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad)
