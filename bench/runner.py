"""Open-loop driver: schedule -> submit -> history.

Each run is submitted at its scheduled time whether or not the backend has kept up (open loop):
a submit is dispatched as its own task, so a slow ack never delays the next arrival, and latency
is measured from the scheduled time. The only delay the driver itself can add is dispatch lag
(the event loop waking up late); it is measured for every arrival, and a run whose lag was large
is flagged, because then the figures describe the harness, not the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Client, RunSpec
from backends.errors import Indeterminate
from bench.history import FAIL, INFO, INVOKE, OK, HistoryTail, HistoryWriter
from bench.sampler import ResourceSampler
from bench.workload.schedule import Schedule

LAG_WARN_S = 0.010  # an arrival dispatched later than this is "late"
LAG_WARN_FRACTION = 0.01  # warn when more than this share of arrivals was late ...
LAG_WARN_MIN_COUNT = 3  # ... and at least this many (one hiccup in a 30-run smoke is noise)
LAG_WARN_MAX_S = 0.100  # or when any single arrival was this late


@dataclass
class Progress:
    total: int
    dispatched: int = 0
    acked: int = 0
    submit_errors: int = 0
    completed: int = 0
    failed: int = 0
    steps: int = 0
    finished_ids: set[str] = field(default_factory=set)


@dataclass
class DriveResult:
    start_t: float  # schedule start, in history time (seconds since the epoch)
    end_t: float
    lags_s: list[float]
    progress: Progress
    interrupted: bool = False
    drain_timed_out: bool = False


class Driver:
    def __init__(
        self,
        schedule: Schedule,
        client: Client,
        history: HistoryWriter,
        history_dir: Path,
        sampler: ResourceSampler,
        drain_timeout_s: float,
        show_progress: bool,
        inline_engine: Any = None,
    ) -> None:
        self.inline_engine = inline_engine
        self.schedule = schedule
        self.client = client
        self.h = history
        self.history_dir = history_dir
        self.sampler = sampler
        self.drain_timeout_s = drain_timeout_s
        self.show_progress = show_progress
        self.p = Progress(total=len(schedule.runs))
        self.stop = asyncio.Event()
        self._tails: dict[Path, HistoryTail] = {}

    async def drive(self) -> DriveResult:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        interrupts = 0

        def on_signal() -> None:
            nonlocal interrupts
            interrupts += 1
            self.stop.set()
            if interrupts > 1 and main is not None:
                main.cancel()  # a second Ctrl-C: stop waiting for anything

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        ticker = asyncio.create_task(self._tick())
        engine_coro = self.inline_engine
        engine = asyncio.create_task(engine_coro) if engine_coro is not None else None
        start_t = self.h.now()
        self.sampler.sample(start_t)  # CPU "during the drive" is counted from here
        lags: list[float] = []
        submits: set[asyncio.Task[None]] = set()
        drain_timed_out = False
        try:
            epoch_mono = self.h.epoch_ns / 1e9  # history time 0, in time.monotonic() seconds
            for run in self.schedule.runs:
                due = epoch_mono + start_t + run.scheduled_t
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    break
                lag = time.monotonic() - due
                lags.append(max(lag, 0.0))
                task = asyncio.create_task(self._submit(run, start_t + run.scheduled_t))
                submits.add(task)
                task.add_done_callback(submits.discard)
            if submits:
                await asyncio.wait(set(submits))
            deadline = time.monotonic() + self.drain_timeout_s
            while not self.stop.is_set() and self._outstanding() > 0:
                if time.monotonic() > deadline:
                    drain_timed_out = True
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 0.05)
                self._read_tails()
        finally:
            for task in (ticker, engine):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self._read_tails()
            self._render(final=True)
        return DriveResult(start_t, self.h.now(), lags, self.p, self.stop.is_set(), drain_timed_out)

    def _outstanding(self) -> int:
        return self.p.acked - len(self.p.finished_ids)

    async def _submit(self, run: RunSpec, scheduled_t: float) -> None:
        self.p.dispatched += 1
        self.h.record(INVOKE, "submit", run.run_id, value={"scheduled_t": round(scheduled_t, 6)})
        try:
            await self.client.submit(run)
        except Indeterminate as e:
            self.h.record(INFO, "submit", run.run_id, value=str(e))
            self.p.submit_errors += 1
            return
        except Exception as e:  # noqa: BLE001 - a refused submit is a result, not a crash
            self.h.record(FAIL, "submit", run.run_id, value=repr(e))
            self.p.submit_errors += 1
            return
        self.h.record(OK, "submit", run.run_id)
        self.p.acked += 1

    # -- progress ----------------------------------------------------------------------------

    def _read_tails(self) -> None:
        for path in self.history_dir.glob("*.jsonl"):
            if path.name == "harness.jsonl":
                continue
            tail = self._tails.setdefault(path, HistoryTail(path))
            for line in tail.read_new_lines():
                if b'"op":"commit"' in line:
                    if b'"type":"ok"' in line:
                        self.p.steps += 1
                elif b'"op":"complete"' in line:
                    e = json.loads(line)
                    if e["type"] == "ok" and e["run"] not in self.p.finished_ids:
                        self.p.finished_ids.add(e["run"])
                        if e.get("value") == "completed":
                            self.p.completed += 1
                        else:
                            self.p.failed += 1

    async def _tick(self) -> None:
        last_line = 0.0
        while True:
            await asyncio.sleep(0.5)
            self._read_tails()
            self.sampler.sample(self.h.now())
            if self.show_progress:
                self._render()
            elif time.monotonic() - last_line > 10:
                last_line = time.monotonic()
                print(self._line(), file=sys.stderr, flush=True)

    def _line(self) -> str:
        p = self.p
        return (
            f"[{self.h.now():6.1f}s] dispatched {p.dispatched}/{p.total}  acked {p.acked}  "
            f"done {p.completed}  failed-runs {p.failed}  in-flight {self._outstanding()}  "
            f"steps {p.steps}  submit-errors {p.submit_errors}"
        )

    def _render(self, final: bool = False) -> None:
        if not self.show_progress:
            if final:
                print(self._line(), file=sys.stderr, flush=True)
            return
        end = "\n" if final else "\r"
        print("\x1b[2K" + self._line(), end=end, file=sys.stderr, flush=True)


def lag_warning(lags: list[float]) -> str | None:
    if not lags:
        return None
    late = sum(1 for x in lags if x > LAG_WARN_S)
    many = late > LAG_WARN_FRACTION * len(lags) and late >= LAG_WARN_MIN_COUNT
    if many or max(lags) > LAG_WARN_MAX_S:
        return (
            f"the load generator fell behind its schedule: {late} of {len(lags)} arrivals "
            f"were dispatched more than {LAG_WARN_S * 1000:.0f} ms late (max "
            f"{max(lags) * 1000:.0f} ms); latency and throughput figures are not trustworthy"
        )
    return None


def run_async(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())
