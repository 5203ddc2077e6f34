"""With synchronous_commit=off, Postgres acknowledges a commit before its WAL is flushed; a
crash then loses it. The write-loss checker must see exactly that loss, and none with on.

To make the window deterministic, the WAL writer is told to wait 10 s between flushes, and every
server process is SIGKILLed (shared WAL buffers die with them) right after the acks."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from backends.history import HistoryWriter, read_history
from backends.postgres.server import PostgresServer
from backends.postgres.store import PostgresStateView, PostgresSubmitter, create_schema
from bench.checkers import check_write_loss
from tests.helpers import smoke_runs


@pytest.mark.parametrize("sync_commit", ["off", "on"])
def test_crash_loses_exactly_the_unflushed_acks(sync_commit: str) -> None:
    # not pytest's tmp_path: the unprivileged server user cannot enter it
    tmp = Path(tempfile.mkdtemp(prefix="durabench-pgloss-"))
    tmp.chmod(0o711)  # the server's system user traverses it (the harness changes no mode)
    server = PostgresServer(
        tmp / "data",
        tmp / "logs",
        settings={
            "synchronous_commit": sync_commit,
            "wal_writer_delay": "10000ms",
            "wal_writer_flush_after": "1GB",
        },
    )
    h = HistoryWriter(tmp / "history" / "harness.jsonl", "harness", 0)
    try:
        server.init()
        server.start()
        server.sql("CREATE DATABASE durabench")
        dsn = server.dsn("durabench")
        create_schema(dsn, "durabench")
        runs = smoke_runs()[:20]

        async def submit_all() -> None:
            sub = PostgresSubmitter(dsn, "durabench", sync_commit)
            try:
                for r in runs:
                    h.record("invoke", "submit", r.run_id)
                    await sub.submit(r)
                    h.record("ok", "submit", r.run_id)
            finally:
                await sub.close()

        asyncio.run(submit_all())
        fault_t = h.record("info", "nemesis", value="kill every server process")
        server.kill(all_processes=True)
        server.start()
        view = PostgresStateView(dsn, "durabench")
        try:
            stored = {r.run_id for r in view.runs()}
            loss = check_write_loss(read_history(tmp / "history"), view, fault_t)
        finally:
            view.close()
    finally:
        server.stop()
        h.close()
        shutil.rmtree(tmp, ignore_errors=True)
    acked = {r.run_id for r in runs}
    lost = {x["id"] for x in loss["lost"]}
    assert lost == acked - stored, "the checker reports exactly the acked runs that are gone"
    if sync_commit == "on":
        assert loss["valid"] is True and not lost
    else:
        assert lost, "async commits held in WAL buffers did not die with the server"
        assert loss["valid"] is False and loss["rpo_s"] > 0
