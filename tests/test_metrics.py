"""Figures from a history: the latency tail of runs that never finished, and throughput and offered
load over one window. Hand-built tables where the right answer is known, and one real saturated
run on the in-process ``memory`` backend (a few seconds)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench import metrics


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = {
        "warmup": False,
        "simulated_s": 0.0,
        "submit": "ok",
        "complete_t": math.nan,
        "status": None,
        "exec_attempts": 1,
        "replays": 0,
        "submit_latency_s": 0.001,
    }
    df = pd.DataFrame([{**base, "run_id": f"r{i}", **r} for i, r in enumerate(rows)])
    df["latency_s"] = df["complete_t"] - df["scheduled_t"]
    df["overhead_s"] = df["latency_s"] - df["simulated_s"]
    return df


def _steps() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["run_id", "step_id", "commit_t", "outcome", "commit_latency_s", "executions"]
    )


def test_runs_that_never_finish_keep_the_tail() -> None:
    """98 runs done in 0.1 s, 2 accepted at t=0 that never finish before the drive ends at 10 s:
    p99 is at least 10 s (a lower bound), not 0.1 s as it would be if they were dropped."""
    rows = [
        {"scheduled_t": 0.01 * i, "complete_t": 0.01 * i + 0.1, "status": "completed"}
        for i in range(98)
    ]
    rows += [{"scheduled_t": 0.0}, {"scheduled_t": 0.0}]
    s = metrics.summarize(_runs(rows), _steps(), warmup_end_t=0.0, drive_end_t=10.0)
    run = s["latency"]["run"]
    assert run["count"] == 100 and run["censored"] == 2 and run["censored_at_t"] == 10.0
    assert run["p99_s"] >= 9.99, run
    assert s["latency"]["run_failed"]["count"] == 0


def test_failed_runs_stay_in_their_own_row() -> None:
    rows = [{"scheduled_t": 0.0, "complete_t": 0.5, "status": "completed"}]
    rows += [{"scheduled_t": 0.0, "complete_t": 3.0, "status": "failed"}]
    s = metrics.summarize(_runs(rows), _steps(), warmup_end_t=0.0, drive_end_t=5.0)
    assert s["latency"]["run"]["count"] == 1 and s["latency"]["run"]["censored"] == 0
    assert s["latency"]["run_failed"]["count"] == 1
    assert abs(s["latency"]["run_failed"]["p50_s"] - 3.0) < 0.01


TAIL = """
name = "tail"
duration_s = 2.0
warmup_s = 0.0
[arrivals]
profile = "constant"
tenants = 1
rate_per_s = 20.0
[plan]
tool_calls_min = 1
tool_calls_max = 1
fanout_probability = 0.0
reflection_probability = 0.0
llm_latency_median_s = 0.05
llm_latency_sigma = 2.5
tool_latency_median_s = 0.01
tool_latency_sigma = 0.1
transient_failure_rate = 0.0
permanent_failure_rate = 0.0
"""


def test_saturated_run_whose_tail_never_finishes(tmp_path: Path) -> None:
    """A real run whose slowest runs (heavy-tailed LLM waits at time-scale 1) are still going
    when the 0.5 s drain timeout ends the drive: they are counted, and p99 reaches them."""
    wl = tmp_path / "tail.toml"
    wl.write_text(TAIL)
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--backend", "memory", "--workload", str(wl)]
        + ["--drain-timeout", "0.5", "--no-progress", "--results-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # runs that never finished fail exactly-once (stuck runs), so the run exits 1
    assert out.returncode == 1, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checks"]["exactly_once"]["valid"] is False
    runs = pd.read_csv(run_dir / "runs.csv")
    run = summary["latency"]["run"]
    unfinished = runs[(runs["submit"] == "ok") & runs["complete_t"].isna()]
    assert len(unfinished) > 0.01 * len(runs), "the scenario must leave >1% of runs unfinished"
    assert run["censored"] == len(unfinished) == summary["runs"]["unfinished"]
    assert run["count"] == summary["runs"]["completed"] + len(unfinished)
    oldest_open = run["censored_at_t"] - unfinished["scheduled_t"].min()
    assert oldest_open >= 0.5  # the drive waited 0.5 s after the last arrival
    assert run["p99_s"] >= oldest_open * 0.999, (run["p99_s"], oldest_open)  # HDR: 3 digits
    assert "censored" in out.stdout


def test_throughput_counts_completed_runs_and_offered_load_over_the_same_window() -> None:
    """Warm-up [0, 1): 20 arrivals. Window [1, 11]: 10 arrivals, 5 runs completed and 5 failed.
    runs/s = 5/10 (not 10/10 with the failures); offered = 10 arrivals / 10 s, not the
    schedule's 30 runs over its own duration."""
    rows = [{"scheduled_t": 0.05 * i, "warmup": True} for i in range(20)]  # never finished
    for i in range(10):
        status = "completed" if i % 2 == 0 else "failed"
        rows.append({"scheduled_t": 1.0 + i, "complete_t": 1.5 + i, "status": status})
    rows[-1]["complete_t"] = 11.0  # the last completion closes the window at 11 s
    s = metrics.summarize(_runs(rows), _steps(), warmup_end_t=1.0, drive_end_t=12.0)
    t = s["throughput"]
    assert s["window"]["duration_s"] == 10.0
    assert t["runs_completed_in_window"] == 5 and t["runs_failed_in_window"] == 5
    assert t["runs_per_s"] == 0.5 and t["failed_runs_per_s"] == 0.5
    assert t["arrivals_in_window"] == 10 and t["offered_runs_per_s"] == 1.0
    ts = metrics.timeseries(_runs(rows), _steps())
    assert ts["runs_completed"].sum() == 5 and ts["runs_failed"].sum() == 5
    assert ts["in_flight"].iloc[-1] == 20  # the 20 warm-up runs never finished
