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
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import pandas as pd

from backends.base import Deployment

INTERVAL_S = 0.025
ACK_OPS = {"submit": "run-accepted", "commit": "step-committed", "complete": "run-completed"}


@dataclass(frozen=True)
class Sample:
    t0: float
    t1: float
    generation: str
    local: int | None
    replica: int | None


class Samples(Sequence[Sample]):
    """The readings of one run, stored by column (40 bytes a reading instead of ~320 for a
    ``Sample`` object: a 1-hour run holds 144,000), read back as ``Sample``s. One thread
    appends, others read: the length is published after every column has the new reading."""

    _NONE = -(2**63)  # a position that was not read

    def __init__(self) -> None:
        self.t0, self.t1 = array("d"), array("d")
        self.local, self.replica = array("q"), array("q")
        self.gen = array("H")
        self.gens: list[str] = []
        self._n = 0

    def append(
        self, t0: float, t1: float, generation: str, local: int | None, replica: int | None
    ) -> None:
        try:
            g = self.gens.index(generation)  # a few at most: one per database file
        except ValueError:
            self.gens.append(generation)
            g = len(self.gens) - 1
        self.t0.append(t0)
        self.t1.append(t1)
        self.gen.append(g)
        self.local.append(self._NONE if local is None else local)
        self.replica.append(self._NONE if replica is None else replica)
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def _at(self, i: int) -> Sample:
        loc, rep = self.local[i], self.replica[i]
        return Sample(
            self.t0[i],
            self.t1[i],
            self.gens[self.gen[i]],
            None if loc == self._NONE else loc,
            None if rep == self._NONE else rep,
        )

    @overload
    def __getitem__(self, i: int) -> Sample: ...
    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...
    def __getitem__(self, i: int | slice) -> Sample | list[Sample]:
        if isinstance(i, slice):
            return [self._at(k) for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._at(i)

    def __iter__(self) -> Iterator[Sample]:
        return (self._at(k) for k in range(self._n))


def sample_columns(samples: Sequence[Sample]) -> dict[str, Any]:
    """exposure_samples.csv's columns (nullable integer positions), without a dict a reading."""
    if isinstance(samples, Samples):
        n = len(samples)
        nullable = {
            k: pd.array(
                [None if v == Samples._NONE else v for v in getattr(samples, k)[:n]], dtype="Int64"
            )
            for k in ("local", "replica")
        }
        return {
            "t0": samples.t0[:n],
            "t1": samples.t1[:n],
            "generation": [samples.gens[g] for g in samples.gen[:n]],
            **nullable,
        }
    return {
        "t0": [x.t0 for x in samples],
        "t1": [x.t1 for x in samples],
        "generation": [x.generation for x in samples],
        "local": pd.array([x.local for x in samples], dtype="Int64"),
        "replica": pd.array([x.replica for x in samples], dtype="Int64"),
    }


class PositionSampler:
    """Samples the deployment's replication position from a daemon thread."""

    def __init__(self, deployment: Deployment, now: Any, interval_s: float = INTERVAL_S) -> None:
        self.dep = deployment
        self.now = now  # history clock
        self.interval_s = interval_s
        self.samples: Sequence[Sample] = Samples()
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
        seen = len(self.samples)  # readings before now cannot be the target: not read again
        while time.monotonic() < deadline and self._thread is not None:
            while target is None and seen < len(self.samples):
                s = self.samples[seen]
                seen += 1
                if s.t0 >= t_start and s.local is not None:
                    target = s
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
                self.samples.append(t0, t1, p.generation, p.local, p.replica)  # type: ignore[attr-defined]
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
    """(kind, id, ack time, lower bound of its commit) of every ack, first ack per write. The
    lower bound is the latest invoke of that write itself (a submit's own invoke, a step's own
    commit invoke): a later write of the same run can begin before an ack that is recorded
    late (a batched submit), and its invoke is no bound on the earlier commit. A completion
    commits after the run's last step commit began, so that invoke bounds it."""
    last_invoke: dict[tuple[str, str | None, int | None], float] = {}
    out: list[tuple[str, str, float, float | None]] = []
    seen: set[tuple[str, str]] = set()
    for e in events:
        op, typ = e.get("op"), e.get("type")
        if op not in ACK_OPS:
            continue
        run, step = e.get("run"), e.get("step")
        if typ == "invoke":
            last_invoke[(op, run, step)] = e["t"]
            if op == "commit":
                last_invoke[("commit", run, None)] = e["t"]
        elif typ == "ok":
            kind = ACK_OPS[op]
            key = f"{run}/{step}" if op == "commit" else str(run)
            if (kind, key) in seen:
                continue
            seen.add((kind, key))
            if op == "commit":
                lo = last_invoke.get(("commit", run, step))
            elif op == "submit":
                lo = last_invoke.get(("submit", run, None))
            else:  # its own invoke, else the run's last step commit's
                lo = last_invoke.get((op, run, None), last_invoke.get(("commit", run, None)))
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


def at_risk_at(acks: list[AckExposure], t: float) -> list[AckExposure]:
    """Acks made before ``t`` and not covered by then (per the samples)."""
    return [a for a in acks if a.t_ack < t and (a.covered_t is None or a.covered_t > t)]


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
