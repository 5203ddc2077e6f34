"""The percentile spectrum: latency against percentile on a "number of nines" axis (p50, p90,
p99, p99.9, p99.99 equally spaced), the view HdrHistogram's own plots use. A CDF squeezes the
tail into the top millimetre; here each extra nine gets the same width, so a tail that doubles
from p99 to p99.9 is as visible as the median.

A histogram of n values says nothing beyond the percentile 1 - 1/n (above it every percentile is
the maximum), so each curve stops there and its legend says how far it reaches."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from hdrh.histogram import HdrHistogram
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from bench.report.charts import RC, _figure, _legend, human_seconds

MAX_NINES = 4.0  # p99.99
TICKS = {0.0: "p0", 0.301: "p50", 1.0: "p90", 2.0: "p99", 3.0: "p99.9", 4.0: "p99.99"}


def nines(percentile: float) -> float:
    """p90 -> 1, p99 -> 2, p99.9 -> 3."""
    return -math.log10(1 - percentile / 100)


def reach(count: int) -> float:
    """How many nines ``count`` values support: the percentile 1 - 1/n, capped at p99.99."""
    return min(MAX_NINES, math.log10(count)) if count > 1 else 0.0


def label_percentile(n: float) -> str:
    p = 100 * (1 - 10**-n)
    return f"p{p:.4g}"


def curve(h: HdrHistogram) -> tuple[list[float], list[float]]:
    """(nines, latency in s) sampled densely from p0 to the reach of the histogram's count."""
    top = reach(h.get_total_count())
    xs = list(np.linspace(0, top, 200)) if top > 0 else [0.0]
    pct = [100 * (1 - 10**-x) for x in xs]
    return xs, [h.get_value_at_percentile(p) / 1e6 for p in pct]


def percentile_spectrum(
    hists: dict[str, tuple[HdrHistogram, int]], title: str, color: dict[str, str]
) -> Figure:
    """One curve per backend group (merged histograms); log latency axis."""
    with matplotlib.rc_context(RC):
        fig, (ax,) = _figure()
        drawn = False
        for label, (h, nruns) in hists.items():
            n = h.get_total_count()
            if not n:
                continue
            xs, ys = curve(h)
            reach_to = label_percentile(reach(n)) if reach(n) < MAX_NINES else "p99.99"
            ax.plot(
                xs,
                ys,
                lw=2,
                color=color.get(label),
                label=f"{label} (n={n:,}, {nruns} run{'s' * (nruns > 1)}; data to {reach_to})",
            )
            ax.plot([xs[-1]], [ys[-1]], "o", color=color.get(label), ms=5)
            drawn = True
        ax.set_xlim(0, MAX_NINES)
        ax.xaxis.set_major_locator(FixedLocator(list(TICKS)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: TICKS.get(round(v, 3), "")))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if drawn:
            ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(human_seconds))
        lo, hi = ax.get_ylim()
        # a narrow log range has few or no major ticks: label the minor ones in plain units
        # (matplotlib would print "2x10^-1"), a wide one needs none
        narrow = drawn and lo > 0 and hi / lo < 30
        ax.yaxis.set_minor_formatter(FuncFormatter(human_seconds) if narrow else NullFormatter())
        ax.set_xlabel('percentile ("number of nines" scale: each tick adds a nine)')
        ax.set_ylabel("latency (log scale)")
        ax.set_title(title)
        _legend(fig, ax, ncols=1)
    return fig
