"""The figures of each backend configuration measured, gathered once for the decision summary:
speed and latency from its fault-free runs, what each fault lost and how fast it recovered from
its fault trials, exposure where the summary carries it, cost at the target load and the moving
parts. A configuration is a report group label ("sqlite sync_interval_s=0.5"), so a fault trial
and a fault-free run of the same settings share a row.

Fault-free figures come from the trustworthy runs (the medians of the detailed tables); when a
configuration has none, its flagged runs are used and the row carries ⚠, so a reader sees a
figure and the reason to doubt it together, as in the detailed tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench import cost, crash
from bench.report import costs, faults, parts
from bench.report.context import Context
from bench.report.load import Run

# Completions over the measured window include the last runs' latency, so a backend that keeps
# up completes close to the offered rate; one run of a smoke-sized window is ~4% of it, hence
# the slack.
KEPT_UP = 0.9


@dataclass
class Speed:
    runs_per_s: float | None
    offered: float | None  # the schedule's average rate (what was offered)
    kept_up: bool
    unfinished: int
    censored: int
    p99: dict[str, float | None]
    late_s: float | None  # last completion after the schedule's end (median over runs)


@dataclass
class FaultFigures:
    """Worst case over the trials of one fault (a decision is about what can go wrong)."""

    fault: str
    trials: int
    promise: str
    judged: str
    bounds: list[float | None]  # each trial's promised max lost age (None: no bound)
    lost_max: float | None
    rpo_max: float | None
    accepting_max: float | None
    all_done_max: float | None
    files: list[str]

    @property
    def loss_s(self) -> float | None:
        """The measured loss as an age: worst RPO, 0 when no ack was lost, None if unknown."""
        if self.lost_max is None:
            return None
        return 0.0 if self.lost_max == 0 else self.rpo_max


@dataclass
class Exposure:
    p99_s: float | None
    max_s: float | None
    at_risk_peak: int | None
    runs: int
    files: list[str]


@dataclass
class Parts:
    processes: str
    binaries: list[str]
    files: list[str]


@dataclass
class Config:
    label: str
    backend: str
    runs: list[Run]
    flag: str = ""
    manifests: list[str] = field(default_factory=list)
    speed: Speed | None = None
    speed_files: list[str] = field(default_factory=list)
    faults: dict[str, FaultFigures] = field(default_factory=dict)
    exposure: Exposure | None = None
    costs: dict[str, tuple[float | None, list[str]]] = field(default_factory=dict)
    cost_files: list[str] = field(default_factory=list)
    cost_notes: list[str] = field(default_factory=list)
    parts: Parts | None = None
    sweep_files: list[str] = field(default_factory=list)
    # what sweeps of the same backend measured: (setting "name=value", value, figures)
    sweep_points: list[tuple[str, float | None, FaultFigures]] = field(default_factory=list)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _median(xs: list[Any]) -> float | None:
    vals = [float(x) for x in xs if isinstance(x, int | float) and not isinstance(x, bool)]
    return statistics.median(vals) if vals else None


def _max(xs: list[Any]) -> float | None:
    vals = [float(x) for x in xs if isinstance(x, int | float) and not isinstance(x, bool)]
    return max(vals) if vals else None


def speed(rs: list[Run]) -> Speed:
    s = [r.summary for r in rs]
    unfinished = int(sum(_get(x, "runs", "unfinished") or 0 for x in s))
    censored = int(sum(_get(x, "latency", "run", "censored") or 0 for x in s))
    done = _median([_get(x, "throughput", "runs_per_s") for x in s])
    offered = _median([x.get("schedule_rate_per_s") or x.get("offered_rate_per_s") for x in s])
    late = [
        _get(r.summary, "window", "end_t") - r.schedule_start_t - float(r.schedule["duration_s"])
        for r in rs
        if _get(r.summary, "window", "end_t") is not None and r.schedule.get("duration_s")
    ]
    kept = done is not None and offered is not None and done >= KEPT_UP * offered
    return Speed(
        runs_per_s=done,
        offered=offered,
        kept_up=kept and unfinished == 0 and censored == 0,
        unfinished=unfinished,
        censored=censored,
        p99={
            k: _median([_get(x, "latency", k, "p99_s") for x in s]) for k in ("run", "step_commit")
        },
        late_s=_median(late),
    )


def fault_figures(ctx: Context, fault: str, rs: list[Run]) -> FaultFigures:
    fs = [faults.figures(r) for r in rs]
    lost = [f["lost_acks"] for f in fs]
    return FaultFigures(
        fault=fault,
        trials=len(rs),
        promise=crash.promise_text(fs),
        judged=crash.judged_text(fs),
        bounds=[(f.get("promise") or {}).get("max_lost_age_s") for f in fs],
        lost_max=None if any(x is None for x in lost) else _max(lost),
        rpo_max=_max([f["rpo_s"] for f in fs]),
        accepting_max=_max([f["store_accepting_s"] for f in fs]),
        all_done_max=_max([f["all_interrupted_done_s"] for f in fs]),
        files=ctx.src(rs, "summary.json"),
    )


def exposure(ctx: Context, rs: list[Run]) -> Exposure | None:
    """From ``summary.exposure`` (the continuous measurement of acks not yet replicated) where
    a run carries it; results made before it existed have none: "not measured"."""
    have = [r for r in rs if isinstance(r.summary.get("exposure"), dict)]
    if not have:
        return None
    ex = [r.summary["exposure"] for r in have]
    peak = _max([e.get("at_risk_peak") for e in ex])
    return Exposure(
        p99_s=_max([_get(e, "exposure_s", "p99") for e in ex]),
        max_s=_max([_get(e, "exposure_s", "max") for e in ex]),
        at_risk_peak=None if peak is None else int(peak),
        runs=len(have),
        files=ctx.src(have, "summary.json"),
    )


def cost_at(ests: list[cost.Estimate]) -> dict[str, Any]:
    """Deployment -> (median $ per month, lines left unpriced for want of a measurement)."""
    out: dict[str, tuple[float | None, list[str]]] = {}
    for d in ests[0].deployments():
        missing = list(dict.fromkeys(c for e in ests for c in e.not_measured(d)))
        totals = [e.total(d) for e in ests]
        out[d] = (None if any(t is None for t in totals) else _median(totals), missing)
    return out


def _parts(ctx: Context, r: Run) -> Parts:
    names = list((r.manifest.get("versions") or {}).keys())
    return Parts(parts.processes(r), names, ctx.src([r], "summary.json", "manifest.json"))


def _fill_steady(c: Config, ctx: Context, rs: list[Run], prices, target: float) -> None:
    c.speed = speed(rs)
    c.speed_files = ctx.src(rs, "summary.json")
    ests = [costs._estimate(r, prices, target) for r in rs]
    c.costs, c.cost_notes = cost_at(ests), ests[0].notes
    c.cost_files = ctx.src(rs, "summary.json", "runs.csv", "resources.csv") + [ctx.rel(prices.path)]


def gather(ctx: Context, prices: cost.PriceTable, target: float) -> list[Config]:
    by_label: dict[str, list[Run]] = {}
    for r in ctx.runs:
        if not r.partial:
            by_label.setdefault(ctx.label(r), []).append(r)
    steady, trials, swept = ctx.steady(), faults.by_fault(ctx), sweep_points(ctx)
    out = []
    for label, rs in by_label.items():
        c = Config(label, rs[0].backend, rs, manifests=ctx.src(rs, "manifest.json"))
        good = steady.get(label)
        flagged = [r for r in rs if r.apart]
        if good or flagged:
            c.flag = "" if good else " ⚠"
            _fill_steady(c, ctx, good or flagged, prices, target)
        for (lab, fault), trs in trials.items():
            if lab == label:
                c.faults[fault] = fault_figures(ctx, fault, trs)
        c.exposure = exposure(ctx, rs)
        c.parts = _parts(ctx, rs[0])
        c.sweep_points, c.sweep_files = swept.get(c.backend, ([], []))
        out.append(c)
    return out


def sweep_points(ctx: Context) -> dict[str, tuple[list, list[str]]]:
    """Backend -> what its sweeps measured per setting, and the sweep files."""
    out: dict[str, tuple[list, list[str]]] = {}
    for g in (g for g in ctx.groups if g.kind == "sweep"):
        pts, files = out.setdefault(str(g.meta.get("backend")), ([], []))
        files.append(ctx.rel(g.path))
        for key in g.members:
            rs = [r for r in ctx.runs if r.group is g and r.group_key == key and r.usable_trial]
            if rs:
                ff = fault_figures(ctx, str(g.meta.get("fault")), rs)
                pts.append((key, faults._setting_value(key), ff))
    return out
