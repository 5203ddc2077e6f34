# size: one open-loop drive (arrivals, drain, progress from the workers' histories, the probe of the store after a fault) under one cancellation story; the arrivals of enqueuing stores are in bench/arrivals.py. Not split further in this change; candidate: progress and tails to their own module.
"""Open-loop driver: schedule -> submit -> history.

Each run is submitted at its scheduled time whether or not the backend has kept up (open loop):
no submit waits for an earlier one's ack, and latency is measured from the scheduled time. A
store that submits on a thread of its own (``Client.enqueue_submit``) is handed each run by the
driver's arrivals thread, and records the acks of each transaction in the history as it ends;
any other store gets a task per submit on the event loop. The only delay the driver itself can
add is dispatch lag (the arrival reached late, or the submit's task waiting for the loop); it is
measured for every arrival when its submit starts (the time of its invoke event, as the history
shows it), and a run whose lag was large is flagged, because then the figures describe the
harness, not the backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import shutil
import signal
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from backends.base import Client, RunSpec
from backends.common.process import set_main_thread_runner
from backends.errors import DiskFull, Indeterminate
from backends.history import FAIL, INFO, INVOKE, OK, HistoryTail, HistoryWriter, RawJSON
from bench.arrivals import STOP_POLL_S, EnqueuedSubmits, due_batches
from bench.nemesis import Nemesis
from bench.sampler import ResourceSampler
from bench.workload.schedule import Schedule, seq_of

LAG_WARN_S = 0.010  # an arrival dispatched later than this is "late"
LAG_WARN_FRACTION = 0.01  # warn when more than this share of arrivals was late ...
LAG_WARN_MIN_COUNT = 3  # ... and at least this many (one hiccup in a 30-run smoke is noise)
LAG_WARN_MAX_S = 0.100  # or when any single arrival was this late
# the run stops when the results filesystem has less than this free: what remains is for the
# results themselves (manifest, summary, CSVs), so a full disk still leaves a readable result
DISK_RESERVE_BYTES = 512 * 1024
STALL_PROBE_S = 2.0  # no run finished for this long while draining: ask the store what is left
DRIVE_SWITCH_INTERVAL_S = 0.001  # GIL hand-over interval during the drive (default 0.005)
SUBMIT_POLL_S = 0.005  # after the last arrival: how often to look for the last submits' acks


# what the drive knows of a run, one byte per scheduled run (by seq), so its memory stays a
# byte a run however long the schedule (sets of run ids cost ~100 bytes a run)
ACKED = 1  # the run-accepted ack
FINISHED = 2  # its run-completed ack is in a history
LOST = 4  # after a fault: accepted, but the store no longer has it
STORE_FINISHED = 8  # after a fault: finished in the store, with no completion in any history
SETTLED = FINISHED | LOST | STORE_FINISHED  # nothing more to wait for


@dataclass
class Progress:
    total: int
    dispatched: int = 0
    acked: int = 0
    submit_errors: int = 0
    completed: int = 0
    failed: int = 0
    steps: int = 0
    flags: bytearray = field(init=False)  # ACKED | FINISHED | ... by seq

    def __post_init__(self) -> None:
        self.flags = bytearray(self.total)

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    def count(self, has: int, lacks: int = 0) -> int:
        """Runs whose flags include every bit of ``has`` and none of ``lacks``."""
        f = np.frombuffer(self.flags, dtype=np.uint8)
        return int(np.count_nonzero((f & (has | lacks)) == has))


@dataclass
class DriveResult:
    start_t: float  # schedule start, in history time (seconds since the epoch)
    end_t: float
    lags_s: array[float]  # dispatch lag of every submit started, in the order they started
    progress: Progress
    interrupted: bool = False
    drain_timed_out: bool = False
    fatal: BaseException | None = None  # the drive stopped early because of this (disk full)
    signal: str | None = None  # interrupted by this signal
    missing_runs: int = 0  # accepted runs the store no longer had: the drain stopped waiting


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
        nemesis: Nemesis | None = None,
    ) -> None:
        self.inline_engine = inline_engine
        self.nemesis = nemesis
        self.store_unfinished = False  # after a fault: accepted runs still queued/running
        self.schedule = schedule
        self.client = client
        self.h = history
        self.history_dir = history_dir
        self.sampler = sampler
        self.drain_timeout_s = drain_timeout_s
        self.show_progress = show_progress
        self.p = Progress(total=len(schedule.runs))
        self._live: Live | None = None  # the progress line, while it is shown
        self.stop = asyncio.Event()
        self.fatal: BaseException | None = None  # why the drive stopped early (disk full)
        self.signal: str | None = None  # the signal that stopped it (SIGINT / SIGTERM)
        self._tails: dict[Path, HistoryTail] = {}
        self._enqueued: EnqueuedSubmits | None = None  # the arrivals thread, if the store has one

    # size: the open-loop drive, its drain and its cancellation under one try/finally (signal handlers
    # restored, tasks cancelled); not split in this change.
    async def drive(self) -> DriveResult:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        interrupts = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal interrupts
            interrupts += 1
            self.signal = self.signal or sig.name
            self.stop.set()
            self._halt()
            if interrupts > 1 and main is not None:
                main.cancel()  # a second Ctrl-C: stop waiting for anything

        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in before:
            loop.add_signal_handler(sig, on_signal, sig)
        set_main_thread_runner(_main_thread_runner(loop))
        ticker = asyncio.create_task(self._tick())
        engine_coro = self.inline_engine
        engine = asyncio.create_task(engine_coro) if engine_coro is not None else None
        # every object alive now (modules, the deployment; the schedule holds no per-run object
        # since it became lazy) leaves the cyclic GC's view for the drive: a full collection
        # over an eagerly built 20,000-run schedule took 160-350 ms, one late arrival burst
        # each time; refcounting still frees them
        gc.collect()
        gc.freeze()
        # the thread timing the arrivals shares the GIL with the store's submitter and the
        # samplers: at the default 5 ms it could get it back up to 5 ms after a wake-up, half
        # the lag that counts as late
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(DRIVE_SWITCH_INTERVAL_S)
        start_t = self.h.now()
        self.sampler.sample(start_t)  # CPU "during the drive" is counted from here
        fault = asyncio.create_task(self.nemesis.run(start_t)) if self.nemesis else None
        self._lags: array[float] = array("d")
        submits: set[asyncio.Task[None]] = set()
        drain_timed_out = False
        dispatcher: threading.Thread | None = None
        try:
            if self.client.enqueues_submits:  # see bench/arrivals.py
                self._enqueued = EnqueuedSubmits(self.client, self.h, self.p, self._lags)
                if self.stop.is_set():  # a signal before the thread existed
                    self._halt()
                done = loop.create_future()
                dispatcher = threading.Thread(
                    target=self._enqueued.run,
                    args=(self.schedule.runs, start_t, loop, done, self._fail),
                    name="arrivals",
                    daemon=True,
                )
                dispatcher.start()
                await done
            else:
                await self._arrivals(start_t, submits)
            if submits:
                await asyncio.wait(set(submits))
            while self._take_acks() > 0:  # every enqueued submit's outcome is known
                await asyncio.sleep(SUBMIT_POLL_S)
            if fault is not None:  # recovery must be over before "done" means anything
                await _wait_any(fault, self.stop)
            deadline = time.monotonic() + self.drain_timeout_s
            next_probe = time.monotonic()
            if fault is not None:
                await self._probe_store()
            finished, progress_t = self.p.finished, time.monotonic()
            while not self.stop.is_set() and (self._outstanding() > 0 or self.store_unfinished):
                if time.monotonic() > deadline:
                    drain_timed_out = True
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 0.05)
                self._read_tails()
                if self.p.finished != finished:
                    finished, progress_t = self.p.finished, time.monotonic()
                # without a fault the store is asked only once nothing has finished for a
                # while: an accepted run it no longer has can never finish, so waiting for it
                # until the drain timeout would prove nothing (the checks report it as lost)
                stalled = time.monotonic() - progress_t > STALL_PROBE_S
                if (fault is not None or stalled) and time.monotonic() > next_probe:
                    next_probe = time.monotonic() + 1.0
                    await self._probe_store()
        finally:
            if dispatcher is not None:  # cancelled (a second Ctrl-C): no arrival after this
                self._halt()
                dispatcher.join()
            gc.unfreeze()
            sys.setswitchinterval(switch_interval)
            set_main_thread_runner(None)
            for task in (ticker, engine, fault):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            for sig, handler in before.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)  # asyncio would leave SIGTERM at its default: death
            self._take_acks()
            self._read_tails()
            self._render(final=True)
            self.sampler.drive_ended()
        return DriveResult(
            start_t,
            self.h.now(),
            self._lags,
            self.p,
            self.signal is not None,
            drain_timed_out,
            self.fatal,
            self.signal,
            self.p.count(LOST, FINISHED),
        )

    def _fail(self, error: BaseException) -> None:
        """Stop the drive now; the result carries ``error`` for the caller to raise."""
        if self.fatal is None:
            self.fatal = error
        self.stop.set()
        self._halt()

    def _halt(self) -> None:
        """No arrival after the current one (``stop``, for the arrivals thread)."""
        if self._enqueued is not None:
            self._enqueued.halt.set()

    def _check_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.history_dir).free
        except OSError:
            return
        if free < DISK_RESERVE_BYTES:
            self._fail(DiskFull(self.history_dir.parent))

    def _outstanding(self) -> int:
        self._take_acks()
        return self.p.count(ACKED, SETTLED)

    async def _probe_store(self) -> None:
        """After a fault the history alone cannot say when the work is over: accepted runs may
        be gone from the store for good (stop waiting for them: the write-loss checker reports
        them), and runs whose completion was acked may have been rolled back to queued/running
        by the recovery (wait for them to run again)."""
        try:
            stored = await asyncio.to_thread(self._stored_status)
        except Exception:  # noqa: BLE001 - the store may still be recovering
            self.store_unfinished = True
            return
        f = np.frombuffer(self.p.flags, dtype=np.uint8)
        acked = (f & ACKED) != 0
        f &= ~np.uint8(LOST | STORE_FINISHED)
        f[acked & (stored == _ABSENT)] |= LOST
        f[acked & (stored == _DONE)] |= STORE_FINISHED
        unfinished = int(np.count_nonzero(acked & (stored == _UNFINISHED)))
        self.store_unfinished = bool(unfinished)
        self.h.record(
            INFO,
            "probe",
            value={"lost": self.p.count(LOST), "unfinished_in_store": unfinished},
        )

    def _stored_status(self) -> np.ndarray:
        """Each scheduled run's status in the store, by seq: _ABSENT, _DONE or _UNFINISHED."""
        out = np.full(self.p.total, _ABSENT, dtype=np.uint8)
        for r in self.client.state().runs():
            seq = _seq(r.run_id, self.p.total)
            if seq is not None:
                out[seq] = _STORE_STATUS.get(r.status, _OTHER)
        return out

    async def _arrivals(self, start_t: float, submits: set[asyncio.Task[None]]) -> None:
        """Every arrival as a task awaiting ``Client.submit`` (stores without a submit thread)."""
        for item in due_batches(self.schedule.runs, self.h.epoch_ns / 1e9 + start_t):
            if self.stop.is_set():
                return
            if isinstance(item, float):
                # a plain sleep (a timer, no task): ``wait_for(stop.wait())`` cost a task and
                # a cancellation per arrival; ``stop`` is still seen within STOP_POLL_S
                await asyncio.sleep(min(item, STOP_POLL_S))
                continue
            for r in item:
                task = asyncio.create_task(self._submit(r, start_t + r.scheduled_t))
                submits.add(task)
                task.add_done_callback(submits.discard)

    def _take_acks(self) -> int:
        """Count the acks the arrivals' sink recorded since the last call (loop thread only);
        returns how many enqueued submits still wait for theirs."""
        if self._enqueued is None:
            return 0
        flags, p = self.p.flags, self.p
        for seqs, errors, write_error in self._enqueued.take():
            p.submit_errors += errors
            if write_error is not None:  # unrecorded: counted as refused above
                self._fail(write_error)
                continue
            p.acked += len(seqs)
            for seq in seqs:
                flags[seq] |= ACKED
        return self._enqueued.unresolved()

    async def _submit(self, run: RunSpec, scheduled_t: float) -> None:
        try:
            await self._submit_one(run, scheduled_t)
        except DiskFull as e:  # the history cannot be written: nothing after it would count
            self._fail(e)

    async def _submit_one(self, run: RunSpec, scheduled_t: float) -> None:
        self.p.dispatched += 1
        # the value as json.dumps writes it, formatted directly (once per run)
        value = RawJSON(f'{{"scheduled_t":{round(scheduled_t, 6)!r}}}')
        t = self.h.record(INVOKE, "submit", run.run_id, value=value)
        # measured here, not where the arrival loop created this task: the task may wait for
        # the loop behind other callbacks (measured: up to 2x the loop's own lag when behind)
        self._lags.append(max(t - scheduled_t, 0.0))
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
        self.p.flags[run.seq] |= ACKED

    # -- progress ----------------------------------------------------------------------------

    def _read_tails(self) -> None:
        for path in self.history_dir.glob("*.jsonl"):
            if path.name == "harness.jsonl":
                continue
            tail = self._tails.setdefault(path, HistoryTail(path))
            chunk = tail.read_new_chunk()
            # counted in the bytes, not line by line: the harness's CPU per step matters
            # (HistoryWriter writes "type" before "op", with no spaces)
            self.p.steps += chunk.count(b'"type":"ok","op":"commit"')
            flags = self.p.flags
            for e in _complete_events(chunk):
                seq = _seq(e["run"], len(flags))
                if e["type"] == "ok" and seq is not None and not flags[seq] & FINISHED:
                    flags[seq] |= FINISHED
                    if e.get("value") == "completed":
                        self.p.completed += 1
                    else:
                        self.p.failed += 1

    async def _tick(self) -> None:
        last_line = 0.0
        # resource samples on their own thread: reading every process's PSS (smaps_rollup)
        # took 5-15 ms of the event loop every tick, a burst of late arrivals each time; the
        # reads release the GIL, so the loop keeps dispatching meanwhile
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sampler")
        sampling: concurrent.futures.Future[None] | None = None
        try:
            while True:
                await asyncio.sleep(0.5)
                self._check_disk()
                self._take_acks()
                self._read_tails()
                if sampling is None or sampling.done():  # a slow sample is never queued twice
                    sampling = pool.submit(self.sampler.sample, self.h.now())
                if self.show_progress:
                    self._render()
                elif time.monotonic() - last_line > 10:
                    last_line = time.monotonic()
                    print(self._line(), file=sys.stderr, flush=True)
        finally:
            pool.shutdown(wait=True)  # no sample lands after the drive's figures are read

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
        if self._live is None:
            # refreshed by our tick only (no refresh thread: workers fork from this process)
            self._live = Live(
                Text(),
                console=Console(stderr=True),
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        self._live.update(Text(self._line()), refresh=True)
        if final:
            self._live.stop()  # leaves the last line on screen
            self._live = None


_ABSENT, _DONE, _UNFINISHED, _OTHER = 0, 1, 2, 3
_STORE_STATUS = {"completed": _DONE, "failed": _DONE, "queued": _UNFINISHED, "running": _UNFINISHED}


def _seq(run_id: object, n: int) -> int | None:
    """The seq of a scheduled run's id; None for anything else (not one of this schedule's)."""
    try:
        seq = seq_of(run_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seq if 0 <= seq < n else None


def _complete_events(chunk: bytes) -> Iterator[dict[str, Any]]:
    """The "complete" events in a chunk of whole history lines, found without splitting it."""
    i = chunk.find(b'"op":"complete"')
    while i >= 0:
        start = chunk.rfind(b"\n", 0, i) + 1
        end = chunk.find(b"\n", i)
        line = chunk[start:end]
        try:
            yield json.loads(line)
        except ValueError:  # a torn fragment (worker killed mid-write) before a whole event
            j = line.rfind(b'{"t":')
            if j > 0:
                with contextlib.suppress(ValueError):
                    yield json.loads(line[j:])
        i = chunk.find(b'"op":"complete"', end)


async def _wait_any(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()


def _main_thread_runner(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Any]], Any]:
    """Runs a callable on the loop's (main) thread and waits for its result: used by
    ``ManagedProcess`` so children restarted from a fault thread fork on the main thread."""

    def run(fn: Callable[[], Any]) -> Any:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                fut.set_exception(e)

        loop.call_soon_threadsafe(call)
        return fut.result()

    return run


def lag_warning(lags: Sequence[float]) -> str | None:
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
