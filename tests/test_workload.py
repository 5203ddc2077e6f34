"""Tests for bench.workload: determinism, arrival profiles, plan shape, files, schedule."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from backends.base import Plan, RetryPolicy, RunSpec, StepSpec
from backends.errors import ConfigError
from bench.workload import (
    BUILTIN,
    DEFAULT_WORKLOAD,
    PROFILES,
    TOOL_NAMES,
    ArrivalSpec,
    PlanSpec,
    WorkloadSpec,
    arrival_times,
    build_schedule,
    critical_path_s,
    load_workload_file,
    make_plan,
    resolve_workload,
    validate_workload,
)
from bench.workload.arrivals import arrival_arrays
from bench.workload.schedule import ScheduledRuns, _schedule_hash

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "workloads" / "example.toml"
SMOKE = BUILTIN["smoke"]
AGENT = BUILTIN["agent-burst"]

# Pinned so an accidental change to the generator (which silently breaks "same seed, same
# schedule" across versions) fails loudly. Change it only on purpose, and say so in the commit.
SMOKE_SEED1_HASH = "72c4b7ac7bc6910462ac7217a40959fb77565c2cc8c21924838f770e6f6b8443"


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_same_schedule() -> None:
    a = build_schedule(AGENT, seed=7)
    b = build_schedule(AGENT, seed=7)
    assert a.hash == b.hash
    assert a.runs == b.runs
    assert len(a.runs) > 0


def test_different_seed_or_scale_different_hash() -> None:
    base = build_schedule(SMOKE, seed=1)
    assert build_schedule(SMOKE, seed=2).hash != base.hash
    assert build_schedule(SMOKE, seed=1, rate_scale=2.0).hash != base.hash
    other_plan = dataclasses.replace(SMOKE, plan=dataclasses.replace(SMOKE.plan, fanout_max=3))
    assert build_schedule(other_plan, seed=1).hash != base.hash


def test_pinned_hash_and_independent_of_hash_seed() -> None:
    """The schedule must not depend on PYTHONHASHSEED (e.g. via set iteration or hash())."""
    code = "from bench.workload import BUILTIN, build_schedule;"
    code += "print(build_schedule(BUILTIN['smoke'], 1).hash)"
    hashes = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        hashes.add(out.stdout.strip())
    assert hashes == {build_schedule(SMOKE, 1).hash}
    assert hashes == {SMOKE_SEED1_HASH}


def test_plan_depends_only_on_seed_and_seq() -> None:
    """Run seq k's plan comes from its own Random, whatever the arrivals drew."""
    sched = build_schedule(AGENT, seed=3)
    for run in sched.runs[:50]:
        expected = make_plan(AGENT.plan, random.Random(f"3:plan:{run.seq}"), 4)
        assert run.plan == expected
    # Changing only the arrival process leaves every plan as it was.
    steady = build_schedule(dataclasses.replace(AGENT, arrivals=BUILTIN["steady"].arrivals), 3)
    for a, b in zip(sched.runs, steady.runs, strict=False):
        assert a.plan == b.plan


def test_run_fields() -> None:
    sched = build_schedule(AGENT, seed=1)
    for i, run in enumerate(sched.runs):
        assert run.seq == i
        assert run.run_id == f"r{i:06d}"
        assert run.warmup == (run.scheduled_t < AGENT.warmup_s)
    times = [r.scheduled_t for r in sched.runs]
    assert times == sorted(times)
    assert any(r.warmup for r in sched.runs) and not all(r.warmup for r in sched.runs)


# --- arrivals ----------------------------------------------------------------------------------


