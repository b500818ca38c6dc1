"""The profiler: hand-computed sizes, the built-in models, GPT-2, model state left as found, the
profile JSON, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import ProfilingError, models  # noqa: E402
from checkpoint_solver.profiling import Profile, load_profile, profile  # noqa: E402
from checkpoint_solver.solvers.store_all import min_budget_store_all  # noqa: E402

F32 = 4


class Merge(nn.Module):
    """``Linear(g + h)``: a block reading two tensors of the boundary before it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 8)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.fc(g + h)


class Skip(nn.Module):
    """Three blocks; the first block's output skips over the second (a two-tensor boundary)."""

    def __init__(self) -> None:
        super().__init__()
        self.b1 = nn.Sequential(nn.Linear(16, 32), nn.Tanh())
        self.b2 = nn.Sequential(nn.Linear(32, 32), nn.Tanh())
        self.b3 = Merge()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.b1(x)
        return self.b3(self.b2(h), h)


def test_hand_built_mlp_sizes() -> None:
    """x and xbar equal sizes worked out by hand from what each op saves.

    Batch 4. Block 1 = Linear(16, 32) + Tanh: Linear saves its input (a[0], the caller's) and its
    weight (a parameter); Tanh saves its output, which is a[1]: xbar = x[1] = 4*32 floats.
    Block 2 = Linear(32, 64) + Tanh + Linear(64, 8): saves a[1] (the previous boundary, not its
    own) and the Tanh output (4*64), outputs 4*8: xbar = 4*64 + 4*8 floats. The epilogue is the
    summed loss: one float, saving nothing.
    """
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Linear(16, 32), nn.Tanh()),
        nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 8)),
    )
    prof = profile(model, torch.randn(4, 16), warmup=0, repeats=1)
    chain = prof.chain
    assert [s.name for s in prof.stages] == ["0", "1", "epilogue+loss"]
    assert chain.x == (4 * 16 * F32, 4 * 32 * F32, 4 * 8 * F32, 1 * F32)
    assert chain.xbar == (4 * 32 * F32, (4 * 64 + 4 * 8) * F32, 1 * F32)
    # FLOPs: 2*M*N*K per matmul forward, twice that backward (input and weight gradients).
    assert prof.stages[0].flops_forward == 2 * 4 * 16 * 32
    assert prof.stages[1].flops_forward == 2 * 4 * 32 * 64 + 2 * 4 * 64 * 8
    assert all(t > 0 for t in (*chain.uf[:2], *chain.ub[:2]))


def test_boundary_with_two_tensors() -> None:
    """A tensor read two stages later belongs to every boundary it crosses: a[2] = {g, h}."""
    torch.manual_seed(0)
    prof = profile(Skip(), torch.randn(4, 16), blocks=["b1", "b2", "b3"], warmup=0, repeats=1)
    x, xbar = prof.chain.x, prof.chain.xbar
    h = g = 4 * 32 * F32
    assert x == (4 * 16 * F32, h, g + h, 4 * 8 * F32, F32)
    # b3's add output (4*32) is saved by its Linear, plus its own output 4*8.
    assert xbar == (h, g + h, (4 * 32 + 4 * 8) * F32, F32)


def _check_model(model: nn.Module, inputs: tuple, stages: int, blocks=None) -> Profile:
    prof = profile(model, inputs, blocks=blocks, warmup=1, repeats=2)
    chain = prof.chain
    assert chain.length == stages
    measured = prof.measurement["activation_peak_bytes"]
    # The simulated store-all peak (each boundary value counted once) is the measured one.
    simulated = cs.min_budget(chain, "store_all")
    assert abs(simulated - measured) <= 0.03 * measured, (simulated, measured)
    # Adding up boundaries over-counts, never under.
    assert min_budget_store_all(chain) >= simulated
    assert all(t >= 0 for t in (*chain.uf, *chain.ub))
    assert sum(chain.uf) + sum(chain.ub) > 0
    return prof


def test_builtin_mlp() -> None:
    model, inputs = models.mlp(depth=4, width=128, hidden=256, batch=16)
    prof = _check_model(model, inputs, stages=4 + 2 + 1)  # modules + loss epilogue
    assert prof.stages[0].name == "0"


def test_builtin_resnet() -> None:
    model, inputs = models.resnet(widths=(8, 16), blocks_per_stage=2, image=16, batch=4)
    prof = _check_model(model, inputs, stages=1 + 4 + 1)  # stem prologue, blocks, head + loss
    assert [s.name for s in prof.stages][:2] == ["prologue", "layers.0"]


def test_builtin_gpt() -> None:
    model, inputs = models.gpt(layers=2, dim=64, heads=2, context=32, vocab=256, batch=2)
    prof = _check_model(model, inputs, stages=1 + 2 + 1)
    assert [s.name for s in prof.stages] == ["prologue", "blocks.0", "blocks.1", "epilogue+loss"]


