"""Input checks that run before anything starts or is written: every number has a range, every
backend option its own check, the results directory must be a writable directory, and a fault
time must fall inside the schedule. Each problem becomes a one-line ``ConfigError`` (exit 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from backends.base import Option, Range, registered
from backends.errors import ConfigError

# every numeric option of the `bench` subcommands (dest -> range); the flag is derived from dest
CLI_RANGES: dict[str, Range] = {
    "workers": Range(1, 256),
    "concurrency": Range(1, 100_000),
    "seed": Range(0, 2**63 - 1),
    "time_scale": Range(0, 1e6),
    "rate_scale": Range(0, 1e6, low_open=True),
    "drain_timeout": Range(0, 86400),
    "exposure_settle": Range(0, 3600),
    # a worker renews its leases every lease/3 seconds: below 0.1 s the renewals alone load the
    # store, and 0 makes every claim expire at once (every step ran twice)
    "lease": Range(0.1, 86400),
    "trials": Range(1, 10_000),
    "repeats": Range(1, 10_000),
    "at": Range(0),  # and inside the schedule: see check_fault_time
    "restart_delay": Range(0, 3600),
    "pause": Range(0, 3600),
    "target_runs_per_s": Range(0, 1e9, low_open=True),
    "seconds": Range(0, 86400, low_open=True),
    "memory_limit_gb": Range(0, 1e6, low_open=True),
    "outage": Range(0, 3600, low_open=True),
    "s3_latency": Range(0, 600),
    "lose_node_after": Range(0, 3600),
    "plain_runs": Range(0, 1000),
    "rpo_budget": Range(0, 1e9),
    "clients": Range(1, 64),
}


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_number(name: str, value: Any, rng: Range) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if why := rng.problem(value):
        raise ConfigError(f"{name} {why}")


def check_option(backend: str, opt: Option, value: Any) -> None:
    """A backend option's value (from the command line or a `bench sweep --set` list)."""
    if value is None:
        return
    if opt.range is not None:
        check_number(f"{backend}: {opt.flag}", value, opt.range)
    if opt.check is not None and (why := opt.check(value)):
        raise ConfigError(f"{backend}: {opt.flag} {why}")


def check_args(args: argparse.Namespace) -> None:
    """Every number and backend option given on the command line, and the results directory."""
    for dest, rng in CLI_RANGES.items():
        check_number(flag(dest), getattr(args, dest, None), rng)
    for info in registered().values():
        for opt in info.options:
            check_option(info.name, opt, getattr(args, opt.dest, None))
    if getattr(args, "cmd", None) in ("run", "crash", "sweep", "compare"):
        check_results_dir(args.results_dir)
    if getattr(args, "memory_limit_gb", None) is not None:
        check_schedule_size(args)


# Harness memory per scheduled run, by phase (estimates, rounded up), on top of a fixed ~170 MiB.
# The drive holds a few hundred bytes a run (the schedule's arrays, a flag byte and a dispatch
# lag per run, the replication-position samples): 170 -> 184 MiB VmRSS over a 15-minute,
# 54,000-run sqlite run. The checks, exposure analysis and tables after it read the history
# one shard of runs at a time (bench/postrun.py): the same run peaked at 235 MiB VmHWM, 51 MiB
# over the end of the drive (~1 KiB a run).
DRIVE_BYTES_PER_RUN = 1024
CHECKS_BYTES_PER_RUN = 2 * 1024
BYTES_PER_RUN = DRIVE_BYTES_PER_RUN + CHECKS_BYTES_PER_RUN


def default_memory_limit_gb() -> float:
    """Half of this machine's memory: the harness shares it with the services it measures."""
    import psutil

    return psutil.virtual_memory().total / 2 / 2**30


def check_schedule_size(args: argparse.Namespace) -> None:
    """Refuse a workload whose runs would not fit in memory, before building its schedule (a
    ``duration_s = 1e12`` workload grew the harness to 14.7 GB before it was stopped)."""
    from bench.workload.builtin import DEFAULT_WORKLOAD
    from bench.workload.loader import resolve_workload
    from bench.workload.schedule import expected_runs

    spec = resolve_workload(getattr(args, "workload", None) or DEFAULT_WORKLOAD)
    runs = expected_runs(spec)
    need_gb = runs * BYTES_PER_RUN / 2**30
    limit_gb = args.memory_limit_gb
    if need_gb > limit_gb:
        raise ConfigError(
            f"workload {spec.name}: about {runs:.3g} runs, which need about {need_gb:.3g} GB of "
            f"harness memory (~{BYTES_PER_RUN // 1024} KiB a run during the drive and the checks "
            f"after it); the limit is {limit_gb:.3g} GB: shorten duration_s or lower the arrival rate, or raise "
            "--memory-limit-gb"
        )


def check_results_dir(path: Path) -> None:
    """The results directory is (or can be created as) a directory the harness can write to."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--results-dir {path} is not a directory")
    existing = path
    while not existing.exists():  # the nearest ancestor that exists will hold the new dirs
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--results-dir {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--results-dir {path}: {existing} is not writable")


def check_fault_time(at_s: float | None, duration_s: float) -> None:
    """``--at`` must fall inside the schedule: a later fault never fires (the run waits
    forever), a negative one fires before the first arrival."""
    if at_s is not None and not 0 <= at_s < duration_s:
        raise ConfigError(
            f"--at must be in [0, {duration_s:g}) seconds (inside this schedule, after "
            f"rate scaling), got {at_s:g}"
        )
