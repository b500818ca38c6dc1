"""What users do today, with `apply`'s interface, so benchmarks compare like with like.

Each function hooks the model in place and returns it (same call signature, parameters and
``state_dict``); `remove` undoes any of them. Blocks are found as the profiler finds them
(`checkpoint_solver.profiling.stages.resolve_blocks`).

- `no_checkpoint`: plain autograd (the model as it is).
- `checkpoint_per_block`: ``torch.utils.checkpoint.checkpoint(block, ..., use_reentrant=False)``
  around every block: what ``gradient_checkpointing_enable()`` does in Hugging Face models.
- `checkpoint_sequential`: ``torch.utils.checkpoint.checkpoint_sequential``'s rule over the blocks:
  ``segments`` chunks of ``len(blocks) // segments`` consecutive blocks, every chunk but the last
  run under one non-reentrant checkpoint, the last chunk (and the remainder) stored. For an
  ``nn.Sequential`` model this is torch's own function; for a model that loops over its blocks,
  the first block of a chunk runs the whole chunk and the others pass their first argument on, so
  the blocks must be chained through their first argument (transformer layers are).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.checkpoint import checkpoint_sequential as _torch_sequential

from checkpoint_solver.errors import ApplyError, ReplayError
from checkpoint_solver.profiling.stages import resolve_blocks
from checkpoint_solver.runtime import applied

__all__ = ["checkpoint_per_block", "checkpoint_sequential", "no_checkpoint", "remove"]


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, (tuple, list)) else output


def _patch(model: nn.Module, patches: list[tuple[nn.Module, Callable[..., Any]]]) -> nn.Module:
    applied.check_free(model)
    for module, forward in patches:
        module.forward = forward
    patched = [m for m, _ in patches]

    def undo() -> None:
        for m in patched:
            del m.forward

    applied.attach(model, applied.Applied("baseline", patched, undo=undo))
    return model


def no_checkpoint(model: nn.Module) -> nn.Module:
    """Plain autograd: every activation stored. Returns `model` unchanged (for symmetry)."""
    return _patch(model, [])


def checkpoint_per_block(
    model: nn.Module, blocks: Sequence[nn.Module | str] | str | None = None
) -> nn.Module:
    """Wrap every block in non-reentrant ``torch.utils.checkpoint`` (RNG state preserved)."""
    patches = []
    for _, block in resolve_blocks(model, blocks):
        original = block.forward

        def forward(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():
                return _original(*args, **kwargs)
            return checkpoint(_original, *args, use_reentrant=False, **kwargs)

        patches.append((block, forward))
    return _patch(model, patches)


def checkpoint_sequential(
    model: nn.Module, segments: int, blocks: Sequence[nn.Module | str] | str | None = None
) -> nn.Module:
    """torch's ``checkpoint_sequential`` rule with `segments` segments over the model's blocks."""
    named = resolve_blocks(model, blocks)
    if not 1 <= segments <= len(named):
        raise ApplyError(
            f"segments={segments} is not valid for {len(named)} blocks; give 1..{len(named)}"
        )
    mods = [m for _, m in named]
    if isinstance(model, nn.Sequential) and blocks is None:

        def whole(x: Any) -> Any:
            if not torch.is_grad_enabled():
                return nn.Sequential.forward(model, x)
            return _torch_sequential(model, segments, x, use_reentrant=False)

        return _patch(model, [(model, whole)])
    size = len(mods) // segments
    patches: list[tuple[nn.Module, Callable[..., Any]]] = []
    for start in range(0, size * (segments - 1), size):
        chunk = [m.forward for m in mods[start : start + size]]
        state: dict[str, Any] = {}

        def run(*args: Any, _chunk: list[Callable[..., Any]] = chunk, **kwargs: Any) -> Any:
            x, rest = args[0], args[1:]
            out = None
            for i, f in enumerate(_chunk):
                out = f(x, *rest, **kwargs)
                if i < len(_chunk) - 1:
                    x = _first(out)
            return out

        def head(
            *args: Any,
            _run: Callable[..., Any] = run,
            _state: dict[str, Any] = state,
            **kwargs: Any,
        ) -> Any:
            out = (
                _run(*args, **kwargs)
                if not torch.is_grad_enabled()
                else checkpoint(_run, *args, use_reentrant=False, **kwargs)
            )
            if size > 1:
                _state["out"] = out
            return out

        patches.append((mods[start], head))
        for i, m in enumerate(mods[start + 1 : start + size]):
            last = i == size - 2
            patches.append((m, functools.partial(_pass_through, state, type(m).__name__, last)))
    return _patch(model, patches)


def _pass_through(state: dict[str, Any], name: str, last: bool, *args: Any, **kwargs: Any) -> Any:
    """A block inside a checkpointed chunk: its chunk's head already ran it."""
    out = state.pop("out", None) if last else state.get("out")
    if out is None or args[0] is not _first(out):
        raise ReplayError(
            f"checkpoint_sequential: block {name} did not receive its chunk's output as its first "
            f"argument; this baseline needs blocks chained through their first argument"
        )
    return out


def remove(model: nn.Module) -> nn.Module:
    """Undo a baseline: the blocks' forwards are their own again. Returns `model`
    (`checkpoint_solver.runtime.remove` undoes a baseline too)."""
    applied.detach(model, "baseline")
    return model