def test_transformers_gpt2() -> None:
    """GPT-2 from a config (random weights), its layers as blocks, the loss from labels."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=128)
    model = transformers.GPT2LMHeadModel(config).train()
    ids = torch.randint(0, config.vocab_size, (2, 128))
    prof = _check_model(model, {"input_ids": ids, "labels": ids}, 1 + 4 + 1, "transformer.h")
    assert prof.stages[1].modules == ("transformer.h.0",)


def test_model_is_left_as_found() -> None:
    """Parameter gradients, BatchNorm statistics and the RNG state are restored."""
    model, inputs = models.resnet(widths=(8,), blocks_per_stage=2, image=8, batch=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    rng = torch.get_rng_state()
    profile(model, inputs, warmup=1, repeats=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_profile_json_round_trip_and_origin(tmp_path) -> None:
    model, inputs = models.mlp(depth=2, width=32, hidden=64, batch=4)
    prof = profile(model, inputs, warmup=0, repeats=1)
    path = prof.save(tmp_path / "p.json")
    again = load_profile(path)
    assert again == prof
    # A profile measured elsewhere loads and says where it came from.
    data = json.loads(path.read_text())
    data["source"].update(torch="2.11.0+cu130", device="cuda:0", device_name="NVIDIA H100")
    other = tmp_path / "cuda.json"
    other.write_text(json.dumps(data))
    assert load_profile(other).origin == "torch 2.11.0+cu130 on cuda:0 (NVIDIA H100)"


def test_solving_a_saved_profile_needs_no_torch(tmp_path) -> None:
    model, inputs = models.mlp(depth=2, width=32, hidden=64, batch=4)
    path = profile(model, inputs, warmup=0, repeats=1).save(tmp_path / "p.json")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import checkpoint_solver as cs\n"
        "from checkpoint_solver.profiling import load_profile\n"
        f"p = load_profile({str(path)!r})\n"
        "s = cs.solve(p.chain, cs.min_budget(p.chain, 'dp'), 'dp')\n"
        "assert cs.simulate(p.chain, s).valid\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# Bad input ------------------------------------------------------------------------------------


def test_inputs_on_another_device() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with pytest.raises(ProfilingError, match=r"input 0 is on meta but the model is on cpu"):
        profile(model, torch.randn(2, 4, device="meta"))


def test_device_other_than_the_models() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with pytest.raises(ProfilingError, match=r"model\.to\('cuda'\)"):
        profile(model, torch.randn(2, 4), device="cuda")


def test_nested_blocks_are_named() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 4))
    with pytest.raises(ProfilingError, match=r"block '0\.0' is inside block '0'"):
        profile(model, torch.randn(2, 4), blocks=["0", "0.0"])


def test_block_run_twice_is_two_stages() -> None:
    """A block the forward calls twice is one stage per call, in call order."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(self.a(x)))

    prof = profile(Twice(), torch.randn(2, 4), blocks=["b", "a"], warmup=0, repeats=1, graph=False)
    assert [s.name for s in prof.stages] == ["a", "a#1", "b", "epilogue+loss"]
    assert [s.call for s in prof.stages] == [0, 1, 0, 0]
    # Each call's tape is its own: a's second call saves its input, the first call's output.
    assert prof.chain.x[1] == prof.chain.x[2] == 2 * 4 * 4


def test_blocks_are_taken_in_call_order() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    prof = profile(model, torch.randn(2, 4), blocks=["1", "0", "2"], repeats=1, graph=False)
    assert [s.name for s in prof.stages] == ["0", "1", "2", "epilogue+loss"]


def test_block_that_never_runs_or_is_not_in_the_model() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.spare = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x)

    with pytest.raises(ProfilingError, match=r"block 'spare' never ran"):
        profile(Unused(), torch.randn(2, 4), blocks=["a", "spare"])
    with pytest.raises(ProfilingError, match=r"block 'nope' is not a submodule"):
        profile(Unused(), torch.randn(2, 4), blocks=["nope"])
    with pytest.raises(ProfilingError, match=r"not part of the model"):
        profile(Unused(), torch.randn(2, 4), blocks=[nn.Linear(4, 4)])


def test_no_blocks_to_cut_at() -> None:
    with pytest.raises(ProfilingError, match=r"pass blocks=\[\.\.\.\]"):
        profile(nn.Linear(4, 4), torch.randn(2, 4))


def test_automatic_blocks_of_a_custom_model() -> None:
    """No container of blocks: the direct children, in the order the forward calls them (here
    not the order they were defined in)."""

    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.last = nn.Linear(4, 2)
            self.first = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.last(torch.tanh(self.first(x)))

    prof = profile(Backwards(), torch.randn(2, 3), warmup=0, repeats=1, graph=False)
    assert [s.name for s in prof.stages] == ["first", "last", "epilogue+loss"]

    class WithNorm(nn.Module):  # the call-order probe runs a forward: statistics still restored
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.BatchNorm1d(3)
            self.out = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.norm(x))

    model = WithNorm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile(model, torch.randn(4, 3), warmup=0, repeats=1, graph=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # Skip's children b1, b2 are small Sequentials of leaf layers: not taken as containers.
    prof = profile(Skip(), torch.randn(4, 16), warmup=0, repeats=1, graph=False)
    assert [s.name for s in prof.stages] == ["b1", "b2", "b3", "epilogue+loss"]


def test_output_without_a_loss() -> None:
    class Dict(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> object:
            self.a(x)
            return object()

    with pytest.raises(ProfilingError, match=r"pass loss_fn="):
        profile(Dict(), torch.randn(2, 4), blocks=["a"])


def test_frozen_model_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)).requires_grad_(False)
    with pytest.raises(ProfilingError, match=r"does not require grad"):
        profile(model, torch.randn(2, 4))


