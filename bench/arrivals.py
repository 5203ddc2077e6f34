"""Arrivals: the schedule as it comes due, and the submits of a store that takes them on a
thread of its own (``Client.enqueue_submit``), with their acks recorded as each transaction ends.

Why a thread and not the event loop: a wake-up of the loop for an arrival cost ~65 µs of CPU on
the 2-core machine (timer, future, task step) against ~20 µs for a sleeping thread, and the
loop's other work (history tails, progress) no longer delays an arrival. What stays the same:
the dispatch lag is taken at each submit's invoke event, as the history shows it; each ack is in
the history before anything counts it (``acked`` writes it on the store's thread right after the
commit; the drive counts it later, from ``take``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from backends.base import Client, RunSpec
from backends.errors import Indeterminate
from backends.history import FAIL, INFO, INVOKE, OK, HistoryWriter, RawJSON

MAX_DISPATCH_BATCH = 256  # runs due at once dispatched together (one history write)
STOP_POLL_S = 0.05  # a wait for the next arrival checks for a stop (signal, fatal) this often

# per transaction: the seqs of the runs accepted, how many were refused, and the error that
# kept their history lines from being written (then none of them counts as acked)
Acks = tuple["array[int]", int, BaseException | None]


def due_batches(runs: Sequence[RunSpec], base_mono: float) -> Iterator[list[RunSpec] | float]:
    """The runs as they come due (``base_mono``: schedule time 0 in ``time.monotonic()``
    seconds): a run list when runs are due (every run due by now: the driver was late, or
    arrivals coincide), else the seconds to wait first. The next run is built after a batch was
    dispatched, while waiting for it (building a plan is the largest cost of an arrival), so its
    submit starts as soon as it is due."""
    n = len(runs)
    # a run's time without building it, where the schedule can say (``ScheduledRuns``)
    time_of: Callable[[int], float] = getattr(runs, "scheduled_t", None) or (
        lambda k: runs[k].scheduled_t
    )
    i = 0
    run = runs[0] if n else None
    while run is not None:
        delay = base_mono + time_of(i) - time.monotonic()
        if delay > 0:
            yield delay
            continue
        j = i + 1
        now = time.monotonic()
        while j < n and j - i < MAX_DISPATCH_BATCH and base_mono + time_of(j) <= now:
            j += 1
        yield [run, *(runs[k] for k in range(i + 1, j))]
        i = j
        run = runs[i] if i < n else None


class EnqueuedSubmits:
    """The arrivals thread of one drive and the acks of its submits."""

    def __init__(
        self, client: Client, history: HistoryWriter, progress: Any, lags: array[float]
    ) -> None:
        self.client = client
        self.h = history
        self.p = progress  # its ``dispatched`` counts the arrivals handed on
        self.lags = lags  # dispatch lag of every submit started, in order
        self.halt = threading.Event()  # set: no arrival after the current one
        self._acks: collections.deque[Acks] = collections.deque()  # thread-safe append/pop
        self._enqueued = 0  # submits handed to the client (arrivals thread only)
        self._resolved = 0  # of them, outcomes taken (loop thread only)

    def run(
        self,
        runs: Sequence[RunSpec],
        start_t: float,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
        fail: Callable[[BaseException], None],
    ) -> None:
        """The thread's body: every arrival dispatched when due; ``fail`` (called on the loop)
        stops the drive on an error; ``done`` is set on the loop at the end."""
        try:
            for item in due_batches(runs, self.h.epoch_ns / 1e9 + start_t):
                if self.halt.is_set():
                    return
                if isinstance(item, float):
                    time.sleep(min(item, STOP_POLL_S))  # ``halt`` is seen within STOP_POLL_S
                else:
                    self.dispatch(item, start_t)
        except BaseException as e:  # noqa: BLE001 - handed to the loop: the drive stops on it
            self.halt.set()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fail, e)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_set_done, done)

    def dispatch(self, batch: list[RunSpec], start_t: float) -> None:
        """Start the submits of runs that are due: their invoke events in one write, then each
        run handed to the client's submitting thread. Raises ``DiskFull`` when the invokes
        cannot be written (no submit of the batch started)."""
        self.p.dispatched += len(batch)
        t = self.h.now()
        line = self.h.line
        lines = []
        for run in batch:
            # the value as json.dumps writes it, formatted directly (once per run)
            value = RawJSON(f'{{"scheduled_t":{round(start_t + run.scheduled_t, 6)!r}}}')
            lines.append(line(INVOKE, "submit", run.run_id, value=value, t=t))
        self.h.write("".join(lines))
        lags = self.lags
        for run in batch:  # measured at the invoke, as the history shows it
            lags.append(max(t - (start_t + run.scheduled_t), 0.0))
        for run in batch:
            self._enqueued += 1
            try:
                self.client.enqueue_submit(run, self.acked)
            except Exception as e:  # noqa: BLE001 - the submit could not start: not accepted
                self.acked([(run, e)])  # recorded and counted as the store's refusals are

    def acked(self, outcomes: Sequence[tuple[RunSpec, BaseException | None]]) -> None:
        """``AckSink``, on the client's submitting thread right after a transaction ended: its
        acks (one time, one write) go to the history before anything learns of them."""
        t = self.h.now()
        line = self.h.line
        lines, seqs, errors = [], array("q"), 0
        for run, err in outcomes:
            if err is None:
                lines.append(line(OK, "submit", run.run_id, t=t))
                seqs.append(run.seq)
            elif isinstance(err, Indeterminate):
                lines.append(line(INFO, "submit", run.run_id, value=str(err), t=t))
                errors += 1
            else:
                lines.append(line(FAIL, "submit", run.run_id, value=repr(err), t=t))
                errors += 1
        try:
            self.h.write("".join(lines))
        except Exception as e:  # noqa: BLE001 - unrecorded: none of them counts as acked
            self._acks.append((array("q"), len(outcomes), e))
            return
        self._acks.append((seqs, errors, None))

    def take(self) -> Iterator[Acks]:
        """The acks recorded since the last call, per transaction (loop thread only)."""
        acks = self._acks
        while acks:
            item = acks.popleft()
            self._resolved += len(item[0]) + item[1]
            yield item

    def unresolved(self) -> int:
        """Submits handed on whose outcome was not taken yet."""
        return self._enqueued - self._resolved


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
