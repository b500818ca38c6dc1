"""Model states: what a training step holds besides activations, for whole-step budgets.

A user's budget is device memory for the whole step, not activation memory. Beside the
activations (which the chain's sizes describe, the inputs included as ``a[0]``), a step holds the
parameters and buffers, the optimizer's state, and the parameter gradients, which appear as the
backward reaches each stage and stay until the optimizer step (or all the time, under gradient
accumulation). Then the optimizer step itself runs, with every gradient live and temporaries of
its own.

`ModelStates` records those bytes for a chain (`Chain.states`; the profiler measures them when it
is given the optimizer). `whole_step_chain` rewrites a chain so that its activation memory *is*
the whole step's memory, op by op, under the simulator's rules; every chain solver then accounts
for parameter gradients appearing at each ``B`` without knowing it:

- the parameters, the optimizer state (and, with `accumulate`, every gradient) are held from the
  start to the end: they join ``x[0]``, which the simulator holds throughout;
- without accumulation, the gradients of stages ``> t`` are live whenever ``delta[t]`` is (from
  ``B(t+1)`` until ``B(t)`` ends): they join ``delta[t]``; the gradients stage ``i`` makes count
  while ``B(i)`` runs (its ``ob`` is lowered by those of stages ``> i``, which ``delta[i-1]`` now
  counts a second time during ``B(i)``);
- with accumulation, the ``.grad`` tensors are live throughout (in ``x[0]``), and each new
  gradient from the ``B`` that makes it through the one that adds it into ``.grad``
  (`grads_done`: the same ``B`` for most parameters; for one several stages share, the
  backward of its first use, the engine summing the contributions until then).
- what each ``B(i)``'s measured peak with gradients differs from that sum (`grad_extra`) joins
  ``ob[i]``.

The optimizer step's peak, `step_floor`, does not depend on the schedule: every gradient, the
parameters and the state at once, with the inputs and what the backward leaves, plus the step's
own temporaries. A whole-step budget below it is infeasible whatever is recomputed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from checkpoint_solver.errors import InvalidProblemError

if TYPE_CHECKING:
    from checkpoint_solver.problem.chain import Chain
    from checkpoint_solver.problem.graph import Graph

__all__ = ["SCOPES", "ModelStates", "Scope", "resolve_scope", "step_floor", "whole_step_chain"]

Scope = Literal["activations", "step"]
SCOPES: tuple[str, ...] = ("activations", "step")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStates:
    """The model states of one training step, in bytes.

    Attributes
    ----------
    params : int
        Parameters and buffers (each storage once), live throughout.
    inputs : int
        The inputs, where the problem's own memory leaves them out (a graph without
        ``sources_in_budget``); 0 for a chain, which counts them as ``a[0]``.
    optimizer : int
        The optimizer's state after its first step (AdamW: two moments per parameter), live
        throughout.
    grads : tuple[int, ...]
        Per chain stage, the parameter-gradient bytes its backward ``B(i)`` creates (a parameter
        several stages use, such as an RNN cell's, is counted at the first ``B`` that reaches it).
    grad_extra : tuple[int, ...]
        Per stage, how far the measured peak of ``B(i)`` with parameter gradients counted differs
        from its activation peak plus the gradients it leaves (signed, at least ``-grads[i]``): a
        gradient summed out of place is briefly there twice (a shared RNN cell's), one made after
        the backward's activation peak was not there at it. Zeros by default.
    grads_done : tuple[int, ...]
        Per stage, the gradient bytes whose accumulation completes in ``B(i)``: where a parameter
        several stages use (an RNN cell's, tied embeddings) gets its gradient, at the backward of
        its first use. Under `accumulate`, each new gradient is live from the ``B`` that makes it
        to the one that adds it into ``.grad``. Defaults to `grads` (each completes where made).
    windows : tuple[tuple[int, int, int], ...]
        Graphs only: ``(first, last, bytes)`` for a parameter several nodes contribute to (an RNN
        cell's weight): from its first contribution's node through the node of its last sum, a
        second copy of its gradient is live beside the buffer (the contribution in flight, the
        sum made out of place). Empty by default.
    step : int
        The optimizer step's temporaries, above the parameters, gradients and state it updates.
    accumulate : bool
        Gradients are accumulated over micro-batches: every ``.grad`` is live throughout the step,
        and each ``B(i)`` adds a temporary gradient into it.
    """

    params: int
    inputs: int = 0
    optimizer: int = 0
    grads: tuple[int, ...] = ()
    grad_extra: tuple[int, ...] = ()
    grads_done: tuple[int, ...] = ()
    windows: tuple[tuple[int, int, int], ...] = ()
    step: int = 0
    accumulate: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.grads, (str, bytes)) or not hasattr(self.grads, "__iter__"):
            raise InvalidProblemError(
                f"ModelStates.grads must be a sequence of byte counts, one per stage, got "
                f"{type(self.grads).__name__}"
            )
        object.__setattr__(self, "grads", tuple(self.grads))
        for name in ("params", "inputs", "optimizer", "step"):
            _check_size(f"ModelStates.{name}", getattr(self, name))
        for i, g in enumerate(self.grads):
            _check_size(f"ModelStates.grads of stage {i + 1}", g)
        object.__setattr__(self, "grads", tuple(int(g) for g in self.grads))
        extra = tuple(self.grad_extra) if self.grad_extra else (0,) * len(self.grads)
        if len(extra) != len(self.grads):
            raise InvalidProblemError(
                f"ModelStates.grad_extra has {len(extra)} entries for {len(self.grads)} stages"
            )
        for i, (e, g) in enumerate(zip(extra, self.grads, strict=True)):
            if isinstance(e, bool) or not isinstance(e, int) or e < -g:
                raise InvalidProblemError(
                    f"ModelStates.grad_extra of stage {i + 1} is {e!r}; it must be an integer "
                    f">= -grads[{i}] ({-g}): a backward cannot hold fewer gradients at its peak "
                    f"than it began with"
                )
        object.__setattr__(self, "grad_extra", extra)
        done = tuple(self.grads_done) if self.grads_done else self.grads
        if len(done) != len(self.grads) or sum(done) != sum(self.grads):
            raise InvalidProblemError(
                f"ModelStates.grads_done must have one entry per stage ({len(self.grads)}) adding "
                f"up to the gradients ({sum(self.grads)} bytes), got {list(done)}"
            )
        made = completed = 0
        for i in range(len(done) - 1, -1, -1):  # the backward's order
            _check_size(f"ModelStates.grads_done of stage {i + 1}", done[i])
            made, completed = made + self.grads[i], completed + done[i]
            if completed > made:
                raise InvalidProblemError(
                    f"ModelStates.grads_done: by B({i + 1}) {completed} gradient bytes are "
                    f"complete but only {made} were made"
                )
        object.__setattr__(self, "grads_done", done)
        windows = []
        for w in self.windows:
            if (
                not isinstance(w, (list, tuple))
                or len(w) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) for v in w)
                or not 0 <= w[0] <= w[1] < len(self.grads)
                or w[2] < 0
            ):
                raise InvalidProblemError(
                    f"ModelStates.windows entries are [first node, last node, bytes] with "
                    f"0 <= first <= last < {len(self.grads)} and bytes >= 0, got {w!r}"
                )
            windows.append((int(w[0]), int(w[1]), int(w[2])))
        object.__setattr__(self, "windows", tuple(windows))
        if not isinstance(self.accumulate, bool):
            raise InvalidProblemError(
                f"ModelStates.accumulate must be true or false, got {self.accumulate!r}"
            )

    @property
    def grad_bytes(self) -> int:
        """All parameter gradients."""
        return sum(self.grads)

    @property
    def fixed_bytes(self) -> int:
        """What is live throughout the step: parameters, optimizer state (and, accumulating,
        the gradients)."""
        return (
            self.params + self.inputs + self.optimizer + (self.grad_bytes if self.accumulate else 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            **({"inputs": self.inputs} if self.inputs else {}),
            "optimizer": self.optimizer,
            "grads": list(self.grads),
            **({"grad_extra": list(self.grad_extra)} if any(self.grad_extra) else {}),
            **({"grads_done": list(self.grads_done)} if self.grads_done != self.grads else {}),
            **({"windows": [list(w) for w in self.windows]} if self.windows else {}),
            "step": self.step,
            **({"accumulate": True} if self.accumulate else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelStates:
        if not isinstance(data, Mapping):
            raise InvalidProblemError(
                f"states must be an object with params, optimizer, grads and step, got "
                f"{type(data).__name__}"
            )
        unknown = set(data) - {
            "params",
            "inputs",
            "optimizer",
            "grads",
            "grad_extra",
            "grads_done",
            "windows",
            "step",
            "accumulate",
        }
        if unknown or "params" not in data:
            raise InvalidProblemError(
                f"states needs 'params' and may hold inputs, optimizer, grads, grad_extra, "
                f"grads_done, windows, step and accumulate; got the fields {sorted(data)}"
            )
        return cls(
            params=data["params"],
            inputs=data.get("inputs", 0),
            optimizer=data.get("optimizer", 0),
            grads=data.get("grads", ()),
            grad_extra=data.get("grad_extra", ()),
            grads_done=data.get("grads_done", ()),
            windows=tuple(tuple(w) if isinstance(w, list) else w for w in data.get("windows", ())),
            step=data.get("step", 0),
            accumulate=data.get("accumulate", False),
        )


def _check_size(what: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InvalidProblemError(f"{what} is {v!r}; sizes must be integers >= 0 (bytes)")


def resolve_scope(problem: Any, scope: str | None) -> Scope:
    """The budget's scope: ``"step"`` when asked or (``None``/``"auto"``) when the problem
    carries model states, else ``"activations"``."""
    from checkpoint_solver.errors import InvalidOptionError

    states = getattr(problem, "states", None)
    if scope in (None, "auto"):
        return "step" if states is not None else "activations"
    if scope not in SCOPES:
        raise InvalidOptionError(
            f"scope={scope!r}: use 'activations' (the budget covers activations, the inputs "
            f"included), 'step' (the whole training step: parameters, gradients and optimizer "
            f"state too) or 'auto'"
        )
    if scope == "step" and states is None:
        raise InvalidOptionError(
            "scope='step' needs the model states (parameters, gradients, optimizer state): "
            "profile with cs.profile(model, inputs, optimizer=opt), or solve with "
            "scope='activations'"
        )
    return scope  # type: ignore[return-value]


def step_floor(problem: Chain | Graph) -> int:
    """The optimizer step's peak: the inputs (and, on a chain, the backward's leftover input
    gradient), the parameters, every gradient, the optimizer state and the step's temporaries.
    No whole-step budget below it is feasible."""
    if problem.kind == "graph":
        st = problem.states
        if st is None:
            raise InvalidProblemError("this graph has no model states")
        return (
            problem.budget_source_bytes
            + st.params
            + st.inputs
            + st.optimizer
            + st.grad_bytes
            + st.step
        )
    st = _states(problem)
    return (
        problem.x[0]
        + problem.delta[0]
        + st.params
        + st.inputs
        + st.optimizer
        + st.grad_bytes
        + st.step
    )


def whole_step_chain(chain: Chain) -> Chain:
    """The chain whose activation memory, op by op, is `chain`'s whole-step memory (see the
    module notes). It has no states and its own fingerprint; schedules solved on it apply to
    `chain` (the ops are the same)."""
    st = _states(chain)
    n = chain.length
    # after[t]: new gradients live once B(t+1) is done: made by stages > t and, accumulating,
    # not yet added into .grad; complete[t]: accumulating, those added by B(t+1..L).
    after = [0] * (n + 1)
    complete = [0] * (n + 1)
    for t in range(n - 1, -1, -1):
        complete[t] = complete[t + 1] + (st.grads_done[t] if st.accumulate else 0)
        after[t] = after[t + 1] + st.grads[t] + complete[t + 1] - complete[t]
    x0 = chain.x[0] + st.fixed_bytes
    delta = tuple(chain.delta[t] + after[t] for t in range(n + 1))
    # While B(i) runs: the new gradients of stages >= i not added before it (delta[i-1] counts
    # those left after it, delta[i] those before it).
    ob = tuple(
        chain.ob[i] - after[i + 1] + (complete[i] - complete[i + 1]) + st.grad_extra[i]
        for i in range(n)
    )
    return dataclasses.replace(
        chain,
        x=(x0, *chain.x[1:]),
        delta=delta,
        ob=ob,
        states=None,
        name=f"{chain.name} (whole step)" if chain.name else "whole step",
    )


def _states(chain: Chain) -> ModelStates:
    if chain.states is None:
        raise InvalidProblemError(
            "this chain has no model states; profile with optimizer= to record them"
        )
    if len(chain.states.grads) != chain.length:
        raise InvalidProblemError(
            f"Chain.states.grads has {len(chain.states.grads)} entries for {chain.length} stages"
        )
    return chain.states