def _expected_count(spec: ArrivalSpec, duration: float) -> tuple[float, float]:
    """(low, high) plausible number of arrivals."""
    if spec.profile == "constant":
        n = duration * spec.rate_per_s
        return n - 1, n + 1
    if spec.profile == "ramp":
        n = (spec.start_rate_per_s + spec.end_rate_per_s) / 2 * duration
        return n - 1, n + 1
    if spec.profile == "poisson":
        n = duration * spec.rate_per_s
        return n - 5 * math.sqrt(n), n + 5 * math.sqrt(n)
    # burst: per tenant about duration / (idle + burst) bursts of mean size
    bursts = spec.tenants * duration / (spec.idle_mean_s + spec.burst_duration_s)
    n = bursts * (spec.burst_runs_min + spec.burst_runs_max) / 2
    return n * 0.4, n * 2.0


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_sorted_in_range_plausible(profile: str) -> None:
    spec = dataclasses.replace(AGENT.arrivals, profile=profile)
    duration = 60.0
    arr = arrival_times(spec, duration, random.Random("1:arrivals"))
    times = [t for t, _ in arr]
    assert times == sorted(times)
    assert all(0.0 <= t < duration for t in times)
    low, high = _expected_count(spec, duration)
    assert low <= len(arr) <= high, (profile, len(arr), low, high)
    tenants = {tenant for _, tenant in arr}
    assert tenants <= {f"t{i:02d}" for i in range(spec.tenants)}
    assert len(tenants) == spec.tenants  # 60 s is long enough for every tenant to show up
    assert arr == arrival_times(spec, duration, random.Random("1:arrivals"))


def test_constant_is_evenly_spaced() -> None:
    arr = arrival_times(ArrivalSpec(profile="constant", rate_per_s=10.0), 3.0, random.Random(0))
    assert [round(t, 9) for t, _ in arr] == [round(k / 10, 9) for k in range(30)]


def test_ramp_rate_rises() -> None:
    spec = ArrivalSpec(profile="ramp", start_rate_per_s=5.0, end_rate_per_s=100.0)
    times = [t for t, _ in arrival_times(spec, 60.0, random.Random(0))]
    first = sum(t < 10 for t in times)
    last = sum(t >= 50 for t in times)
    # Integrated rate: first 10 s = 5*10 + 95*100/120 ~ 129; last 10 s = 3150 - L(50) ~ 921.
    assert 125 <= first <= 133 and 915 <= last <= 925
    falling = dataclasses.replace(spec, start_rate_per_s=100.0, end_rate_per_s=5.0)
    ftimes = [t for t, _ in arrival_times(falling, 60.0, random.Random(0))]
    assert sum(t < 10 for t in ftimes) > sum(t >= 50 for t in ftimes)
    assert all(0 <= t < 60 for t in ftimes)


def test_burst_is_bursty_and_out_of_phase() -> None:
    spec = AGENT.arrivals
    arr = arrival_times(spec, 60.0, random.Random("5:arrivals"))
    per_tenant: dict[str, list[float]] = {}
    for t, tenant in arr:
        per_tenant.setdefault(tenant, []).append(t)
    for times in per_tenant.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # Mostly tightly packed runs (inside a burst), with a few long idle gaps between bursts.
        assert sum(g < spec.burst_duration_s for g in gaps) >= 0.8 * len(gaps)
        assert any(g > spec.burst_duration_s for g in gaps) or len(times) <= spec.burst_runs_max
    firsts = sorted(times[0] for times in per_tenant.values())
    assert firsts[-1] - firsts[0] > spec.burst_duration_s  # tenants do not all start together


def test_burst_load_is_stationary_from_the_start() -> None:
    """Tenants' cycles start at a random point before t=0, so the first seconds see the same
    mean load as the middle (starting every tenant idle at t=0 gives ~15% less)."""
    spec = AGENT.arrivals
    first = middle = 0
    for seed in range(300):
        for t, _ in arrival_times(spec, 60.0, random.Random(f"{seed}:arrivals")):
            if t < 6:
                first += 1
            elif 20 <= t < 26 or 30 <= t < 36 or 40 <= t < 46:
                middle += 1
    assert 0.92 <= 3 * first / middle <= 1.08


