"""Helpers for tests that drive a deployment directly (without the CLI)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.base import ExecutionSettings, RunContext, RunSpec
from backends.history import HistoryWriter, read_history
from bench.workload.builtin import BUILTIN
from bench.workload.schedule import build_schedule


def context(tmp: Path, workers: int = 1, time_scale: float = 1.0, **kw) -> RunContext:
    spec = BUILTIN["smoke"]
    settings = ExecutionSettings(
        seed=7, time_scale=time_scale, retry=spec.retry, workers=workers, **kw
    )
    for d in ("work", "logs", "history"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    return RunContext(tmp / "work", tmp / "logs", tmp / "history", time.monotonic_ns(), settings)


def smoke_runs(seed: int = 7) -> list[RunSpec]:
    return list(build_schedule(BUILTIN["smoke"], seed).runs)


def submit_all(client, runs: list[RunSpec], history: HistoryWriter) -> None:
    async def go() -> None:
        for r in runs:
            history.record("invoke", "submit", r.run_id)
            await client.submit(r)
            history.record("ok", "submit", r.run_id)

    asyncio.run(go())


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def events(ctx: RunContext, op: str | None = None, type: str | None = None) -> list[dict]:
    return [
        e
        for e in read_history(ctx.history_dir)
        if (op is None or e["op"] == op) and (type is None or e["type"] == type)
    ]


def completed_runs(ctx: RunContext) -> list[str]:
    return [e["run"] for e in events(ctx, "complete", "ok")]


def start_bench(*args: str) -> subprocess.Popen[str]:
    """``bench ARGS`` in a child process, its output piped (read it with ``communicate``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def numbered_runs(n: int, prefix: str) -> list[RunSpec]:
    """``n`` runs ``<prefix>0000``... with the first smoke run's plan (for store-level tests)."""
    base = smoke_runs()[0]
    return [RunSpec(f"{prefix}{i:04d}", i, "t0", 0.0, False, base.plan) for i in range(n)]


def submit_together(sub: Any, runs: list[RunSpec]) -> None:
    """Every run submitted at once through ``sub.submit_async``; ``sub`` is closed after."""

    async def go() -> None:
        await asyncio.gather(*(sub.submit_async(r) for r in runs))

    try:
        asyncio.run(go())
    finally:
        sub.close()
