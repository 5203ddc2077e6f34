"""Modules over 400 lines and functions over 60 lines in bench/ and backends/.

An offender is allowed when it says why at its top: a comment line starting with ``# size:``
among a module's first 40 lines, or for a function in the comment block right above it (above
its decorators) or within the five lines below its ``def``. Prints every offender (with its reason, if
any); exits 1 when one has none.

    python scripts/size_check.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
TREES = ("bench", "backends")
MARK = "# size:"


@dataclass(frozen=True)
class Offender:
    where: str  # path, or path:line name()
    lines: int
    limit: int
    reason: str | None


def _reason(lines: list[str], start: int, end: int) -> str | None:
    for line in lines[max(start, 0) : end]:
        text = line.strip()
        if text.startswith(MARK):
            return text[len(MARK) :].strip() or None
    return None


def offenders_in(path: Path, shown: str) -> list[Offender]:
    text = path.read_text()
    lines = text.splitlines()
    out = []
    if len(lines) > MAX_MODULE_LINES:
        out.append(Offender(shown, len(lines), MAX_MODULE_LINES, _reason(lines, 0, 40)))
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        n = (node.end_lineno or node.lineno) - node.lineno + 1
        if n <= MAX_FUNCTION_LINES:
            continue
        top = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1  # 0-based
        above = top
        while above > 0 and lines[above - 1].strip().startswith("#"):
            above -= 1
        reason = _reason(lines, above, top) or _reason(lines, node.lineno, node.lineno + 5)
        out.append(Offender(f"{shown}:{node.lineno} {node.name}()", n, MAX_FUNCTION_LINES, reason))
    return out


def offenders(root: Path) -> list[Offender]:
    out = []
    for tree in TREES:
        for path in sorted((root / tree).rglob("*.py")):
            out += offenders_in(path, str(path.relative_to(root)))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = offenders(root)
    for o in sorted(found, key=lambda o: (o.reason is not None, -o.lines)):
        why = f"reason: {o.reason}" if o.reason else "NO REASON"
        print(f"{o.where}: {o.lines} lines (limit {o.limit}); {why}")
    missing = sum(1 for o in found if o.reason is None)
    print(f"{len(found)} over the limits, {missing} without a '{MARK}' reason")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
