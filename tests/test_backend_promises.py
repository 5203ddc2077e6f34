"""Each backend derives its durability promise from its real configuration (no service needs to
run for this: the promise is stated from the options, and for a Postgres standby from the lag
read at the fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.memory import MemoryDeployment
from backends.postgres.backend import PostgresDeployment
from backends.postgres.promise import setting_seconds
from backends.sqlite.backend import SqliteDeployment
from backends.temporal.backend import TemporalDeployment
from tests.helpers import context

PROCESS_FAULTS = ("kill-worker", "kill-store", "pause-store")


@pytest.mark.parametrize("sync", ["FULL", "NORMAL", "OFF"])
def test_sqlite_process_faults_promise_nothing_lost(sync: str, tmp_path: Path) -> None:
    dep = SqliteDeployment({"synchronous": sync}, context(tmp_path))
    for fault in PROCESS_FAULTS:
        p = dep.promise(fault)
        assert p is not None and p.max_lost_age_s == 0.0 and f"synchronous={sync}" in p.basis


def test_sqlite_lose_node_bound_follows_the_litestream_intervals(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    fast = SqliteDeployment({"sync_interval_s": 0.2}, ctx).promise("lose-node")
    slow = SqliteDeployment({"sync_interval_s": 10.0}, ctx).promise("lose-node")
    assert fast is not None and slow is not None
    # monitor-interval min(sync, 1 s) + sync-interval + upload allowance
    assert fast.max_lost_age_s == pytest.approx(0.2 + 0.2 + 0.5)
    assert slow.max_lost_age_s == pytest.approx(1.0 + 10.0 + 0.5)
    none = SqliteDeployment({"replica": "none"}, ctx).promise("lose-node")
    assert none is not None and none.max_lost_age_s is None  # no bound: the only copy is lost
    assert SqliteDeployment({}, ctx).promise("a-fault-nobody-knows") is None  # not stated


def test_postgres_promises(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    on = PostgresDeployment({}, ctx)
    assert on.promise("kill-store").max_lost_age_s == 0.0
    assert on.promise("lose-node").max_lost_age_s is None  # no standby: total loss
    off = PostgresDeployment({"synchronous_commit": "off"}, ctx)
    off.settings = {"wal_writer_delay": "200ms"}  # as read from the server at start
    assert off.promise("kill-store").max_lost_age_s == pytest.approx(0.6)
    sync = PostgresDeployment({"standby": "sync"}, ctx)
    assert sync.promise("lose-node").max_lost_age_s == 0.0
    lagging = PostgresDeployment({"standby": "async"}, ctx)
    assert lagging.promise("lose-node") is None  # no lag read at a fault: no bound to state
    lagging.lag_at_fault = {
        "flush_lag_bytes": 800,
        "replay_lag_s": 0.012,
        "reply_age_s": 0.002,
        "read_before_kill_s": 0.017,
    }
    assert lagging.promise("lose-node").max_lost_age_s == pytest.approx(0.031)
    lagging.lag_at_fault = {"flush_lag_bytes": 0, "read_before_kill_s": 0.02}
    assert lagging.promise("lose-node").max_lost_age_s == pytest.approx(0.02)


def test_postgres_time_settings() -> None:
    assert setting_seconds("200ms") == pytest.approx(0.2)
    assert setting_seconds("1s") == 1.0 and setting_seconds("10") == pytest.approx(0.01)
    assert setting_seconds("soon") is None


def test_temporal_and_memory_promises(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    dev = TemporalDeployment({}, ctx)
    assert dev.promise("kill-store").max_lost_age_s == 0.0
    assert dev.promise("lose-node").max_lost_age_s is None
    external = TemporalDeployment({"temporal_address": "127.0.0.1:1"}, ctx)
    assert external.promise("kill-store") is None  # not ours to state
    assert MemoryDeployment({}, ctx).promise("kill-worker").max_lost_age_s is None
