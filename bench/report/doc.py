"""The report as data: a list of blocks (headings, text, banners, tables with their sources,
figures with how to read them), rendered twice (Markdown and HTML) by ``render``. Keeping the
content in one structure is what guarantees both files say the same thing and every table
carries its sources. Also the small numeric helpers every table uses (spread over repeats)."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # may contain **bold** and `code`


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Banner:
    text: str
    severity: str = "warn"  # "warn" | "error" | "info"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    sources: list[list[str]] = field(default_factory=list)  # per row: files it came from
    notes: list[str] = field(default_factory=list)
    caption: str = ""
    css_class: str = ""  # HTML only (the decision table is styled apart)


@dataclass
class Figure:
    filename: str  # PNG next to report.md
    title: str
    how_to_read: str
    sources: list[str] = field(default_factory=list)


Block = Heading | Para | Bullets | Banner | Table | Figure


def anchor(heading: str) -> str:
    """The fragment id of a heading, as GitHub derives it from Markdown (lower case, punctuation
    dropped, spaces to hyphens); the HTML uses the same id, so one link works in both files."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def link(text: str, href: str) -> str:
    """Inline link markup, understood by both renderers (text must not contain brackets)."""
    return f"[{text}]({href})"


# --- numbers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median and range over repeats (trials), ignoring missing values."""

    median: float
    lo: float
    hi: float
    n: int

    @staticmethod
    def of(values: list[Any]) -> Spread | None:
        xs = [float(v) for v in values if _num(v)]
        if not xs:
            return None
        return Spread(statistics.median(xs), min(xs), max(xs), len(xs))


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any, spec: str = ".3g", scale: float = 1.0) -> str:
    """Format a number; '-' when missing. Large values never go scientific (3.29e+03 ms is
    hard to read in a table: 3,290 is not)."""
    if not _num(v):
        return "-"
    x = v * scale
    if spec.endswith("g") and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:{spec}}"


def fmt_spread(s: Spread | None, spec: str = ".3g", scale: float = 1.0) -> str:
    """``median [min..max]`` (just the value when all repeats agree or there is one)."""
    if s is None:
        return "-"
    m = fmt(s.median, spec, scale)
    if s.n == 1 or fmt(s.lo, spec, scale) == fmt(s.hi, spec, scale):
        return m
    return f"{m} [{fmt(s.lo, spec, scale)}..{fmt(s.hi, spec, scale)}]"


def money(v: float | None) -> str:
    if v is None:
        return "unknown price"
    if v == 0:
        return "$0"
    if abs(v) < 0.01:
        return f"${v:.4f}"
    return f"${v:,.2f}"
