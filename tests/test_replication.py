"""Litestream really replicates the engine's database: restore it from the object store into a
new file and compare every row with the live database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from backends.history import HistoryWriter
from backends.sqlite.backend import SqliteDeployment
from tests.helpers import context, events, smoke_runs, submit_all


def rows(path: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_restore_from_seaweedfs_matches_live_database(tmp_path: Path) -> None:
    ctx = context(tmp_path, workers=2, time_scale=0.2)
    dep = SqliteDeployment({"replica": "s3", "sync_interval_s": 0.2}, ctx)
    runs = smoke_runs()
    h = HistoryWriter(ctx.history_dir / "harness.jsonl", "harness", ctx.epoch_ns)
    try:
        dep.start()
        client = dep.client()
        submit_all(client, runs, h)
        deadline = time.monotonic() + 60
        while len(events(ctx, "complete", "ok")) < len(runs):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert dep.litestream is not None and dep.seaweed is not None
        dep.litestream.wait_caught_up(timeout_s=30)
        restored = tmp_path / "restored.db"
        dep.litestream.restore(restored)
        for query in (
            "SELECT run_id, status, steps_done, error FROM runs ORDER BY run_id",
            "SELECT run_id, step_id, output, attempts FROM steps ORDER BY 1, 2",
        ):
            live = rows(dep.db_path, query)
            assert live and rows(restored, query) == live
        assert rows(restored, "PRAGMA integrity_check") == [("ok",)]
        usage = dep.collect_metrics()["object_store_usage"]
        assert usage["objects"] > 0 and usage["bytes"] > 0
        asyncio.run(client.close())
    finally:
        dep.stop()
        h.close()
