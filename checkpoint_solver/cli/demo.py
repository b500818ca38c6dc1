"""``checkpoint-solver demo`` and ``checkpoint-solver bench``: train side by side and print one table."""

from __future__ import annotations

import time
from typing import Any

import click

from checkpoint_solver.cli._output import emit_json

__all__ = ["bench_cmd", "demo_cmd"]

_SOLVERS_HELP = (
    "Comma-separated: dp, revolve, sqrt, uniform (per block); hierarchical, greedy (op level)."
)


def _fractions(text: str) -> tuple[float, ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise click.BadParameter(
                f"{part!r} is not a fraction; give e.g. 0.3,0.5,0.75 or 30%,50%"
            ) from None
        out.append(value)
    return tuple(out)


def _run(
    model: Any,
    inputs: Any,
    *,
    blocks: Any,
    description: str,
    fractions: str,
    solvers: str,
    steps: int,
    device: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    from checkpoint_solver.compare import compare

    start = time.perf_counter()

    def progress(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.perf_counter() - start:5.1f} s] {message}", err=True)

    result = compare(
        model,
        inputs,
        fractions=_fractions(fractions),
        solvers=[s.strip() for s in solvers.split(",") if s.strip()],
        steps=steps,
        blocks=blocks,
        device=device,
        description=description,
        progress=progress,
    )
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"\n{result.model} on {result.device} ({result.device_name}): {result.stages} stages, "
        f"store-all activation peak {_b(result.store_all_peak_bytes)}; budgets are fractions "
        f"of it. Peaks are activation bytes (parameters and their gradients come on top); step = "
        f"median of {result.steps} training steps; 'predicted' = the simulator's overhead.\n"
    )
    click.echo(result.table())
    click.echo("")
    for line in result.summary():
        click.echo(f"- {line}")
    click.echo(f"(finished in {time.perf_counter() - start:.0f} s)")


def _b(n: int) -> str:
    from checkpoint_solver.units import format_bytes

    return format_bytes(n)


def _common(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")(f)
    f = click.option("--device", help="cpu, cuda, ... (default: cuda when available, else cpu).")(f)
    f = click.option(
        "--steps", default=3, show_default=True, help="Timed training steps per method."
    )(f)
    f = click.option(
        "--budgets",
        default="0.3,0.5,0.75",
        show_default=True,
        help="Activation budgets as fractions of the store-all peak (or 30%,50%).",
    )(f)
    return f


@click.command("demo")
@click.option("--layers", default=8, show_default=True, help="Transformer blocks.")
@click.option("--dim", default=256, show_default=True, help="Model width.")
@click.option("--solvers", default="dp,hierarchical", show_default=True, help=_SOLVERS_HELP)
@_common
def demo_cmd(
    layers: int,
    dim: int,
    budgets: str,
    solvers: str,
    steps: int,
    device: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """The main job on a built-in GPT-style model: profile, solve, apply, train, compare.

    Profiles the model on the device, solves at a few activation budgets with the chain DP (per
    block) and the hierarchical op-level solver, applies each schedule to a copy of the model and
    trains it next to plain autograd and torch's checkpointing, then prints predicted vs measured
    peak, step time and gradient equality. About a minute on a 2-core CPU.
    """
    import torch

    from checkpoint_solver import models

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, inputs = models.gpt(layers=layers, dim=dim, heads=max(1, dim // 64))
    _run(
        model,
        inputs,
        blocks=None,
        description=f"GPT-style model ({layers} layers, dim {dim}, batch 8 x 128 tokens, dropout 0.1)",
        fractions=budgets,
        solvers=solvers,
        steps=steps,
        device=dev,
        as_json=as_json,
        quiet=quiet,
    )


@click.command("bench")
@click.argument("model")
@click.option("--blocks", help="Comma-separated block names (default: automatic).")
@click.option("--solvers", default="dp", show_default=True, help=_SOLVERS_HELP)
@_common
def bench_cmd(
    model: str,
    blocks: str | None,
    budgets: str,
    solvers: str,
    steps: int,
    device: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Benchmark MODEL (builtin:NAME, path/to/file.py:factory or package.module:factory) like the
    demo: our schedules against plain autograd and torch's checkpointing, measured side by side.

    \b
    Examples:
      checkpoint-solver bench builtin:mlp --budgets 0.5
      checkpoint-solver bench my_model.py:build --solvers dp,hierarchical --steps 5
    """
    from checkpoint_solver.cli.profile import build_model

    net, inputs, default_blocks = build_model(model)
    names = blocks.split(",") if blocks else default_blocks
    _run(
        net,
        inputs,
        blocks=names,
        description=model,
        fractions=budgets,
        solvers=solvers,
        steps=steps,
        device=device,
        as_json=as_json,
        quiet=quiet,
    )
