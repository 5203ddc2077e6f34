"""Render report blocks to Markdown and to one self-contained HTML file.

The HTML embeds every chart as a base64 PNG and carries its CSS inline, so it opens from a mail
attachment or a shared drive with no server and no network. Source files are shown as relative
paths (from the report directory) so a reader can open the exact file a number came from."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from bench.report.doc import Banner, Block, Bullets, Figure, Heading, Para, Table, anchor

_ICON = {"error": "⛔", "warn": "⚠️", "info": "ℹ️"}


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def footnotes(t: Table) -> tuple[list[str], list[list[str]]]:
    """Per-row source marks and the distinct source lists they point to. Rows citing the same
    files share a mark; when every row cites the same files there is no column at all, just
    one list under the table."""
    distinct: list[tuple[str, ...]] = []
    marks = []
    for i in range(len(t.rows)):
        files = tuple(t.sources[i]) if i < len(t.sources) else ()
        if not files:
            marks.append("")
            continue
        if files not in distinct:
            distinct.append(files)
        marks.append(f"[s{distinct.index(files) + 1}]")
    if not distinct:
        return [], []
    if len(distinct) == 1 and all(marks):
        return [], [list(distinct[0])]
    return marks, [list(d) for d in distinct]


def _sources_md(t: Table) -> list[str]:
    marks, lists = footnotes(t)
    if not lists:
        return []
    if not marks:
        return [
            "",
            "Sources (every row; relative to this report): "
            + ", ".join(f"`{f}`" for f in lists[0]),
        ]
    out = [f"- [s{i}] " + ", ".join(f"`{f}`" for f in files) for i, files in enumerate(lists, 1)]
    return ["", "Sources (relative to this report):", *out]


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["", "#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Bullets):
            lines += [f"- {x}" for x in b.items] + [""]
        elif isinstance(b, Banner):
            lines += [f"> {_ICON.get(b.severity, '')} **{b.text}**", ""]
        elif isinstance(b, Table):
            if b.caption:
                lines += [f"**{b.caption}**", ""]
            marks, _ = footnotes(b)
            head = b.headers + (["src"] if marks else [])
            lines.append("| " + " | ".join(map(_md_cell, head)) + " |")
            lines.append("|" + "|".join("---" for _ in head) + "|")
            for i, row in enumerate(b.rows):
                cells = list(row) + ([marks[i]] if marks else [])
                lines.append("| " + " | ".join(map(_md_cell, cells)) + " |")
            lines += _sources_md(b)
            lines += [f"\n*{n}*" for n in b.notes]
            lines.append("")
        elif isinstance(b, Figure):
            lines += [f"![{b.title}]({b.filename})", "", f"*How to read:* {b.how_to_read}"]
            if b.sources:
                lines.append("")
                lines.append("Data: " + ", ".join(f"`{s}`" for s in b.sources))
            lines.append("")
    return "\n".join(lines).strip() + "\n"


# --- HTML ------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:15px;
 line-height:1.45;max-width:1240px;margin:2em auto;padding:0 1em;color:#1d1d1f}
h1{font-size:1.8em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h2{font-size:1.4em;margin-top:2em;border-bottom:1px solid #eee}
h3{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;margin:.6em 0;font-size:13.5px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6}
tr:nth-child(even) td{background:#fafafa}
code{background:#f3f4f6;padding:1px 4px;border-radius:3px;font-size:.92em}
.banner{padding:.6em 1em;margin:.5em 0;border-radius:6px;border-left:6px solid}
.banner.warn{background:#fff8e1;border-color:#f0a500}
.banner.error{background:#fdecea;border-color:#d93025}
.banner.info{background:#e8f0fe;border-color:#1a73e8}
.sources{font-size:12.5px;color:#444;margin:.2em 0 1em 0}
.sources code{font-size:11.5px}
.note{font-size:13px;color:#333;font-style:italic}
figure{margin:1.2em 0}
figure img{max-width:100%;border:1px solid #e5e5e5}
figcaption{font-size:14px;color:#333}
a{color:#1a56c4}
a.src{font-size:11px;color:#80868b;text-decoration:none;margin-left:2px}
table.decision{font-size:13px}
table.decision td{white-space:normal}
.verdict-over{color:#b3261e;font-weight:600}
"""


_LINK = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")


def _a(m: re.Match) -> str:
    text, href = m.group(1), m.group(2)
    cls = ' class="src"' if text.startswith("↗") else ""
    return f'<a{cls} href="{href}">{text}</a>'


def _inline(text: str) -> str:
    """Escape, then allow **bold**, `code` and [links](href) (the only markup the blocks use)."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = _LINK.sub(_a, s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def _table_html(b: Table) -> list[str]:
    out = []
    if b.caption:
        out.append(f"<p><strong>{_inline(b.caption)}</strong></p>")
    marks, lists = footnotes(b)
    head = b.headers + (["src"] if marks else [])
    cls = f' class="{b.css_class}"' if b.css_class else ""
    out.append(
        f"<table{cls}><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>"
    )
    out.append("</thead><tbody>")
    for i, row in enumerate(b.rows):
        cells = [_inline(str(c)) for c in row] + ([marks[i]] if marks else [])
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")

    def codes(files: list[str]) -> str:
        return ", ".join(f"<code>{html.escape(f)}</code>" for f in files)

    if lists and not marks:
        out.append(f'<div class="sources">Sources (every row): {codes(lists[0])}</div>')
    elif lists:
        items = "".join(f"<li>[s{i}] {codes(f)}</li>" for i, f in enumerate(lists, 1))
        out.append(f'<div class="sources">Sources (relative to this report):<ul>{items}</ul></div>')
    out += [f'<p class="note">{_inline(n)}</p>' for n in b.notes]
    return out


def to_html(blocks: list[Block], out_dir: Path, title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f'<h{b.level} id="{anchor(b.text)}">{_inline(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b.items) + "</ul>")
        elif isinstance(b, Banner):
            icon = _ICON.get(b.severity, "")
            body.append(
                f'<div class="banner {b.severity}">{icon} <strong>{_inline(b.text)}</strong></div>'
            )
        elif isinstance(b, Table):
            body += _table_html(b)
        elif isinstance(b, Figure):
            data = base64.b64encode((out_dir / b.filename).read_bytes()).decode()
            src = ""
            if b.sources:
                src = '<div class="sources">Data: ' + ", ".join(
                    f"<code>{html.escape(s)}</code>" for s in b.sources
                )
                src += "</div>"
            body.append(
                f'<figure><img alt="{html.escape(b.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption><em>How to read:</em> {_inline(b.how_to_read)}</figcaption>"
                f"{src}</figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
