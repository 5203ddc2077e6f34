"""``memory``: the in-process reference engine. NOT durable.

It runs the same durable executor over a store made of Python dicts, on the harness's own event
loop. Two uses: testing the harness itself, and measuring the harness's own ceiling (how many
runs/s the runner can drive when the backend costs nothing). If a real backend's figure comes
close to this ceiling, the harness, not the backend, is what was measured.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from backends.base import (
    BackendInfo,
    Client,
    Deployment,
    MovingParts,
    Plan,
    RunContext,
    RunSpec,
    RunState,
    StateView,
    register,
)
from backends.durable.executor import Executor
from backends.durable.groupcommit import Checkpoint
from backends.durable.store import ClaimedRun
from backends.errors import LeaseLost
from backends.history import HistoryWriter
from backends.promises import Promise


class _Run:
    __slots__ = ("spec", "plan", "status", "owner", "lease_until", "claims", "error")

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.plan: Plan = spec.plan
        self.status = "queued"
        self.owner: str | None = None
        self.lease_until = 0.0
        self.claims = 0
        self.error: str | None = None


class MemoryStore:
    """``DurableStore`` over dicts, guarded by one lock (the harness thread submits, the engine
    thread executes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, _Run] = {}
        self.queue: list[str] = []
        self.steps: dict[tuple[str, int], bytes] = {}

    def add(self, spec: RunSpec) -> None:
        with self.lock:
            if spec.run_id not in self.runs:
                self.runs[spec.run_id] = _Run(spec)
                self.queue.append(spec.run_id)

    async def claim(
        self, worker: str, limit: int, lease_s: float, recover: bool
    ) -> list[ClaimedRun]:
        with self.lock:
            now = time.time()
            take, self.queue = self.queue[:limit], self.queue[limit:]
            out = []
            for rid in take:
                r = self.runs[rid]
                r.status, r.owner, r.lease_until = "running", worker, now + lease_s
                r.claims += 1
                journal = {
                    s.step_id: self.steps[(rid, s.step_id)]
                    for s in r.plan.steps
                    if (rid, s.step_id) in self.steps
                }
                out.append(ClaimedRun(rid, r.plan, journal, r.claims))
            return out

    async def renew(self, worker: str, run_ids: list[str], lease_s: float) -> None:
        pass  # one engine, nobody to steal from

    def _owned(self, worker: str, run_id: str) -> _Run:
        r = self.runs[run_id]
        if r.owner != worker or r.status != "running":
            raise LeaseLost(f"memory: {worker} no longer owns run {run_id}")
        return r

    async def checkpoint_batch(
        self, worker: str, items: list[Checkpoint]
    ) -> list[bytes | LeaseLost]:
        out: list[bytes | LeaseLost] = []
        with self.lock:
            for it in items:
                try:
                    r = self._owned(worker, it.run_id)
                except LeaseLost as e:
                    out.append(e)
                    continue
                out.append(self.steps.setdefault((it.run_id, it.step_id), it.output))
                if it.final:
                    r.status = "completed"
        return out

    async def finish(self, worker: str, run_id: str, status: str, error: str | None) -> None:
        with self.lock:
            r = self._owned(worker, run_id)
            r.status, r.error = status, error

    async def release(self, worker: str, run_id: str) -> None:
        with self.lock:
            r = self.runs[run_id]
            if r.owner == worker and r.status == "running":
                r.status, r.owner = "queued", None
                self.queue.append(run_id)

    async def close(self) -> None:
        pass


class MemoryStateView(StateView):
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def runs(self) -> list[RunState]:
        with self.store.lock:
            done: dict[str, int] = {}
            for rid, _ in self.store.steps:
                done[rid] = done.get(rid, 0) + 1
            return [
                RunState(rid, r.status, done.get(rid, 0), r.error)
                for rid, r in self.store.runs.items()
            ]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        with self.store.lock:
            run = self.store.runs.get(run_id)
            if run is None:
                return {}
            steps = self.store.steps
            return {
                s.step_id: steps[(run_id, s.step_id)]
                for s in run.plan.steps
                if (run_id, s.step_id) in steps
            }

    def all_step_ids(self) -> set[tuple[str, int]]:
        with self.store.lock:
            return set(self.store.steps)


class MemoryClient(Client):
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def submit(self, run: RunSpec) -> None:
        self.store.add(run)

    def state(self) -> StateView:
        return MemoryStateView(self.store)


class MemoryDeployment(Deployment):
    backend = "memory"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.store = MemoryStore()

    def start(self) -> None:
        pass

    async def _engine(self) -> None:
        history = HistoryWriter(
            Path(self.ctx.history_dir) / "worker-0.jsonl", "worker-0", self.ctx.epoch_ns
        )
        executor = Executor(self.store, self.ctx.settings, history, "worker-0")
        try:
            await executor.serve(asyncio.Event())  # runs until the harness cancels it
        finally:
            history.close()

    def inline_engine(self) -> Any:
        # on the harness's own loop: a thread would fight the runner for the GIL
        return self._engine()

    def stop(self) -> None:
        pass

    def client(self) -> Client:
        return MemoryClient(self.store)

    def processes(self) -> dict[str, Any]:
        return {}

    def topology(self) -> dict[str, Any]:
        return {
            "store": "Python dicts in the harness process (not durable)",
            "workers": "1 executor on the harness's own event loop",
            "note": "reference engine: measures the harness's own ceiling",
        }

    def config(self) -> dict[str, Any]:
        return {}

    def promise(self, fault: str) -> Promise | None:
        # stated for completeness: the memory backend supports no fault, so nothing judges it
        return Promise(
            fault,
            None,
            False,
            "not durable: the state is Python dicts in the harness process; any fault that "
            "reaches that process loses everything",
        )


register(
    BackendInfo(
        name="memory",
        summary="in-process reference engine (not durable): harness self-test and ceiling",
        durable=False,
        options=(),
        factory=MemoryDeployment,
        parts=MovingParts(
            ports="none",
            files="none (state in the harness's memory; not durable)",
            source="backends/memory.py",
        ),
    )
)
