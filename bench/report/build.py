"""`bench report`: result directories (and crash/sweep group files) -> report.md, report.html
and the PNG charts, in one output directory.

Order of the report follows the questions of a design review: what was measured and is any of
it broken (banners, runs, topology, moving parts), how fast (throughput, latency, over time),
what happens under faults (recovery, write loss, the RPO / upload trade-off), and what it costs.
Every table lists the files it came from; every chart says how to read it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from hdrh.histogram import HdrHistogram

from backends.errors import ConfigError
from bench import cost
from bench.report import (
    budget,
    charts,
    costs,
    decision,
    faults,
    frontier,
    series,
    spectrum,
    tables,
)
from bench.report import exposure as exposure_report
from bench.report.commands import DEFAULT_TARGET_RUNS_PER_S  # noqa: E402
from bench.report.context import Context
from bench.report.doc import Block, Figure, Heading, Para
from bench.report.load import Run, load
from bench.report.render import to_html, to_markdown


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def merged_histograms(ctx: Context, key: str) -> dict[str, tuple[HdrHistogram, int]]:
    """Backend group -> the fault-free runs' histograms of ``latency.<key>``, added together."""
    out: dict[str, tuple[HdrHistogram, int]] = {}
    for label, rs in ctx.steady().items():
        merged, n = None, 0
        for r in rs:
            enc = ((r.summary.get("latency") or {}).get(key) or {}).get("hdr")
            if not enc:
                continue
            h = HdrHistogram.decode(enc)
            merged = h if merged is None else (merged.add(h) or merged)
            n += 1
        if merged is not None:
            out[label] = (merged, n)
    return out


