"""The "exposure" section: acks at risk over time, the per-ack exposure distribution, exposure
against offered load, and one sentence per configuration a reviewer can quote.

Inputs are the figures ``bench.exposure`` wrote into summary.json (``exposure``), the
``exposure_series.csv`` of each run; the load chart takes one point per fault-free run of a
configuration reported at several offered loads (``bench run --rate-scale``, e.g. through
``scripts/exposure_vs_load.py``). Nothing is computed here that the run did not record."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from bench.report import charts
from bench.report.doc import Block, Heading, Para, Table, fmt


def over_time(
    series: pd.DataFrame,
    s0: float,
    warmup_s: float,
    fault: dict[str, Any] | None,
    title: str,
    color: str,
) -> Figure:
    """Two panels on one time axis: acks at risk (count) and the age of the oldest one;
    the fault window shaded as in the other charts."""
    fig, (top, bottom) = charts._figure(h=5.6, rows=2, sharex=True)
    x = series["t"] - s0
    top.step(x, series["at_risk"], where="post", color=color, lw=1.4)
    top.set_ylabel("acks at risk\n(only on the node)")
    bottom.step(x, series["oldest_s"], where="post", color=color, lw=1.4)
    bottom.set_ylabel("oldest at risk")
    bottom.yaxis.set_major_formatter(charts.FuncFormatter(charts.human_seconds))
    bottom.set_xlabel("seconds since the schedule started")
    for ax in (top, bottom):
        charts._shade(ax, s0, warmup_s, fault, float(x.max()) if len(x) else 0.0)
    top.set_title(title)
    charts._legend(fig, bottom)
    return fig


def distribution(per_ack: dict[str, pd.Series], title: str, colors: dict[str, str]) -> Figure:
    """CDF of per-ack exposure, one line per configuration."""
    fig, (ax,) = charts._figure()
    for label, xs in per_ack.items():
        xs = xs.dropna().sort_values()
        if xs.empty:
            continue
        y = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs.clip(lower=1e-4), y, where="post", label=label, color=colors.get(label))
    charts._log_x(ax)
    ax.set_xlabel("exposure: ack -> replica holds it")
    ax.set_ylabel("share of acks")
    ax.set_title(title)
    charts._legend(fig, ax)
    return fig


def vs_load(points: list[dict[str, Any]], title: str) -> Figure:
    """Top: exposure p99 (and p50, max) against offered runs/s; bottom: the peak of acks at
    risk; one color per backend configuration. A point whose run is flagged (the load
    generator fell behind, or the verdict is not True) is drawn hollow."""
    fig, (ax, peak) = charts._figure(h=6.4, rows=2, sharex=True)
    labels = list(dict.fromkeys(p["label"] for p in points))
    colors = charts.colors(labels)
    for label in labels:
        ps = sorted((p for p in points if p["label"] == label), key=lambda p: p["offered"])
        xs, c = [p["offered"] for p in ps], colors[label]
        ax.plot(xs, [p["p99"] for p in ps], "-", color=c, label=f"{label} p99")
        ax.plot(xs, [p["p50"] for p in ps], "--", color=c, alpha=0.6, label="p50")
        ax.plot(xs, [p["max"] for p in ps], ":", color=c, alpha=0.6, label="max")
        peak.plot(xs, [p["at_risk_peak"] for p in ps], "-", color=c, label=label)
        for p in ps:
            face = "none" if p.get("flag") else c
            for a, y, m in ((ax, p["p99"], "o"), (ax, p["p50"], "s"), (ax, p["max"], "^")):
                a.plot([p["offered"]], [y], m, color=c, mfc=face)
            peak.plot([p["offered"]], [p["at_risk_peak"]], "o", color=c, mfc=face)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(charts.FuncFormatter(charts.human_seconds))
    ax.yaxis.set_minor_formatter(NullFormatter())
    peak.xaxis.set_major_formatter(charts.FuncFormatter(lambda v, _pos: f"{v:g}"))
    peak.xaxis.set_minor_formatter(charts.FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_ylabel("exposure per ack")
    peak.set_ylabel("peak acks at risk")
    peak.set_xlabel("offered load, runs/s (hollow: run flagged)")
    ax.set_title(title)
    charts._legend(fig, ax, ncols=3)
    return fig


def load_points(ctx: Any) -> list[dict[str, Any]]:
    """One point per complete fault-free run with exposure figures, for the configurations
    measured at two or more offered loads (a load series); flagged runs are kept, marked."""
    pts = []
    for r in ctx.runs:
        e = r.summary.get("exposure") or {}
        ex = e.get("exposure_s") or {}
        offered = r.summary.get("offered_rate_per_s")
        if r.partial or r.fault is not None or not offered or ex.get("p99") is None:
            continue
        pts.append(
            {
                "label": ctx.config_label(r),
                "rate_scale": r.schedule.get("rate_scale"),
                "offered": offered,
                "achieved": (r.summary.get("throughput") or {}).get("runs_per_s"),
                "p50": ex.get("p50"),
                "p99": ex.get("p99"),
                "max": ex.get("max"),
                "at_risk_peak": e.get("at_risk_peak"),
                "resolution": resolution(e),
                "flag": r.apart_reason,
                "run": r,
            }
        )
    loads: dict[str, set[float]] = {}
    for p in pts:
        loads.setdefault(p["label"], set()).add(round(p["offered"], 6))
    return [p for p in pts if len(loads[p["label"]]) >= 2]


def load_table(points: list[dict[str, Any]], ctx: Any) -> Table:
    rows, srcs = [], []
    for p in sorted(points, key=lambda p: (p["label"], p["offered"])):
        res = p["resolution"]
        rows.append(
            [
                p["label"],
                fmt(p["rate_scale"], "g"),
                fmt(p["offered"], ".3g"),
                fmt(p["achieved"], ".3g"),
                _s(p["p50"], res),
                _s(p["p99"], res),
                _s(p["max"], res),
                str(p["at_risk_peak"]),
                p["flag"] or "",
            ]
        )
        srcs.append(ctx.src([p["run"]], "summary.json"))
    headers = ["configuration", "rate-scale", "offered runs/s", "achieved runs/s", "p50", "p99"]
    return Table(
        [*headers, "max", "peak at risk", "flag"],
        rows,
        srcs,
        notes=[
            "one row per fault-free run of a configuration measured at several offered loads "
            "(the same workload and seed at several --rate-scale values); achieved below "
            "offered = the backend was saturated; a flagged run is drawn hollow in the chart."
        ],
    )


def resolution(e: dict[str, Any]) -> float | None:
    r = e.get("resolution_s") or {}
    p, read = r.get("period_p99"), r.get("read_p99")
    return None if p is None else p + (read or 0.0)


def _s(v: float | None, res: float | None) -> str:
    """A duration with its resolution: below it, say so rather than print noise."""
    if v is None:
        return "-"
    if res is not None and v < res:
        return f"<{res:.2g} s"
    return f"{v:.3g} s"


def loss_in_outage(o: dict[str, Any], cross: dict[str, Any] | None) -> str:
    """The node lost during an outage: what was at risk then, and what the checker found lost
    (with the cross-check's verdict, so a disagreement is never quoted as agreement)."""
    text = (
        f"with the node lost {o['outage_s']:.3g} s into an object-store outage, "
        f"{o.get('at_risk_max')} acks (oldest {fmt(o.get('oldest_max_s'), '.3g')} s) were at "
        "risk"
    )
    if cross:
        agree = (
            "as the exposure series had at risk"
            if cross.get("valid")
            else ("which DISAGREES with the exposure series")
        )
        text += f" and {cross.get('lost_before_fault')} were lost, {agree}"
    return text


def sentence(
    label: str,
    e: dict[str, Any] | None,
    rate: float | None,
    outage: Any,
    loss: str | None = None,
) -> str:
    """ "At N runs/s, an ack is exposed for p99 X s; during a Y s object-store outage, up to Z
    acks (oldest W s) exist only on the node" from a fault-free run (``e``) and an outage
    trial's ``exposure.outage`` figures (either may be missing); ``loss``: the text of a node
    lost during an outage (``loss_in_outage``)."""
    parts = []
    if e:
        ex, res = e.get("exposure_s") or {}, resolution(e)
        at = f"at {rate:.3g} runs/s offered, " if rate else ""
        parts.append(
            f"{at}an ack is exposed (only on the node) for p50 {_s(ex.get('p50'), res)}, "
            f"p99 {_s(ex.get('p99'), res)}, max {_s(ex.get('max'), res)}, with at most "
            f"{e.get('at_risk_peak')} acks at risk at once (sampler resolution "
            f"{fmt(res, '.2g')} s)"
        )
        if over := beyond_sentence(e):
            parts.append(over)
    if outage:
        text = (
            f"during a {outage['outage_s']:.3g} s object-store outage ({outage['fault']}), up "
            f"to {outage.get('at_risk_max')} acks (oldest {fmt(outage.get('oldest_max_s'), '.3g')}"
            " s) existed only on the node"
        )
        if outage.get("catch_up_s") is not None:
            text += f"; the replica caught up {outage['catch_up_s']:.3g} s after the store returned"
        else:
            text += "; the replica had not caught up when sampling ended"
        parts.append(text)
    if loss:
        parts.append(loss)
    return f"**{label}**: " + "; ".join(parts) + "."


def beyond(e: dict[str, Any]) -> str:
    """Acks exposed longer than the node-loss promise's bound: "-" without a bound."""
    b = e.get("node_loss_promise")
    if not b:
        return "-"
    text = f"{b['beyond']} over {b['bound_s']:.3g} s"
    if b.get("maybe_beyond"):
        text += f" (+{b['maybe_beyond']} within resolution)"
    return text


def beyond_sentence(e: dict[str, Any]) -> str | None:
    """Said only when some ack was exposed longer than the promise's bound (beyond the
    resolution): a node loss then would have broken the promise."""
    b = e.get("node_loss_promise") or {}
    if not b.get("beyond"):
        return None
    return (
        f"{b['beyond']} acks were exposed longer than the node-loss promise's bound "
        f"({b['bound_s']:.3g} s; longest {fmt(b.get('exposure_max_s'), '.3g')} s): a node "
        "loss at that moment would have broken the promise, which holds only while the "
        "replica keeps to its intervals"
    )


def table(rows: list[tuple[str, dict[str, Any], float | None, list[str]]]) -> Table:
    headers = ["configuration", "offered runs/s", "acks", "p50", "p99", "max", "peak at risk"]
    headers += ["oldest at risk", "never covered", "beyond node-loss promise", "resolution"]
    out, srcs = [], []
    for label, e, rate, src in rows:
        ex, res = e.get("exposure_s") or {}, resolution(e)
        out.append(
            [
                label,
                fmt(rate, ".3g"),
                str(e.get("acks")),
                _s(ex.get("p50"), res),
                _s(ex.get("p99"), res),
                _s(ex.get("max"), res),
                str(e.get("at_risk_peak")),
                f"{fmt(e.get('oldest_at_risk_max_s'), '.3g')} s",
                str(e.get("acks_never_covered")),
                beyond(e),
                f"{fmt(res, '.2g')} s",
            ]
        )
        srcs.append(src)
    return Table(
        headers,
        out,
        srcs,
        notes=[
            "exposure = ack -> the first replica reading that holds it; figures below the "
            "sampler's resolution (sampling period p99 + reading time) print as '<resolution'; "
            "'never covered' = acks no replica reading held before sampling ended (a lost node, "
            "a replica that never caught up); 'beyond node-loss promise' = acks exposed longer "
            "than the age bound the configuration promises for a node loss, by more than the "
            "resolution (a node loss then would have broken the promise)."
        ],
    )


def against_load(ctx: Any, figure: Any) -> list[Block]:
    """The load chart and its table, for configurations measured at several offered loads."""
    points = load_points(ctx)
    if not points:
        return []
    title = "Exposure against offered load"
    figure(
        vs_load(points, title),
        "exposure-vs-load",
        title,
        "For each configuration measured at several offered loads (the same workload and "
        "seed at several --rate-scale values): per-ack exposure p99 (solid), p50 (dashed) "
        "and max (dotted) on top, the peak of acks at risk below, against the offered rate. "
        "Where achieved throughput falls below the offered rate the backend is saturated "
        "(see the table below).",
        [s for p in points for s in ctx.src([p["run"]], "summary.json")],
    )
    return [load_table(points, ctx)]


# size: the exposure section's text, chart and tables in reading order; not split in this change.
def section(ctx: Any, figure: Any) -> list[Block]:
    """Blocks of the exposure section, for every run that recorded exposure figures;
    ``figure(fig, name, title, how, sources)`` saves and appends a chart."""
    runs = [r for r in ctx.runs if r.summary.get("exposure")]
    if not runs:
        return []
    blocks: list[Block] = [Heading("Exposure: acks that exist only on the node")]
    rows, seen, per_ack = [], set(), {}
    quotes: dict[str, dict[str, Any]] = {}  # backend -> fault-free figures and an outage
    for r in runs:
        label = ctx.label(r) + (f" ({r.fault_name})" if r.fault_name else "")
        e = r.summary["exposure"]
        q = quotes.setdefault(ctx.label(r), {})
        if r.fault_name is None:
            q.setdefault("e", e)
            q.setdefault("rate", r.summary.get("offered_rate_per_s"))
        if (o := e.get("outage")) and o.get("node_lost"):
            q.setdefault("loss", loss_in_outage(o, e.get("cross_check")))
        elif o:
            q.setdefault("outage", o)
        rate = r.summary.get("offered_rate_per_s")
        rows.append((label, e, rate, ctx.src([r], "summary.json", "exposure.csv")))
        acks = r.csv("exposure.csv")
        if not acks.empty and label not in per_ack:
            per_ack[label] = acks["exposure_s"]
        series = r.csv("exposure_series.csv")
        if label in seen or series.empty:
            continue
        seen.add(label)
        title = f"Acks at risk over time: {label}"
        figure(
            over_time(
                series,
                r.schedule_start_t,
                float(r.schedule.get("warmup_s") or 0.0),
                r.fault,
                title,
                ctx.color[ctx.label(r)],
            ),
            f"exposure-{len(seen)}",
            title,
            "Top: acknowledged writes not yet held by the replica, every 0.1 s; bottom: how "
            "old the oldest of them is. Bursts of arrivals show as spikes; a replica that "
            f"falls behind shows as a growing age. Run {r.run_id}.",
            ctx.src([r], "exposure_series.csv"),
        )
    if per_ack:
        figure(
            distribution(per_ack, "Per-ack exposure (CDF)", charts.colors(list(per_ack))),
            "exposure-cdf",
            "Per-ack exposure (CDF)",
            "For each configuration, the share of acks (y) that were held by the replica within "
            "x of their ack. Each value is an upper bound (the store position is read after "
            "the ack, the replica's at the next reading); below the sampler's resolution the "
            "true value may be anywhere under it.",
            [s for _, _, _, src in rows for s in src],
        )
    blocks.append(table(rows))
    blocks += against_load(ctx, figure)
    blocks.append(
        Para(
            " ".join(
                sentence(b, q.get("e"), q.get("rate"), q.get("outage"), q.get("loss"))
                for b, q in quotes.items()
                if q.get("e") or q.get("outage") or q.get("loss")  # else: in the table
            )
        )
    )
    return blocks