def test_agent_burst_run_count() -> None:
    counts = [
        len(arrival_times(AGENT.arrivals, AGENT.duration_s, random.Random(f"{s}:arrivals")))
        for s in range(1, 41)
    ]
    assert 600 <= statistics.mean(counts) <= 1200


# --- plans -------------------------------------------------------------------------------------


def _check_plan(plan: Plan, spec: PlanSpec, max_attempts: int) -> None:
    steps = plan.steps
    assert [s.step_id for s in steps] == list(range(len(steps)))
    assert plan.groups[0] == (steps[0],) and steps[0].kind == "llm" and steps[0].name == "plan"
    assert plan.groups[-1] == (steps[-1],)
    assert steps[-1].kind == "llm" and steps[-1].name == "answer"
    tools = 0
    prev_tool = False
    for group in plan.groups[1:-1]:
        if group[0].kind == "llm":
            assert len(group) == 1 and group[0].name == "reflect"
            assert prev_tool  # a reflection only follows a tool group
            prev_tool = False
        else:
            assert all(s.kind == "tool" for s in group)
            assert all(s.name in {f"tool:{n}" for n in TOOL_NAMES} for s in group)
            assert 1 <= len(group) <= spec.fanout_max
            tools += len(group)
            prev_tool = True
    assert spec.tool_calls_min <= tools <= spec.tool_calls_max
    for s in steps:
        assert s.latency_s > 0
        assert 1 <= s.payload_bytes <= spec.max_payload_bytes
        assert 0 <= s.fail_attempts <= max_attempts - 1
        assert not (s.permanent and s.fail_attempts)


def test_plan_shape_over_many_seeds() -> None:
    widths = set()
    for seq in range(400):
        plan = make_plan(AGENT.plan, random.Random(f"1:plan:{seq}"), 4)
        _check_plan(plan, AGENT.plan, 4)
        widths |= {len(g) for g in plan.groups}
        assert Plan.from_json(plan.to_json()) == plan
    assert widths == {1, 2, 3, 4}  # fan-outs of every allowed width occur


def test_plan_failure_extremes() -> None:
    always = dataclasses.replace(AGENT.plan, transient_failure_rate=1.0)
    for s in make_plan(always, random.Random(1), max_attempts=3).steps:
        assert s.fail_attempts == 2  # capped at max_attempts - 1: retries always win
    never = dataclasses.replace(AGENT.plan, transient_failure_rate=0.0)
    assert all(s.fail_attempts == 0 for s in make_plan(never, random.Random(1), 4).steps)
    doomed = dataclasses.replace(AGENT.plan, permanent_failure_rate=1.0)
    assert all(s.permanent for s in make_plan(doomed, random.Random(1), 4).steps)


def test_plan_fanout_extremes() -> None:
    spec = dataclasses.replace(AGENT.plan, tool_calls_min=5, tool_calls_max=5)
    serial = dataclasses.replace(spec, fanout_probability=0.0, reflection_probability=0.0)
    assert [len(g) for g in make_plan(serial, random.Random(1), 4).groups] == [1] * 7
    wide = dataclasses.replace(spec, fanout_probability=1.0, reflection_probability=0.0)
    for seq in range(20):
        widths = [len(g) for g in make_plan(wide, random.Random(seq), 4).groups[1:-1]]
        assert sum(widths) == 5 and all(w >= 2 for w in widths[:-1])
    none = dataclasses.replace(spec, tool_calls_min=0, tool_calls_max=0)
    assert [s.name for s in make_plan(none, random.Random(1), 4).steps] == ["plan", "answer"]


def test_plan_latency_and_payload_medians() -> None:
    llm, tool, llm_bytes = [], [], []
    for seq in range(300):
        for s in make_plan(AGENT.plan, random.Random(f"m:{seq}"), 4).steps:
            (llm if s.kind == "llm" else tool).append(s.latency_s)
            if s.kind == "llm":
                llm_bytes.append(s.payload_bytes)
    assert statistics.median(llm) == pytest.approx(0.8, rel=0.1)
    assert statistics.median(tool) == pytest.approx(0.15, rel=0.1)
    assert statistics.median(llm_bytes) == pytest.approx(2000, rel=0.1)


