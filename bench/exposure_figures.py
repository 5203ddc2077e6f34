"""Exposure figures of a whole run (bench/exposure.py has the model: samples, per-ack
coverage, the cross-check): the per-ack distribution, acks at risk over time, an outage's
window and the acks beyond a node-loss promise's bound. ``Stream`` builds them one shard of
the history at a time (bench/postrun.py), so a long run's analysis holds a histogram, a time
grid and the few acks a fault's figures need, never every ack."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from bench.exposure import AckExposure, Coverage, PositionSampler, Sample, acks_of, at_risk_at
from bench.metrics import Latencies


def _pct(xs: np.ndarray, q: float) -> float | None:
    return float(np.percentile(xs, q)) if len(xs) else None


def _times(acks: list[AckExposure]) -> tuple[np.ndarray, np.ndarray]:
    """Ack and coverage times (inf: never covered), sorted by ack time."""
    ta = np.array([a.t_ack for a in acks], dtype=float)
    tc = np.array([math.inf if a.covered_t is None else a.covered_t for a in acks], dtype=float)
    order = np.argsort(ta, kind="stable")
    return ta[order], tc[order]


class RiskSeries:
    """Acks at risk on a time grid (count and age of the oldest every ``step_s``), added one
    batch of acks at a time: per grid point, counts add up and the oldest is the minimum ack
    time over the batches, so the result does not depend on how the acks were split."""

    def __init__(self, t_from: float, t_to: float, step_s: float = 0.1) -> None:
        self.grid = np.arange(t_from, t_to + step_s / 2, step_s) if t_to > t_from else np.array([])
        self.count = np.zeros(len(self.grid), dtype=np.int64)
        self.oldest_ack = np.full(len(self.grid), math.inf)
        self.acks = 0

    def add(self, acks: list[AckExposure]) -> None:
        if not acks or not len(self.grid):
            self.acks += len(acks)
            return
        self.acks += len(acks)
        g = self.grid
        ta, tc = _times(acks)
        # at risk at t: acked at or before t, covered after it (covered is never before acked)
        self.count += np.searchsorted(ta, g, "right") - np.searchsorted(np.sort(tc), g, "right")
        # the oldest at risk at grid point k: the first ack (by time) whose risk interval, in
        # grid points [first >= t_ack, first >= covered), holds k; the running maximum of the
        # interval ends finds it with one search per point
        lo, hi = np.searchsorted(g, ta, "left"), np.searchsorted(g, tc, "left")
        k = np.arange(len(g))
        first = np.searchsorted(np.maximum.accumulate(hi), k, "right")
        ok = first < len(ta)
        first = np.minimum(first, len(ta) - 1)
        ok &= lo[first] <= k
        self.oldest_ack = np.minimum(self.oldest_ack, np.where(ok, ta[first], math.inf))

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "t": round(float(t), 3),
                "at_risk": int(n),
                "oldest_s": round(float(t - old), 4) if n else 0.0,
            }
            for t, n, old in zip(self.grid, self.count, self.oldest_ack, strict=True)
        ]


def series(acks: list[AckExposure], t_from: float, t_to: float, step_s: float = 0.1) -> list[dict]:
    """Acks at risk over time: count and age of the oldest, every ``step_s``."""
    s = RiskSeries(t_from, t_to, step_s)
    s.add(acks)
    return s.rows() if acks else []


def resolution(samples: list[Sample]) -> dict[str, float | None]:
    """The sampler's resolution: its period and the time a reading took."""
    periods = np.diff([x.t0 for x in samples]) if len(samples) > 1 else np.array([])
    reads = np.array([x.t1 - x.t0 for x in samples])
    return {
        "period_p50": _pct(periods, 50),
        "period_p99": _pct(periods, 99),
        "period_max": float(periods.max()) if len(periods) else None,
        "read_p99": _pct(reads, 99),
    }


