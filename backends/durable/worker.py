"""Worker process entry point: ``python -m backends.durable.worker CONFIG.json``.

A worker is a separate OS process from the load generator, so fault tests can SIGKILL it. The
config names the store by import path (``module:function``), so a new SQL backend brings its own
store without this file knowing it. The worker writes a ready marker once its store is open and
stops cleanly (in-flight runs abandoned, leases left to expire or be recovered) on SIGTERM.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backends.base import ExecutionSettings, RetryPolicy
from backends.durable.crashpoints import CrashPoints
from backends.durable.executor import Executor
from backends.history import INFO, HistoryWriter


def worker_config(
    worker: str,
    store_factory: str,
    store_args: dict[str, Any],
    settings: ExecutionSettings,
    history_path: Path,
    ready_path: Path,
    epoch_ns: int,
) -> dict[str, Any]:
    """The JSON a worker process is started with."""
    return {
        "worker": worker,
        "store_factory": store_factory,
        "store_args": store_args,
        "settings": asdict(settings),
        "history_path": str(history_path),
        "ready_path": str(ready_path),
        "epoch_ns": epoch_ns,
    }


def _settings(d: dict[str, Any]) -> ExecutionSettings:
    d = dict(d)
    d["retry"] = RetryPolicy(**d["retry"])
    return ExecutionSettings(**d)


async def _main(cfg: dict[str, Any]) -> None:
    module, _, func = cfg["store_factory"].partition(":")
    open_store = getattr(importlib.import_module(module), func)
    store = await open_store(**cfg["store_args"])
    history = HistoryWriter(Path(cfg["history_path"]), cfg["worker"], cfg["epoch_ns"])
    executor = Executor(store, _settings(cfg["settings"]), history, cfg["worker"], CrashPoints())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if hasattr(store, "accept_submits"):  # a store that takes the harness's submits itself
        await store.accept_submits(executor.committer.submit)
    history.record(INFO, "worker-start")
    Path(cfg["ready_path"]).write_text("ready\n")
    try:
        await executor.serve(stop)
    finally:
        history.record(INFO, "worker-stop")
        await store.close()
        history.close()


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(_main(cfg))


if __name__ == "__main__":
    main()
