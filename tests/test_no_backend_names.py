"""The harness never names a backend: every backend fact it needs is declared in ``backends/``
(``BackendInfo``, ``Deployment``), so adding a backend touches only ``backends/``.

The rule, precisely: in every ``bench/**/*.py``, no identifier and no string literal contains a
backend or backend-part name (case-insensitive), except comments and docstrings (the first
statement of a module, class or function), which may explain with examples."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = re.compile(r"sqlite|postgres|temporal|litestream|seaweedfs|dbos", re.IGNORECASE)
_CODE_TOKENS = {tokenize.NAME, tokenize.STRING}
if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python 3.12+: f-string text is its own token
    _CODE_TOKENS.add(tokenize.FSTRING_MIDDLE)


def _docstring_starts(tree: ast.AST) -> set[tuple[int, int]]:
    starts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                starts.add((body[0].lineno, body[0].col_offset))
    return starts


def backend_names_in_code(source: str) -> list[tuple[int, str]]:
    """(line, token) for every identifier or non-docstring string naming a backend."""
    docs = _docstring_starts(ast.parse(source))
    hits = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _CODE_TOKENS or tok.start in docs:
            continue
        if NAMES.search(tok.string):
            hits.append((tok.start[0], tok.string))
    return hits


def test_bench_names_no_backend() -> None:
    found = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        for line, tok in backend_names_in_code(path.read_text()):
            found.append(f"{path.relative_to(ROOT)}:{line}: {tok}")
    assert found == [], "backend knowledge in bench/:\n" + "\n".join(found)


def test_the_rule_sees_names_in_code_and_spares_prose() -> None:
    src = (
        '"""Docstring naming Temporal is prose."""\n'
        "# a comment on SQLite is prose too\n"
        "def f(x):\n"
        '    """So is Litestream here."""\n'
        '    uses_postgres = x.get("litestream")\n'
        '    return f"on {x} via SeaweedFS"\n'
    )
    hits = [t for _, t in backend_names_in_code(src)]
    assert "uses_postgres" in hits and '"litestream"' in hits
    assert any("SeaweedFS" in t for t in hits)
    assert not any("Temporal" in t or "SQLite" in t or "Litestream here" in t for t in hits)
