"""The most steps/s the sqlite deployment can commit when nothing but the store's own SQL runs.

Starts the real deployment (SeaweedFS, Litestream, the database at the chosen ``synchronous``),
then one Python loop drives ``SqliteStore`` directly: it inserts the workload's runs, claims them
(plans decoded, as a worker does), and checkpoints their steps, one step of up to ``--batch``
runs per transaction, with the runs still to insert riding in the same transactions (as
forwarded submits do). Each output is the workload's payload (``backends.common.payload``).
No executor, no history, no harness, no retries: this is a ceiling for the engine, not a
workload run, and no checker reads it (``tests/test_step_ceiling.py`` checks that it makes the
engine's writes: every run completed, every output stored). It answers "how close to the raw commit rate can
any engine on this store get here?" by putting the deployment's CPU per step beside it.

    python scripts/step_ceiling.py --synchronous NORMAL --seconds 8
    bench baseline --backend sqlite --synchronous NORMAL --seconds 5   # the raw rate, after

Prints JSON: steps/s and CPU µs per committed step of this process (the SQL and its Python),
Litestream and SeaweedFS, with the load average. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.base import RetryPolicy, RunContext, get  # noqa: E402
from backends.common.payload import payload  # noqa: E402
from backends.durable.groupcommit import Checkpoint  # noqa: E402
from backends.sqlite.store import SqliteStore  # noqa: E402
from bench.cli import _backend_options, _settings, parser  # noqa: E402
from bench.workload.loader import resolve_workload  # noqa: E402
from bench.workload.schedule import build_schedule  # noqa: E402

WORKER = "ceiling-0"


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def drive(
    store: SqliteStore,
    runs: list[dict[str, Any]],
    seconds: float,
    batch: int,
    backlog: int,
    concurrency: int,
    seed: int,
) -> dict[str, Any]:
    """Inserts, claims and checkpoints until ``seconds`` pass or the runs run out."""
    next_insert = 0
    inserted_not_claimed = 0
    active: deque[list[Any]] = deque()  # [run_id, steps, next index, last group fans out]
    steps = runs_done = transactions = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if len(active) < concurrency and inserted_not_claimed:
            for c in await store.claim(WORKER, min(concurrency - len(active), 32), 60.0, False):
                inserted_not_claimed -= 1
                plan = c.plan
                active.append([c.run_id, plan.steps, 0, len(plan.groups[-1]) > 1])
        rows = []
        while inserted_not_claimed + len(rows) < backlog and next_insert < len(runs):
            rows.append(runs[next_insert])
            next_insert += 1
        items, finishing = [], []
        for _ in range(min(batch, len(active))):
            a = active.popleft()
            run_id, ss, i, fans_out = a
            s = ss[i]
            final = i == len(ss) - 1 and not fans_out
            items.append(
                Checkpoint(
                    run_id, s.step_id, payload(seed, run_id, s.step_id, s.payload_bytes), 1, final
                )
            )
            a[2] += 1
            if a[2] < len(ss):
                active.append(a)
            elif fans_out:  # completion is a transaction of its own, after the step's
                finishing.append(run_id)
            else:
                runs_done += 1
        if not items and not rows:
            if next_insert >= len(runs) and not active and not inserted_not_claimed:
                break
            continue
        outs = await store.checkpoint_batch(WORKER, items, runs=rows)
        bad = [o for o in outs if not isinstance(o, bytes)]
        if bad:
            raise RuntimeError(f"checkpoint refused: {bad[0]!r}")
        inserted_not_claimed += len(rows)
        steps += len(items)
        transactions += 1
        for run_id in finishing:  # as the engine does when the last group fanned out
            await store.finish(WORKER, run_id, "completed", None)
            transactions += 1
            runs_done += 1
    return {
        "steps": steps,
        "runs_completed": runs_done,
        "transactions": transactions,
        "seconds": time.perf_counter() - t0,
        "runs_inserted": next_insert,
    }


def run_rows(workload: str, seed: int, n: int) -> list[dict[str, Any]]:
    """The first ``n`` runs of ``workload`` (its window repeated as often as needed: the same
    plans, more runs) as the store inserts them. Built before the drive: making plans is the
    harness's work, not the store's."""
    spec = resolve_workload(workload)
    per_window = len(build_schedule(spec, seed).runs)
    longer = dataclasses.replace(spec, duration_s=spec.duration_s * math.ceil(n / per_window))
    return [
        {
            "run_id": r.run_id,
            "seq": r.seq,
            "tenant": r.tenant,
            "plan": r.plan_json,
            "n_steps": r.n_steps,
        }
        for r in build_schedule(longer, seed).runs[:n]
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synchronous", default="NORMAL", choices=("NORMAL", "FULL"))
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--workload", default="workloads/cpu-probe.toml")
    ap.add_argument("--runs", type=int, default=80_000, help="runs available to the drive")
    ap.add_argument(
        "--batch",
        type=int,
        default=256,
        help="checkpoints per transaction (the engine's MAX_BATCH)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=200, help="runs in flight (the engine's default)"
    )
    ap.add_argument("--backlog", type=int, default=400, help="inserted runs not yet claimed")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    runs = run_rows(a.workload, a.seed, a.runs)
    args = parser().parse_args(["baseline", "--backend", "sqlite", "--synchronous", a.synchronous])
    options = _backend_options(args, "sqlite")
    settings = _settings(args, RetryPolicy(), 0.0)
    with tempfile.TemporaryDirectory(prefix="durabench-ceiling-") as tmp:
        root = Path(tmp)
        ctx = RunContext(
            root / "work", root / "logs", root / "history", time.monotonic_ns(), settings
        )
        dep = get("sqlite").factory(options, ctx)
        try:
            dep.start()
            dep.workers.stop()  # its worker processes would claim the runs this loop inserts
            # the same CPU figure ``bench run`` records per role (the process tree's)
            procs = {r: p for r, p in dep.processes().items() if r in ("litestream", "seaweedfs")}
            store = SqliteStore(dep.db_path, dep.synchronous, autocheckpoint=False)
            before = {role: p.sample().cpu_s for role, p in procs.items()}
            me0 = _self_cpu_s()
            load0 = os.getloadavg()
            out = asyncio.run(
                drive(store, runs, a.seconds, a.batch, a.backlog, a.concurrency, a.seed)
            )
            me = _self_cpu_s() - me0
            after = {role: p.sample().cpu_s for role, p in procs.items()}
            # Litestream uploads the last second's frames after the drive: their CPU counts too
            caught_up_s = time.perf_counter()
            if dep.litestream is not None:
                dep.litestream.wait_caught_up(60.0)
            caught_up_s = time.perf_counter() - caught_up_s
            settled = {role: p.sample().cpu_s for role, p in procs.items()}
            store.conn.close()
        finally:
            dep.stop()
    n = max(out["steps"], 1)

    def per_step(end: dict[str, float]) -> dict[str, float]:
        cpu = {"store_loop": me, **{role: end[role] - before[role] for role in procs}}
        us = {k: round(v * 1e6 / n, 1) for k, v in cpu.items()}
        return {**us, "total": round(sum(cpu.values()) * 1e6 / n, 1)}

    result: dict[str, Any] = {
        "synchronous": a.synchronous,
        "steps_per_s": out["steps"] / out["seconds"],
        "cpu_us_per_step": per_step(after),
        # with the replica caught up (what a drive of this length leaves to the drain)
        "cpu_us_per_step_replica_caught_up": per_step(settled),
        "replica_catch_up_s": round(caught_up_s, 2),
        "steps_per_transaction": out["steps"] / max(out["transactions"], 1),
        **out,
        "load_before": load0,
        "load_after": os.getloadavg(),
        "batch": a.batch,
        "concurrency": a.concurrency,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
