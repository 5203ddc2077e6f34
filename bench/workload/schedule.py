"""The schedule: every run of a benchmark, decided up front from (workload, seed, rate_scale).

Seeding: arrivals use ``Random(f"{seed}:arrivals")`` and run ``seq``'s plan uses
``Random(f"{seed}:plan:{seq}")``, so a plan never depends on how many random numbers the arrival
process or other plans drew. String seeds are hashed with SHA-512 by ``random``, so schedules
are identical across processes and ``PYTHONHASHSEED`` values.

Rate scale: ``rate_scale=k`` divides every arrival time, the duration and the warm-up by k. The
same runs (same tenants, same plans) are offered k times faster over a k times shorter window:
``--rate-scale 10`` is 10x the load. Step latencies are not scaled (that is the time-scale's
job, applied by workers).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

from backends.base import Plan, RetryPolicy, RunSpec, step_dict
from backends.errors import ConfigError
from bench.workload.arrivals import arrival_times
from bench.workload.plans import make_plan
from bench.workload.spec import WorkloadSpec, validate_workload


@dataclass(frozen=True)
class Schedule:
    spec: WorkloadSpec
    seed: int
    rate_scale: float
    runs: tuple[RunSpec, ...]  # sorted by scheduled_t; run i has seq i
    hash: str  # sha256 of the canonical schedule: equal hashes = identical offered load

    @property
    def duration_s(self) -> float:
        """Schedule length after rate scaling (time-scale 1)."""
        return self.spec.duration_s / self.rate_scale

    @property
    def warmup_s(self) -> float:
        return self.spec.warmup_s / self.rate_scale

    def offered_rate(self) -> float:
        """Runs per second offered over the (scaled) schedule."""
        return len(self.runs) / self.duration_s

    def summary(self) -> dict[str, Any]:
        return {
            "workload": self.spec.name,
            "seed": self.seed,
            "rate_scale": self.rate_scale,
            "runs": len(self.runs),
            "warmup_runs": sum(r.warmup for r in self.runs),
            "steps": sum(len(r.plan.steps) for r in self.runs),
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "offered_rate_per_s": self.offered_rate(),
            "hash": self.hash,
        }


def _schedule_hash(spec: WorkloadSpec, seed: int, rate_scale: float, runs: list[RunSpec]) -> str:
    """sha256 of ``json.dumps({"spec", "seed", "rate_scale", "runs": [[run_id, tenant,
    scheduled_t (µs), warmup, plan groups as dicts], ...]}, sort_keys=True, separators=(",",
    ":"))``, fed to the hash one run at a time: the same digest as encoding the whole document
    (tests/test_workload.py pins it), without holding a second copy of every plan (that copy
    was the harness's peak memory before the drive)."""
    h = hashlib.sha256()

    def dumps(x: Any) -> str:
        return json.dumps(x, sort_keys=True, separators=(",", ":"))

    # sort_keys order: rate_scale, runs, seed, spec
    h.update(f'{{"rate_scale":{dumps(rate_scale)},"runs":['.encode())
    for i, r in enumerate(runs):
        entry = [
            r.run_id,
            r.tenant,
            round(r.scheduled_t, 6),  # microseconds: robust to last-bit float differences
            r.warmup,
            [[step_dict(s) for s in g] for g in r.plan.groups],
        ]
        h.update((b"," if i else b"") + dumps(entry).encode())
    h.update(f'],"seed":{dumps(seed)},"spec":{dumps(spec.to_dict())}}}'.encode())
    return h.hexdigest()


def build_schedule(spec: WorkloadSpec, seed: int, rate_scale: float = 1.0) -> Schedule:
    """Every run of ``spec`` for ``seed``; pure and deterministic."""
    validate_workload(spec)
    if not rate_scale > 0:
        raise ConfigError(f"rate scale must be > 0, got {rate_scale}")
    arrivals = arrival_times(spec.arrivals, spec.duration_s, random.Random(f"{seed}:arrivals"))
    warmup_s = spec.warmup_s / rate_scale
    runs: list[RunSpec] = []
    for seq, (t, tenant) in enumerate(arrivals):
        scheduled_t = t / rate_scale
        plan = make_plan(spec.plan, random.Random(f"{seed}:plan:{seq}"), spec.retry.max_attempts)
        plan.to_json()  # serialized once, here, not at every submit (the plan keeps it)
        runs.append(
            RunSpec(
                run_id=f"r{seq:06d}",
                seq=seq,
                tenant=tenant,
                scheduled_t=scheduled_t,
                warmup=scheduled_t < warmup_s,
                plan=plan,
            )
        )
    return Schedule(
        spec, seed, rate_scale, tuple(runs), _schedule_hash(spec, seed, rate_scale, runs)
    )


def critical_path_s(plan: Plan, retry: RetryPolicy) -> float:
    """Simulated seconds (time-scale 1) from a run's start to its end with unlimited workers.

    Groups run one after another; a group takes as long as its slowest step. A step makes
    ``min(fail_attempts + 1, max_attempts)`` attempts of ``latency_s`` each, with a backoff wait
    after each failed attempt but the last. Permanent errors are not retried: a permanent step
    makes one attempt. A run fails after a group in which a step failed permanently or exhausted
    its attempts (the group still waits for its parallel siblings); later groups do not run.
    """
    total = 0.0
    for group in plan.groups:
        slowest = 0.0
        failed = False
        for step in group:
            if step.permanent:
                attempts = 1
                failed = True
            else:
                attempts = min(step.fail_attempts + 1, retry.max_attempts)
                failed = failed or step.fail_attempts >= retry.max_attempts
            waits = sum(retry.backoff_s(i) for i in range(1, attempts))
            slowest = max(slowest, step.latency_s * attempts + waits)
        total += slowest
        if failed:
            break
    return total


def expected_runs(spec: WorkloadSpec) -> float:
    """How many runs ``spec`` schedules, on average over seeds, computed from the spec alone
    (before anything is built). Rate scaling does not change it: the same runs arrive faster."""
    a, d = spec.arrivals, spec.duration_s
    if a.profile == "burst":
        cycles = d / (a.idle_mean_s + a.burst_duration_s)
        return a.tenants * cycles * (a.burst_runs_min + a.burst_runs_max) / 2
    if a.profile == "ramp":
        return (a.start_rate_per_s + a.end_rate_per_s) / 2 * d
    return a.rate_per_s * d  # poisson (mean) and constant
