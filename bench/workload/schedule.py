"""The schedule: every run of a benchmark, decided up front from (workload, seed, rate_scale).

Seeding: arrivals use ``Random(f"{seed}:arrivals")`` and run ``seq``'s plan uses
``Random(f"{seed}:plan:{seq}")``, so a plan never depends on how many random numbers the arrival
process or other plans drew. String seeds are hashed with SHA-512 by ``random``, so schedules
are identical across processes and ``PYTHONHASHSEED`` values.

Memory: the schedule keeps 12 bytes a run (``ScheduledRuns``); each run and its plan are built
when the drive reaches it.

Rate scale: ``rate_scale=k`` divides every arrival time, the duration and the warm-up by k. The
same runs (same tenants, same plans) are offered k times faster over a k times shorter window:
``--rate-scale 10`` is 10x the load. Step latencies are not scaled (that is the time-scale's
job, applied by workers).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from backends.base import Plan, RetryPolicy, RunSpec, step_dict
from backends.errors import ConfigError
from bench.workload.arrivals import arrival_arrays
from bench.workload.planfile import PlanFile
from bench.workload.plans import make_plan
from bench.workload.spec import PlanSpec, WorkloadSpec, validate_workload


class ScheduledRuns(Sequence[RunSpec]):
    """Every run of a schedule, sorted by ``scheduled_t`` (run i has seq i), built on demand.

    Held per run: its scheduled time and its tenant's index (12 bytes). A ``RunSpec`` and its
    plan are built from them when asked for (the plan from its own seeded ``Random``, so the
    same every time) and not kept: the drive holds one only while the run is being submitted,
    so the harness's memory does not grow with the schedule (a held plan with its JSON was
    ~3 KiB a run). Building costs CPU each time: iterate once where you can."""

    def __init__(
        self,
        scheduled_t: array[float],
        tenants: array[int],
        names: tuple[str, ...],
        warmup_s: float,
        seed: int,
        plan: PlanSpec,
        max_attempts: int,
    ) -> None:
        self._t = scheduled_t
        self._tenants = tenants
        self._names = names
        self._warmup_s = warmup_s
        self._seed = seed
        self._plan = plan
        self._max_attempts = max_attempts
        self._stored: PlanFile | None = None  # see stored_plans

    def __len__(self) -> int:
        return len(self._t)

    @overload
    def __getitem__(self, i: int) -> RunSpec: ...
    @overload
    def __getitem__(self, i: slice) -> list[RunSpec]: ...
    def __getitem__(self, i: int | slice) -> RunSpec | list[RunSpec]:
        if isinstance(i, slice):
            return [self._build(k) for k in range(*i.indices(len(self)))]
        n = len(self._t)
        k = i + n if i < 0 else i
        if not 0 <= k < n:
            raise IndexError(f"run {i} out of range (schedule has {n} runs)")
        return self._build(k)

    def __iter__(self) -> Iterator[RunSpec]:
        return map(self._build, range(len(self._t)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScheduledRuns):
            return self._key() == other._key()
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside, like a list

    def _key(self) -> tuple[Any, ...]:
        return (
            self._t,
            [self._names[i] for i in self._tenants],
            self._warmup_s,
            self._seed,
            self._plan,
            self._max_attempts,
        )

    def scheduled_t(self, seq: int) -> float:
        """Run ``seq``'s arrival time, without building the run."""
        return self._t[seq]

    def plan(self, seq: int) -> Plan:
        if self._stored is not None:
            return self._stored.plan(seq)
        return self.build_plan(seq)

    def build_plan(self, seq: int) -> Plan:
        return make_plan(self._plan, random.Random(f"{self._seed}:plan:{seq}"), self._max_attempts)

    @contextlib.contextmanager
    def stored_plans(self, path: Path) -> Iterator[PlanFile]:
        """Within: every plan is read back from a file written now (``bench.workload.planfile``:
        the drive builds no plan); after: built again on demand, and the file is deleted."""
        stored = PlanFile.write(len(self), self.build_plan, path)
        self._stored = stored
        try:
            yield stored
        finally:
            self._stored = None
            stored.close()

    def _build(self, seq: int) -> RunSpec:
        t = self._t[seq]
        return RunSpec(
            run_id=run_id(seq),
            seq=seq,
            tenant=self._names[self._tenants[seq]],
            scheduled_t=t,
            warmup=t < self._warmup_s,
            plan=self.plan(seq),
        )

    def nbytes(self) -> int:
        """Memory held per run (the arrays), for estimates and tests."""
        return self._t.itemsize * len(self._t) + self._tenants.itemsize * len(self._tenants)


