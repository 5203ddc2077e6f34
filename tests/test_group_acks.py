"""The step-committed acks of one group commit are written to the history in one write, after
the commit and before any of the batch's steps resumes; a kill at the crash points shows that no
ack is in the history without its commit and that the crash points keep their per-step meaning
when checkpoints are batched."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backends.base import Plan, RunSpec, StepSpec
from backends.durable.groupcommit import Checkpoint, GroupCommitter
from backends.sqlite.store import SqliteStore, SqliteSubmitter, create_schema
from tests.helpers import events, smoke_runs
from tests.test_conformance import Session


def test_acks_are_recorded_before_any_caller_resumes(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    create_schema(db, "NORMAL")
    plan = Plan(((StepSpec(0, "llm", "s", 0.0, 4),),))
    runs = [RunSpec(f"g{i:03d}", i, "t", 0.0, False, plan) for i in range(60)]
    sub = SqliteSubmitter(db, "NORMAL")
    for r in runs:
        sub.submit(r)
    sub.close()
    recorded: set[str] = set()
    sizes: list[int] = []

    def on_committed(batch: list[Checkpoint], outcomes: list[bytes | Exception]) -> None:
        sizes.append(len(batch))
        recorded.update(cp.run_id for cp in batch)

    async def go() -> None:
        store = SqliteStore(db, "NORMAL", autocheckpoint=True)
        gc = GroupCommitter(store, "w", True, on_committed=on_committed)
        assert len(await store.claim("w", 100, 60, recover=False)) == len(runs)

        async def one(r: RunSpec) -> None:
            await gc.commit(Checkpoint(r.run_id, 0, b"out", 1, True))
            assert r.run_id in recorded, "a caller resumed before its ack was recorded"

        await asyncio.gather(*(one(r) for r in runs))
        await gc.close()
        await store.close()

    asyncio.run(go())
    assert recorded == {r.run_id for r in runs}
    assert max(sizes) > 1, sizes  # the checkpoints were grouped, so the batch path ran


@pytest.mark.parametrize("point", ["after-commit", "after-ack"])
def test_kill_at_a_crash_point_with_batched_acks(point: str, tmp_path: Path) -> None:
    """time-scale 0: many checkpoints are ready at once, so group commits hold several."""
    runs = smoke_runs()
    n = 25

    async def go() -> None:
        async with Session("sqlite", tmp_path, workers=1, time_scale=0.0) as s:
            (worker,) = s.dep.worker_names()[:1]
            s.dep.kill_worker(worker)
            s.dep.start_worker(worker, crash_at=f"{point}:{n}")
            await s.submit(runs)
            proc = s.dep.processes()[worker]
            deadline = time.monotonic() + 30
            while proc.alive:
                assert time.monotonic() < deadline, "the crash point was never reached"
                await asyncio.sleep(0.02)
            acked = [(e["run"], e["step"]) for e in events(s.ctx, "commit", "ok")]
            durable = s.client.state().all_step_ids()
            assert set(acked) <= durable, "an ack in the history without its commit"
            if point == "after-commit":
                assert len(acked) == n - 1  # the n-th is committed, its ack never written
                invoked = {(e["run"], e["step"]) for e in events(s.ctx, "commit", "invoke")}
                assert (invoked - set(acked)) & durable, "no committed-but-unacked step"
            else:
                assert len(acked) >= n  # the n-th ack (and its batch's) is in the file

    asyncio.run(go())
