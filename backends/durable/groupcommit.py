"""Group commit: the step checkpoints of every run in flight in a worker that are ready at the same
moment go to the store in ONE transaction.

Why: a commit's cost is mostly its flush (an fsync for SQLite with synchronous=FULL, a WAL flush
for Postgres), and a worker keeps hundreds of runs in flight. Committing them one by one makes
the flush the ceiling; committing whatever is pending together amortises it, as databases do for
their own WAL. No step waits for a batch to fill: when nothing else is pending a batch holds one
checkpoint, so the added latency is zero at low load.

The acks do not change: each step's ack is still "my checkpoint's transaction has committed", and
a step fenced out (lease lost) fails alone without failing the rest of its batch.

``on_committed(batch, outcomes)`` runs after a batch's transaction committed and BEFORE any of
its callers resumes: the executor writes the batch's acks to the history there, in one write, so
an ack is in the history file before anything acts on it (the next step, the run's completion).
``before_commit(text)`` runs just before the transaction begins, with the ``prelude`` of every
checkpoint in the batch joined: the executor's invoke lines of those steps (their work and their
commit's invoke), so they go out in one write per batch, still before the commit they precede.

``submit(rows)`` puts runs to insert (forwarded submits, ``backends/sqlite/forward.py``) in the
next transaction, with whatever checkpoints are pending; it returns once that transaction
committed. Only a store whose ``checkpoint_batch`` takes ``runs=`` is given any.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

MAX_BATCH = 256


class Checkpoint(NamedTuple):
    """One step result to commit (a tuple: built once per step, a frozen dataclass's
    ``__init__`` cost more than the rest of the commit's Python)."""

    run_id: str
    step_id: int
    output: bytes
    attempts: int
    final: bool  # also complete the run in the same transaction


Outcome = bytes | Exception
OnCommitted = Callable[[list[Checkpoint], list[Outcome]], None]
BeforeCommit = Callable[[str], None]


class GroupCommitter:
    def __init__(
        self,
        store: Any,
        worker: str,
        enabled: bool = True,
        on_committed: OnCommitted | None = None,
        before_commit: BeforeCommit | None = None,
    ) -> None:
        self.store = store
        self.on_committed = on_committed
        self.before_commit = before_commit
        self.worker = worker
        self.enabled = enabled
        self._pending: list[tuple[Checkpoint, asyncio.Future[bytes], str]] = []
        self._runs: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.checkpoints = 0
        self.submitted_runs = 0

    async def commit(self, cp: Checkpoint, prelude: str = "") -> bytes:
        """Returns the stored output once ``cp``'s transaction committed; raises ``LeaseLost``
        if fenced out, or the store's error (outcome unknown) if the transaction failed.
        ``prelude`` goes to ``before_commit`` before the transaction that holds ``cp`` begins."""
        if not self.enabled:
            self.batches += 1
            self.checkpoints += 1
            if prelude and self.before_commit is not None:
                self.before_commit(prelude)
            outcomes = await self.store.checkpoint_batch(self.worker, [cp])
            if self.on_committed is not None:
                self.on_committed([cp], outcomes)
            (out,) = outcomes
            if isinstance(out, Exception):
                raise out
            return out
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever())
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append((cp, fut, prelude))
        self._wake.set()
        return await fut

    async def submit(self, rows: list[dict[str, Any]]) -> None:
        """Returns once a transaction holding ``rows`` (runs to insert) committed."""
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runs.append((rows, fut))
        self._wake.set()
        await fut

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._runs:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                runs, self._runs = self._runs, []
                self.batches += 1
                self.checkpoints += len(batch)
                try:
                    if self.before_commit is not None:
                        self.before_commit("".join([p for _, _, p in batch]))
                    cps = [cp for cp, _, _ in batch]
                    if runs:
                        rows = [row for rs, _ in runs for row in rs]
                        self.submitted_runs += len(rows)
                        outcomes = await self.store.checkpoint_batch(self.worker, cps, runs=rows)
                    else:
                        outcomes = await self.store.checkpoint_batch(self.worker, cps)
                    if self.on_committed is not None:
                        self.on_committed(cps, outcomes)  # before any caller resumes
                except Exception as e:  # noqa: BLE001 - every caller learns it
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    for _, rfut in runs:
                        if not rfut.done():
                            rfut.set_exception(e)
                    continue
                for _, rfut in runs:
                    if not rfut.done():
                        rfut.set_result(None)
                for (_, fut, _), out in zip(batch, outcomes, strict=True):
                    if fut.done():
                        continue
                    if isinstance(out, Exception):
                        fut.set_exception(out)
                    else:
                        fut.set_result(out)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut, _ in self._pending:
            fut.cancel()
        for _, rfut in self._runs:
            rfut.cancel()
