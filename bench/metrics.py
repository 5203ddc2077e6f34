"""Figures from a history: per-run and per-step tables, HDR latency histograms, throughput over the
measured window, and a one-second time series.

Definitions (printed in the README):
- run latency = run-completed ack time - *scheduled* arrival time (open loop: queueing before the
  run was even accepted counts, so a slow backend cannot hide it);
- step-commit latency = step-committed ack - start of that checkpoint's transaction;
- engine overhead = run latency - simulated work on the run's critical path (LLM/tool waits and
  retry backoffs times the time-scale): what the engine adds on top of the agent's own waiting;
- measured window = from the end of warm-up to the last run completion (or failure); runs/s
  counts the runs that *completed* inside it (failed runs are counted apart, as failed runs/s),
  steps/s the step commits, and the offered rate the arrivals scheduled inside it, so achieved
  and offered load share one window. Warm-up runs are excluded from latency figures.
- censored run latency: an accepted run that never finished (drain timeout, stuck, interrupted)
  still counts in run latency, as drive end - scheduled arrival: a lower bound on its true
  latency (right-censored). Dropping it would make overload *shorten* p99; counting it at the
  censoring time can only understate the tail, and the count says by how many runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from backends.base import RetryPolicy, RunSpec
from bench.workload.schedule import critical_path_s

# 1 microsecond .. 1 hour, 3 significant digits
HDR_MIN_US, HDR_MAX_US, HDR_DIGITS = 1, 3_600_000_000, 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def latency_summary(seconds: Iterable[float], censored: int = 0) -> dict[str, Any]:
    """Percentiles from an HDR histogram (microsecond resolution), plus the encoded histogram so
    the raw distribution is kept on disk. ``censored`` says how many of ``seconds`` are lower
    bounds (runs still unfinished when the drive ended); it is reported, and the percentiles
    are then lower bounds as well."""
    h = HdrHistogram(HDR_MIN_US, HDR_MAX_US, HDR_DIGITS)
    n = over = 0
    for s in seconds:
        if s is None or (isinstance(s, float) and math.isnan(s)):
            continue
        us = max(int(round(s * 1e6)), HDR_MIN_US)  # below 1 us is below the resolution
        if us > HDR_MAX_US:
            over += 1  # reported, never folded into the top bucket
            continue
        h.record_value(us)
        n += 1
    if n == 0:
        return {"count": 0, "over_range": over, "censored": censored}
    out: dict[str, Any] = {
        "count": n,
        "over_range": over,
        "censored": censored,
        "mean_s": h.get_mean_value() / 1e6,
        "min_s": h.get_min_value() / 1e6,
    }
    values = h.get_percentile_to_value_dict(list(PERCENTILES))  # one pass over the buckets
    for p in PERCENTILES:
        out[f"p{p:g}_s"] = values[p] / 1e6
    out["max_s"] = h.get_max_value() / 1e6
    out["hdr"] = h.encode().decode()
    return out


def run_table(
    events: list[dict[str, Any]],
    runs: Iterable[RunSpec],
    retry: RetryPolicy,
    time_scale: float,
    start_t: float = 0.0,
) -> pd.DataFrame:
    """One row per scheduled run: schedule, submit ack, completion, latency and overhead.
    ``start_t`` is when the schedule started, in history time: scheduled times are shifted by
    it so every time column is on the history's clock."""
    rows: dict[str, dict[str, Any]] = {}
    for r in runs:
        rows[r.run_id] = {
            "run_id": r.run_id,
            "seq": r.seq,
            "tenant": r.tenant,
            "warmup": r.warmup,
            "scheduled_t": r.scheduled_t + start_t,
            "n_steps": len(r.plan.steps),
            "simulated_s": critical_path_s(r.plan, retry) * time_scale,
            "submit_invoke_t": math.nan,
            "submit_ack_t": math.nan,
            "submit": "not-sent",
            "complete_t": math.nan,
            "status": None,
            "claims": 0,
            "exec_attempts": 0,
            "steps_committed": 0,
            "replays": 0,
        }
    for e in events:
        row = rows.get(e.get("run", ""))
        if row is None:
            continue
        op, typ = e["op"], e["type"]
        if op == "submit":
            if typ == "invoke":
                row["submit_invoke_t"] = e["t"]
                row["submit"] = "indeterminate"
            elif typ == "ok":
                row["submit_ack_t"], row["submit"] = e["t"], "ok"
            else:
                row["submit"] = "failed" if typ == "fail" else "indeterminate"
        elif op == "complete" and typ == "ok":
            if math.isnan(row["complete_t"]):  # the first completion ack is the run's latency
                row["complete_t"], row["status"] = e["t"], e.get("value")
        elif op == "claim":
            row["claims"] += 1
        elif op == "exec" and typ == "invoke":
            row["exec_attempts"] += 1
        elif op == "commit" and typ == "ok":
            row["steps_committed"] += 1
        elif op == "replay":
            row["replays"] += 1
    df = pd.DataFrame(list(rows.values()))
    df["latency_s"] = df["complete_t"] - df["scheduled_t"]
    df["submit_latency_s"] = df["submit_ack_t"] - df["submit_invoke_t"]
    df["overhead_s"] = df["latency_s"] - df["simulated_s"]
    return df


