"""Charts for the report and the notebook, one idea per chart.

Every function takes plain data (decoded histograms, a timeseries frame, lists of trial values)
and returns a ``matplotlib.figure.Figure`` built without pyplot, so the same code draws into a
PNG for the report and inline in the notebook, with no global state. Conventions: titles and
axis labels carry units, fonts are at least 10 pt, warm-up is shaded grey and hatched, fault
windows (fault -> store accepting again) are shaded red, as in Jepsen's perf charts, so cause
and effect are visible side by side. Partial runs are never passed here (the caller filters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from hdrh.histogram import HdrHistogram
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench.report.doc import Spread

RC = {
    "font.size": 11,
    "axes.titlesize": 12.5,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PALETTE = ["#1a73e8", "#e8710a", "#188038", "#a142f4", "#d01884", "#12b5cb", "#5f6368"]
FAULT_COLOR, WARMUP_COLOR = "#d93025", "#9aa0a6"


def colors(labels: Sequence[str]) -> dict[str, str]:
    """A stable color per label, shared by every chart of a report."""
    return {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}


def human_seconds(v: float, _pos: Any = None) -> str:
    """Axis label for a duration in seconds: 500 µs, 20 ms, 1.5 s."""
    if v <= 0:
        return "0"
    if v < 1e-3:
        return f"{v * 1e6:g} µs"
    if v < 1:
        return f"{v * 1e3:g} ms"
    return f"{v:g} s"


def _figure(w: float = 8.5, h: float = 4.6, rows: int = 1, sharex: bool = False):
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(w, h), layout="constrained")
        axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _legend(fig: Figure, ax, ncols: int = 3) -> None:
    """Legend below the plot, never on top of data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(ncols, len(handles)),
            frameon=False,
        )


def _log_x(ax, formatter=human_seconds) -> None:
    """Log x axis labelled in plain units; minor ticks labelled only when the range is narrow
    (otherwise matplotlib prints "3x10^-1")."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(formatter))
    lo, hi = ax.get_xlim()
    narrow = lo > 0 and hi / lo < 30

    def minor(v: float, _pos: Any = None) -> str:
        lead = f"{v:.1e}"[0]
        return formatter(v) if narrow and lead in "25" else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    return path


# --- latency CDF -------------------------------------------------------------------------------


def latency_cdf(
    hists: dict[str, tuple[HdrHistogram, int]], title: str, color: dict[str, str]
) -> Figure:
    """Cumulative share of operations at or below each latency (log x): curves further left are
    faster, a long flat top is a tail. ``hists``: label -> (merged histogram, runs merged)."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        for label, (h, nruns) in hists.items():
            total = h.get_total_count()
            if not total:
                continue
            xs, ys = [], []
            for it in h.get_recorded_iterator():
                xs.append(it.value_iterated_to / 1e6)
                ys.append(100.0 * it.total_count_to_this_value / total)
            ax.step(
                xs,
                ys,
                where="post",
                lw=2,
                color=color.get(label),
                label=f"{label} (n={total:,}, {nruns} run{'s' * (nruns > 1)})",
            )
        for q in (50, 99):
            ax.axhline(q, color="#5f6368", ls=":", lw=1)
            ax.annotate(
                f"p{q}",
                (1.0, q),
                xycoords=("axes fraction", "data"),
                ha="left",
                va="center",
                fontsize=10,
                color="#5f6368",
            )
        _log_x(ax)
        ax.set_ylim(0, 101)
        ax.set_xlabel("latency (log scale)")
        ax.set_ylabel("operations at or below (%)")
        ax.set_title(title)
        _legend(fig, ax, ncols=2)
    return fig


# --- time series -------------------------------------------------------------------------------


