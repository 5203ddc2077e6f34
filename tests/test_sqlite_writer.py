"""The sqlite harness-side submit writer (group commit of concurrent submits) and the bulk read
of every step result the payload checker uses."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from backends.base import RunSpec
from backends.durable.groupcommit import Checkpoint
from backends.sqlite.store import SqliteStateView, SqliteStore, SqliteSubmitter, create_schema
from backends.workflow import expected_payload
from bench import checkers
from tests.helpers import numbered_runs, submit_together


def _runs(n: int) -> list[RunSpec]:
    return numbered_runs(n, "w")


def test_concurrent_submits_share_transactions_and_all_commit(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    create_schema(db, "FULL")
    sub = SqliteSubmitter(db, "FULL")
    runs = _runs(300)
    submit_together(sub, runs)
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


def test_enqueued_submits_tell_their_sink_once_per_transaction_after_it_ended(
    tmp_path: Path,
) -> None:
    """``enqueue_acked`` (the harness's fast path): every run reaches the sink exactly once,
    with None only after its transaction committed (it is in the file when the sink hears of
    it), and a failed transaction hands every run of it its error, no ack."""
    db = tmp_path / "s.db"
    create_schema(db, "FULL")
    sub = SqliteSubmitter(db, "FULL")
    told: list[list[tuple[str, BaseException | None, bool]]] = []

    def sink(outcomes: Sequence[tuple[RunSpec, BaseException | None]]) -> None:
        try:
            stored = {r.run_id for r in SqliteStateView(db).runs()}
        except sqlite3.Error:  # the table is gone (the failing half)
            stored = set()
        told.append([(r.run_id, e, r.run_id in stored) for r, e in outcomes])

    runs = _runs(300)
    try:
        for r in runs[:200]:
            sub.enqueue_acked(r, sink)
        sub.submit(runs[200])  # the writer is in order: every earlier batch ended before
        with sqlite3.connect(db) as c:
            c.execute("DROP TABLE runs")  # the next transaction cannot commit
        for r in runs[201:]:
            sub.enqueue_acked(r, sink)
        with pytest.raises(sqlite3.Error):
            sub.submit(_runs(302)[301])
    finally:
        sub.close()
    seen = [o for batch in told for o in batch]
    assert sorted(o[0] for o in seen) == sorted(r.run_id for r in runs[:200] + runs[201:])
    assert len(told) < len(seen)  # grouped: fewer calls than runs
    before = {r.run_id for r in runs[:200]}
    for run_id, err, stored in seen:
        if run_id in before:
            assert err is None and stored, (run_id, err)
        else:
            assert isinstance(err, sqlite3.Error), (run_id, err)


def test_take_down_returns_only_after_the_last_batch_told_its_sink(tmp_path: Path) -> None:
    """The acks of the batch being committed when the node goes down are recorded (the sink
    returned) before ``take_down`` returns, so they precede the fault in the history."""
    db = tmp_path / "s.db"
    create_schema(db, "FULL")
    sub = SqliteSubmitter(db, "FULL")
    events: list[str] = []
    entered = threading.Event()

    def slow_sink(outcomes: Sequence[tuple[RunSpec, BaseException | None]]) -> None:
        entered.set()
        time.sleep(0.3)
        events.append("acks recorded")

    try:
        sub.enqueue_acked(_runs(1)[0], slow_sink)
        assert entered.wait(10)
        sub.take_down()
        events.append("node down")
    finally:
        sub.close()
    assert events == ["acks recorded", "node down"]


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
