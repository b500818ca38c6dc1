"""Regenerate the exported schedules in this folder from the problems in ``problems/``.

    python schedules/regenerate.py              # schedules from the committed problems (no torch)
    python schedules/regenerate.py --reprofile  # first re-profile the built-in models (torch)
    python schedules/regenerate.py --check      # exit 1 when a committed file would change

Solving is deterministic (no time limits, no solver randomness, ``solve_s`` written as null), so the
same problems give byte-identical schedules; the test suite checks it. Re-profiling measures new
stage times on this machine, so it changes the problems and then the schedules: commit both.

Every schedule is named ``MODEL__PCT__SOLVER.json``: MODEL's problem, solved for PCT % of the
store-all peak (the budget in bytes is in the file) by SOLVER.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver.solvers.store_all import min_budget_store_all  # noqa: E402

PROBLEMS = HERE / "problems"
CHAIN = ("dp", "revolve", "uniform")

# problem file (in problems/) -> (model name in file names, solvers, % of the store-all peak).
# The percentages start near each problem's smallest feasible budget (vgg16-graph: 83 %).
PLAN: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {
    "gpt.profile.json": ("gpt", CHAIN, (35, 50, 75)),
    "mlp.profile.json": ("mlp", CHAIN, (30, 50, 75)),
    "resnet.profile.json": ("resnet", CHAIN, (50, 75, 90)),
    "transformer-chain.json": ("transformer-chain", CHAIN, (50, 75, 90)),
    "vgg16-graph.json": ("vgg16-graph", ("greedy", "store_all"), (85, 90, 100)),
}


def reprofile() -> None:
    """Profile the built-in models at their default sizes into problems/ (torch needed)."""
    from checkpoint_solver import models
    from checkpoint_solver.problem import save_problem

    for name in ("gpt", "mlp", "resnet"):
        model, inputs = getattr(models, name)()
        prof = cs.profile(model, inputs, graph=False)
        prof.save(PROBLEMS / f"{name}.profile.json")
        print(f"profiled {name}: {prof.chain.length} stages")
    for example in ("transformer-chain", "vgg16-graph"):
        save_problem(cs.load_problem(f"example:{example}"), PROBLEMS / f"{example}.json")


def generate(out: Path) -> list[Path]:
    """Write every schedule of `PLAN` into `out`; returns the files written."""
    written = []
    for file, (model, solvers, percents) in PLAN.items():
        problem = cs.load_problem(PROBLEMS / file)
        high = min_budget_store_all(problem)
        for pct in percents:
            budget = high * pct // 100
            for solver in solvers:
                try:
                    sched = cs.solve(problem, budget, solver)
                except cs.InfeasibleBudgetError:
                    continue  # e.g. revolve below its binomial minimum: no file
                path = out / f"{model}__{pct}pct__{solver}.json"
                sched.save(path, timing=False)
                written.append(path)
    return written


def problem_of(schedule_file: Path) -> Path:
    """The problem file a schedule in this folder was solved for."""
    model = schedule_file.name.split("__")[0]
    return PROBLEMS / next(f for f, (m, _, _) in PLAN.items() if m == model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reprofile", action="store_true", help="re-profile the built-in models")
    parser.add_argument("--check", action="store_true", help="only compare with the files here")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
        here = {p.name: p.read_bytes() for p in HERE.glob("*__*.json")}
        changed = sorted(n for n in fresh.keys() | here.keys() if fresh.get(n) != here.get(n))
        print("\n".join(changed) or "all schedules up to date")
        return 1 if changed else 0
    if args.reprofile:
        reprofile()
    for old in HERE.glob("*__*.json"):
        old.unlink()
    for path in generate(HERE):
        print(path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