def _shade(ax, s0: float, warmup_s: float, fault: dict[str, Any] | None, x_end: float) -> None:
    ax.axvspan(
        0,
        warmup_s,
        facecolor=WARMUP_COLOR,
        alpha=0.25,
        hatch="//",
        edgecolor="#80868b",
        lw=0,
        label="warm-up (excluded from latency tables)",
    )
    if not fault:
        return
    tl = fault.get("timeline") or {}

    def rel(k: str) -> float | None:
        v = tl.get(k)
        return None if v is None or v != v else float(v) - s0

    start, back, rec = rel("start_t"), rel("store_accepting_t"), rel("recover_begin_t")
    if start is None:
        return
    end = back if back is not None else x_end
    what = "store accepting again" if back is not None else "end (store never came back)"
    ax.axvspan(
        start, end, color=FAULT_COLOR, alpha=0.18, label=f"fault: {fault.get('fault')} -> {what}"
    )
    if rec is not None:
        ax.axvline(rec, color=FAULT_COLOR, ls=":", lw=1.5, label="recovery starts")


def _rel_time(ts: pd.DataFrame, s0: float) -> tuple[pd.Series, float]:
    x = ts["t"] - s0
    width = float(ts["t"].diff().median()) if len(ts) > 1 else 1.0
    return x, width if width > 0 else 1.0


def _steps(x: pd.Series, y: pd.Series, w: float) -> tuple[list[float], list[float]]:
    """Points for a 'post' step plot that also draws the last bucket's full width."""
    xs, ys = list(map(float, x)), list(map(float, y))
    return xs + [xs[-1] + w], ys + [ys[-1]]


def _xlim(ax, ts: pd.DataFrame, x: pd.Series, w: float) -> None:
    """From the schedule's zero (nothing is offered before it; the deployment's start-up is not
    part of the measurement) to the end of the last bucket."""
    ax.set_xlim(0, max(float(x.max()) + w, w))


def throughput_over_time(
    ts: pd.DataFrame,
    s0: float,
    warmup_s: float,
    fault: dict[str, Any] | None,
    label: str,
    color: str,
    title: str,
) -> Figure:
    """Runs completed per second next to runs arriving per second (the offered load)."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        x, w = _rel_time(ts, s0)
        ax.step(
            *_steps(x, ts["arrivals"] / w, w),
            where="post",
            color="#5f6368",
            lw=1.3,
            ls="--",
            label="arrivals (offered load)",
        )
        ax.step(
            *_steps(x, ts["runs_completed"] / w, w),
            where="post",
            color=color,
            lw=2,
            label=f"{label}: runs completed",
        )
        _shade(ax, s0, warmup_s, fault, float(x.max()) + w)
        _xlim(ax, ts, x, w)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("time since the schedule started (s)")
        ax.set_ylabel(f"runs per second ({w:g}-s buckets)")
        ax.set_title(title)
        _legend(fig, ax, ncols=2)
    return fig


def latency_over_time(
    ts: pd.DataFrame,
    s0: float,
    warmup_s: float,
    fault: dict[str, Any] | None,
    label: str,
    color: str,
    title: str,
) -> Figure:
    """p50 and p99 run latency of the runs completing in each second."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        x, w = _rel_time(ts, s0)
        for col, ls, name in (
            ("run_latency_p50_s", "-", "p50"),
            ("run_latency_p99_s", "--", "p99"),
        ):
            ax.plot(
                x + w / 2, ts[col], ls=ls, marker=".", color=color, lw=1.8, label=f"{label}: {name}"
            )
        _shade(ax, s0, warmup_s, fault, float(x.max()) + w)
        vals = pd.concat([ts["run_latency_p50_s"], ts["run_latency_p99_s"]]).dropna()
        if len(vals) and vals.min() > 0 and vals.max() / vals.min() > 30:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(human_seconds))
        _xlim(ax, ts, x, w)
        ax.set_xlabel("time since the schedule started (s)")
        ax.set_ylabel("run latency (scheduled -> completed)")
        ax.set_title(title)
        _legend(fig, ax, ncols=2)
    return fig


# --- faults ------------------------------------------------------------------------------------

