"""Built-in workloads, as data. Each entry's header comment says what it models.

Every value is spelled out (even where it equals the dataclass default) so a reader sees the
whole workload here; ``tests/test_workload.py`` checks agent-burst equals the defaults that
workload files inherit.
"""

from __future__ import annotations

from backends.base import RetryPolicy
from bench.workload.spec import ArrivalSpec, PlanSpec, WorkloadSpec

# Plans of a typical tool-using agent: an LLM call of ~1 s plans, 1-6 tool calls (sometimes
# fanned out in parallel) with the odd reflection step between them, and an LLM call answers.
# Payloads are LLM text (~2 KB) and tool results (~800 B) with a long tail.
AGENT_PLAN = PlanSpec(
    tool_calls_min=1,
    tool_calls_max=6,
    fanout_probability=0.3,
    fanout_max=4,
    reflection_probability=0.3,
    llm_latency_median_s=0.8,
    llm_latency_sigma=0.6,
    tool_latency_median_s=0.15,
    tool_latency_sigma=0.8,
    llm_payload_bytes_median=2000,
    tool_payload_bytes_median=800,
    payload_sigma=0.7,
    max_payload_bytes=256 * 1024,
    transient_failure_rate=0.05,
    permanent_failure_rate=0.002,
)

# Retries as an agent framework configures them for flaky LLM / tool APIs.
AGENT_RETRY = RetryPolicy(
    max_attempts=4, initial_backoff_s=0.2, backoff_multiplier=2.0, max_backoff_s=5.0
)

# --- smoke -------------------------------------------------------------------------------------
# Models nothing: a tiny, fast load for tests and "does this backend work at all". 30 runs at a
# constant 10 runs/s over 3 s, short plans with millisecond latencies, transient failures (to
# exercise retries) but no permanent ones, so every run is expected to complete.
SMOKE = WorkloadSpec(
    name="smoke",
    description="tiny constant load (10 runs/s for 3 s) with fast steps; for tests",
    duration_s=3.0,
    warmup_s=0.5,
    arrivals=ArrivalSpec(profile="constant", tenants=2, rate_per_s=10.0),
    plan=PlanSpec(
        tool_calls_min=1,
        tool_calls_max=2,
        fanout_probability=0.5,
        fanout_max=2,
        reflection_probability=0.3,
        llm_latency_median_s=0.05,
        llm_latency_sigma=0.3,
        tool_latency_median_s=0.01,
        tool_latency_sigma=0.3,
        llm_payload_bytes_median=200,
        tool_payload_bytes_median=100,
        payload_sigma=0.5,
        max_payload_bytes=4096,
        transient_failure_rate=0.1,
        permanent_failure_rate=0.0,
    ),
    retry=RetryPolicy(
        max_attempts=4, initial_backoff_s=0.01, backoff_multiplier=2.0, max_backoff_s=0.1
    ),
)

# --- agent-burst (default) ---------------------------------------------------------------------
# Models agent traffic as it really arrives: 8 tenants (teams, cron jobs, upstream pipelines)
# that are mostly idle (~12 s on average) and then kick off 10-40 agent runs within 2 s. The
# store sees sudden spikes of run submissions and step checkpoints on top of a low base load;
# this is what separates engines that queue gracefully from those that stall. About 600-1200
# runs over 60 s; the first 10 s are warm-up.
AGENT_BURST = WorkloadSpec(
    name="agent-burst",
    description="8 bursty tenants: idle ~12 s, then 10-40 agent runs within 2 s",
    duration_s=60.0,
    warmup_s=10.0,
    arrivals=ArrivalSpec(
        profile="burst",
        tenants=8,
        idle_mean_s=12.0,
        burst_runs_min=10,
        burst_runs_max=40,
        burst_duration_s=2.0,
    ),
    plan=AGENT_PLAN,
    retry=AGENT_RETRY,
)

# --- steady ------------------------------------------------------------------------------------
# Models many independent users: Poisson arrivals at 20 runs/s for 60 s (~1200 runs), same agent
# plans as agent-burst. The baseline that agent-burst's spikes are compared against.
STEADY = WorkloadSpec(
    name="steady",
    description="Poisson arrivals at 20 runs/s for 60 s, agent-burst plans",
    duration_s=60.0,
    warmup_s=10.0,
    arrivals=ArrivalSpec(profile="poisson", tenants=8, rate_per_s=20.0),
    plan=AGENT_PLAN,
    retry=AGENT_RETRY,
)

# --- ramp --------------------------------------------------------------------------------------
# Models growth until saturation: the arrival rate rises linearly from 5 to 100 runs/s over 60 s
# (~3150 runs), same agent plans. Where latency bends upward is the backend's capacity knee.
RAMP = WorkloadSpec(
    name="ramp",
    description="arrival rate ramps linearly 5 -> 100 runs/s over 60 s, agent-burst plans",
    duration_s=60.0,
    warmup_s=10.0,
    arrivals=ArrivalSpec(profile="ramp", tenants=8, start_rate_per_s=5.0, end_rate_per_s=100.0),
    plan=AGENT_PLAN,
    retry=AGENT_RETRY,
)

# --- capacity ----------------------------------------------------------------------------------
# A capacity probe, not a realistic load: a constant 1000 runs/s for 20 s (20,000 runs, agent
# plans), meant for `--time-scale 0`. It offers more than any backend here sustains, so runs/s
# over the measured window is the backend's capacity and latency is mostly queueing; the long
# window keeps the figure stable where agent-burst's bursts at a high --rate-scale last ~1 s.
CAPACITY = WorkloadSpec(
    name="capacity",
    description="capacity probe: constant 1000 runs/s for 20 s (use with --time-scale 0)",
    duration_s=20.0,
    warmup_s=4.0,
    arrivals=ArrivalSpec(profile="constant", tenants=8, rate_per_s=1000.0),
    plan=AGENT_PLAN,
    retry=AGENT_RETRY,
)

BUILTIN: dict[str, WorkloadSpec] = {w.name: w for w in (SMOKE, AGENT_BURST, STEADY, RAMP, CAPACITY)}
DEFAULT_WORKLOAD = "agent-burst"
