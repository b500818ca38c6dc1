"""Which calls of a model's forward are the chain's stages.

A stage is one *call* of a module, not the module: an RNN cell applied T times in a Python loop is
T stages sharing their parameters, and a block called once is one stage. Stages are found from the
*call tree* of one forward (which module called which, in what order, and how many ATen ops ran
inside each call), or from the modules the user names.

Found automatically (`find_stages`), from the top of the call tree down:

- A call whose child calls contain a *repeated group* covering at least half of its ops is a
  *stage level*: every member of a repeated group is a stage, and so is every other child with at
  least a tenth of the ops (a U-Net's middle block); smaller children stay code between stages.
  A repeated group is two or more calls of the same module (an RNN cell) or of composite modules
  (modules that call submodules) of the same class; containers (`nn.Sequential`,
  `nn.ModuleList`) count as the same class only when their children are.
- A stage that is itself a stage level with two or more composite stages covering three quarters
  of its ops is replaced by those (nested containers are expanded to their repeated blocks: a
  ResNet's bottlenecks, not its four stages).
- A call that is no stage level is searched child by child, and what the children give is
  concatenated: an encoder's layers, then a decoder's, form one chain.
- An `nn.Sequential` model's stages are its children, as always.
- With no repeated structure (or one covering less than half of the forward), the stages are the
  model's top-level calls, and the note says so.

The blocks a user names (or the default ones) are resolved to modules by `resolve_blocks`, for the
profiler and the runtime alike: both bind blocks to stages here.

Code between two stages (glue: a residual add, a concatenation with a skip connection, a
downsampling layer that is not a block) belongs to the stage before it; code before the first
stage is the prologue; code after the last one, and the loss, the epilogue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from checkpoint_solver.errors import ApplyError, ProfilingError

__all__ = [
    "StageCall",
    "StageHooks",
    "call_tree",
    "find_stages",
    "profile_calls",
    "resolve_blocks",
    "stage_calls",
    "when_grads_done",
]


def resolve_blocks(
    model: nn.Module, blocks: Sequence[nn.Module | str] | str | None
) -> list[tuple[str, nn.Module]]:
    """The chain's blocks as ``(dotted name, module)``, in the order given.

    A name (or module) that is an `nn.ModuleList` stands for its children (a list is never called
    itself); an `nn.Sequential` named explicitly is one block. With `blocks` None: the children of
    an `nn.Sequential` model, else the children of the `nn.ModuleList`/`nn.Sequential` (two or
    more children) holding the most parameters, e.g. a transformer's layers.
    """
    names = {id(m): n for n, m in model.named_modules()}
    if blocks is None:
        if isinstance(model, nn.Sequential):
            return [(n, m) for n, m in model.named_children()]
        # A ModuleList (a loop over layers) first; else a Sequential of composite blocks.
        best: tuple[int, int, int, str] | None = None
        for name, m in model.named_modules():
            if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) < 2:
                continue
            if isinstance(m, nn.Sequential) and not all(
                any(True for _ in c.children()) for c in m.children()
            ):
                continue
            is_list = int(isinstance(m, nn.ModuleList))
            score = (is_list, sum(p.numel() for p in m.parameters()), len(m), name)
            if best is None or score[:3] > best[:3]:
                best = score
        if best is None:
            raise ProfilingError(
                f"{type(model).__name__} is not an nn.Sequential and has no nn.ModuleList or "
                f"nn.Sequential of blocks to cut at; pass blocks=[...] (modules or dotted names "
                f"such as 'transformer.h')"
            )
        container = model.get_submodule(best[3])
        return [(f"{best[3]}.{c}", child) for c, child in container.named_children()]
    if isinstance(blocks, str):
        blocks = [blocks]
    out: list[tuple[str, nn.Module]] = []
    for b in blocks:
        if isinstance(b, str):
            try:
                m = model.get_submodule(b)
            except AttributeError:
                raise ProfilingError(
                    f"block {b!r} is not a submodule of {type(model).__name__}; names look like "
                    f"{', '.join(repr(n) for n, _ in list(model.named_modules())[1:4])}"
                ) from None
            name = b
        elif isinstance(b, nn.Module):
            if id(b) not in names:
                raise ProfilingError(
                    f"block {type(b).__name__} (given as a module) is not part of the model"
                )
            m, name = b, names[id(b)]
        else:
            raise ProfilingError(f"blocks must be modules or dotted names, got {type(b).__name__}")
        if isinstance(m, nn.ModuleList):
            out.extend((f"{name}.{c}" if name else c, child) for c, child in m.named_children())
        else:
            out.append((name, m))
    if not out:
        raise ProfilingError("blocks is empty; name at least one block")
    seen: dict[int, str] = {}
    for name, m in out:
        if id(m) in seen:
            raise ProfilingError(f"block {name!r} is listed twice (also as {seen[id(m)]!r})")
        seen[id(m)] = name
    for name, m in out:
        for sub in m.modules():
            if sub is not m and id(sub) in seen:
                raise ProfilingError(
                    f"block {seen[id(sub)]!r} is inside block {name!r}; blocks must not nest"
                )
    return out


_LEVEL = 0.5  # a repeated group covering this share of a call's ops makes it a stage level
_OTHER = 0.1  # other children at a stage level with this share are stages too
_EXPAND = 0.85  # a stage is replaced by its own stages when they cover this share of it


@dataclass(frozen=True)
class StageCall:
    """One stage: the `call`-th top-level call (0-based) of the module named `name`.

    "Top-level" means not inside another stage's call: a module called inside a stage is part of
    that stage."""

    name: str
    module: nn.Module = field(compare=False, repr=False)
    call: int = 0


@dataclass
class _Call:
    module: nn.Module
    name: str
    children: list[_Call] = field(default_factory=list)
    ops: int = 0  # ATen ops run inside the call, its children's included
    start: int = 0  # position of its first op among the forward's ops
    inputs: frozenset[int] = frozenset()  # storages of its tensor arguments
    log: list[frozenset[int]] = field(
        default_factory=list, repr=False
    )  # (root only) each op's reads

    @property
    def composite(self) -> bool:
        return bool(self.children)

    def signature(self) -> Any:
        cls = type(self.module)
        if isinstance(self.module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return (cls.__qualname__, tuple(c.signature() for c in self.children))
        return cls.__qualname__


def _storages(tree: Any) -> frozenset[int]:
    keys = set()
    for t in tree_flatten(tree)[0]:
        if isinstance(t, torch.Tensor):
            try:
                keys.add(int(t.untyped_storage()._cdata))
            except (RuntimeError, NotImplementedError):
                pass
    return frozenset(keys)


class _OpCounter(TorchDispatchMode):
    """Counts ATen ops and logs the storages each reads."""

    def __init__(self, log: list[frozenset[int]]) -> None:
        super().__init__()
        self.log = log

    @property
    def count(self) -> int:
        return len(self.log)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        self.log.append(_storages((args, kwargs)))
        return func(*args, **kwargs)


def call_tree(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
    """One forward of `model` without grad, recorded as a tree of module calls with op counts.

    The caller restores what a forward changes (BatchNorm statistics, RNG state)."""
    names: dict[int, str] = {}
    for name, m in model.named_modules(remove_duplicate=True):
        names.setdefault(id(m), name)
    root = _Call(model, "")
    stack: list[tuple[_Call, int]] = []
    counter = _OpCounter(root.log)

    def pre(m: nn.Module, a: Any, kw: Any) -> None:
        if not stack:
            call = root
        else:
            call = _Call(m, names.get(id(m), "?"))
            stack[-1][0].children.append(call)
        call.start = counter.count
        call.inputs = _storages((a, kw))
        stack.append((call, counter.count))

    def post(m: nn.Module, a: Any, out: Any) -> None:
        if stack and stack[-1][0].module is m:
            call, start = stack.pop()
            call.ops = counter.count - start

    with ExitStack() as es:
        for m in {id(m): m for m in model.modules()}.values():
            es.enter_context(m.register_forward_pre_hook(pre, with_kwargs=True))
            es.enter_context(m.register_forward_hook(post))
        with torch.no_grad(), counter:
            model(*args, **kwargs)
    return root


def _repeated(kids: list[_Call]) -> set[int]:
    """Indices (into `kids`) of the members of repeated groups."""
    groups: dict[Any, list[int]] = {}
    for i, c in enumerate(kids):
        if c.ops == 0:
            continue
        if _has_params(c):
            groups.setdefault(("module", id(c.module)), []).append(i)
        if c.composite:
            groups.setdefault(("class", c.signature()), []).append(i)
    return {i for members in groups.values() if len(members) >= 2 for i in members}


def _has_params(c: _Call) -> bool:
    return any(True for _ in c.module.parameters())


def _rereads(c: _Call, sub: list[_Call], log: list[frozenset[int]]) -> bool:
    """Whether code of `c` outside `sub`, after `sub[0]` started, reads an input of `c` that
    `sub[0]` read too: `c` is a residual unit (its input skips over its parts), a block itself."""
    shared = c.inputs & sub[0].inputs
    if not shared:
        return False
    inside = sorted((s.start, s.start + s.ops) for s in sub)
    j = 0
    for pos in range(sub[0].start, c.start + c.ops):
        while j < len(inside) and pos >= inside[j][1]:
            j += 1
        if j < len(inside) and inside[j][0] <= pos:
            continue
        if log[pos] & shared:
            return True
    return False


def _choose(node: _Call, log: list[frozenset[int]]) -> list[_Call]:
    kids = node.children
    if not kids:
        return []
    rep = _repeated(kids)
    if rep and sum(kids[i].ops for i in rep) >= _LEVEL * node.ops:
        out: list[_Call] = []
        for i, c in enumerate(kids):
            if i not in rep and c.ops < _OTHER * node.ops:
                continue  # small: code between stages
            sub = _choose(c, log)
            if (
                len(sub) >= 2
                and all(s.composite or _has_params(s) for s in sub)
                and sum(s.ops for s in sub) >= _EXPAND * c.ops
                and not _rereads(c, sub, log)
            ):
                out.extend(sub)
            else:
                out.append(c)
        return out
    return [s for c in kids for s in _choose(c, log)]


def _number(tree: _Call, chosen: Sequence[_Call]) -> list[StageCall]:
    """`chosen` as stage calls, in call order, each numbered as `StageHooks` counts: among the
    calls of its module that are not inside another stage."""
    picked = {id(c) for c in chosen}
    modules = {id(c.module) for c in chosen}
    counts: dict[int, int] = {}
    out: list[StageCall] = []

    def walk(c: _Call) -> None:
        for k in c.children:
            if id(k.module) in modules:
                n = counts.get(id(k.module), 0)
                counts[id(k.module)] = n + 1
                if id(k) in picked:
                    out.append(StageCall(k.name, k.module, n))
                    continue
            walk(k)

    walk(tree)
    return out


def find_stages(model: nn.Module, tree: _Call) -> tuple[list[StageCall], str]:
    """The stages found in `tree` (see the module docstring) and a note saying how."""
    if isinstance(model, nn.Sequential):
        kids = [c for c in tree.children if c.ops > 0] or tree.children
        if kids:
            return _number(tree, kids), "the children of the nn.Sequential model"
    chosen = _choose(tree, tree.log)
    covered = sum(c.ops for c in chosen)
    if len(chosen) >= 2 and covered >= _LEVEL * tree.ops:
        return _number(tree, chosen), _describe(chosen, covered, tree.ops)
    node = tree
    while len(node.children) == 1 and node.children[0].children:
        node = node.children[0]
    kids = [c for c in node.children if c.ops > 0] or node.children
    if not kids:
        raise ProfilingError(
            f"{type(model).__name__} calls no submodules in its forward, so there is nothing to "
            f"cut a chain at; pass blocks=[...] (modules or dotted names such as "
            f"'transformer.h')"
        )
    return _number(tree, kids), (
        f"no repeated blocks found: one stage per top-level call of "
        f"{node.name or type(model).__name__} ({len(kids)}); pass blocks=[...] to choose others"
    )


def _describe(chosen: list[_Call], covered: int, total: int) -> str:
    groups: dict[str, int] = {}
    for c in chosen:
        key = type(c.module).__name__
        groups[key] = groups.get(key, 0) + 1
    parts = ", ".join(f"{n} x {cls}" for cls, n in groups.items())
    share = 100.0 * covered / total if total else 100.0
    return (
        f"{len(chosen)} stages found from the call tree ({parts}), covering {share:.0f}% of the "
        f"forward's ops; repeated calls of one module are one stage each"
    )


def profile_calls(model: nn.Module, stages: Sequence[Any]) -> list[StageCall]:
    """The stage calls a profile's stages (`StageInfo`: modules and call) name in `model`.

    Raises
    ------
    ApplyError
        When a stage's module is not a submodule of `model` (another model than profiled).
    """
    calls = []
    for st in stages:
        for name in st.modules:
            try:
                calls.append(StageCall(name, model.get_submodule(name), st.call))
            except AttributeError:
                raise ApplyError(
                    f"the profile's block {name!r} is not a submodule of {type(model).__name__}; "
                    f"use the model that was profiled"
                ) from None
    return calls


def stage_calls(tree: _Call, blocks: Sequence[tuple[str, nn.Module]]) -> list[StageCall]:
    """Every top-level call of the given block modules, in call order.

    Raises
    ------
    ProfilingError
        A block that never ran in the forward.
    """
    wanted = {id(m): name for name, m in blocks}
    found: list[_Call] = []

    def walk(c: _Call) -> None:
        for k in c.children:
            if id(k.module) in wanted:
                found.append(k)
            else:
                walk(k)

    walk(tree)
    ran = {id(c.module) for c in found}
    out = [StageCall(wanted[id(c.module)], c.module, c.call) for c in _number(tree, found)]
    for name, m in blocks:
        if id(m) not in ran:
            raise ProfilingError(
                f"block {name!r} never ran in the forward; name only blocks the model calls"
            )
    return out


class StageHooks:
    """Forward hooks that number the stage calls of one forward: ``on_pre(k, args, kwargs)`` when
    stage ``k`` (0-based) starts, ``on_post(k, output)`` when it returns.

    Calls of a stage module inside an open stage are part of that stage and ignored; `active`
    (when given) is asked first, so a caller can stand the hooks aside (while it reruns a stage).
    A call that is no stage (a module called more often than the stages list) goes to
    ``on_extra(name, index)``.
    """

    def __init__(
        self,
        calls: Sequence[StageCall],
        on_pre: Callable[[int, Any, Any], None],
        on_post: Callable[[int, Any], None],
        on_extra: Callable[[str, int], None],
        active: Callable[[], bool] | None = None,
    ) -> None:
        self.calls = list(calls)
        self.index = {(id(c.module), c.call): k for k, c in enumerate(self.calls)}
        self.on_pre, self.on_post, self.on_extra = on_pre, on_post, on_extra
        self.active = active or (lambda: True)
        self.modules = {id(c.module): c for c in self.calls}
        self.reset()

    def reset(self) -> None:
        self.counts: dict[int, int] = {}
        self.open: tuple[int, int] | None = None  # (module id, stage) of the stage running
        self.depth = 0

    def install(self, *, prepend: bool = False) -> list[Any]:
        handles = []
        for c in self.modules.values():
            m = c.module
            handles.append(
                m.register_forward_pre_hook(
                    lambda mod, a, kw: self._pre(mod, a, kw), with_kwargs=True, prepend=prepend
                )
            )
            handles.append(m.register_forward_hook(lambda mod, a, out: self._post(mod, out)))
        return handles

    def _pre(self, m: nn.Module, args: Any, kwargs: Any) -> None:
        if not self.active():
            return
        if self.open is not None:
            if self.open[0] == id(m):
                self.depth += 1
            return
        n = self.counts.get(id(m), 0)
        self.counts[id(m)] = n + 1
        k = self.index.get((id(m), n))
        if k is None:
            self.on_extra(self.modules[id(m)].name, n)
            return
        self.open = (id(m), k)
        self.on_pre(k, args, kwargs)

    def _post(self, m: nn.Module, output: Any) -> None:
        if not self.active() or self.open is None or self.open[0] != id(m):
            return
        if self.depth:
            self.depth -= 1
            return
        k = self.open[1]
        self.open = None
        self.on_post(k, output)


class _Handles:
    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def when_grads_done(tensors: Sequence[torch.Tensor], fn: Callable[[], None]) -> _Handles:
    """Call ``fn()`` once per backward, when the gradients of all `tensors` that the backward
    computes are whole; returns a handle with ``remove()``.

    torch's ``register_multi_grad_hook(mode="all")`` does the same but keeps every gradient it
    has seen until the last one arrives: a block's input gradient, made early, then lives until a
    shared input's (T5's encoder output, read by every decoder block) is whole, several blocks
    later. The profiler's marks and the runtime's would each hold different gradients that way,
    and the runtime more memory than it needs; this counts arrivals and holds none."""
    nodes = [torch.autograd.graph.get_gradient_edge(t).node for t in tensors]
    pending: dict[int, list[int]] = {}  # backward id -> [arrived, expected]

    def arrived(grad: torch.Tensor) -> None:
        task = torch._C._current_graph_task_id()
        if task not in pending:
            expected = sum(bool(torch._C._will_engine_execute_node(n)) for n in nodes)
            pending[task] = [0, expected]
        count = pending[task]
        count[0] += 1
        if count[0] == count[1]:
            del pending[task]
            fn()

    return _Handles([t.register_hook(arrived) for t in tensors])
