"""Seeded, pure workload model: arrival profiles and agent plans -> a reproducible schedule.

spec = resolve_workload("agent-burst")          # or a path to a .toml workload file
schedule = build_schedule(spec, seed=1, rate_scale=1.0)
schedule.runs, schedule.hash, schedule.summary()
"""

from bench.workload.arrivals import arrival_times
from bench.workload.builtin import BUILTIN, DEFAULT_WORKLOAD
from bench.workload.loader import load_workload_file, resolve_workload
from bench.workload.plans import TOOL_NAMES, make_plan
from bench.workload.schedule import Schedule, build_schedule, critical_path_s
from bench.workload.spec import (
    PROFILES,
    ArrivalSpec,
    PlanSpec,
    WorkloadSpec,
    validate_workload,
    workload_problems,
)

__all__ = [
    "BUILTIN",
    "DEFAULT_WORKLOAD",
    "PROFILES",
    "TOOL_NAMES",
    "ArrivalSpec",
    "PlanSpec",
    "Schedule",
    "WorkloadSpec",
    "arrival_times",
    "build_schedule",
    "critical_path_s",
    "load_workload_file",
    "make_plan",
    "resolve_workload",
    "validate_workload",
    "workload_problems",
]
