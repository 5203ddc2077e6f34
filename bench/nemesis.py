"""Faults, injected into a running measurement (Jepsen's nemesis). The nemesis acts on a
deployment's capabilities (``backends.base``), never on engine code, and a fault a deployment
cannot support is refused before anything starts.

  kill-worker   SIGKILL every worker process, restart them after --restart-delay
  kill-store    SIGKILL the store process(es), restart them after --restart-delay
  lose-node     SIGKILL everything on the node and delete its local data, then rebuild from
                what survives elsewhere (object-store replica, standby) after --restart-delay
  pause-store   SIGSTOP the store process(es) for --pause, then SIGCONT
  s3-outage     the replica's object store stops answering for --outage, then returns
  s3-slow       every request to the object store waits --s3-latency, for --outage seconds
                (both in bench/faults/objectstore.py)

Every phase is recorded in the harness history as ``info nemesis`` events, so the checkers see
the fault timeline on the same clock as the acks.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from backends.base import Deployment, KillableStore, KillableWorkers, LosableNode, PausableStore
from backends.errors import ConfigError
from bench.faults import objectstore
from bench.history import INFO, HistoryWriter

FAULTS: dict[str, tuple[type, str]] = {
    "kill-worker": (KillableWorkers, "its workers are not processes the harness can kill"),
    "kill-store": (KillableStore, "it has no store process the harness can kill"),
    "lose-node": (LosableNode, "it cannot rebuild a lost node from anything off the node"),
    "pause-store": (PausableStore, "it has no store process the harness can pause"),
    **objectstore.FAULTS,
}


@dataclass(frozen=True)
class FaultSpec:
    fault: str
    at_s: float | None = None  # seconds after the schedule starts; None = random in the window
    restart_delay_s: float = 1.0
    pause_s: float = 3.0
    outage_s: float = 10.0  # s3-outage / s3-slow: how long the object store misbehaves
    latency_s: float = 0.5  # s3-slow: added to every request


@dataclass
class Timeline:
    fault: str
    planned_at_t: float = float("nan")
    start_t: float = float("nan")  # the fault happened (kill / stop / delete done)
    recover_begin_t: float = float("nan")  # recovery started (after the restart delay)
    store_accepting_t: float = float("nan")  # the store accepts requests again
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_supported(fault: str, deployment: Deployment | type, backend: str) -> None:
    """Refuse a fault the deployment (an instance, or its class) cannot support."""
    if fault not in FAULTS:
        raise ConfigError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    cap, why = FAULTS[fault]
    ok = (
        all(callable(getattr(deployment, m, None)) for m in _members(cap))
        if isinstance(deployment, type)
        else isinstance(deployment, cap)
    )
    if not ok:
        raise ConfigError(f"{backend}: cannot inject {fault}: {why}")


def _members(cap: type) -> list[str]:
    return [m for m in vars(cap) if not m.startswith("_")]


def pick_fault_time(spec: FaultSpec, warmup_s: float, duration_s: float, seed: str) -> float:
    """The fault time: given, or drawn (seeded) inside the measured window's middle part, so
    that runs are in flight before and after it."""
    if spec.at_s is not None:
        return spec.at_s
    lo = warmup_s + 0.1 * (duration_s - warmup_s)
    hi = warmup_s + 0.7 * (duration_s - warmup_s)
    return random.Random(f"{seed}:fault:{spec.fault}").uniform(lo, hi)


class Nemesis:
    def __init__(
        self, spec: FaultSpec, at_s: float, deployment: Deployment, history: HistoryWriter
    ) -> None:
        self.spec = spec
        self.at_s = at_s
        self.dep = deployment
        self.h = history
        self.timeline = Timeline(spec.fault)
        self.done = asyncio.Event()

    async def run(self, schedule_start_t: float) -> None:
        """Sleep until the fault time, inject, wait, recover. Blocking actions run in a thread
        so the load generator keeps its schedule while processes die and restart."""
        tl = self.timeline
        tl.planned_at_t = schedule_start_t + self.at_s
        try:
            await asyncio.sleep(max(0.0, tl.planned_at_t - self.h.now()))
            self.h.record(INFO, "nemesis", value={"phase": "invoke", "fault": self.spec.fault})
            t0 = time.monotonic()
            injected = (await asyncio.to_thread(self._inject)) or {}
            tl.start_t = self.h.record(INFO, "nemesis", value={"phase": "fault"})
            injected["inject_s"] = time.monotonic() - t0  # the fault time is when it is done
            tl.detail = injected  # kept even if the recovery fails
            wait = (
                self.spec.pause_s if self.spec.fault == "pause-store" else self.spec.restart_delay_s
            )
            if self.spec.fault in objectstore.FAULTS:
                wait = self.spec.outage_s
            await asyncio.sleep(wait)
            tl.recover_begin_t = self.h.record(INFO, "nemesis", value={"phase": "recover"})
            t0 = time.monotonic()
            tl.detail.update((await asyncio.to_thread(self._recover)) or {})
            tl.detail["recover_s"] = time.monotonic() - t0
            tl.store_accepting_t = self.h.record(
                INFO, "nemesis", value={"phase": "recovered", **tl.detail}
            )
        finally:
            self.done.set()

    def _inject(self) -> dict[str, Any] | None:
        """Inject the fault; returns what it verified (recorded in the timeline detail)."""
        f, d = self.spec.fault, self.dep
        if f in objectstore.FAULTS:
            return objectstore.inject(f, d, self.spec.latency_s)
        if f == "kill-worker":
            assert isinstance(d, KillableWorkers)
            names = d.worker_names()
            for name in names:  # back to back: one fault, one time
                d.kill_worker(name)
            return {"killed_workers": names}
        elif f == "kill-store":
            assert isinstance(d, KillableStore)
            d.kill_store()
        elif f == "lose-node":
            assert isinstance(d, LosableNode)
            return d.lose_node()  # verified gone, or it raised
        elif f == "pause-store":
            assert isinstance(d, PausableStore)
            d.pause_store()
        return None

    def _recover(self) -> dict[str, Any] | None:
        f, d = self.spec.fault, self.dep
        if f in objectstore.FAULTS:
            return objectstore.recover(f, d)
        if f == "kill-worker":
            assert isinstance(d, KillableWorkers)
            for name in d.worker_names():
                d.start_worker(name)
        elif f == "kill-store":
            assert isinstance(d, KillableStore)
            d.start_store()
        elif f == "lose-node":
            assert isinstance(d, LosableNode)
            return d.rebuild_node()
        elif f == "pause-store":
            assert isinstance(d, PausableStore)
            d.resume_store()
        return None
