"""The durability frontier: each setting of each backend placed by throughput (x, steps/s of
fault-free runs of the same settings, without the lazy filesystem) against what a fault lost
(y, acknowledged writes lost per trial), so a reviewer sees what each unit of speed costs in
durability. Input: sweep group files that recorded plain runs (`bench sweep --fault lose-power`
does by default); other sweeps are skipped."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from bench.report import charts
from bench.report.context import Context
from bench.report.doc import Spread, Table, fmt_spread
from bench.report.faults import figures


def points(ctx: Context) -> list[dict[str, Any]]:
    """One point per (sweep group, setting): plain throughput and the trials' figures."""
    out = []
    for g in (g for g in ctx.groups if g.kind == "sweep" and g.meta.get("plain")):
        plain, lazy = g.meta.get("plain") or {}, g.meta.get("plain_lazyfs") or {}
        for key in g.members:
            rs = [r for r in ctx.runs if r.group is g and r.group_key == key and r.usable_trial]
            ok = [p for p in plain.get(key, []) if not p.get("partial")]
            if not rs or not ok:
                continue
            fs = [figures(r) for r in rs]
            sources = [ctx.rel(g.path), *ctx.src(rs, "summary.json")]
            for p in ok + list(lazy.get(key, [])):
                summary = Path(str(p.get("run_dir"))) / "summary.json"
                if summary.exists():
                    sources.append(ctx.rel(summary))
            out.append(
                {
                    "backend": str(g.meta.get("backend")),
                    "fault": str(g.meta.get("fault")),
                    "setting": key,
                    "steps_per_s": [p.get("steps_per_s") for p in ok],
                    "lazy_steps_per_s": [p.get("steps_per_s") for p in lazy.get(key, [])],
                    "lost": [f["lost_acks"] for f in fs],
                    "rpo": [f["rpo_s"] for f in fs],
                    "integrity": [f.get("integrity") for f in fs],
                    "sources": sources,
                }
            )
    return out


def chart(pts: list[dict[str, Any]], title: str) -> Figure:
    """x = median plain steps/s (whiskers min..max over plain runs), y = median lost acks
    (whiskers min..max over trials); one colour per backend, each point labelled."""
    backends = sorted({p["backend"] for p in pts})
    col = charts.colors(backends)
    with matplotlib.rc_context(charts.RC):
        fig = Figure(figsize=(8.5, 5.2), layout="constrained")
        ax = fig.add_subplot()
        ranked = sorted(pts, key=lambda p: (Spread.of(p["lost"]) or Spread(0, 0, 0, 0)).median)
        for i, p in enumerate(ranked):
            sx, sy = Spread.of(p["steps_per_s"]), Spread.of(p["lost"])
            if sx is None or sy is None:
                continue
            b = p["backend"]
            first = all(q["backend"] != b for q in ranked[:i])
            ax.errorbar(
                [sx.median],
                [sy.median],
                xerr=[[sx.median - sx.lo], [sx.hi - sx.median]],
                yerr=[[sy.median - sy.lo], [sy.hi - sy.median]],
                color=col[b],
                marker="o",
                ms=8,
                capsize=4,
                lw=1.5,
                label=b if first else None,
            )
            bad = any(v is False for v in p["integrity"])
            ax.annotate(
                f"{b} {p['setting']}" + (" (DAMAGED)" if bad else ""),
                (sx.median, sy.median),
                textcoords="offset points",
                xytext=(-8, 6 + 14 * (i % 3)),  # staggered: settings may coincide
                ha="right",
                fontsize=9.5,
                color=col[b],
            )
        ax.set_xlabel("throughput of fault-free runs (steps/s, no lazy filesystem)")
        ax.set_ylabel("acknowledged writes lost per power loss\n(symlog scale)")
        xs = [v for p in pts for v in p["steps_per_s"] if isinstance(v, int | float)]
        ys = [v for p in pts for v in p["lost"] if isinstance(v, int | float)]
        ax.set_xlim(0, max(xs + [1.0]) * 1.08)  # from 0: a small gap in speed looks small
        # symlog: 0, a handful and thousands of lost acks all stay readable on one axis
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(-0.3, max(ys + [1.0]) * 3)
        ax.set_title(title)
        ax.legend(loc="upper left", framealpha=0.9)
    return fig


def table(pts: list[dict[str, Any]]) -> Table:
    rows = []
    for p in pts:
        fast, slow = Spread.of(p["steps_per_s"]), Spread.of(p["lazy_steps_per_s"])
        over = (
            f"{1 - slow.median / fast.median:.0%}"
            if fast and slow and fast.median > 0 and not math.isnan(slow.median)
            else "-"
        )
        rows.append(
            [
                p["backend"],
                p["setting"],
                fmt_spread(fast, ".4g"),
                fmt_spread(Spread.of(p["lost"]), ".3g"),
                fmt_spread(Spread.of(p["rpo"]), ".3g"),
                ", ".join(str(v) for v in p["integrity"]),
                fmt_spread(slow, ".4g"),
                over,
            ]
        )
    return Table(
        [
            "backend",
            "setting",
            "steps/s (plain)",
            "lost acks",
            "RPO s",
            "integrity",
            "steps/s on lazy fs",
            "lazy fs overhead",
        ],
        rows,
        [p["sources"] for p in pts],
        notes=[
            "steps/s: fault-free runs of the same settings without the lazy filesystem, median "
            "[min..max]; lost acks and RPO: the fault trials (on the lazy filesystem), median "
            "[min..max]; overhead = 1 - median(on lazy fs) / median(plain).",
        ],
    )
