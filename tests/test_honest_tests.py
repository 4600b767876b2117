"""The test suite itself: no test function returns before it has checked something
(a parametrised case that returns early passes without having checked anything).
A `return` is accepted only after an `assert` (or `pytest.raises`) in its own
block; a case that cannot be checked is skipped with a reason (`pytest.skip`) or
not generated at all."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _checks(stmt: ast.stmt) -> bool:
    """`stmt` is an assert, or a `with pytest.raises(...)` block."""
    if isinstance(stmt, ast.Assert):
        return True
    return isinstance(stmt, ast.With) and any(
        isinstance(i.context_expr, ast.Call) and isinstance(i.context_expr.func, ast.Attribute)
        and i.context_expr.func.attr in ("raises", "warns") for i in stmt.items)


def _unchecked_returns(fn: ast.FunctionDef) -> list[int]:
    """Lines of `return`s of `fn` itself (not of functions nested in it) with no
    check before them in their own block."""
    lines, todo = [], [fn]
    while todo:
        node = todo.pop()
        for name in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            for i, stmt in enumerate(block):
                if isinstance(stmt, ast.Return) and not any(_checks(s) for s in block[:i]):
                    lines.append(stmt.lineno)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _NESTED):
                todo.append(child)
    return sorted(lines)


def early_returns(paths) -> list[str]:
    found = []
    for path in paths:
        tree = ast.parse(Path(path).read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.name.startswith("test"):
                found += [f"{Path(path).name}:{line} ({node.name})"
                          for line in _unchecked_returns(node)]
    return found


def test_no_test_function_returns_early():
    found = early_returns(sorted(TESTS.glob("test_*.py")))
    assert not found, "tests that return instead of asserting or skipping: " + ", ".join(found)


def test_the_check_sees_a_return(tmp_path):
    f = tmp_path / "test_x.py"
    f.write_text("def test_a(x):\n    if x:\n        return\n    assert x\n\n"
                 "def test_b():\n    def helper():\n        return 1\n    assert helper()\n\n"
                 "def test_c(x):\n    try:\n        x()\n    except ValueError:\n"
                 "        if x:\n            assert x\n        return\n    assert x\n\n"
                 "def test_d(x):\n    if x:\n        assert x\n        return\n    assert x\n")
    assert early_returns([f]) == ["test_x.py:3 (test_a)", "test_x.py:17 (test_c)"]
