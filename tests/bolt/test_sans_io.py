"""bolt/ must stay sans-IO: no module in it may import an I/O or event-loop library."""

from __future__ import annotations

import ast
from pathlib import Path

import bolt

FORBIDDEN = {"asyncio", "socket", "ssl", "selectors"}
BOLT_DIR = Path(bolt.__file__).parent


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_bolt_package_has_modules() -> None:
    names = {p.name for p in BOLT_DIR.glob("*.py")}
    assert {"handshake.py", "chunking.py", "packstream.py", "messages.py", "state.py"} <= names


def test_no_io_imports_in_bolt() -> None:
    offenders = {}
    for path in sorted(BOLT_DIR.glob("*.py")):
        roots = _imported_roots(ast.parse(path.read_text(), filename=str(path)))
        bad = roots & FORBIDDEN
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_checker_catches_forbidden_imports() -> None:
    # The walker itself must see every import form, or the test above proves nothing.
    src = "import asyncio\nfrom socket import socket\nimport ssl as s\n__import__('selectors')\n"
    assert _imported_roots(ast.parse(src)) == FORBIDDEN
