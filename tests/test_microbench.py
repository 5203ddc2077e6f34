"""pytest-benchmark micro-benchmarks of the engine's hot paths on SQLite: claiming a batch of
runs and committing step checkpoints (one, and a group of 32). Each also asserts its result, so a
broken hot path fails instead of getting fast. CI runs them with few rounds; for real numbers:
``pytest -n 0 tests/test_microbench.py --benchmark-min-rounds=200``."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from backends.durable.groupcommit import Checkpoint
from backends.sqlite.store import SqliteStore, SqliteSubmitter, create_schema
from tests.helpers import smoke_runs


@pytest.fixture(params=["FULL", "NORMAL"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    db = tmp_path / "bench.db"
    create_schema(db, request.param)
    s = SqliteStore(db, request.param, autocheckpoint=True)
    s.submitter = SqliteSubmitter(db, request.param)
    yield s
    asyncio.run(s.close())
    s.submitter.close()


def _enqueue(store: SqliteStore, n: int, prefix: str) -> None:
    base = smoke_runs()[0]
    for i in range(n):
        store.submitter.submit(base.__class__(f"{prefix}{i}", i, "t0", 0.0, False, base.plan))


def test_claim_batch_of_32(benchmark, store: SqliteStore) -> None:
    loop = asyncio.new_event_loop()
    counter = itertools.count()

    def setup():
        _enqueue(store, 32, f"c{next(counter)}-")
        return (), {}

    def claim():
        return loop.run_until_complete(store.claim("w", 32, 30.0, False))

    claimed = benchmark.pedantic(claim, setup=setup, rounds=20, iterations=1)
    assert len(claimed) == 32
    loop.close()


@pytest.mark.parametrize("batch", [1, 32])
def test_checkpoint(benchmark, store: SqliteStore, batch: int) -> None:
    loop = asyncio.new_event_loop()
    _enqueue(store, 1, "ck")
    (run,) = loop.run_until_complete(store.claim("w", 1, 300.0, False))
    step_ids = itertools.count()
    payload = b"\x00\xff" * 500

    def commit():
        items = [Checkpoint(run.run_id, next(step_ids), payload, 1, False) for _ in range(batch)]
        return loop.run_until_complete(store.checkpoint_batch("w", items))

    out = benchmark.pedantic(commit, rounds=50, iterations=1)
    assert out == [payload] * batch
    loop.close()