# --- files -------------------------------------------------------------------------------------


def test_example_file_loads() -> None:
    spec = load_workload_file(EXAMPLE)
    assert spec.name == "example"
    assert spec.duration_s == 30.0 and spec.warmup_s == 5.0
    assert spec.arrivals.profile == "burst" and spec.arrivals.tenants == 4
    assert spec.plan.fanout_max == 3 and spec.plan.max_payload_bytes == 65536
    assert spec.retry == RetryPolicy(4, 0.2, 2.0, 5.0)
    assert resolve_workload(str(EXAMPLE)) == spec
    assert len(build_schedule(spec, 1).runs) > 0


def test_example_file_shows_every_field() -> None:
    text = EXAMPLE.read_text()
    for cls in (ArrivalSpec, PlanSpec, RetryPolicy, WorkloadSpec):
        for f in dataclasses.fields(cls):
            assert f"{f.name} =" in text or f"[{f.name}]" in text, f.name


def test_missing_keys_take_agent_burst_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("duration_s = 20\n[plan]\ntool_calls_max = 2\n")
    spec = load_workload_file(path)
    assert spec.name == "mine"  # file stem
    assert spec.duration_s == 20.0 and isinstance(spec.duration_s, float)  # int accepted
    assert spec.arrivals == AGENT.arrivals and spec.retry == AGENT.retry
    assert spec.plan == dataclasses.replace(AGENT.plan, tool_calls_max=2)


def test_agent_burst_equals_dataclass_defaults() -> None:
    """Files inherit agent-burst's values; the dataclass defaults must say the same."""
    assert BUILTIN[DEFAULT_WORKLOAD] == AGENT
    assert AGENT.arrivals == ArrivalSpec() and AGENT.plan == PlanSpec()
    assert AGENT.retry == RetryPolicy()
    assert dataclasses.replace(AGENT, name="x", description="") == WorkloadSpec("x", "")


BAD_FILES = [
    # (file text, dotted field the message must name, another phrase it must contain)
    ("colour = 1\n", "colour", "allowed keys: name, description"),
    ("[arrivals]\nburstiness = 2\n", "arrivals.burstiness", "idle_mean_s"),
    ("[plan]\nfanout = 2\n", "plan.fanout", "fanout_max"),
    ("[retry]\nattempts = 2\n", "retry.attempts", "max_attempts"),
    ("arrivals = 3\n", "arrivals", "expected a table"),
    ('duration_s = "60"\n', "duration_s", "expected a number"),
    ("[arrivals]\ntenants = true\n", "arrivals.tenants", "expected an integer"),
    ("[arrivals]\nrate_per_s = true\n", "arrivals.rate_per_s", "expected a number"),
    ("[arrivals]\ntenants = 2.5\n", "arrivals.tenants", "expected an integer"),
    ("name = 3\n", "name", "expected a string"),
    ("[plan]\nllm_latency_sigma = inf\n", "plan.llm_latency_sigma", "finite"),
    ('[arrivals]\nprofile = "wave"\n', "arrivals.profile", "burst, poisson, constant, ramp"),
    ("[arrivals]\nrate_per_s = 0\n", "arrivals.rate_per_s", "> 0"),
    ("[arrivals]\nend_rate_per_s = -1.0\n", "arrivals.end_rate_per_s", "> 0"),
    ("[arrivals]\ntenants = 0\n", "arrivals.tenants", ">= 1"),
    ("[arrivals]\nburst_runs_min = 50\n", "arrivals.burst_runs_max", ">= arrivals.burst_runs_min"),
    ("[plan]\ntool_calls_min = 9\n", "plan.tool_calls_max", ">= plan.tool_calls_min"),
    ("[plan]\nfanout_probability = 1.5\n", "plan.fanout_probability", "[0, 1]"),
    ("[plan]\npermanent_failure_rate = -0.1\n", "plan.permanent_failure_rate", "[0, 1]"),
    ("[plan]\ntool_latency_median_s = 0\n", "plan.tool_latency_median_s", "> 0"),
    ("[plan]\nfanout_max = 1\n", "plan.fanout_max", ">= 2"),
    ("[plan]\nmax_payload_bytes = 0\n", "plan.max_payload_bytes", ">= 1"),
    ("[retry]\nmax_attempts = 0\n", "retry.max_attempts", ">= 1"),
    ("[retry]\nbackoff_multiplier = 0.5\n", "retry.backoff_multiplier", ">= 1"),
    ("warmup_s = 60\n", "warmup_s", "[0, duration_s)"),
    ("duration_s = 0\nwarmup_s = 0\n", "duration_s", "> 0"),
]