def representative(rs: list[Run]) -> Run:
    """The repeat with the median throughput (what the time-series chart shows)."""
    ranked = sorted(rs, key=lambda r: (r.summary.get("throughput") or {}).get("runs_per_s") or 0)
    return ranked[len(ranked) // 2]


class Builder:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.blocks: list[Block] = []
        self.pngs: list[Path] = []

    def figure(self, fig, name: str, title: str, how: str, sources: list[str]) -> None:
        path = self.ctx.out_dir / f"{name}.png"
        charts.save(fig, path)
        self.pngs.append(path)
        self.blocks.append(Figure(path.name, title, how, sources))

    # -- sections ----------------------------------------------------------------------------
    def latency_charts(self) -> None:
        ctx = self.ctx
        for key, what, how in (
            (
                "run",
                "Run latency (scheduled arrival -> completed)",
                "Each curve is one backend group; further left is faster. Read the p50 and p99 "
                "dotted lines where each curve crosses them; a curve that bends right near the "
                "top has a slow tail. Open loop: queueing before acceptance is included.",
            ),
            (
                "step_commit",
                "Step-commit latency (checkpoint start -> durable ack)",
                "The price of durability per step: how long a checkpoint waits for its commit "
                "(including group commit). Further left is cheaper; the log x axis spreads "
                "microseconds to seconds.",
            ),
        ):
            hists = merged_histograms(ctx, key)
            if not hists:
                continue
            fig = charts.latency_cdf(hists, f"{what}: CDF", ctx.color)
            src = [s for rs in ctx.steady().values() for s in ctx.src(rs, "summary.json")]
            self.figure(fig, f"latency-cdf-{slug(key)}", what, how, src)
            fig = spectrum.percentile_spectrum(hists, f"{what}: percentile spectrum", ctx.color)
            self.figure(
                fig,
                f"latency-spectrum-{slug(key)}",
                f"{what}: percentile spectrum",
                "The same histograms as the CDF above, latency against percentile with each "
                "nine equally wide (p90, p99, p99.9, p99.99): the tail gets as much room as the "
                "median. Lower is faster. A curve ends (dot) at the highest percentile its "
                "count supports (1 - 1/n); beyond it a histogram only knows the maximum.",
                src,
            )

    def timeseries_charts(self) -> None:
        ctx = self.ctx
        for label, rs in ctx.steady().items():
            r = representative(rs)
            ts = series.on_schedule_clock(r)
            if ts.empty:
                continue
            warm = float(r.schedule.get("warmup_s") or 0.0)
            src = ctx.src([r], "timeseries.csv", "summary.json")
            note = f" Repeat shown: {r.run_id} (median runs/s of {len(rs)})." if len(rs) > 1 else ""
            fig = charts.throughput_over_time(
                ts,
                r.schedule_start_t,
                warm,
                None,
                label,
                ctx.color[label],
                f"Throughput over time: {label}",
            )
            self.figure(
                fig,
                f"throughput-{slug(label)}",
                f"Throughput over time: {label}",
                "The dashed grey line is the offered load (runs arriving per second); the solid "
                "line is runs completed per second. Completions lag arrivals by the run "
                "latency; a growing gap means a backlog. The hatched band is warm-up." + note,
                src,
            )
            fig = charts.latency_over_time(
                ts,
                r.schedule_start_t,
                warm,
                None,
                label,
                ctx.color[label],
                f"Run latency over time: {label}",
            )
            self.figure(
                fig,
                f"latency-time-{slug(label)}",
                f"Run latency over time: {label}",
                "p50 (solid) and p99 (dashed) latency of the runs completing in each second. "
                "Latency that climbs during bursts is queueing; flat lines mean the backend "
                "kept up." + note,
                src,
            )

    def fault_charts(self) -> None:
        ctx = self.ctx
        seen: set[tuple[str, str]] = set()
        for r in ctx.trials():
            key = (r.backend, str(r.fault_name))
            ts = series.on_schedule_clock(r)
            if key in seen or ts.empty:
                continue
            seen.add(key)
            label = ctx.label(r)
            title = f"Throughput around a {r.fault_name} fault: {label}"
            fig = charts.throughput_over_time(
                ts,
                r.schedule_start_t,
                float(r.schedule.get("warmup_s") or 0.0),
                r.fault,
                label,
                ctx.color[label],
                title,
            )
            self.figure(
                fig,
                f"fault-{slug(r.backend)}-{slug(str(r.fault_name))}",
                title,
                "The red band runs from the moment the fault hit to the store accepting "
                "requests again (dotted line: recovery starts after the restart delay). "
                "Completions dropping to zero inside the band and catching up after it are the "
                f"outage; trial {r.run_id}.",
                ctx.src([r], "timeseries.csv", "manifest.json"),
            )

    def fault_section(self) -> None:
        ctx = self.ctx
        if not ctx.trials():
            return
        self.blocks.append(Heading("Faults: recovery and write loss"))
        self.fault_charts()
        rec = faults.recovery_data(ctx)
        if rec:
            fig = charts.recovery_bars(
                [(name, vals) for name, vals, _ in rec], "Recovery time after each fault"
            )
            self.figure(
                fig,
                "recovery-times",
                "Recovery time after each fault",
                "Three bars per backend and fault, in seconds after the fault: the store "
                "accepting requests again, the first step of an interrupted run committed, and "
                "every interrupted run completed. Bars are medians over trials, whiskers "
                "min..max, dots single trials; 'n/a' means there was nothing to measure.",
                [s for _, _, rs in rec for s in ctx.src(rs, "summary.json")],
            )
            self.blocks.append(faults.recovery(ctx))
        self.blocks.append(faults.write_loss(ctx))
        for sw in faults.sweeps(ctx):
            if not sw["points"]:
                continue
            name = sw["name"]
            title = f"{sw['fault']} across {name}: durability vs uploads ({sw['backend']})"
            fig = charts.rpo_sweep(sw["points"], name, title)
            self.figure(
                fig,
                f"sweep-{slug(name)}",
                title,
                f"Each panel shares the x axis ({name}, seconds). Top: RPO, the age of the "
                "oldest acknowledged write lost by the fault; the dashed line is RPO = "
                f"{name}. Middle: how many acks were lost. Bottom: what a shorter interval "
                "costs in object-store PUTs per minute. Dots are trials, whiskers min..max.",
                [ctx.rel(sw["group"].path)],
            )
            self.blocks.append(sw["table"])
        self.frontier_chart()

    def frontier_chart(self) -> None:
        pts = frontier.points(self.ctx)
        if not pts:
            return
        title = "Durability frontier: throughput vs acks lost on " + ", ".join(
            sorted({p["fault"] for p in pts})
        )
        self.figure(
            frontier.chart(pts, title),
            "durability-frontier",
            title,
            "One point per setting of each backend. x: steps/s of fault-free runs of that "
            "setting (without the lazy filesystem); y: acknowledged writes the fault lost per "
            "trial. Whiskers span min..max (plain runs on x, trials on y). Further right is "
            "faster, higher loses more: a point up and to the right buys speed with "
            "durability; DAMAGED marks a failed integrity check after recovery.",
            sorted({s for p in pts for s in p["sources"]}),
        )
        self.blocks.append(frontier.table(pts))

    def exposure_section(self) -> None:
        """Acks at risk (bench/report/exposure.py): its heading goes before its charts."""
        n = len(self.blocks)
        blocks = exposure_report.section(self.ctx, self.figure)
        if blocks:
            self.blocks.insert(n, blocks[0])
            self.blocks += blocks[1:]


def build(
    inputs: list[Path],
    out_dir: Path,
    prices_path: Path | None = None,
    target_runs_per_s: float = DEFAULT_TARGET_RUNS_PER_S,
    rpo_budget: float | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html and the PNGs; return their paths."""
    runs, groups = load(inputs)
    prices = cost.load_prices(prices_path)  # validated before anything is drawn
    if not target_runs_per_s > 0:
        raise ConfigError(f"--target-runs-per-s must be > 0, got {target_runs_per_s:g}")
    budget.check(rpo_budget)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):  # charts of an earlier report must not linger
        old.unlink()
    prices, prices_name = costs.copy_prices(prices, out_dir)  # the report carries its prices
    ctx = Context(out_dir, runs, groups)
    b = Builder(ctx)
    first = runs[0]
    s = first.schedule
    settings = first.manifest.get("settings") or {}
    b.blocks += [
        Heading(f"durabench report: workload {first.workload}", 1),
        Para(
            f"Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} from "
            f"{len(runs)} result director{'y' if len(runs) == 1 else 'ies'}"
            f"{f' and {len(groups)} group file(s)' if groups else ''}. Schedule "
            f"`{str(s.get('hash'))[:16]}` (workload {first.workload}, seed {s.get('seed')}, "
            f"rate-scale {s.get('rate_scale')}, {s.get('runs')} runs over "
            f"{s.get('duration_s')} s, warm-up {s.get('warmup_s')} s), time-scale "
            f"{settings.get('time_scale')}. File paths are relative to this report."
        ),
        *decision.section(ctx, prices, target_runs_per_s, rpo_budget),
        *tables.banners(ctx),
        Heading("Runs"),
        tables.inventory(ctx),
        Heading("Topology (as measured)"),
        *tables.topology(ctx),
        Heading("Moving parts"),
        tables.moving_parts(ctx),
        *tables.section(ctx),
    ]
    if ctx.steady():
        b.latency_charts()
        b.timeseries_charts()
    if ctx.rows():
        b.blocks += [Heading("Resources (fault-free runs)"), tables.resources(ctx)]
    b.fault_section()
    b.exposure_section()
    b.blocks += costs.section(ctx, prices, target_runs_per_s, prices_name)
    md = out_dir / "report.md"
    md.write_text(ctx.portable(to_markdown(b.blocks)))
    html = out_dir / "report.html"
    html.write_text(ctx.portable(to_html(b.blocks, out_dir, f"durabench report: {first.workload}")))
    return {"markdown": md, "html": html, **{p.stem: p for p in b.pngs}}