class Beyond:
    """Acks whose exposure exceeded a node-loss promise's age bound: a node loss while they
    were at risk would have lost an ack older than the bound (the promise would break). Each
    exposure may overstate by up to the resolution: ``beyond`` counts those above the bound
    by more than it, ``maybe_beyond`` those within it. With a fault: only acks made before it,
    and the acks at risk at the fault already older than the bound."""

    def __init__(self, bound_s: float, resolution_s: float, fault_t: float | None) -> None:
        self.bound_s, self.resolution_s, self.fault_t = bound_s, resolution_s, fault_t
        self.beyond = self.maybe = 0
        self.exposure_max: float | None = None

    def add(self, acks: list[AckExposure]) -> None:
        b, r, f = self.bound_s, self.resolution_s, self.fault_t
        for a in acks:
            if a.covered_t is None or (f is not None and a.t_ack >= f):
                continue
            x = a.covered_t - a.t_ack
            self.beyond += x > b + r
            self.maybe += b < x <= b + r
            self.exposure_max = x if self.exposure_max is None else max(self.exposure_max, x)

    def figures(self, at_fault: list[AckExposure]) -> dict[str, Any]:
        """``at_fault``: the acks at risk at the fault (``at_risk_at``), when there was one."""
        out: dict[str, Any] = {
            "bound_s": self.bound_s,
            "resolution_s": self.resolution_s,
            "beyond": self.beyond,
            "maybe_beyond": self.maybe,
            "exposure_max_s": self.exposure_max,
        }
        if (f := self.fault_t) is not None:
            old = [f - a.t_ack for a in at_fault if f - a.t_ack > self.bound_s]
            out["at_risk_at_fault_beyond"] = len(old)
            out["at_risk_at_fault_oldest_s"] = max(old, default=None)
        return out


def beyond_bound(
    acks: list[AckExposure], bound_s: float, resolution_s: float, fault_t: float | None
) -> dict[str, Any]:
    """``Beyond`` over a list of acks."""
    b = Beyond(bound_s, resolution_s, fault_t)
    b.add(acks)
    return b.figures(at_risk_at(acks, fault_t) if fault_t is not None else [])


class Stream:
    """Exposure of every ack, analysed one shard of the history at a time (bench/postrun.py),
    so memory does not grow with the run's length: the distribution goes into an HDR histogram,
    the series onto a fixed grid, and only the acks a fault's figures need are kept
    (``kept``: those at risk at the fault, or at some moment of ``keep_window``)."""

    def __init__(
        self,
        sampler: PositionSampler,
        fault_t: float | None,
        keep_window: tuple[float, float] | None = None,
        bound_s: float | None = None,
    ) -> None:
        s = sampler.samples
        self.sampler, self.fault_t, self.keep_window = sampler, fault_t, keep_window
        self.coverage = Coverage(s)
        self.res = resolution(s)
        self.series = RiskSeries(s[0].t0, s[-1].t1) if s else RiskSeries(0.0, 0.0)
        self.exposures = Latencies()  # over its range: counted in max and mean only
        self.n = self.covered = self.never = self.never_before = self.before = 0
        self.sum_s = 0.0
        self.max_s: float | None = None
        read = (self.res["period_p99"] or 0.0) + (self.res["read_p99"] or 0.0)
        self.beyond = None if bound_s is None else Beyond(bound_s, read, fault_t)
        self.kept: list[AckExposure] = []

    def add(self, events: Iterable[dict[str, Any]]) -> list[AckExposure]:
        """One shard's events (every event of its runs); returns its acks' exposures."""
        acks = self.coverage.of(acks_of(events))
        f, w = self.fault_t, self.keep_window
        self.n += len(acks)
        covered: list[float] = []
        for a in acks:
            if f is not None and a.t_ack < f:
                self.before += 1
            if a.covered_t is None:
                self.never += 1
                self.never_before += f is not None and a.t_ack < f
            else:
                x = a.covered_t - a.t_ack
                self.covered += 1
                self.sum_s += x
                self.max_s = x if self.max_s is None else max(self.max_s, x)
                covered.append(x)
            at_fault = f is not None and a.t_ack < f and (a.covered_t is None or a.covered_t > f)
            # a margin around the window: an extra ack there changes no figure, a missing one would
            in_window = w is not None and (
                a.t_ack <= w[1] + 1.0 and (a.covered_t is None or a.covered_t > w[0] - 1.0)
            )
            if at_fault or in_window:
                self.kept.append(a)
        self.exposures.add(covered)
        self.series.add(acks)
        if self.beyond is not None:
            self.beyond.add(acks)
        return acks

    def summary(self) -> dict[str, Any]:
        """Figures for summary.json: the per-ack distribution, the peak of acks at risk, and
        the sampler's resolution; ``_series`` is the grid (exposure_series.csv)."""
        f = self.fault_t
        ser = self.series.rows() if self.n else []
        peak = max(ser, key=lambda r: r["at_risk"]) if ser else None
        h, n = self.exposures.h, self.exposures.n
        pct = h.get_percentile_to_value_dict([50.0, 90.0, 99.0]) if n else {}
        return {
            "unit": self.sampler.unit,
            "samples": len(self.sampler.samples),
            "sample_errors": self.sampler.errors,
            "interval_s": self.sampler.interval_s,
            "resolution_s": self.res,
            "acks": self.n,
            "acks_covered": self.covered,
            "acks_never_covered": self.never,
            "never_covered_before_fault": self.never_before,
            # percentiles from an HDR histogram (3 significant digits, 1 us units); max and
            # mean exact
            "exposure_s": {
                "p50": pct[50.0] / 1e6 if n else None,
                "p90": pct[90.0] / 1e6 if n else None,
                "p99": pct[99.0] / 1e6 if n else None,
                "max": self.max_s,
                "mean": self.sum_s / self.covered if self.covered else None,
                "over_range": self.exposures.over,
            },
            "at_risk_peak": peak["at_risk"] if peak else None,
            "at_risk_peak_t": peak["t"] if peak else None,
            "oldest_at_risk_max_s": max((r["oldest_s"] for r in ser), default=None),
            "acks_considered_before_fault": self.before if f is not None else None,
            "_series": ser,
        }


