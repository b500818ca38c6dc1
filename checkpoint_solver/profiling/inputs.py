"""A model's example inputs as the profiler and the runtime take them, and the device it is on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

__all__ = ["Inputs", "model_device"]


@dataclass
class Inputs:
    """The positional and keyword arguments of one call: a tensor, a tuple or list of arguments,
    or a dict of keyword arguments (`of`)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, example_inputs: Any) -> Inputs:
        if isinstance(example_inputs, Mapping):
            return cls((), dict(example_inputs))
        if isinstance(example_inputs, tuple):
            return cls(example_inputs, {})
        if isinstance(example_inputs, list):
            return cls(tuple(example_inputs), {})
        return cls((example_inputs,), {})

    def tensors(self) -> list[torch.Tensor]:
        """The tensors among the arguments, in order."""
        return [t for t in tree_flatten((self.args, self.kwargs))[0] if isinstance(t, torch.Tensor)]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")