RECOVERY = (
    ("store_accepting_s", "store accepting"),
    ("first_resumed_step_s", "1st interrupted step done"),
    ("all_interrupted_done_s", "all interrupted runs done"),
)


def recovery_bars(groups: list[tuple[str, dict[str, list[float | None]]]], title: str) -> Figure:
    """Per backend/fault: three recovery times (median bar, min..max whisker, one dot per
    trial). A missing bar says "n/a": nothing to measure (e.g. no run was interrupted)."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure(w=max(8.5, 1.9 * len(groups) + 3))
        width = 0.26
        shades = ["#1a73e8", "#e8710a", "#188038"]
        for j, (key, name) in enumerate(RECOVERY):
            for i, (_label, vals) in enumerate(groups):
                xpos = i + (j - 1) * width
                s = Spread.of(vals.get(key, []))
                if s is None:
                    ax.text(
                        xpos,
                        0.01,
                        "n/a",
                        ha="center",
                        va="bottom",
                        fontsize=10,
                        color=shades[j],
                        transform=ax.get_xaxis_transform(),
                    )
                    continue
                ax.bar(
                    xpos,
                    s.median,
                    width,
                    color=shades[j],
                    alpha=0.85,
                    label=name if i == 0 else None,
                )
                ax.errorbar(
                    xpos,
                    s.median,
                    yerr=[[s.median - s.lo], [s.hi - s.median]],
                    color="black",
                    capsize=4,
                    lw=1.2,
                )
                pts = [v for v in vals.get(key, []) if v is not None]
                ax.plot([xpos] * len(pts), pts, "o", color="black", ms=3.5, alpha=0.6)
        ax.set_xticks(range(len(groups)), [g[0] for g in groups])
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel("seconds after the fault")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        _legend(fig, ax, ncols=3)
    return fig


def rpo_sweep(
    points: list[tuple[float, list[Any], list[Any], list[Any]]], setting: str, title: str
) -> Figure:
    """Durability against upload cost across a swept setting: RPO, lost acks and object-store
    PUTs per minute, one panel each on a shared x axis. Dots are trials, the line joins
    medians, whiskers span min..max."""
    with matplotlib.rc_context(RC):
        fig, axes = _figure(h=8.2, rows=3, sharex=True)
        pts = sorted(points, key=lambda p: p[0])
        xs = [p[0] for p in pts]
        panels = (
            (1, "RPO (s)\n(oldest lost ack's age)", "#d93025"),
            (2, "lost acks\n(count)", "#a142f4"),
            (3, "object-store PUTs\nper minute", "#1a73e8"),
        )
        for ax, (k, ylabel, color) in zip(axes, panels, strict=True):
            meds, los, his = [], [], []
            for p in pts:
                s = Spread.of(p[k])
                meds.append(s.median if s else math.nan)
                los.append(s.median - s.lo if s else 0)
                his.append(s.hi - s.median if s else 0)
                raw = [float(v) for v in p[k] if v is not None]
                ax.plot([p[0]] * len(raw), raw, "o", color=color, alpha=0.35, ms=5)
            ax.errorbar(
                xs,
                meds,
                yerr=[los, his],
                color=color,
                marker="o",
                lw=2,
                capsize=5,
                label="median [min..max] over trials",
            )
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
        lo_x, hi_x = min(xs), max(xs)
        ref = [lo_x + (hi_x - lo_x) * i / 50 for i in range(51)]
        axes[0].plot(ref, ref, ls="--", color="#5f6368", lw=1.2, label=f"RPO = {setting}")
        top = max([hi_x] + [float(v) for p in pts for v in p[1] if v is not None])
        axes[0].set_ylim(0, top * 1.08)
        axes[0].legend(loc="upper left", framealpha=0.9)
        if lo_x > 0 and hi_x / lo_x >= 5:
            axes[-1].set_xscale("log")
        axes[-1].set_xticks(xs, [f"{x:g}" for x in xs])
        axes[-1].xaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
        axes[-1].set_xlabel(f"{setting} (s)")
        axes[0].set_title(title)
    return fig
