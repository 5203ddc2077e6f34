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


def test_a_batch_invokes_are_in_the_history_before_its_transaction(tmp_path: Path) -> None:
    """At --time-scale 0 a step's exec lines and its commit's invoke go out with the rest of
    its group commit, in one write: every one must be in the file when the transaction
    begins (the real executor and store; the store's method is only observed)."""
    from backends.base import ExecutionSettings
    from backends.durable.executor import Executor
    from backends.history import HistoryWriter

    db = tmp_path / "i.db"
    create_schema(db, "NORMAL")
    plan = Plan(((StepSpec(0, "llm", "s", 0.0, 4),), (StepSpec(1, "tool", "t", 0.0, 4),)))
    runs = [RunSpec(f"i{i:03d}", i, "t", 0.0, False, plan) for i in range(60)]
    sub = SqliteSubmitter(db, "NORMAL")
    for r in runs:
        sub.submit(r)
    sub.close()
    path = tmp_path / "worker.jsonl"
    missing: list[str] = []
    sizes: list[int] = []

    async def go() -> None:
        store = SqliteStore(db, "NORMAL", autocheckpoint=True)
        real = store.checkpoint_batch

        async def observed(worker: str, items: list[Checkpoint]) -> list[bytes | Exception]:
            text = path.read_text()
            sizes.append(len(items))
            for cp in items:
                invoke = f'"type":"invoke","op":"commit","run":"{cp.run_id}","step":{cp.step_id}'
                done = f'"type":"ok","op":"exec","run":"{cp.run_id}","step":{cp.step_id}'
                if invoke not in text or done not in text:
                    missing.append(f"{cp.run_id}/{cp.step_id}")
            return await real(worker, items)

        store.checkpoint_batch = observed  # type: ignore[method-assign]
        history = HistoryWriter(path, "w", time.monotonic_ns())
        settings = ExecutionSettings(seed=1, time_scale=0.0, workers=1, concurrency=100)
        ex = Executor(store, settings, history, "w")
        stop = asyncio.Event()

        async def until_done() -> None:
            while ex.committer.checkpoints < 2 * len(runs):
                await asyncio.sleep(0.01)
            stop.set()

        await asyncio.gather(ex.serve(stop), asyncio.wait_for(until_done(), 30))
        await store.close()
        history.close()

    asyncio.run(go())
    assert not missing, missing[:5]
    assert sum(sizes) == 2 * len(runs) and max(sizes) > 1, sizes


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
