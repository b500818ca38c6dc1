"""Every import points down: the torch-free core never imports the torch side or the CLI, the
runtime never imports the solvers or the simulator, and no module imports another subpackage's
private names. Read from the source (every import statement, those inside functions too), so a
lazy import that points up fails here as well.

Layers, bottom up: the core (errors, units, the root's private helpers ``_io``, ``_args``,
``_text``; ``problem``, ``schedule``, ``simulation``, ``solvers``, ``curves``), then the torch side
(``profiling``, ``runtime``, ``buckets``, ``compare``, ``enabling``, ``export``, ``models``,
``zoo``), then the command line
(``cli``, ``__main__``) and the package's own ``__init__`` (the facade, which may import
anything).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "checkpoint_solver"
CORE = {
    "errors",
    "units",
    "_io",
    "_args",
    "_text",
    "problem",
    "schedule",
    "simulation",
    "solvers",
    "curves",
    "report",
}
TORCH_SIDE = {"profiling", "runtime", "buckets", "compare", "enabling", "export", "models", "zoo"}
CLI = {"cli", "__main__"}
ROOT_HELPERS = {"_io", "_args", "_text"}  # private modules of the root, shared by design


def _part(module: str) -> str:
    """The top-level part of the package a dotted module name is in ("" for the facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> list[tuple[str, str, str, int]]:
    """(importing module, imported module, imported name, line) for every import of ours."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                # The package imports absolutely (STYLE.md); a relative import would hide here.
                assert node.level == 0, f"{module}: relative import (line {node.lineno})"
                base = node.module or ""
                if base.split(".")[0] != "checkpoint_solver":
                    continue
                for alias in node.names:
                    out.append((module, base, alias.name, node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "checkpoint_solver":
                        out.append((module, alias.name, "", node.lineno))
    return out


IMPORTS = _imports()


def _target(base: str, name: str) -> str:
    """The module an import reaches: ``from checkpoint_solver import solvers`` reaches
    ``checkpoint_solver.solvers``."""
    candidate = f"{base}.{name}" if name else base
    if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
        PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
    ).exists():
        return candidate
    return base


def test_the_walk_finds_the_imports() -> None:
    # A check that cannot fail is no check: the walk sees known imports of each kind.
    assert ("checkpoint_solver.solvers.dp", "checkpoint_solver.problem", "Chain") in {
        (a, b, c) for a, b, c, _ in IMPORTS
    }
    assert any(
        a.startswith("checkpoint_solver.runtime") and "profiling" in b for a, b, _, _ in IMPORTS
    )


def test_the_core_never_imports_the_torch_side_or_the_cli() -> None:
    bad = [
        f"{src} -> {_target(dst, name)} (line {line})"
        for src, dst, name, line in IMPORTS
        if _part(src) in CORE
        and (
            _part(_target(dst, name)) in TORCH_SIDE | CLI
            or _target(dst, name) == "checkpoint_solver"
        )
    ]
    assert bad == []


def test_the_runtime_never_imports_the_solvers_or_the_simulator() -> None:
    bad = [
        f"{src} -> {_target(dst, name)} (line {line})"
        for src, dst, name, line in IMPORTS
        if _part(src) == "runtime" and _part(_target(dst, name)) in {"solvers", "simulation"}
    ]
    assert bad == []


def test_the_torch_side_never_imports_the_cli() -> None:
    bad = [
        f"{src} -> {_target(dst, name)} (line {line})"
        for src, dst, name, line in IMPORTS
        if _part(src) in TORCH_SIDE and _part(_target(dst, name)) in CLI
    ]
    assert bad == []


def _private(module: str, name: str) -> bool:
    parts = module.split(".")[1:]
    if parts and parts[0] in ROOT_HELPERS:
        parts = parts[1:]
    hidden = any(p.startswith("_") and not p.startswith("__") for p in parts)
    return hidden or (name.startswith("_") and not name.startswith("__"))


def test_no_private_name_crosses_a_subpackage() -> None:
    bad = [
        f"{src} -> {dst}.{name} (line {line})"
        for src, dst, name, line in IMPORTS
        if _part(src) != _part(dst) and _private(dst, name)
    ]
    assert bad == []