# The op-level graph ---------------------------------------------------------------------------


def test_op_graph_of_the_gpt() -> None:
    """The op graph: parameters and inputs as sources, forward before backward, dropout marked,
    each op in a chain stage, and a stage's subgraph solvable on its own."""
    from checkpoint_solver import simulate, solve

    model, inputs = models.gpt(layers=2, dim=32, heads=2, context=16, vocab=64, batch=2)
    prof = profile(model, inputs, warmup=0, repeats=1)
    g = prof.graph
    assert g is not None and g.cost_unit == "seconds"
    ops = g.ops
    n_params = sum(1 for _ in model.parameters()) + sum(1 for _ in model.buffers())
    assert g.role[:n_params] == ("param",) * n_params
    assert {g.role[v] for v in range(g.size) if v not in ops} == {"param", "input"}
    # Forward ops come first: once an op is backward, every later op is.
    flags = [g.is_backward[v] for v in ops]
    assert flags == sorted(flags) and any(flags) and not all(flags)
    # Three dropouts per block (attention, residual, MLP) plus the embedding's, each recomputed
    # under its saved RNG state.
    assert sum(r == "replay_state" for r in g.rng) >= 3 * 2 + 1
    # Every op belongs to a chain stage; each block stage has forward and backward ops.
    stages = prof.graph_stages
    assert all(0 <= stages[v] < prof.chain.length for v in ops)
    for k in (1, 2):
        members = [v for v in ops if stages[v] == k]
        assert any(g.is_backward[v] for v in members) and not all(g.is_backward[v] for v in members)
    sub = prof.stage_graph(1)
    assert sub.ops and len(sub.ops) == sum(1 for v in ops if stages[v] == 1)
    budget = cs_store_all(sub)
    sched = solve(sub, budget, "greedy")
    assert simulate(sub, sched).valid
    # Measured per-node times add up to about a training step (loose: 2 cores, noisy).
    assert 0 < sum(g.cost) < 20 * prof.measurement["step_seconds"]


def cs_store_all(graph):
    from checkpoint_solver.solvers.store_all import min_budget_store_all as m

    return m(graph)


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        if h.sum() > 0:  # a Python branch on a tensor's value
            h = h * 2
        return self.b(h).square().mean()


def test_a_data_dependent_branch_is_captured_and_checked_at_replay() -> None:
    """The op graph is traced on the real tensors, so a Python branch on a value takes the
    branch eager takes; the graph holds that branch, and the replay checks the value it read:
    inputs that take the same branch train bitwise, another input is refused by name."""
    import copy

    torch.manual_seed(0)
    model = _DataDependent()
    x = torch.randn(2, 4)
    branch = bool(model.a(x).sum() > 0)
    prof = profile(model, x, blocks=["a", "b"], repeats=1)
    assert prof.graph is not None, prof.measurement.get("graph_error")
    sched = cs.solve(prof.graph, cs.min_budget(prof.graph, "greedy"), "greedy")
    mine = cs.apply(copy.deepcopy(model), sched, prof)
    ref = copy.deepcopy(model)
    same = x * 1.5  # the same sign of h.sum(): the same branch
    assert bool(model.a(same).sum() > 0) == branch
    mine(same).backward()
    ref(same).backward()
    for a, b in zip(mine.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)
    other = next(
        t for t in (torch.randn(2, 4) for _ in range(100)) if bool(model.a(t).sum() > 0) != branch
    )
    with pytest.raises(
        cs.ReplayError,
        match=r"in forward: `if h.sum\(\) > 0:.* was (True|False) when .* is (True|False) for this",
    ):
        mine(other)


def test_graph_capture_failure_keeps_the_chain() -> None:
    """A read of tensor values no replay could check (``.tolist()``) refuses the op graph; the
    model still profiles as a chain, and the profile says which line broke the capture."""

    class ReadsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            scale = h.detach().abs().max(dim=1).values.tolist()  # values into Python
            return self.b(h * scale[0])

    with pytest.warns(UserWarning, match="chain only"):
        prof = profile(ReadsValues(), torch.randn(2, 4), blocks=["a", "b"], repeats=1)
    assert prof.graph is None
    assert "`Tensor.tolist()` hands a tensor's values to Python" in prof.measurement["graph_error"]
    assert "in forward: `scale = h.detach().abs()" in prof.measurement["graph_error"]
    assert prof.chain.length == 3
