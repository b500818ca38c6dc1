"""The ``checkpoint-solver`` command line: a thin shell over the library.

Heavy imports happen inside commands, so ``--help``, ``solve``, ``simulate`` and ``inspect`` on JSON
never import torch. Errors print one line with a hint and exit 1; ``-v`` shows the traceback.
"""

from __future__ import annotations

from typing import Any

import click

from checkpoint_solver.cli._output import fail

__all__ = ["main"]


class _Group(click.Group):
    """A click group that turns library errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:
            fail(exc, bool(ctx.obj and ctx.obj.get("verbose")))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="checkpoint_solver", prog_name="checkpoint-solver")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Optimal activation-recomputation schedules for PyTorch training.

    \b
    Examples:
      checkpoint-solver demo
      checkpoint-solver solve example:transformer-chain --budget 12GiB --solver uniform --out s.json
      checkpoint-solver simulate example:transformer-chain s.json
      checkpoint-solver inspect s.json
      checkpoint-solver profile builtin:gpt --out gpt.profile.json
    """
    ctx.obj = {"verbose": verbose}


def _register() -> None:
    from checkpoint_solver.cli import demo, inspect, profile, simulate, solve, tradeoff

    main.add_command(solve.solve_cmd)
    main.add_command(simulate.simulate_cmd)
    main.add_command(inspect.inspect_cmd)
    main.add_command(profile.profile_cmd)
    main.add_command(tradeoff.tradeoff_cmd)
    main.add_command(demo.demo_cmd)
    main.add_command(demo.bench_cmd)


_register()
