"""No function in the package runs over 80 lines (its docstring left out) without a ``# Long:``
comment at its top saying why it is kept whole (STYLE.md: split what can be named; what stays
long says why)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "checkpoint_solver"
LIMIT = 80


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    n = (node.end_lineno or node.lineno) - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            n -= (first.end_lineno or first.lineno) - first.lineno + 1
    return n


def _long_without_reason(source: str) -> list[tuple[str, int, int]]:
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        size = _body_lines(node)
        if size <= LIMIT:
            continue
        # The comment sits at the top of the body: from the signature to a few lines past the
        # first statement (after the docstring, if any).
        head = lines[node.lineno - 1 : node.body[-1 if len(node.body) == 1 else 1].lineno + 3]
        if not any(text.strip().startswith("# Long:") for text in head):
            out.append((node.name, node.lineno, size))
    return out


def test_every_long_function_says_why() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, line, size in _long_without_reason(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({size} lines)")
    assert found == [], "functions over 80 lines without a '# Long:' comment:\n" + "\n".join(found)


def test_the_check_sees_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT + 1))
    assert _long_without_reason(f"def f():\n{body}\n") == [("f", 1, LIMIT + 2)]
    why = "    # Long: a table written out.\n"
    assert _long_without_reason(f'def f():\n    """Doc."""\n{why}{body}\n') == []
