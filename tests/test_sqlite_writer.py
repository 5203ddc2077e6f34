"""The sqlite harness-side submit writer (group commit of concurrent submits) and the bulk read
of every step result the payload checker uses."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from backends.base import RunSpec
from backends.durable.groupcommit import Checkpoint
from backends.sqlite.store import SqliteStateView, SqliteStore, SqliteSubmitter, create_schema
from backends.workflow import expected_payload
from bench import checkers
from tests.helpers import smoke_runs


def _runs(n: int) -> list[RunSpec]:
    base = smoke_runs()[0]
    return [RunSpec(f"w{i:04d}", i, "t0", 0.0, False, base.plan) for i in range(n)]


def test_concurrent_submits_share_transactions_and_all_commit(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    create_schema(db, "FULL")
    sub = SqliteSubmitter(db, "FULL")
    runs = _runs(300)

    async def go() -> None:
        await asyncio.gather(*(sub.submit_async(r) for r in runs))

    try:
        asyncio.run(go())
    finally:
        sub.close()
    assert sub.batches < len(runs)  # grouped: fewer transactions than runs
    stored = {r.run_id for r in SqliteStateView(db).runs()}
    assert stored == {r.run_id for r in runs}  # and every acked run is in the file


def test_a_failed_batch_acks_none_of_its_runs(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    create_schema(db, "FULL")
    sub = SqliteSubmitter(db, "FULL")
    try:
        sub.submit(_runs(1)[0])
        with sqlite3.connect(db) as c:
            c.execute("DROP TABLE runs")  # the next transaction cannot commit

        async def go() -> list[BaseException | None]:
            return await asyncio.gather(
                *(sub.submit_async(r) for r in _runs(20)[1:]), return_exceptions=True
            )

        outcomes = asyncio.run(go())
    finally:
        sub.close()
    assert all(isinstance(o, sqlite3.Error) for o in outcomes), outcomes


@pytest.mark.parametrize("flip", [False, True])
def test_bulk_step_results_match_per_run_reads_and_catch_a_flipped_byte(
    tmp_path: Path, flip: bool
) -> None:
    db = tmp_path / "s.db"
    create_schema(db, "NORMAL")
    runs = _runs(5)
    sub = SqliteSubmitter(db, "NORMAL")
    for r in runs:
        sub.submit(r)
    sub.close()

    async def commit_all() -> None:
        st = SqliteStore(db, "NORMAL", autocheckpoint=True)
        claimed = await st.claim("w", 10, 60, recover=False)
        assert len(claimed) == len(runs)
        cps = [
            Checkpoint(
                r.run_id,
                s.step_id,
                expected_payload(7, r.run_id, s.step_id, s.payload_bytes),
                1,
                False,
            )
            for r in runs
            for s in r.plan.steps[:2]
        ]
        await st.checkpoint_batch("w", cps)
        await st.close()

    asyncio.run(commit_all())
    if flip:
        with sqlite3.connect(db) as c:
            c.execute("UPDATE steps SET output = X'00' WHERE run_id = 'w0003' AND step_id = 1")
    view = SqliteStateView(db)
    try:
        bulk = dict(view.all_step_results())
        assert bulk == {r.run_id: view.step_results(r.run_id) for r in runs}
        assert all(len(v) == 2 for v in bulk.values())
        out = checkers.check_step_payloads(runs, view, 7)
    finally:
        view.close()
    assert out["checked"] == 10
    if flip:
        assert out["valid"] is False and out["mismatches"] == ["w0003/1"]
    else:
        assert out["valid"] is True
