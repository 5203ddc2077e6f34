"""Workload specifications: what load to offer and what each run does, as plain frozen data.

A ``WorkloadSpec`` plus a seed fully determines a schedule (``bench.workload.schedule``). The
field defaults are the ``agent-burst`` values, so a workload file only spells what it changes.
Every spec is checked by ``validate_workload`` before a schedule is built from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from backends.base import RetryPolicy
from backends.errors import ConfigError

Profile = Literal["burst", "poisson", "constant", "ramp"]
PROFILES: tuple[str, ...] = ("burst", "poisson", "constant", "ramp")


@dataclass(frozen=True)
class ArrivalSpec:
    """When runs arrive and from which tenant. Only the fields of ``profile`` are used."""

    profile: Profile = "burst"  # arrival process: burst | poisson | constant | ramp
    tenants: int = 8  # distinct tenants submitting runs (all profiles)
    # burst: each tenant alternates an idle period and a burst of runs
    idle_mean_s: float = 12.0  # mean idle period between one tenant's bursts (exponential)
    burst_runs_min: int = 10  # fewest runs in one burst
    burst_runs_max: int = 40  # most runs in one burst
    burst_duration_s: float = 2.0  # a burst's runs are spread uniformly over this window
    # poisson / constant
    rate_per_s: float = 20.0  # mean (poisson) or exact (constant) arrival rate
    # ramp: rate rises (or falls) linearly over the whole duration
    start_rate_per_s: float = 5.0  # rate at t = 0
    end_rate_per_s: float = 100.0  # rate at t = duration_s


@dataclass(frozen=True)
class PlanSpec:
    """The shape of one agent run: plan (LLM) -> tool groups (+ reflections) -> answer (LLM)."""

    tool_calls_min: int = 1  # fewest tool steps in a run
    tool_calls_max: int = 6  # most tool steps in a run
    fanout_probability: float = 0.3  # chance a tool group is a parallel fan-out
    fanout_max: int = 4  # widest fan-out (a fan-out has 2..fanout_max tool steps)
    reflection_probability: float = 0.3  # chance of a "reflect" LLM step after a tool group
    llm_latency_median_s: float = 0.8  # LLM call latency, lognormal median
    llm_latency_sigma: float = 0.6  # LLM call latency, lognormal sigma (of the log)
    tool_latency_median_s: float = 0.15  # tool call latency, lognormal median
    tool_latency_sigma: float = 0.8  # tool call latency, lognormal sigma (of the log)
    llm_payload_bytes_median: int = 2000  # LLM step result size, lognormal median
    tool_payload_bytes_median: int = 800  # tool step result size, lognormal median
    payload_sigma: float = 0.7  # payload size lognormal sigma (LLM and tool)
    max_payload_bytes: int = 256 * 1024  # payload sizes are clamped to [1, this]
    transient_failure_rate: float = 0.05  # chance that any one attempt of a step fails (retried)
    permanent_failure_rate: float = 0.002  # chance a step fails non-retryably (fails the run)


@dataclass(frozen=True)
class WorkloadSpec:
    """A named workload: arrivals over ``duration_s`` and the plans of the runs that arrive."""

    name: str  # short identifier, recorded in the manifest
    description: str  # one line: what this workload models
    duration_s: float = 60.0  # length of the arrival schedule (time-scale 1, rate-scale 1)
    warmup_s: float = 10.0  # runs arriving before this are warm-up, excluded from statistics
    arrivals: ArrivalSpec = field(default_factory=ArrivalSpec)
    plan: PlanSpec = field(default_factory=PlanSpec)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # same policy on every backend

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict for the manifest (and the schedule hash)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkloadSpec:
        """The inverse of ``to_dict`` (a manifest's ``workload``); ConfigError if malformed."""
        try:
            return cls(
                **{k: v for k, v in d.items() if k not in ("arrivals", "plan", "retry")},
                arrivals=ArrivalSpec(**d.get("arrivals", {})),
                plan=PlanSpec(**d.get("plan", {})),
                retry=RetryPolicy(**d.get("retry", {})),
            )
        except (TypeError, AttributeError) as e:
            raise ConfigError(f"not a workload description: {e}") from None


# ---------------------------------------------------------------------------------------------
# Validation. Problems are collected, not raised one at a time, so a user fixes a file in one go.
# ---------------------------------------------------------------------------------------------


def _arrival_problems(a: ArrivalSpec) -> list[str]:
    p: list[str] = []
    if a.profile not in PROFILES:
        p.append(f"arrivals.profile: unknown profile {a.profile!r}; allowed: {', '.join(PROFILES)}")
    if a.tenants < 1:
        p.append(f"arrivals.tenants: must be >= 1, got {a.tenants}")
    if a.idle_mean_s <= 0:
        p.append(f"arrivals.idle_mean_s: must be > 0, got {a.idle_mean_s}")
    if a.burst_runs_min < 1:
        p.append(f"arrivals.burst_runs_min: must be >= 1, got {a.burst_runs_min}")
    if a.burst_runs_max < a.burst_runs_min:
        p.append(
            f"arrivals.burst_runs_max: must be >= arrivals.burst_runs_min "
            f"({a.burst_runs_min}), got {a.burst_runs_max}"
        )
    if a.burst_duration_s <= 0:
        p.append(f"arrivals.burst_duration_s: must be > 0, got {a.burst_duration_s}")
    for name in ("rate_per_s", "start_rate_per_s", "end_rate_per_s"):
        value = getattr(a, name)
        if value <= 0:
            p.append(f"arrivals.{name}: must be > 0, got {value}")
    return p


def _plan_problems(s: PlanSpec) -> list[str]:
    p: list[str] = []
    if s.tool_calls_min < 0:
        p.append(f"plan.tool_calls_min: must be >= 0, got {s.tool_calls_min}")
    if s.tool_calls_max < s.tool_calls_min:
        p.append(
            f"plan.tool_calls_max: must be >= plan.tool_calls_min ({s.tool_calls_min}), "
            f"got {s.tool_calls_max}"
        )
    if s.fanout_max < 2:
        p.append(f"plan.fanout_max: must be >= 2 (a fan-out has 2+ steps), got {s.fanout_max}")
    for name in (
        "fanout_probability",
        "reflection_probability",
        "transient_failure_rate",
        "permanent_failure_rate",
    ):
        value = getattr(s, name)
        if not 0.0 <= value <= 1.0:
            p.append(f"plan.{name}: must be a probability in [0, 1], got {value}")
    for name in ("llm_latency_median_s", "tool_latency_median_s"):
        value = getattr(s, name)
        if value <= 0:
            p.append(f"plan.{name}: must be > 0, got {value}")
    for name in ("llm_payload_bytes_median", "tool_payload_bytes_median", "max_payload_bytes"):
        value = getattr(s, name)
        if value < 1:
            p.append(f"plan.{name}: must be >= 1, got {value}")
    for name in ("llm_latency_sigma", "tool_latency_sigma", "payload_sigma"):
        value = getattr(s, name)
        if value < 0:
            p.append(f"plan.{name}: must be >= 0, got {value}")
    return p


def _retry_problems(r: RetryPolicy) -> list[str]:
    p: list[str] = []
    if r.max_attempts < 1:
        p.append(f"retry.max_attempts: must be >= 1, got {r.max_attempts}")
    if r.initial_backoff_s < 0:
        p.append(f"retry.initial_backoff_s: must be >= 0, got {r.initial_backoff_s}")
    if r.backoff_multiplier < 1:
        p.append(f"retry.backoff_multiplier: must be >= 1, got {r.backoff_multiplier}")
    if r.max_backoff_s < 0:
        p.append(f"retry.max_backoff_s: must be >= 0, got {r.max_backoff_s}")
    return p


def workload_problems(spec: WorkloadSpec) -> list[str]:
    """Every range problem of ``spec``, each as ``dotted.field: what is wrong``."""
    p: list[str] = []
    if not spec.name:
        p.append("name: must be a non-empty string")
    if spec.duration_s <= 0:
        p.append(f"duration_s: must be > 0, got {spec.duration_s}")
    if not 0 <= spec.warmup_s < spec.duration_s:
        p.append(
            f"warmup_s: must be in [0, duration_s) = [0, {spec.duration_s}), got {spec.warmup_s}"
        )
    p += _arrival_problems(spec.arrivals)
    p += _plan_problems(spec.plan)
    p += _retry_problems(spec.retry)
    return p


def validate_workload(spec: WorkloadSpec, source: str | None = None) -> WorkloadSpec:
    """Return ``spec`` unchanged, or raise ``ConfigError`` listing every problem. ``source``
    (a file path or "builtin workload 'x'") starts the message so the user knows what to fix."""
    problems = workload_problems(spec)
    if problems:
        where = source or f"workload {spec.name!r}"
        raise ConfigError(f"{where}: invalid workload:\n  " + "\n  ".join(problems))
    return spec
