"""Faults, injected into a running measurement (Jepsen's nemesis). The nemesis acts on a
deployment's capabilities (``backends.base``), never on engine code, and a fault a deployment
cannot support is refused before anything starts. What each fault does lives in its own module
of ``bench.faults`` (one file per fault); this module only schedules it: wait for the fault
time, inject, hold, recover.

Every phase is recorded in the harness history as ``info nemesis`` events, so the checkers see
the fault timeline on the same clock as the acks.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from backends.base import Deployment
from backends.errors import ConfigError
from backends.history import INFO, HistoryWriter
from bench import faults


@dataclass(frozen=True)
class FaultSpec:
    fault: str
    at_s: float | None = None  # seconds after the schedule starts; None = random in the window
    restart_delay_s: float = 1.0
    pause_s: float = 3.0
    outage_s: float = 10.0  # s3-outage / s3-slow: how long the object store misbehaves
    latency_s: float = 0.5  # s3-slow: added to every request
    # lose-node-in-outage: seconds into the outage at which the node is lost (None: half of it)
    lose_node_after_s: float | None = None


@dataclass
class Timeline:
    fault: str
    planned_at_t: float = float("nan")
    lead_in_t: float = float("nan")  # a composite fault's first part was done (e.g. outage)
    start_t: float = float("nan")  # the fault happened (kill / stop / delete done)
    recover_begin_t: float = float("nan")  # recovery started (after the restart delay)
    store_accepting_t: float = float("nan")  # the store accepts requests again
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_supported(
    fault: str,
    deployment: Deployment | type,
    backend: str,
    options: dict[str, Any] | None = None,
) -> None:
    """Refuse a fault the deployment (an instance, or its class) cannot support; with the
    backend's ``options``, also one its configuration refuses (``refuse_fault``: an external
    server whose processes the harness does not own)."""
    f = faults.get(fault)  # unknown: ConfigError naming the known ones
    cap, why = f.capability, f.refusal
    ok = (
        all(callable(getattr(deployment, m, None)) for m in _members(cap))
        if isinstance(deployment, type)
        else isinstance(deployment, cap)
    )
    if not ok:
        raise ConfigError(f"{backend}: cannot inject {fault}: {why}")
    refuse = getattr(deployment, "refuse_fault", None)
    if options is not None and refuse is not None and (why := refuse(options, fault)):
        raise ConfigError(f"{backend}: cannot inject {fault}: {why}")
    if reason := f.unavailable():  # the machine cannot do it (e.g. no FUSE)
        raise ConfigError(f"{backend}: cannot inject {fault}: {reason}")


def prepare(fault: str, deployment: Deployment) -> None:
    """Before the deployment starts: what a fault needs in place from the beginning (the lazy
    filesystem under the node's data for lose-power; nothing for the others)."""
    faults.get(fault).prepare(deployment)


def on_lazyfs(deployment: Deployment) -> None:
    """Put the node's data on the lazy filesystem before it starts, without the fault: plain
    runs that measure what the lazy filesystem itself costs."""
    check_supported(LAZYFS_FAULT, deployment, deployment.backend)
    prepare(LAZYFS_FAULT, deployment)


LAZYFS_FAULT = "lose-power"  # the fault whose trials run on the lazy filesystem


def _members(cap: type) -> list[str]:
    """The methods a capability asks for, its parents' included (a composite fault's
    capability is a protocol combining two others)."""
    protocols = [c for c in cap.__mro__ if getattr(c, "_is_protocol", False) and c is not Protocol]
    return [m for c in protocols for m in vars(c) if not m.startswith("_")]


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
        self.fault = faults.get(spec.fault)
        self.timeline = Timeline(spec.fault)
        self.done = asyncio.Event()

    async def run(self, schedule_start_t: float) -> None:
        """Sleep until the fault time, inject, wait, recover. Blocking actions run in a thread
        so the load generator keeps its schedule while processes die and restart."""
        tl = self.timeline
        tl.planned_at_t = schedule_start_t + self.at_s
        try:
            await asyncio.sleep(max(0.0, tl.planned_at_t - self.h.now()))
            lead: dict[str, Any] = {}
            if (lead_s := self.fault.lead_in_s(self.spec)) is not None:
                # a composite fault's first part; "lead-in", not "invoke": the promise checker
                # takes ages from the last invoke, i.e. from the injection proper
                lead = (await asyncio.to_thread(self.fault.lead_in, self.dep, self.spec)) or {}
                tl.lead_in_t = self.h.record(INFO, "nemesis", value={"phase": "lead-in"})
                tl.detail = dict(lead)
                await asyncio.sleep(max(0.0, tl.lead_in_t + lead_s - self.h.now()))
            self.h.record(INFO, "nemesis", value={"phase": "invoke", "fault": self.spec.fault})
            t0 = time.monotonic()
            injected = (await asyncio.to_thread(self.fault.inject_with, self.dep, self.spec)) or {}
            tl.start_t = self.h.record(INFO, "nemesis", value={"phase": "fault"})
            injected["inject_s"] = time.monotonic() - t0  # the fault time is when it is done
            tl.detail = {**lead, **injected}  # kept even if the recovery fails
            await asyncio.sleep(self.fault.hold_s(self.spec))
            tl.recover_begin_t = self.h.record(INFO, "nemesis", value={"phase": "recover"})
            t0 = time.monotonic()
            tl.detail.update((await asyncio.to_thread(self.fault.recover, self.dep)) or {})
            tl.detail["recover_s"] = time.monotonic() - t0
            tl.store_accepting_t = self.h.record(
                INFO, "nemesis", value={"phase": "recovered", **tl.detail}
            )
        finally:
            self.done.set()


def __getattr__(name: str) -> Any:
    # ``FAULTS`` (name -> fault) for code written before the registry; new code reads
    # ``bench.faults.registered()``
    if name == "FAULTS":
        return faults.registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
