"""The ``checkpoint-solver`` command line: a thin shell over the library.

Heavy imports happen inside commands, so ``--help``, ``solve``, ``simulate`` and ``inspect`` on JSON
never import torch. Every error, usage errors included, prints one line with a hint on stderr
(under ``--json``: a JSON object ``{"error": {"type", "message", "hint"}}`` on stdout) and exits
1; ``-v`` shows the traceback; an interrupt exits 130.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from checkpoint_solver.cli._output import EXIT_ERROR, EXIT_INTERRUPTED, fail

__all__ = ["main"]


class _Group(click.Group):
    """A click group that turns every error, usage errors included, into one line on stderr (or,
    under ``--json``, a JSON object on stdout) and exit status 1."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        verbose = "-v" in argv or "--verbose" in argv
        kwargs["standalone_mode"] = False
        try:
            return super().main(argv, *rest, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.ClickException as exc:
            if as_json:
                fail(UsageError(exc.format_message()), False, as_json=True)
            exc.show()
            sys.exit(EXIT_ERROR)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            fail(exc, verbose, as_json=as_json)


class UsageError(Exception):
    """A command line click could not parse (its message says what it expected)."""

    hint = "run checkpoint-solver COMMAND --help for the arguments and options it takes"


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
