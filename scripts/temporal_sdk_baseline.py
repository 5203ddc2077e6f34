"""Temporal without the harness: how fast do the same runs go through the same dev server when
driven directly with the SDK?

Starts a dev server (as the ``temporal`` backend does: loopback, free ports, SQLite with
journal_mode=wal + synchronous=FULL unless ``--journal delete``) or uses ``--address``, starts
``--workers`` worker processes with the same limits and sandbox settings as the backend's, then
starts every run of the schedule (default: agent-burst, seed 1, rate-scale 20, the runs of
``bench run --backend temporal --time-scale 0 --rate-scale 20``) as fast as possible and waits
for all of them. The workflow and activity are the backend's logic minus the harness: same plan
input, same groups / parallel steps, same retry policy and timeouts, same ``run_step`` (time-scale
0: no simulated waits), but a plain ``return`` from the activity (the SDK completes it), no
history files, no completion watchers. Prints one JSON object: runs/s and steps/s from the first
start to the last completion, plus CPU per process.

    python scripts/temporal_sdk_baseline.py [--workers 2] [--journal wal|delete]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with workflow.unsafe.imports_passed_through():
    from backends.base import Plan, StepSpec
    from backends.temporal.workflows import (
        RunInput,
        StepInput,
        retry_policy,
        run_input,
        start_to_close_s,
    )
    from backends.workflow import StepError, run_step

TASK_QUEUE = "baseline"
MODULE = "temporal_sdk_baseline"


@activity.defn(name="baseline_step")
async def baseline_step(inp: StepInput) -> bytes:
    step = StepSpec(**json.loads(inp.step_json))
    try:
        return await run_step(step, activity.info().attempt, inp.seed, inp.run_id, inp.time_scale)
    except StepError as e:
        raise ApplicationError(
            str(e),
            type=type(e).__name__,
            non_retryable=not e.retryable,
            category=ApplicationErrorCategory.BENIGN,
        ) from e


@workflow.defn(name="BaselineAgentWorkflow")
class BaselineAgentWorkflow:
    @workflow.run
    async def run(self, inp: RunInput) -> int:
        plan = Plan.from_json(inp.plan_json)
        retry = retry_policy(inp.retry, inp.time_scale)
        done = 0
        for group in plan.groups:
            outcomes = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        baseline_step,
                        StepInput(inp.run_id, json.dumps(asdict(s)), inp.seed, inp.time_scale),
                        activity_id=f"step-{s.step_id}",
                        start_to_close_timeout=timedelta(
                            seconds=start_to_close_s(inp.activity_timeout_s, s, inp.time_scale)
                        ),
                        retry_policy=retry,
                    )
                    for s in group
                ),
                return_exceptions=True,
            )
            errors = [str(o.cause or o) for o in outcomes if isinstance(o, ActivityError)]
            done += len(outcomes) - len(errors)
            if errors:
                raise ApplicationError("; ".join(errors), {"steps": done}, non_retryable=True)
        return done


# -- worker process ------------------------------------------------------------------------------


async def serve(address: str, concurrency: int, compression: str) -> None:
    """One worker, configured as the backend's (limits, sandbox with our modules passed
    through). The workflow module is this file loaded under a real module name, passed through
    too, as ``backends.temporal.workflows`` is in the backend's workers."""
    import importlib.util

    from temporalio.client import Client
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from backends.temporal.worker import worker_limits

    spec = importlib.util.spec_from_file_location(MODULE, __file__)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = mod
    spec.loader.exec_module(mod)
    client = await Client.connect(address, grpc_compression=_compression(compression))
    restrictions = SandboxRestrictions.default.with_passthrough_modules("backends", "bench", MODULE)
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[mod.BaselineAgentWorkflow],
        activities=[mod.baseline_step],
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        graceful_shutdown_timeout=timedelta(0),
        **worker_limits(concurrency),
    )
    async with worker:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF


def _compression(name: str):  # noqa: ANN202 - temporalio.service.GrpcCompression
    from temporalio.service import GrpcCompression

    return GrpcCompression.NONE if name == "none" else GrpcCompression.GZIP


