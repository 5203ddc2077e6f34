"""The narrow store interface under the shared durable executor.

The executor (``executor.py``) is written once; SQLite, Postgres and the in-memory reference
store implement these few operations. Each operation is one transaction, and the docstrings
state what must be durable when it returns, because that is where the acks happen.

Ownership: a worker claims a run with a lease (``lease_until``, wall-clock seconds). Every write
for a run is fenced by ``owner = worker AND status = 'running'``: a worker that lost its lease
(paused too long, partitioned) gets ``LeaseLost`` instead of overwriting the new owner's work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backends.base import Plan
from backends.durable.groupcommit import Checkpoint
from backends.errors import LeaseLost


@dataclass(frozen=True)
class ClaimedRun:
    run_id: str
    plan: Plan
    journal: dict[int, bytes]  # step results already committed (replayed, not re-executed)
    claims: int  # how many times this run has been claimed, this one included


class DurableStore(Protocol):
    async def claim(
        self, worker: str, limit: int, lease_s: float, recover: bool
    ) -> list[ClaimedRun]:
        """Take up to ``limit`` runnable runs: queued ones, ones whose lease expired, and, with
        ``recover`` (a worker starting up), the runs this same worker id owned before it
        restarted. Durable on return: the runs are ``running`` with owner ``worker``."""
        ...

    async def renew(self, worker: str, run_ids: list[str], lease_s: float) -> None:
        """Extend the leases of runs this worker is executing."""
        ...

    async def checkpoint_batch(
        self, worker: str, items: list[Checkpoint]
    ) -> list[bytes | LeaseLost]:
        """Commit step results in ONE transaction: each step's **step committed** ack happens
        when this returns. An item with ``final`` also makes its run ``completed`` in the same
        transaction (the **run completed** ack). For each item, returns the stored output (ours,
        or the first writer's if the step was already committed: the caller must use that), or
        ``LeaseLost`` if this worker no longer owns the run (that item alone is not written).
        Raises if the transaction itself failed (outcome unknown for every item)."""
        ...

    async def finish(self, worker: str, run_id: str, status: str, error: str | None) -> None:
        """Make a run's final status durable (``completed`` or ``failed`` with its error): the
        **run completed** ack. Raises ``LeaseLost`` if fenced out."""
        ...

    async def release(self, worker: str, run_id: str) -> None:
        """Give a run back to the queue (best effort) after this worker abandoned it."""
        ...

    async def close(self) -> None: ...