def step_table(events: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per step checkpoint (commit invoke matched with its outcome), with how many
    times that step's work was executed successfully in total (>1 = duplicate execution)."""
    execs: dict[tuple[str, int], int] = {}
    pending: dict[tuple[str, int, str], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for e in events:
        op = e["op"]
        if op == "exec" and e["type"] == "ok":
            key = (e["run"], e["step"])
            execs[key] = execs.get(key, 0) + 1
        elif op == "commit":
            key3 = (e["run"], e["step"], e["proc"])
            if e["type"] == "invoke":
                pending[key3] = {
                    "run_id": e["run"],
                    "step_id": e["step"],
                    "proc": e["proc"],
                    "attempt": e.get("attempt"),
                    "commit_invoke_t": e["t"],
                    "commit_t": math.nan,
                    "outcome": "unknown",
                }
                rows.append(pending[key3])
            elif key3 in pending:
                row = pending.pop(key3)
                row["commit_t"] = e["t"]
                row["outcome"] = {"ok": "ok", "fail": "fail"}.get(e["type"], "indeterminate")
    df = pd.DataFrame(
        rows,
        columns=["run_id", "step_id", "proc", "attempt", "commit_invoke_t", "commit_t", "outcome"],
    )
    df["commit_latency_s"] = df["commit_t"] - df["commit_invoke_t"]
    df["executions"] = [
        execs.get((r, s), 0) for r, s in zip(df["run_id"], df["step_id"], strict=True)
    ]
    return df


def timeseries(runs: pd.DataFrame, steps: pd.DataFrame, bucket_s: float = 1.0) -> pd.DataFrame:
    """Per-bucket arrivals, completed and failed runs, step commits and run-latency percentiles
    (by completion time), for throughput-over-time charts."""
    end = max(
        runs["complete_t"].max(skipna=True) if len(runs) else 0.0,
        runs["scheduled_t"].max() if len(runs) else 0.0,
    )
    if not isinstance(end, float) or math.isnan(end):
        end = 0.0
    n = int(end // bucket_s) + 1
    buckets = pd.DataFrame({"t": [i * bucket_s for i in range(n)]})
    arr = (runs["scheduled_t"] // bucket_s).value_counts()
    done = runs.dropna(subset=["complete_t"])
    comp = (done[done["status"] == "completed"]["complete_t"] // bucket_s).value_counts()
    fail = (done[done["status"] == "failed"]["complete_t"] // bucket_s).value_counts()
    ok_steps = steps[steps["outcome"] == "ok"]
    st = (ok_steps["commit_t"] // bucket_s).value_counts()
    idx = (done["complete_t"] // bucket_s).astype(int)
    lat = done.groupby(idx)["latency_s"]
    buckets["arrivals"] = [int(arr.get(i, 0)) for i in range(n)]
    buckets["runs_completed"] = [int(comp.get(i, 0)) for i in range(n)]
    buckets["runs_failed"] = [int(fail.get(i, 0)) for i in range(n)]
    buckets["steps_committed"] = [int(st.get(i, 0)) for i in range(n)]
    p50, p99 = lat.quantile(0.5), lat.quantile(0.99)
    buckets["run_latency_p50_s"] = [p50.get(i, math.nan) for i in range(n)]
    buckets["run_latency_p99_s"] = [p99.get(i, math.nan) for i in range(n)]
    finished = buckets["runs_completed"] + buckets["runs_failed"]
    buckets["in_flight"] = buckets["arrivals"].cumsum() - finished.cumsum()
    return buckets


def _rate(count: int, window_s: float) -> float:
    return count / window_s if window_s and window_s > 0 else math.nan


def censored_latency(runs: pd.DataFrame, drive_end_t: float) -> pd.Series:
    """Lower bounds on the latency of accepted runs that never finished: drive end - scheduled
    arrival (right-censored at the end of the drive)."""
    open_ = runs[(runs["submit"] == "ok") & runs["complete_t"].isna()]
    return drive_end_t - open_["scheduled_t"]


# size: summary.json assembled field by field; not split in this change.
def summarize(
    runs: pd.DataFrame, steps: pd.DataFrame, warmup_end_t: float, drive_end_t: float
) -> dict[str, Any]:
    """Throughput over the measured window and latency figures of the measured runs.
    ``drive_end_t`` (history time) is when the driver stopped waiting: runs accepted but not
    finished by then count in run latency as censored samples at that time."""
    measured = runs[~runs["warmup"]]
    done = runs.dropna(subset=["complete_t"])
    end_t = float(done["complete_t"].max()) if len(done) else math.nan
    window = end_t - warmup_end_t if not math.isnan(end_t) else math.nan
    ok_steps = steps[steps["outcome"] == "ok"]
    in_win = (done["complete_t"] >= warmup_end_t) & (done["complete_t"] <= end_t)
    in_win_runs = int((in_win & (done["status"] == "completed")).sum())
    in_win_failed = int((in_win & (done["status"] == "failed")).sum())
    # offered load over the same window as the achieved rate: arrivals scheduled inside it
    in_win_arrivals = int(
        ((runs["scheduled_t"] >= warmup_end_t) & (runs["scheduled_t"] <= end_t)).sum()
    )
    in_win_steps = int(
        ((ok_steps["commit_t"] >= warmup_end_t) & (ok_steps["commit_t"] <= end_t)).sum()
    )
    mdone = measured.dropna(subset=["complete_t"])
    mok = mdone[mdone["status"] == "completed"]
    measured_ids = set(measured["run_id"])
    msteps = ok_steps[ok_steps["run_id"].isin(measured_ids)]
    dup = steps.drop_duplicates(["run_id", "step_id"])
    censored = censored_latency(measured, drive_end_t)
    run_lat = pd.concat([mok["latency_s"], censored], ignore_index=True)
    cens_over = censored - measured.loc[censored.index, "simulated_s"]
    return {
        "window": {"start_t": warmup_end_t, "end_t": end_t, "duration_s": window},
        "throughput": {
            "runs_per_s": _rate(in_win_runs, window),
            "failed_runs_per_s": _rate(in_win_failed, window),
            "steps_per_s": _rate(in_win_steps, window),
            "offered_runs_per_s": _rate(in_win_arrivals, window),
            "runs_completed_in_window": in_win_runs,
            "runs_failed_in_window": in_win_failed,
            "arrivals_in_window": in_win_arrivals,
            "steps_committed_in_window": in_win_steps,
        },
        "runs": {
            "scheduled": int(len(runs)),
            "measured": int(len(measured)),
            "accepted": int((runs["submit"] == "ok").sum()),
            "submit_failed": int((runs["submit"] == "failed").sum()),
            "submit_indeterminate": int((runs["submit"] == "indeterminate").sum()),
            "completed": int((runs["status"] == "completed").sum()),
            "failed": int((runs["status"] == "failed").sum()),
            "unfinished": int(((runs["submit"] == "ok") & runs["complete_t"].isna()).sum()),
        },
        "steps": {
            "committed": int(len(ok_steps)),
            "commits_not_ok": int((steps["outcome"] != "ok").sum()),
            "duplicate_executions": int((dup["executions"] - 1).clip(lower=0).sum()),
            "exec_attempts": int(runs["exec_attempts"].sum()),
            "replays": int(runs["replays"].sum()),
        },
        "latency": {
            # completed runs plus the censored lower bounds of runs that never finished
            "run": {
                **latency_summary(run_lat, censored=len(censored)),
                "censored_at_t": drive_end_t,
            },
            "run_failed": latency_summary(mdone[mdone["status"] == "failed"]["latency_s"]),
            "submit_ack": latency_summary(measured["submit_latency_s"].dropna()),
            "step_commit": latency_summary(msteps["commit_latency_s"]),
            # asyncio timers may fire a hair early, so tiny negative overheads are counted
            # apart instead of being clamped into the histogram
            # a censored run's overhead is at least its censored latency - its simulated work;
            # one whose bound is negative (still inside its own simulated waits) has no bound
            "engine_overhead": latency_summary(
                pd.concat(
                    [mok["overhead_s"][mok["overhead_s"] >= 0], cens_over[cens_over >= 0]],
                    ignore_index=True,
                ),
                censored=int((cens_over >= 0).sum()),
            ),
            "engine_overhead_unbounded": int((cens_over < 0).sum()),
            "engine_overhead_negative": int((mok["overhead_s"] < 0).sum()),
        },
    }
