"""Temporal worker process: ``python -m backends.temporal.worker CONFIG.json``.

Started by ``backends.durable.workers.WorkerPool`` (``entry="backends.temporal.worker"``), so
kill / restart / crash points work as for the SQL backends. ``store_args`` carries the
connection: address, namespace, task_queue, payload_dir.

One ``temporalio.worker.Worker`` polls the task queue for both workflow tasks (``AgentWorkflow``)
and activity tasks (``execute_step``). Limits: ``max_concurrent_activities`` =
``settings.concurrency`` (steps executing at once in this process) and
``max_concurrent_workflow_tasks`` = ``min(settings.concurrency, WORKFLOW_TASK_SLOTS)``; the
workflow cache holds ``max(1000, 4 x concurrency)`` runs. The ready marker is written once the
worker has validated the namespace and started its pollers.

Shutdown: SIGTERM / SIGINT -> ``Worker.shutdown()`` (in-flight activities are cancelled at once
and Temporal retries them elsewhere, as a new attempt), then the history is flushed and closed and the
process leaves with ``os._exit(0)``: the SDK's native extension has been seen to abort during
interpreter teardown, which would turn a clean stop into a failed exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from backends.base import ExecutionSettings, RetryPolicy
from backends.durable.crashpoints import CrashPoints
from backends.history import INFO, HistoryWriter
from backends.temporal import workflows
from backends.temporal.payloads import data_converter

WORKFLOW_TASK_SLOTS = 100  # Python runs workflow code on a thread pool of this size
READY_POLL_S = 0.01


def worker_limits(concurrency: int) -> dict[str, int]:
    """The SDK limits used for ``--concurrency``; recorded in the deployment's config."""
    return {
        "max_concurrent_activities": concurrency,
        "max_concurrent_workflow_tasks": min(concurrency, WORKFLOW_TASK_SLOTS),
        "max_cached_workflows": max(1000, 4 * concurrency),
    }


def _settings(d: dict[str, Any]) -> ExecutionSettings:
    d = dict(d)
    d["retry"] = RetryPolicy(**d["retry"])
    return ExecutionSettings(**d)


async def _serve(cfg: dict[str, Any], history: HistoryWriter) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    args = cfg["store_args"]
    settings = _settings(cfg["settings"])
    client = await Client.connect(
        args["address"],
        namespace=args["namespace"],
        data_converter=data_converter(Path(args["payload_dir"])),
        identity=f"{cfg['worker']}@{os.getpid()}",
    )
    workflows.HOOKS.history = history
    workflows.HOOKS.crash = CrashPoints()
    workflows.HOOKS.client = client
    # our own modules are deterministic or only used outside the workflow logic: passing them
    # through saves re-importing them for every run and shares HOOKS with the workflow code
    restrictions = SandboxRestrictions.default.with_passthrough_modules("backends", "bench")
    worker = Worker(
        client,
        task_queue=args["task_queue"],
        workflows=[workflows.AgentWorkflow],
        activities=[workflows.execute_step],
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        graceful_shutdown_timeout=timedelta(0),
        **worker_limits(settings.concurrency),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(worker.run())
    while not worker.is_running:
        if runner.done():
            await runner  # raises why the worker could not start
            return
        await asyncio.sleep(READY_POLL_S)
    history.record(INFO, "worker-start")
    Path(cfg["ready_path"]).write_text("ready\n")
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        stopper.cancel()
        await runner  # a fatal worker error: raise it
        return
    await worker.shutdown()
    await runner


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    history = HistoryWriter(Path(cfg["history_path"]), cfg["worker"], cfg["epoch_ns"])
    code = 0
    try:
        asyncio.run(_serve(cfg, history))
    except BaseException:  # noqa: BLE001 - reported, then a clean exit code
        traceback.print_exc()
        code = 1
    history.record(INFO, "worker-stop", value=None if code == 0 else "error")
    history.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: see the module docstring


if __name__ == "__main__":
    main()
