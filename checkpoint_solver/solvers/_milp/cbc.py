"""The CBC backend: the MILP written as an MPS file, solved by the `cbc` binary (pulp's bundled one,
or one on PATH) in a process that is interrupted at the time limit, its solution file read back."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from functools import cache

import numpy as np
import numpy.typing as npt

from checkpoint_solver.solvers._milp.formulation import MilpModel, MilpResult, MilpStatus


@cache
def cbc_path() -> str | None:
    """CBC: the binary bundled with pulp 3 (``PULP_CBC_CMD``, gone in pulp 4), else one on PATH."""
    try:
        import pulp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            path = pulp.apis.PULP_CBC_CMD().path
        if path and os.path.exists(path):
            return str(path)
    except Exception:
        pass
    return shutil.which("cbc")


def _num(value: float) -> str:
    return format(float(value), ".17g")


def _write_mps(model: MilpModel, path: str, relax: bool) -> None:
    A = model.matrix().tocsc()
    lines = ["NAME checkpoint", "ROWS", " N obj"]
    for r, (_, _, lo, hi) in enumerate(model.rows):
        kind = "E" if lo == hi else ("L" if lo == -np.inf else "G")
        lines.append(f" {kind} r{r}")
    lines.append("COLUMNS")
    in_int = False
    for c in range(A.shape[1]):
        integer = model.integer[c] and not relax
        if integer and not in_int:
            lines.append("    M1 'MARKER' 'INTORG'")
            in_int = True
        if not integer and in_int:
            lines.append("    M2 'MARKER' 'INTEND'")
            in_int = False
        entries = [("obj", model.obj[c])] if model.obj[c] else []
        start, end = A.indptr[c], A.indptr[c + 1]
        entries += [(f"r{A.indices[p]}", A.data[p]) for p in range(start, end)]
        if not entries:
            entries = [("obj", 0.0)]
        for name, val in entries:
            lines.append(f"    c{c} {name} {_num(val)}")
    if in_int:
        lines.append("    M2 'MARKER' 'INTEND'")
    lines.append("RHS")
    for r, (_, _, lo, hi) in enumerate(model.rows):
        rhs = hi if hi != np.inf else lo
        if rhs:
            lines.append(f"    rhs r{r} {_num(rhs)}")
    lines.append("BOUNDS")
    for c in range(A.shape[1]):
        lo, hi = model.col_lo[c], model.col_hi[c]
        if lo == hi:
            lines.append(f" FX bnd c{c} {_num(lo)}")
        else:
            if lo != 0:
                lines.append(f" LO bnd c{c} {_num(lo)}")
            if hi != np.inf:  # MPS's default upper bound is +infinity
                lines.append(f" UP bnd c{c} {_num(hi)}")
    lines.append("ENDATA")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


# CBC's wall time past its limit: 1.25 * limit + _OVERRUN s, then SIGINT and _GRACE s, then SIGKILL.
_OVERRUN = 5.0
_GRACE = 10.0


def _run_capped(args: list[str], time_limit: float | None) -> subprocess.CompletedProcess[str]:
    """Run CBC, stopping it if it runs well past its limit.

    CBC checks ``-sec`` only at some points: on random_layered_n250 at 90 % it ran 1,012 s under a
    60 s limit (in root processing), on MobileNet 80-180 s. Past ``1.25 * limit + _OVERRUN``
    seconds it gets SIGINT (CBC then stops and writes its best solution), and `_GRACE` seconds
    later SIGKILL.
    """
    if time_limit is None:
        return subprocess.run(args, capture_output=True, text=True, check=False)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stdout, _ = proc.communicate(timeout=1.25 * time_limit + _OVERRUN)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            stdout, _ = proc.communicate(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, _ = proc.communicate()
        stdout = (stdout or "") + "\nstopped: ran past its time limit"
    return subprocess.CompletedProcess(args, proc.returncode, stdout or "", "")


def run_cbc(
    model: MilpModel,
    time_limit: float | None,
    rel_gap: float,
    threads: int | None,
    warm_start: npt.NDArray[np.float64] | None,
    relax: bool,
) -> MilpResult:
    path = cbc_path()
    assert path is not None
    with tempfile.TemporaryDirectory(prefix="cs-cbc-") as tmp:
        mps, sol = os.path.join(tmp, "m.mps"), os.path.join(tmp, "m.sol")
        _write_mps(model, mps, relax)
        args = [path, mps, "-randomSeed", "1", "-ratioGap", _num(rel_gap), "-allowableGap", "1e-9"]
        if time_limit is not None:
            args += ["-sec", _num(time_limit)]
        if threads is not None:
            args += ["-threads", str(int(threads))]
        if warm_start is not None and not relax:
            # CBC reads a MIP start in its solution-file format: a status line, then
            # "index name value reduced-cost" per column.
            start = os.path.join(tmp, "m.mst")
            with open(start, "w") as fh:
                fh.write("Stopped on time - objective value 0\n")
                fh.writelines(f"{c:>7} c{c} {_num(v)} 0\n" for c, v in enumerate(warm_start))
            args += ["-mips", start]
        args += ["-solve", "-solu", sol]
        began = time.perf_counter()
        out = _run_capped(args, time_limit)
        elapsed = time.perf_counter() - began
        if not os.path.exists(sol):
            return MilpResult(MilpStatus.NO_SOLUTION, None, None, None, "cbc", out.stdout[-500:])
        with open(sol) as fh:
            text = fh.read()
    first = text.splitlines()[0] if text else ""
    x = np.zeros(len(model.col_lo))
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("c"):
            x[int(parts[1][1:])] = float(parts[2])
    obj_match = re.search(r"objective value\s+([-0-9.eE+]+)", first)
    objective = float(obj_match.group(1)) if obj_match else None
    bound_match = re.search(r"Lower bound:\s+([-0-9.eE+]+)", out.stdout)
    if first.startswith("Optimal"):
        return MilpResult(MilpStatus.OPTIMAL, x, objective, objective, "cbc")
    if "infeasible" in first.lower() and "no integer solution" not in first:
        if time_limit is not None and elapsed >= 0.5 * time_limit:
            # CBC 2.10 cut off by its time limit inside preprocessing reports "Integer
            # infeasible" for feasible models (seen on VGG16 at 90 % with -sec 0.3): not a proof.
            return MilpResult(
                MilpStatus.NO_SOLUTION, None, None, None, "cbc", f"{first} (at the time limit)"
            )
        return MilpResult(MilpStatus.INFEASIBLE, None, None, None, "cbc", first)
    if first.startswith("Stopped") and "no integer solution" not in first and objective is not None:
        bound = float(bound_match.group(1)) if bound_match else None
        return MilpResult(MilpStatus.FEASIBLE, x, objective, bound, "cbc", first)
    bound = float(bound_match.group(1)) if bound_match else None
    return MilpResult(MilpStatus.NO_SOLUTION, None, None, bound, "cbc", first)