def catch_up_of(
    samples: list[Sample], t_to: float, node_lost: bool = False
) -> tuple[float | None, float]:
    """After an outage that ended at ``t_to``: the seconds until the first reading whose
    replica held what the store held at ``t_to`` (None: never while sampling, or the node was
    lost), and the end of the outage's figures (``window``): the catch-up's end, else the last
    reading, or ``t_to`` itself after a node loss."""
    after = [s for s in samples if s.t0 >= t_to and s.local is not None]
    catch_up: float | None = None
    if after and not node_lost:
        target = after[0]
        for s in samples:
            if (
                s.t0 >= target.t0
                and s.generation == target.generation
                and s.replica is not None
                and s.replica >= (target.local or 0)
            ):
                catch_up = s.t1 - t_to
                break
    t_end = t_to + catch_up if catch_up is not None else (samples[-1].t1 if samples else t_to)
    return catch_up, t_to if node_lost else t_end


def window(
    acks: list[AckExposure],
    samples: list[Sample],
    t_from: float,
    t_to: float,
    node_lost: bool = False,
) -> dict[str, Any]:
    """A replica outage from ``t_from`` to ``t_to``: the catch-up afterwards (from ``t_to`` to
    the first reading whose replica holds what the store held at ``t_to``; None when it never
    did while sampling), and the most acks at risk and the oldest one from the outage's start
    to the end of the catch-up (the backlog keeps ageing until it is uploaded). ``node_lost``:
    the node was lost at ``t_to`` during the outage, so nothing catches up (None) and the
    figures stop there: what was at risk then is what the loss could take."""
    during = [a for a in acks if t_from <= a.t_ack < t_to]
    catch_up, t_end = catch_up_of(samples, t_to, node_lost)
    # every grid point, also with no ack at risk (``acks`` may hold only the acks near the
    # window, see ``Stream.kept``)
    risk = RiskSeries(t_from, max(t_to, t_end), step_s=0.05)
    risk.add(acks)
    ser = risk.rows()
    if node_lost:  # the series' grid may miss the loss itself: add the figures at it
        at_loss = at_risk_at(acks, t_to)
        ser.append(
            {
                "t": t_to,
                "at_risk": len(at_loss),
                "oldest_s": max((t_to - a.t_ack for a in at_loss), default=0.0),
            }
        )
    exposures = [a.covered_t - a.t_ack for a in during if a.covered_t is not None]
    return {
        "outage_s": t_to - t_from,
        "node_lost": node_lost,
        "at_risk_max": max((r["at_risk"] for r in ser), default=None),
        "oldest_max_s": max((r["oldest_s"] for r in ser), default=None),
        "acks_during": len(during),
        "acks_during_never_covered": sum(
            1 for a in during if a.covered_t is None or (node_lost and a.covered_t > t_to)
        ),
        "exposure_max_s_of_acks_during": max(exposures, default=None),
        "catch_up_s": catch_up,
    }
