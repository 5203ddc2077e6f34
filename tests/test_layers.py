"""The layering rules the harness keeps: ``backends/`` never imports ``bench`` (the arrow points
down: the harness uses backends, backends use only ``backends.*`` shared modules)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def bench_imports_in_backends() -> list[str]:
    found = []
    for path in sorted((ROOT / "backends").rglob("*.py")):
        for mod in _imported_modules(path):
            if mod == "bench" or mod.startswith("bench."):
                found.append(f"{path.relative_to(ROOT)}: {mod}")
    return found


def test_backends_do_not_import_bench() -> None:
    assert bench_imports_in_backends() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from bench.history import OK\n")
    assert _imported_modules(bad) == ["bench.history"]