@pytest.mark.parametrize(("text", "field", "phrase"), BAD_FILES, ids=[b[1] for b in BAD_FILES])
def test_invalid_file(tmp_path: Path, text: str, field: str, phrase: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_workload_file(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert f"{field}:" in msg
    assert phrase in msg


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[arrivals]\ntenants = 0\n[plan]\nfanout_max = 1\n[retry]\nmax_attempts = 0\n")
    msg = str(pytest.raises(ConfigError, load_workload_file, path).value)
    assert "arrivals.tenants:" in msg and "plan.fanout_max:" in msg and "retry.max_attempts:" in msg


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[plan\ntool_calls_max = 2\n')
    msg = str(pytest.raises(ConfigError, load_workload_file, path).value)
    assert str(path) in msg and "malformed TOML" in msg and "line 2" in msg


def test_missing_file(tmp_path: Path) -> None:
    msg = str(pytest.raises(ConfigError, load_workload_file, tmp_path / "nope.toml").value)
    assert "nope.toml" in msg and "cannot read" in msg


def test_resolve_workload(tmp_path: Path) -> None:
    assert resolve_workload("smoke") is SMOKE
    assert resolve_workload(DEFAULT_WORKLOAD) is AGENT
    for bad in ("burst-agent", str(tmp_path / "missing.toml")):
        msg = str(pytest.raises(ConfigError, resolve_workload, bad).value)
        assert repr(bad) in msg and "smoke, agent-burst, steady, ramp" in msg
    txt = tmp_path / "w.txt"
    txt.write_text("")
    assert ".toml" in str(pytest.raises(ConfigError, resolve_workload, str(txt)).value)


# --- builtins and schedules --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtins_are_valid(name: str) -> None:
    spec = BUILTIN[name]
    assert spec.name == name and spec.description
    assert validate_workload(spec) is spec


def test_validate_workload_in_code() -> None:
    bad = dataclasses.replace(SMOKE, warmup_s=5.0)
    with pytest.raises(ConfigError, match="warmup_s:"):
        build_schedule(bad, 1)
    with pytest.raises(ConfigError, match="rate scale"):
        build_schedule(SMOKE, 1, rate_scale=0.0)


def test_smoke_finishes_in_seconds() -> None:
    sched = build_schedule(SMOKE, 1)
    assert len(sched.runs) == 30
    end = max(r.scheduled_t + critical_path_s(r.plan, SMOKE.retry) for r in sched.runs)
    assert end < 4.0


def test_agent_burst_drains_quickly() -> None:
    sched = build_schedule(AGENT, 1)
    paths = [critical_path_s(r.plan, AGENT.retry) for r in sched.runs]
    assert max(paths) < 75.0
    assert 2.0 < statistics.mean(paths) < 6.0


def test_rate_scale_divides_times() -> None:
    base = build_schedule(AGENT, 1)
    fast = build_schedule(AGENT, 1, rate_scale=10.0)
    assert len(fast.runs) == len(base.runs)
    for a, b in zip(base.runs, fast.runs, strict=True):
        assert b.scheduled_t == pytest.approx(a.scheduled_t / 10.0)
        assert (a.run_id, a.tenant, a.warmup, a.plan) == (b.run_id, b.tenant, b.warmup, b.plan)
    assert fast.duration_s == pytest.approx(6.0) and fast.warmup_s == pytest.approx(1.0)
    assert fast.offered_rate() == pytest.approx(10 * base.offered_rate())
    assert all(r.scheduled_t < fast.duration_s for r in fast.runs)


def test_summary() -> None:
    sched = build_schedule(SMOKE, 1)
    s = sched.summary()
    assert s["runs"] == 30 and s["warmup_runs"] == 5  # constant 10/s: t = 0.0 .. 0.4 < 0.5
    assert s["steps"] == sum(len(r.plan.steps) for r in sched.runs)
    assert s["duration_s"] == 3.0 and s["offered_rate_per_s"] == pytest.approx(10.0)
    assert s["hash"] == sched.hash


# --- critical path -----------------------------------------------------------------------------


def _step(i: int, latency: float, fails: int = 0, permanent: bool = False) -> StepSpec:
    return StepSpec(i, "tool", "tool:x", latency, 10, fail_attempts=fails, permanent=permanent)


RETRY = RetryPolicy(
    max_attempts=3, initial_backoff_s=0.5, backoff_multiplier=2.0, max_backoff_s=0.8
)


def test_critical_path_hand_built() -> None:
    plan = Plan(
        (
            (_step(0, 1.0),),
            # slowest of the fan-out: 0.3 s, failing twice: 3 attempts + waits 0.5 + 0.8 (capped)
            (_step(1, 2.0), _step(2, 0.3, fails=2)),
            (_step(3, 0.25, fails=1),),  # 2 attempts + 0.5 wait
        )
    )
    assert critical_path_s(plan, RETRY) == pytest.approx(
        1.0 + (0.3 * 3 + 0.5 + 0.8) + (0.25 * 2 + 0.5)
    )
    slow_fail = Plan(((_step(0, 1.0), _step(1, 0.9, fails=2)),))
    assert critical_path_s(slow_fail, RETRY) == pytest.approx(0.9 * 3 + 0.5 + 0.8)


def test_critical_path_failures_stop_the_run() -> None:
    permanent = Plan(
        ((_step(0, 1.0),), (_step(1, 0.4, permanent=True), _step(2, 0.2)), (_step(3, 9.0),))
    )
    # Permanent: one attempt, no retry; later groups never run.
    assert critical_path_s(permanent, RETRY) == pytest.approx(1.0 + 0.4)
    exhausted = Plan(((_step(0, 1.0, fails=5),), (_step(1, 9.0),)))
    # More failures than attempts: max_attempts attempts, waits between them, then the run fails.
    assert critical_path_s(exhausted, RETRY) == pytest.approx(3 * 1.0 + 0.5 + 0.8)


# --- lazy schedule -----------------------------------------------------------------------------


def _eager_runs(spec: WorkloadSpec, seed: int, rate_scale: float) -> list[RunSpec]:
    """The schedule as it was built before it became lazy: every RunSpec up front."""
    arrivals = arrival_times(spec.arrivals, spec.duration_s, random.Random(f"{seed}:arrivals"))
    out = []
    for seq, (t, tenant) in enumerate(arrivals):
        plan = make_plan(spec.plan, random.Random(f"{seed}:plan:{seq}"), spec.retry.max_attempts)
        st = t / rate_scale
        out.append(RunSpec(f"r{seq:06d}", seq, tenant, st, st < spec.warmup_s / rate_scale, plan))
    return out


@pytest.mark.parametrize("name", ["smoke", "agent-burst"])
def test_lazy_schedule_equals_the_eager_build(name: str) -> None:
    spec = BUILTIN[name]
    sched = build_schedule(spec, seed=4, rate_scale=2.0)
    eager = _eager_runs(spec, 4, 2.0)
    assert len(sched.runs) == len(eager)
    assert list(sched.runs) == eager  # same runs, same plans
    assert [r.plan.to_json() for r in sched.runs] == [r.plan.to_json() for r in eager]
    assert sched.runs[-1] == eager[-1] and sched.runs[3:7] == eager[3:7]
    assert sched.hash == _schedule_hash(spec, 4, 2.0, eager)[0]
    assert sched.summary()["steps"] == sum(r.n_steps for r in eager)
    assert sched.summary()["warmup_runs"] == sum(r.warmup for r in eager)
    with pytest.raises(IndexError):
        sched.runs[len(eager)]


def test_lazy_schedule_holds_no_run() -> None:
    """A run handed out is not kept by the schedule (it is rebuilt, equal, when asked again),
    and what the schedule holds per run stays a few bytes, however many runs: a million-run
    schedule's arrays are built here without building any plan."""
    sched = build_schedule(SMOKE, seed=1)
    run = sched.runs[5]
    ref = weakref.ref(run)
    del run
    gc.collect()
    assert ref() is None
    assert sched.runs[5] == sched.runs[5]
    spec = ArrivalSpec(profile="constant", tenants=8, rate_per_s=10_000.0)
    times, tenants, names = arrival_arrays(spec, 100.0, random.Random(0))
    runs = ScheduledRuns(times, tenants, names, 0.0, 1, SMOKE.plan, 4)
    assert len(runs) == 1_000_000
    assert runs.nbytes() <= 12 * len(runs)
    assert runs[999_999].run_id == "r999999" and runs[999_999].scheduled_t == times[-1]


def test_plan_json_is_what_json_dumps_writes() -> None:
    """Plan.to_json formats steps by hand; the text must stay json.dumps's, odd fields too."""
    odd = (
        StepSpec(0, "llm", 'say "hi"\n', 1, 5),
        StepSpec(1, "tool", "tool:séarch", float("inf"), 7, 2, True),
        StepSpec(2, "tool", "tool:http", 0.1 + 0.2, 3),
    )
    plans = [Plan((odd[:1], odd[1:])), *(r.plan for r in build_schedule(AGENT, 2).runs[:40])]
    for plan in plans:
        groups = [[dataclasses.asdict(s) for s in g] for g in plan.groups]
        assert plan.to_json() == json.dumps(groups, separators=(",", ":"))
        assert Plan.from_json(plan.to_json()) == plan


def test_stored_plans_are_the_built_plans_and_the_drive_builds_none(tmp_path: Path) -> None:
    """Within ``stored_plans`` every run's plan is read back from the file written on entry
    (building one there fails the test); the text, step count and decoded steps are the built
    plan's; after it the file is gone and plans are built again."""
    runs = build_schedule(resolve_workload("agent-burst"), seed=3).runs
    assert isinstance(runs, ScheduledRuns)
    built = [runs[i] for i in range(len(runs))]
    path = tmp_path / "plans.bin"
    with runs.stored_plans(path) as stored:
        assert path.stat().st_size == sum(len(r.plan_json.encode()) for r in built)
        assert stored.nbytes() == 8 * (len(runs) + 1)
        real_build = runs.build_plan
        runs.build_plan = lambda seq: pytest.fail(f"plan {seq} built during the drive")  # type: ignore[method-assign]
        try:
            for want, got in zip(built, runs, strict=True):
                assert got.plan_json == want.plan_json and got.n_steps == want.n_steps
                assert got.plan.groups == want.plan.groups and len(got.plan.steps) == got.n_steps
        finally:
            runs.build_plan = real_build  # type: ignore[method-assign]
    assert not path.exists()
    assert list(runs) == built  # built again: Plans (a StoredPlan never equals a Plan)
