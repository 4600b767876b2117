"""Package boundaries of nanoml/, read from the source (ast): the CLI layer is on
top and nothing below imports it, and no import is wrapped in an ImportError
fallback except the two that are real platform or extra checks."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "nanoml"
# the CLI layer: it may import everything; nothing else may import it
CLI_LAYER = {"nanoml.cli", "nanoml.__main__"}
# ImportError handlers that are not left-overs of incremental work
IMPORT_CHECKS = {
    "nanoml.sim.board": "termios/tty: the virtual board needs a POSIX pseudo-terminal",
    "nanoml.model._convert_worker": "TensorFlow is an optional extra (nanoml[convert])",
    "nanoml.sim.isolated": "resource (the worker's memory cap) exists on POSIX only",
    "nanoml.validate.tflite_runtime": "LiteRT or TensorFlow: optional (validate --layers "
                                      "--reference tflite)",
}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path, path.name == "__init__.py"


def _imported(name: str, is_pkg: bool, node) -> list[str]:
    """Absolute names an import statement of module `name` refers to."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        parts = name.split(".")
        keep = len(parts) - node.level + (1 if is_pkg else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _is_cli(target: str) -> bool:
    return any(target == m or target.startswith(m + ".") for m in CLI_LAYER | {"nanoml.commands"})


def upward_imports() -> list[str]:
    found = []
    for name, path, is_pkg in _modules():
        if name in CLI_LAYER or name.startswith("nanoml.commands"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bad = [t for t in _imported(name, is_pkg, node) if _is_cli(t)]
                if bad:
                    found.append(f"{name}:{node.lineno} imports {bad[0]}")
    # commands import each other's helpers, never the app itself
    for name, path, is_pkg in _modules():
        if name.startswith("nanoml.commands"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    bad = [t for t in _imported(name, is_pkg, node)
                           if t == "nanoml.cli" or t.startswith("nanoml.cli.")]
                    if bad:
                        found.append(f"{name}:{node.lineno} imports {bad[0]}")
    return found


def import_fallbacks() -> list[str]:
    found = []
    for name, path, _ in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ExceptHandler) or node.type is None:
                continue
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            if any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError")
                   for t in types) and name not in IMPORT_CHECKS:
                found.append(f"{name}:{node.lineno}")
    return found


def test_nothing_below_the_cli_layer_imports_it():
    assert upward_imports() == []


def test_no_import_error_fallbacks():
    assert import_fallbacks() == []


def test_the_checks_see_what_they_look_for():
    assert _imported("nanoml.commands.flash", False, ast.parse("from ..cli import app").body[0]) \
        == ["nanoml.cli", "nanoml.cli.app"]
    assert _imported("nanoml.profile", True, ast.parse("from .. import cli").body[0]) \
        == ["nanoml", "nanoml.cli"]
    assert _is_cli("nanoml.commands._common") and not _is_cli("nanoml.common")
    assert set(IMPORT_CHECKS) <= {name for name, _, _ in _modules()}