# -- driver --------------------------------------------------------------------------------------


async def drive(address: str, args: argparse.Namespace) -> dict[str, object]:
    from temporalio.client import Client, WorkflowFailureError

    from bench.workload.builtin import BUILTIN
    from bench.workload.schedule import build_schedule

    spec = BUILTIN[args.workload]
    runs = build_schedule(spec, args.seed, args.rate_scale).runs
    client = await Client.connect(address, grpc_compression=_compression(args.compression))
    inputs = [
        run_input(r.run_id, r.plan, args.seed, args.time_scale, spec.retry, 10.0) for r in runs
    ]
    t0 = time.monotonic()
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                "BaselineAgentWorkflow", inp, id=inp.run_id, task_queue=TASK_QUEUE
            )
            for inp in inputs
        )
    )
    t_started = time.monotonic()

    async def result(h) -> tuple[int, bool]:  # noqa: ANN001
        try:
            return await h.result(), True
        except WorkflowFailureError as e:
            details = getattr(e.cause, "details", None) or [{}]
            return int(details[0].get("steps", 0)), False

    outcomes = await asyncio.gather(*(result(h) for h in handles))
    elapsed = time.monotonic() - t0
    steps = sum(n for n, _ in outcomes)
    return {
        "runs": len(runs),
        "completed": sum(1 for _, ok in outcomes if ok),
        "failed": sum(1 for _, ok in outcomes if not ok),
        "steps_committed": steps,
        "start_all_s": round(t_started - t0, 3),
        "elapsed_s": round(elapsed, 3),
        "runs_per_s": round(len(runs) / elapsed, 2),
        "steps_per_s": round(steps / elapsed, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run a worker for ADDRESS
    ap.add_argument("--address", help="use this Temporal frontend instead of a dev server")
    ap.add_argument("--workload", default="agent-burst")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate-scale", type=float, default=20.0)
    ap.add_argument("--time-scale", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--journal", choices=("wal", "delete"), default="wal")
    ap.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    args = ap.parse_args()
    if args.worker:
        asyncio.run(serve(args.worker, args.concurrency, args.compression))
        return 0

    import psutil

    from backends.temporal.server import TemporalDevServer

    with tempfile.TemporaryDirectory(prefix="temporal-baseline-") as tmp:
        server = None
        address = args.address
        if not address:
            server = TemporalDevServer(
                Path(tmp) / "data",
                Path(tmp) / "logs",
                sqlite_pragmas={"journal_mode": args.journal, "synchronous": "FULL"},
            )
            server.start()
            address = server.address
        workers = []
        try:
            for _ in range(args.workers):
                cmd = [sys.executable, __file__, "--worker", address]
                cmd += ["--concurrency", str(args.concurrency), "--compression", args.compression]
                w = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                workers.append(w)
            for w in workers:
                assert w.stdout is not None and w.stdout.readline().strip() == "ready"
            procs = [psutil.Process(w.pid) for w in workers]
            if server is not None and server.process.pid:
                procs.append(psutil.Process(server.process.pid))
            cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
            me0 = sum(psutil.Process().cpu_times()[:2])
            out = asyncio.run(drive(address, args))
            cpu = [sum(p.cpu_times()[:2]) - c for p, c in zip(procs, cpu0, strict=True)]
            names = [f"worker-{i}" for i in range(len(workers))] + (["temporal"] if server else [])
            out["cpu_s"] = {n: round(c, 2) for n, c in zip(names, cpu, strict=True)}
            out["cpu_s"]["driver"] = round(sum(psutil.Process().cpu_times()[:2]) - me0, 2)
            out["journal_mode"] = args.journal if server else "external"
            out["grpc_compression"] = args.compression
        finally:
            for w in workers:
                if w.stdin:
                    w.stdin.close()
            for w in workers:
                try:
                    w.wait(15)
                except subprocess.TimeoutExpired:
                    w.kill()
            if server is not None:
                server.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
