"""``checkpoint-solver profile``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

import click

from checkpoint_solver.cli._output import emit_json, table

__all__ = ["build_model", "profile_cmd"]

BUILTINS = ("mlp", "resnet", "gpt")


def build_model(spec: str) -> tuple[Any, Any, Any]:
    """``builtin:NAME`` (a reference model at its default size), ``path/to/file.py:function`` or
    ``package.module:function``: a function returning ``(model, example_inputs)`` or
    ``(model, example_inputs, blocks)``."""
    from checkpoint_solver.errors import ProfilingError

    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTINS:
            raise ProfilingError(f"no built-in model {name!r}; choose one of {', '.join(BUILTINS)}")
        from checkpoint_solver import models

        model, inputs = getattr(models, name)()
        return model, inputs, None
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ProfilingError(
            f"MODEL {spec!r} is not builtin:NAME, path/to/file.py:function or "
            f"package.module:function (a function returning (model, example_inputs[, blocks]))"
        )
    module = _load_file(where) if where.endswith(".py") or os.sep in where else _import(where)
    factory = getattr(module, attr, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ProfilingError(
            f"{where} has no function {attr!r}"
            + (f"; it defines {', '.join(found[:12])}" if found else "")
            + f"; give {where}:FUNCTION"
        )
    try:
        built = factory()
    except Exception as exc:
        raise ProfilingError(
            f"the factory {spec} raised {type(exc).__name__}: {exc} (the error is in the "
            f"factory, before checkpoint_solver ran anything)"
        ) from exc
    if not isinstance(built, tuple) or len(built) not in (2, 3):
        raise ProfilingError(
            f"{spec} returned {type(built).__name__}; it must return (model, example_inputs) or "
            f"(model, example_inputs, blocks)"
        )
    from torch import nn

    if not isinstance(built[0], nn.Module):
        raise ProfilingError(
            f"{spec} returned {type(built[0]).__name__} {built[0]!r:.40} as the model; the first "
            f"item must be the torch.nn.Module to profile"
        )
    return built[0], built[1], built[2] if len(built) == 3 else None


def _load_file(path: str) -> ModuleType:
    """Import a user's Python file by path (its folder is importable while it loads)."""
    from checkpoint_solver.errors import ProfilingError

    file = os.path.abspath(path)
    if not os.path.isfile(file):
        raise ProfilingError(
            f"no such file {path!r} (from {os.getcwd()}); give an existing path/to/file.py:function"
        )
    name = "_checkpoint_solver_user_" + os.path.splitext(os.path.basename(file))[0]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(file))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ProfilingError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(os.path.dirname(file))
    return module


def _import(name: str) -> ModuleType:
    from checkpoint_solver.errors import ProfilingError

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ProfilingError(
            f"cannot import {name!r} ({exc}); give path/to/file.py:function or an importable "
            f"package.module:function"
        ) from None


def _adamw(params: Any) -> Any:
    import torch

    return torch.optim.AdamW(params)


def _adam(params: Any) -> Any:
    import torch

    return torch.optim.Adam(params)


def _sgd(params: Any) -> Any:
    import torch

    return torch.optim.SGD(params, lr=0.01)


def _sgd_momentum(params: Any) -> Any:
    import torch

    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


OPTIMIZERS = {"adamw": _adamw, "adam": _adam, "sgd": _sgd, "sgd-momentum": _sgd_momentum}


@click.command("profile")
@click.argument("model")
@click.option("--out", "-O", type=click.Path(dir_okay=False), help="Write the profile JSON here.")
@click.option("--blocks", help="Comma-separated block names (default: automatic).")
@click.option("--device", help="Move the model and inputs here first (e.g. cuda).")
@click.option("--repeats", default=5, show_default=True, help="Timed steps (median kept).")
@click.option("--no-graph", is_flag=True, help="Skip the op-level graph.")
@click.option(
    "--optimizer",
    type=click.Choice(sorted(OPTIMIZERS)),
    help="Also record the whole step's model states for this optimizer (default settings): "
    "budgets then cover the whole step.",
)
@click.option("--accumulate", is_flag=True, help="Gradients accumulate (live all step).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def profile_cmd(
    model: str,
    out: str | None,
    blocks: str | None,
    device: str | None,
    repeats: int,
    no_graph: bool,
    optimizer: str | None,
    accumulate: bool,
    as_json: bool,
) -> None:
    """Profile MODEL (builtin:mlp|resnet|gpt, path/to/file.py:function or package.module:function)
    into a profile (the measured chain, and the op graph).

    \b
    Examples:
      checkpoint-solver profile builtin:gpt --out gpt.profile.json
      checkpoint-solver profile my_model.py:build --out mine.profile.json
      checkpoint-solver profile builtin:gpt --optimizer adamw --out gpt-step.profile.json
      checkpoint-solver solve gpt.profile.json --budget 60MB --solver dp
    """

    from checkpoint_solver import format_bytes
    from checkpoint_solver.profiling import profile
    from checkpoint_solver.profiling.chain import inputs_to

    net, inputs, default_blocks = build_model(model)
    if device:
        net = net.to(device)
        inputs = inputs_to(inputs, device)
    names = blocks.split(",") if blocks else default_blocks
    opt = OPTIMIZERS[optimizer](net.parameters()) if optimizer else None
    prof = profile(
        net,
        inputs,
        blocks=names,
        repeats=repeats,
        graph=not no_graph,
        optimizer=opt,
        accumulate=accumulate,
    )
    if out:
        prof.save(out)
    if as_json:
        emit_json({"profile": prof.to_dict(), "saved_to": out})
        return
    c = prof.chain
    rows = [
        (
            k + 1,
            s.name,
            f"{c.uf[k] * 1e3:.3f}",
            f"{c.ub[k] * 1e3:.3f}",
            format_bytes(c.x[k + 1]),
            format_bytes(c.xbar[k]),
            format_bytes(max(c.of[k], c.ob[k])),
            f"{s.flops_forward:.3g}",
        )
        for k, s in enumerate(prof.stages)
    ]
    click.echo(
        table(["stage", "name", "uf ms", "ub ms", "x", "xbar", "transient", "fwd FLOPs"], rows)
    )
    m = prof.measurement
    click.echo(
        f"\n{prof.origin}; plain step {m['step_seconds'] * 1e3:.2f} ms; measured activation peak "
        f"{format_bytes(m['activation_peak_bytes'])}; op graph: "
        + (f"{len(prof.graph.ops)} ops" if prof.graph is not None else "none")
        + (f"\nsaved to {out}" if out else "")
    )
    if c.states is not None:
        st = c.states
        click.echo(
            f"whole step ({optimizer}{', accumulating' if st.accumulate else ''}): parameters "
            f"{format_bytes(st.params)}, gradients {format_bytes(st.grad_bytes)}, optimizer "
            f"state {format_bytes(st.optimizer)}, optimizer step {format_bytes(st.step)}; "
            f"budgets cover the whole step (solve --scope activations for activations only)"
        )
