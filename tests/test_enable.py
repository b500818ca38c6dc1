"""`cs.enable`: one line that profiles, solves, applies, caches and says what it chose, in a plain
loop, with the Hugging Face `Trainer` and with Lightning."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import models  # noqa: E402
from checkpoint_solver.enabling import cache_key  # noqa: E402
from checkpoint_solver.runtime.measure import measure_step, train_step  # noqa: E402


def _gpt() -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    return models.gpt(layers=3, dim=64, context=32, batch=4, vocab=128)


def _grads(model: torch.nn.Module, inputs: object) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    train_step(model, inputs)
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("mode", ["executor", "policy"])
def test_enable_applies_caches_and_says_what_it_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch, mode: str
) -> None:
    model, inputs = _gpt()
    plain = copy.deepcopy(model)
    low = cs.min_budget(cs.profile(copy.deepcopy(model), inputs, graph=False).chain, "dp")
    budget = int(low * 1.5)
    first = cs.enable(model, inputs, budget, mode=mode, cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert "profiling GPT" in err and first.summary in err and "predicted peak" in err
    assert not first.cached and all(p.is_file() for p in first.paths)
    assert cs.runtime.is_applied(model)
    # The schedule fits, and the model trains exactly as plain autograd.
    measured = measure_step(model, inputs).peak_bytes
    predicted = first.policy.peak_bytes if mode == "policy" else first.schedule.predicted.peak_bytes
    assert measured <= budget * 1.03 and abs(measured / predicted - 1) <= 0.03
    got, want = _grads(model, inputs), _grads(plain, inputs)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))

    # The next run with the same setup starts from the cache: nothing is profiled or solved.
    def no(*a: object, **k: object) -> None:
        raise AssertionError("profiled or solved although cached")

    monkeypatch.setattr(cs, "profile", no)
    monkeypatch.setattr(cs, "solve", no)
    again = cs.enable(copy.deepcopy(plain), inputs, budget, mode=mode, cache_dir=tmp_path)
    assert again.cached and again.schedule == first.schedule
    assert "from the cache" in capsys.readouterr().err


def test_the_cache_key_follows_what_a_schedule_depends_on() -> None:
    model, inputs = _gpt()
    key = cache_key(model, inputs, 10**6, mode="executor", solver="", optimizer=None)
    same, _ = _gpt()
    assert cache_key(same, inputs, 10**6, mode="executor", solver="", optimizer=None) == key
    longer = (torch.cat([inputs[0], inputs[0]]), torch.cat([inputs[1], inputs[1]]))
    others = [
        cache_key(model, longer, 10**6, mode="executor", solver="", optimizer=None),
        cache_key(model, inputs, 2 * 10**6, mode="executor", solver="", optimizer=None),
        cache_key(model, inputs, 10**6, mode="policy", solver="", optimizer=None),
        cache_key(
            models.gpt(layers=4, dim=64, context=32, batch=4, vocab=128)[0],
            inputs,
            10**6,
            mode="executor",
            solver="",
            optimizer=None,
        ),
        cache_key(
            model,
            inputs,
            10**6,
            mode="executor",
            solver="",
            optimizer=torch.optim.AdamW(model.parameters()),
        ),
    ]
    assert key not in others and len(set(others)) == len(others)


class _Over:
    """An exported policy predicted over any budget (the real one's other attributes)."""

    def __init__(self, real: object, peak: int) -> None:
        self.real, self.peak_bytes = real, peak

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_policy_mode_solves_again_until_torchs_policies_fit(monkeypatch, capsys) -> None:
    """torch's policies are the nearest two-level form of a graph schedule and can hold more than
    it: when the first one is predicted over the budget, enable solves for less by the excess,
    and what it applies is predicted within the budget and measured there (3 % slack)."""
    model, inputs = _gpt()
    low = cs.min_budget(cs.profile(copy.deepcopy(model), inputs, graph=False).chain, "dp")
    budget = int(low * 1.5)
    real, calls = cs.export_policy, []

    def export(*a: object, **k: object) -> object:
        calls.append(1)
        policy = real(*a, **k)
        return _Over(policy, budget + 50_000) if len(calls) == 1 else policy

    monkeypatch.setattr(cs, "export_policy", export)
    got = cs.enable(model, inputs, budget, mode="policy", cache=False)
    assert len(calls) >= 2 and "over the budget" in capsys.readouterr().err
    assert not isinstance(got.policy, _Over) and got.policy.peak_bytes <= budget
    assert measure_step(model, inputs).peak_bytes <= budget * 1.03


def test_policy_mode_refuses_a_budget_no_policy_fits_naming_the_least_found(monkeypatch) -> None:
    model, inputs = _gpt()
    low = cs.min_budget(cs.profile(copy.deepcopy(model), inputs, graph=False).chain, "dp")
    budget = int(low * 1.5)
    peaks = iter(range(budget + 9_000, 0, -1_000))
    monkeypatch.setattr(cs, "export_policy", lambda *a, **k: _Over(None, next(peaks)))
    with pytest.raises(cs.InfeasibleBudgetError, match="policies could not be fitted") as err:
        cs.enable(model, inputs, budget, mode="policy", cache=False)
    assert err.value.min_budget_bytes == budget + 4_000  # the sixth and least of the tries


def test_enable_refuses_bad_input(tmp_path: Path) -> None:
    model, inputs = _gpt()
    with pytest.raises(cs.InvalidOptionError, match="mode"):
        cs.enable(model, inputs, "1GiB", mode="fast", cache_dir=tmp_path)
    with pytest.raises(cs.InfeasibleBudgetError, match="minimum feasible budget"):
        cs.enable(model, inputs, "1KiB", cache_dir=tmp_path, verbose=False)
    assert not cs.runtime.is_applied(model)


def test_a_whole_step_budget_with_the_optimizer(tmp_path: Path) -> None:
    model, inputs = _gpt()
    opt = torch.optim.AdamW(model.parameters())
    twin = copy.deepcopy(model)
    prof = cs.profile(twin, inputs, graph=False, optimizer=torch.optim.AdamW(twin.parameters()))
    budget = int(cs.min_budget(prof.chain, "dp") * 1.2)
    done = cs.enable(model, inputs, budget, optimizer=opt, cache_dir=tmp_path, verbose=False)
    assert done.schedule.scope == "step" and "whole step" in done.summary
    measure_step(model, inputs, optimizer=opt)  # the optimizer's state exists from here on
    step = measure_step(model, inputs, optimizer=opt)
    assert step.step_peak_bytes <= budget * 1.03


def test_a_transformers_trainer_runs_three_steps(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, n_positions=64, vocab_size=256)
    model = transformers.GPT2LMHeadModel(cfg).train()
    rows = [{"input_ids": torch.randint(0, 256, (32,))} for _ in range(12)]
    for r in rows:
        r["labels"] = r["input_ids"].clone()
    batch = {k: torch.stack([r[k] for r in rows[:4]]) for k in ("input_ids", "labels")}
    low = cs.min_budget(cs.profile(copy.deepcopy(model), batch, graph=False).chain, "dp")
    done = cs.enable(model, batch, int(low * 1.3), cache_dir=tmp_path, verbose=False)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        remove_unused_columns=False,
        dataloader_drop_last=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows)
    out = trainer.train()
    assert out.global_step == 3 and torch.isfinite(torch.tensor(out.training_loss))
    assert cs.runtime.is_applied(model)
    assert measure_step(model, batch).peak_bytes <= done.schedule.predicted.peak_bytes * 1.03


def test_lightning_fits_three_steps(tmp_path: Path) -> None:
    L = pytest.importorskip("lightning")

    class Lit(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, _ = _gpt()

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            return self.model(*batch)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), 1e-3)

    lit = Lit()
    _, (x, y) = _gpt()
    low = cs.min_budget(cs.profile(copy.deepcopy(lit.model), (x, y), graph=False).chain, "dp")
    cs.enable(lit.model, (x, y), int(low * 1.3), cache_dir=tmp_path, verbose=False)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x.repeat(3, 1), y.repeat(3, 1)), batch_size=4
    )
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(lit, data)
    assert trainer.global_step == 3 and cs.runtime.is_applied(lit.model)