def run_id(seq: int) -> str:
    return f"r{seq:06d}"


def seq_of(run_id: str) -> int:
    """The inverse of ``run_id``."""
    return int(run_id[1:])


@dataclass(frozen=True)
class Schedule:
    spec: WorkloadSpec
    seed: int
    rate_scale: float
    runs: ScheduledRuns  # a Sequence[RunSpec], sorted by scheduled_t; run i has seq i
    hash: str  # sha256 of the canonical schedule: equal hashes = identical offered load
    steps: int  # steps over all runs (counted while hashing, so the summary builds no plan)

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
            "warmup_runs": sum(
                1 for i in range(len(self.runs)) if self.runs.scheduled_t(i) < self.warmup_s
            ),
            "steps": self.steps,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "offered_rate_per_s": self.offered_rate(),
            "hash": self.hash,
        }


def _schedule_hash(
    spec: WorkloadSpec, seed: int, rate_scale: float, runs: Sequence[RunSpec]
) -> tuple[str, int]:
    """(sha256 of ``json.dumps({"spec", "seed", "rate_scale", "runs": [[run_id, tenant,
    scheduled_t (µs), warmup, plan groups as dicts], ...]}, sort_keys=True, separators=(",",
    ":"))``, steps in all runs). Fed to the hash one run at a time: the same digest as encoding
    the whole document (tests/test_workload.py pins it), with one run's plan alive at a time."""
    h = hashlib.sha256()
    steps = 0

    def dumps(x: Any) -> str:
        return json.dumps(x, sort_keys=True, separators=(",", ":"))

    # sort_keys order: rate_scale, runs, seed, spec
    h.update(f'{{"rate_scale":{dumps(rate_scale)},"runs":['.encode())
    for i, r in enumerate(runs):
        groups = [[step_dict(s) for s in g] for g in r.plan.groups]
        steps += sum(len(g) for g in groups)
        entry = [
            r.run_id,
            r.tenant,
            round(r.scheduled_t, 6),  # microseconds: robust to last-bit float differences
            r.warmup,
            groups,
        ]
        h.update((b"," if i else b"") + dumps(entry).encode())
    h.update(f'],"seed":{dumps(seed)},"spec":{dumps(spec.to_dict())}}}'.encode())
    return h.hexdigest(), steps


def build_schedule(spec: WorkloadSpec, seed: int, rate_scale: float = 1.0) -> Schedule:
    """Every run of ``spec`` for ``seed``; pure and deterministic. Builds (and hashes) every
    plan once, keeping none (see ``ScheduledRuns``)."""
    validate_workload(spec)
    if not rate_scale > 0:
        raise ConfigError(f"rate scale must be > 0, got {rate_scale}")
    times, tenants, names = arrival_arrays(
        spec.arrivals, spec.duration_s, random.Random(f"{seed}:arrivals")
    )
    scheduled: array[float] = array("d", (t / rate_scale for t in times))
    del times
    runs = ScheduledRuns(
        scheduled,
        tenants,
        names,
        spec.warmup_s / rate_scale,
        seed,
        spec.plan,
        spec.retry.max_attempts,
    )
    digest, steps = _schedule_hash(spec, seed, rate_scale, runs)
    return Schedule(spec, seed, rate_scale, runs, digest, steps)


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
