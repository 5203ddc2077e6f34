"""Exposure: for every ack, how long it existed only on the node (acks at risk), measured
continuously in every run of a deployment with an asynchronous replica, without destroying
anything.

Sampling: a thread calls ``Deployment.replication_position()`` every ``INTERVAL_S`` during the
drive and records ``(t0, t1, generation, local, replica)`` (history times before and after the
reading). An ack at ``t_ack`` needs the ``local`` position of the first sample that began at or
after ``t_ack`` (its commit is at or below it: conservative, it may include later commits); it
is **covered** at the ``t1`` of the first sample of the same generation whose replica reached
that position. Exposure = covered - t_ack. Resolution: one sampling period plus the reading
time, both recorded (``resolution_s``), and always on the long side: the figures can only
overstate exposure, never hide it. An ack never covered before the end of sampling (the node
was lost, the replica never caught up) is reported as such, with its exposure censored at the
end.

The same samples say which acks were at risk at any moment, e.g. at a fault: ``at_risk_at``.
``cross_check`` compares that with what the write-loss checker found lost after a node loss.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from backends.base import Deployment
from bench.metrics import HDR_MAX_US

INTERVAL_S = 0.025
ACK_OPS = {"submit": "run-accepted", "commit": "step-committed", "complete": "run-completed"}


@dataclass(frozen=True)
class Sample:
    t0: float
    t1: float
    generation: str
    local: int | None
    replica: int | None


class PositionSampler:
    """Samples the deployment's replication position from a daemon thread."""

    def __init__(self, deployment: Deployment, now: Any, interval_s: float = INTERVAL_S) -> None:
        self.dep = deployment
        self.now = now  # history clock
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.unit: str | None = None
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def supported(self) -> bool:
        try:
            first = self.dep.replication_position()
        except Exception as e:  # noqa: BLE001 - a hook that fails measures nothing
            self.last_error = f"{type(e).__name__}: {e}"
            return False
        return first is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="exposure", daemon=True)
        self._thread.start()

    def settle(self, timeout_s: float) -> bool:
        """After the drive: keep sampling until the replica reaches the store position read
        now (the last acks get their natural coverage time, not one forced by the end-of-run
        catch-up), or ``timeout_s``. True when it did."""
        t_start = self.now()
        deadline = time.monotonic() + timeout_s
        target: Sample | None = None
        while time.monotonic() < deadline and self._thread is not None:
            after = [s for s in self.samples if s.t0 >= t_start and s.local is not None]
            target = target or (after[0] if after else None)
            if target is not None:
                last = self.samples[-1]
                if last.generation == target.generation and (last.replica or -1) >= (
                    target.local or 0
                ):
                    return True
            time.sleep(self.interval_s)
        return False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            t0 = self.now()
            try:
                p = self.dep.replication_position()
            except Exception as e:  # noqa: BLE001 - counted; the next reading may work
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                p = None
            t1 = self.now()
            if p is not None:
                self.unit = p.unit
                self.samples.append(Sample(t0, t1, p.generation, p.local, p.replica))
            nxt += self.interval_s
            self._stop.wait(max(0.0, nxt - time.monotonic()))
            nxt = max(nxt, time.monotonic() - self.interval_s)  # never burst to catch up


@dataclass
class AckExposure:
    kind: str
    id: str
    t_ack: float
    t_lo: float | None  # the latest invoke of this write before its ack (its commit began later)
    need: int | None  # local position at the first sample after the ack
    need_gt: int | None  # the commit is strictly above this (local before t_lo), same gen
    generation: str | None
    covered_t: float | None  # None: never covered while sampling


def acks_of(events: Iterable[dict[str, Any]]) -> list[tuple[str, str, float, float | None]]:
    """(kind, id, ack time, latest invoke before it) of every ack, first ack per write."""
    last_invoke: dict[tuple[str, int | None], float] = {}
    out: list[tuple[str, str, float, float | None]] = []
    seen: set[tuple[str, str]] = set()
    for e in events:
        op, typ = e.get("op"), e.get("type")
        if op not in ACK_OPS:
            continue
        run, step = e.get("run"), e.get("step")
        if typ == "invoke":
            last_invoke[(run, step)] = e["t"]
            last_invoke[(run, None)] = e["t"]
        elif typ == "ok":
            kind = ACK_OPS[op]
            key = f"{run}/{step}" if op == "commit" else str(run)
            if (kind, key) in seen:
                continue
            seen.add((kind, key))
            lo = last_invoke.get((run, step if op == "commit" else None))
            out.append((kind, key, e["t"], lo))
    return out


class Coverage:
    """The samples indexed once, so each shard's acks are looked up against them without
    re-reading them (see the module docstring for the rule)."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.good = [s for s in samples if s.local is not None]
        good = self.good
        self.t0s = [s.t0 for s in good]
        self.t1s = [s.t1 for s in good]
        # an ack whose next reading is the first of a new database file (a rebuilt node) was
        # made on the old one: a position of the new one says nothing about it (not a reading
        # that failed once: the WAL index can be unreadable for a moment on a live node)
        self.new_gen = [
            i > 0 and good[i].generation != good[i - 1].generation for i in range(len(good))
        ]
        # per generation: sample start times, indices into ``samples`` and the replica's
        # high-water mark there
        self.by_gen: dict[str, tuple[list[float], list[int], np.ndarray]] = {}
        for gen in {s.generation for s in samples}:
            idx = [i for i, s in enumerate(samples) if s.generation == gen]
            rep = np.array(
                [-1 if samples[i].replica is None else samples[i].replica for i in idx],
                dtype=float,
            )
            self.by_gen[gen] = ([samples[i].t0 for i in idx], idx, np.maximum.accumulate(rep))

    def of(self, acks: list[tuple[str, str, float, float | None]]) -> list[AckExposure]:
        good, samples = self.good, self.samples
        out: list[AckExposure] = []
        for kind, key, t_ack, t_lo in acks:
            i = bisect.bisect_left(self.t0s, t_ack)
            if i >= len(good) or self.new_gen[i]:
                out.append(AckExposure(kind, key, t_ack, t_lo, None, None, None, None))
                continue
            s = good[i]
            need_gt = None
            if t_lo is not None:
                k = bisect.bisect_right(self.t1s, t_lo) - 1  # last reading done before the invoke
                if k >= 0 and good[k].generation == s.generation:
                    need_gt = good[k].local
            gt0, idx, hw = self.by_gen[s.generation]
            start = bisect.bisect_left(gt0, s.t0)
            j = max(start, int(np.searchsorted(hw, s.local, side="left")))
            covered = samples[idx[j]].t1 if j < len(idx) else None
            out.append(AckExposure(kind, key, t_ack, t_lo, s.local, need_gt, s.generation, covered))
        return out


def analyze(samples: list[Sample], events: Iterable[dict[str, Any]]) -> list[AckExposure]:
    """Per-ack coverage of every ack in ``events`` (a whole history, or one shard of it)."""
    return Coverage(samples).of(acks_of(events))


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


def at_risk_at(acks: list[AckExposure], t: float) -> list[AckExposure]:
    """Acks made before ``t`` and not covered by then (per the samples)."""
    return [a for a in acks if a.t_ack < t and (a.covered_t is None or a.covered_t > t)]


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
        self.exposures = HdrHistogram(1, HDR_MAX_US, 3)  # microseconds
        self.n = self.covered = self.over = self.never = self.never_before = self.before = 0
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
                us = max(int(round(x * 1e6)), 1)
                if us > HDR_MAX_US:
                    self.over += 1  # counted in max and mean, not in the percentiles
                else:
                    self.exposures.record_value(us)
            at_fault = f is not None and a.t_ack < f and (a.covered_t is None or a.covered_t > f)
            # a margin around the window: an extra ack there changes no figure, a missing one would
            in_window = w is not None and (
                a.t_ack <= w[1] + 1.0 and (a.covered_t is None or a.covered_t > w[0] - 1.0)
            )
            if at_fault or in_window:
                self.kept.append(a)
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
        h, n = self.exposures, self.covered - self.over
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
                "over_range": self.over,
            },
            "at_risk_peak": peak["at_risk"] if peak else None,
            "at_risk_peak_t": peak["t"] if peak else None,
            "oldest_at_risk_max_s": max((r["oldest_s"] for r in ser), default=None),
            "acks_considered_before_fault": self.before if f is not None else None,
            "_series": ser,
        }


def cross_check(
    acks: list[AckExposure], samples: list[Sample], fault_t: float, lost: list[dict[str, Any]]
) -> dict[str, Any]:
    """After a node loss: the acks the checker found lost (made before the fault) must be among
    those the samples had at risk at the fault, and every ack the samples prove missing from
    the replica must be lost. Proof of missing: the replica's last position of that generation
    (read after the fault) is at or below a local position read before the ack's commit began.
    The rest of the at-risk acks are within the sampler's resolution either way."""
    predicted = {(a.kind, a.id): a for a in at_risk_at(acks, fault_t)}
    final: dict[str, float] = {}
    for s in samples:
        if s.replica is not None:
            final[s.generation] = max(final.get(s.generation, -1), s.replica)
    certain = {
        k
        for k, a in predicted.items()
        if a.need_gt is not None and a.generation in final and final[a.generation] <= a.need_gt
    }
    lost_keys = {(x["kind"], x["id"]) for x in lost if x.get("after_fault") is False}
    missed = sorted(lost_keys - set(predicted))
    wrongly_certain = sorted(certain - lost_keys)
    return {
        "valid": not missed and not wrongly_certain,
        "fault_t": fault_t,
        "at_risk_at_fault": len(predicted),
        "certainly_missing_from_replica": len(certain),
        "lost_before_fault": len(lost_keys),
        "lost_not_at_risk": [f"{k}:{i}" for k, i in missed][:50],
        "certain_but_not_lost": [f"{k}:{i}" for k, i in wrongly_certain][:50],
        "at_risk_not_lost_within_resolution": len(set(predicted) - lost_keys - certain),
    }


ACK_COLUMNS = ("kind", "id", "t_ack", "covered_t", "exposure_s", "generation", "need_position")


def ack_row(a: AckExposure) -> tuple[Any, ...]:
    """exposure.csv: one row per ack (``ACK_COLUMNS``)."""
    return (
        a.kind,
        a.id,
        round(a.t_ack, 6),
        None if a.covered_t is None else round(a.covered_t, 6),
        None if a.covered_t is None else round(a.covered_t - a.t_ack, 6),
        a.generation,
        a.need,
    )


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
