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

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from backends.base import RetryPolicy, RunSpec
from bench.workload.schedule import critical_path_s

# 1 microsecond .. 1 hour, 3 significant digits
HDR_MIN_US, HDR_MAX_US, HDR_DIGITS = 1, 3_600_000_000, 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Latencies:
    """An HDR histogram of latencies (microsecond resolution) filled a batch at a time, so a
    summary over many shards of runs holds one histogram, never every sample."""

    def __init__(self) -> None:
        self.h = HdrHistogram(HDR_MIN_US, HDR_MAX_US, HDR_DIGITS)
        self.n = self.over = 0

    def add(self, seconds: Iterable[float]) -> None:
        h = self.h
        for s in seconds:
            if s is None or (isinstance(s, float) and math.isnan(s)):
                continue
            us = max(int(round(s * 1e6)), HDR_MIN_US)  # below 1 us is below the resolution
            if us > HDR_MAX_US:
                self.over += 1  # reported, never folded into the top bucket
                continue
            h.record_value(us)
            self.n += 1

    def summary(self, censored: int = 0) -> dict[str, Any]:
        h, n = self.h, self.n
        if n == 0:
            return {"count": 0, "over_range": self.over, "censored": censored}
        out: dict[str, Any] = {
            "count": n,
            "over_range": self.over,
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


def latency_summary(seconds: Iterable[float], censored: int = 0) -> dict[str, Any]:
    """Percentiles from an HDR histogram (microsecond resolution), plus the encoded histogram so
    the raw distribution is kept on disk. ``censored`` says how many of ``seconds`` are lower
    bounds (runs still unfinished when the drive ended); it is reported, and the percentiles
    are then lower bounds as well."""
    lat = Latencies()
    lat.add(seconds)
    return lat.summary(censored)


RUN_COLUMNS = ["run_id", "seq", "tenant", "warmup", "scheduled_t", "n_steps", "simulated_s"]
RUN_COLUMNS += ["submit_invoke_t", "submit_ack_t", "submit", "complete_t", "status", "claims"]
RUN_COLUMNS += ["exec_attempts", "steps_committed", "replays"]


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
    df = pd.DataFrame(list(rows.values()), columns=RUN_COLUMNS)
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
    acc = Series(bucket_s)
    acc.add(runs, steps)
    return acc.frame()


class Series:
    """``timeseries`` over shards of runs: per-bucket counts added up, and only the
    (completion time, latency) of finished runs kept for the per-bucket percentiles."""

    def __init__(self, bucket_s: float = 1.0) -> None:
        self.b = bucket_s
        self.ends = [math.nan, math.nan]  # last completion, last arrival
        self.counts: dict[str, pd.Series] = {}
        self.done: list[pd.DataFrame] = []

    def _count(self, name: str, values: pd.Series) -> None:
        vc = (values // self.b).value_counts()
        old = self.counts.get(name)
        self.counts[name] = vc if old is None else old.add(vc, fill_value=0)

    def add(self, runs: pd.DataFrame, steps: pd.DataFrame) -> None:
        if len(runs):
            for i, x in enumerate((runs["complete_t"].max(skipna=True), runs["scheduled_t"].max())):
                if not math.isnan(x):
                    self.ends[i] = x if math.isnan(self.ends[i]) else max(self.ends[i], x)
        self._count("arrivals", runs["scheduled_t"])
        done = runs.dropna(subset=["complete_t"])
        self._count("runs_completed", done[done["status"] == "completed"]["complete_t"])
        self._count("runs_failed", done[done["status"] == "failed"]["complete_t"])
        self._count("steps_committed", steps[steps["outcome"] == "ok"]["commit_t"])
        self.done.append(done[["complete_t", "latency_s"]])

    def frame(self) -> pd.DataFrame:
        b = self.b
        end = max(*self.ends)  # as on one table: no completion at all -> NaN -> one bucket
        n = int((0.0 if math.isnan(end) else end) // b) + 1
        buckets = pd.DataFrame({"t": [i * b for i in range(n)]})
        done = pd.concat(self.done, ignore_index=True) if self.done else None
        for name in ("arrivals", "runs_completed", "runs_failed", "steps_committed"):
            vc = self.counts.get(name, pd.Series(dtype=float))
            buckets[name] = [int(vc.get(i, 0)) for i in range(n)]
        if done is not None and len(done):
            lat = done.groupby((done["complete_t"] // b).astype(int))["latency_s"]
            p50, p99 = lat.quantile(0.5), lat.quantile(0.99)
        else:
            p50 = p99 = pd.Series(dtype=float)
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


def summarize(
    runs: pd.DataFrame, steps: pd.DataFrame, warmup_end_t: float, drive_end_t: float
) -> dict[str, Any]:
    """Throughput over the measured window and latency figures of the measured runs.
    ``drive_end_t`` (history time) is when the driver stopped waiting: runs accepted but not
    finished by then count in run latency as censored samples at that time."""
    acc = Summary(warmup_end_t, drive_end_t)
    acc.add(runs, steps)
    return acc.result()


_RUN_COUNTS = ("scheduled", "measured", "accepted", "submit_failed", "submit_indeterminate")
_RUN_COUNTS += ("completed", "failed", "unfinished")


class Summary:
    """``summarize`` over shards of runs (each shard's run table and its steps, disjoint runs):
    counts added up, latencies into HDR histograms. The window ends at the last completion of
    all shards, so what may fall after a shard's own last completion (arrivals, step commits)
    is kept apart, as times, until the end: few, since a shard's runs finish after they arrive
    and commit their steps."""

    def __init__(self, warmup_end_t: float, drive_end_t: float) -> None:
        self.w0, self.drive_end = warmup_end_t, drive_end_t
        self.end_t = math.nan
        self.n: dict[str, int] = dict.fromkeys(
            _RUN_COUNTS
            + ("in_win_runs", "in_win_failed", "in_win_arrivals", "in_win_steps")
            + ("committed", "commits_not_ok", "duplicate_executions", "exec_attempts", "replays")
            + ("run_censored", "overhead_censored", "overhead_unbounded", "overhead_negative"),
            0,
        )
        self.later_arrivals: list[np.ndarray] = []  # scheduled after their shard's last completion
        self.later_steps: list[np.ndarray] = []
        self.lat = {k: Latencies() for k in ("run", "run_failed", "submit_ack", "step_commit")}
        self.lat["engine_overhead"] = Latencies()

    def add(self, runs: pd.DataFrame, steps: pd.DataFrame) -> None:
        n, w0 = self.n, self.w0
        measured = runs[~runs["warmup"].astype(bool)]
        done = runs.dropna(subset=["complete_t"])
        shard_end = float(done["complete_t"].max()) if len(done) else math.nan
        if not math.isnan(shard_end):
            self.end_t = shard_end if math.isnan(self.end_t) else max(self.end_t, shard_end)
        ok_steps = steps[steps["outcome"] == "ok"]
        # every completion is at or before the global end: only the start bounds the window
        in_win = done["complete_t"] >= w0
        n["in_win_runs"] += int((in_win & (done["status"] == "completed")).sum())
        n["in_win_failed"] += int((in_win & (done["status"] == "failed")).sum())
        for key, later, t in (
            ("in_win_arrivals", self.later_arrivals, runs["scheduled_t"]),
            ("in_win_steps", self.later_steps, ok_steps["commit_t"]),
        ):
            t = t.to_numpy(dtype=float)
            t = t[t >= w0]
            if math.isnan(shard_end):
                later.append(t)
            else:
                n[key] += int((t <= shard_end).sum())
                later.append(t[t > shard_end])
        mdone = measured.dropna(subset=["complete_t"])
        mok = mdone[mdone["status"] == "completed"]
        msteps = ok_steps[ok_steps["run_id"].isin(set(measured["run_id"]))]
        dup = steps.drop_duplicates(["run_id", "step_id"])
        censored = censored_latency(measured, self.drive_end)
        cens_over = censored - measured.loc[censored.index, "simulated_s"]
        n["scheduled"] += int(len(runs))
        n["measured"] += int(len(measured))
        n["accepted"] += int((runs["submit"] == "ok").sum())
        n["submit_failed"] += int((runs["submit"] == "failed").sum())
        n["submit_indeterminate"] += int((runs["submit"] == "indeterminate").sum())
        n["completed"] += int((runs["status"] == "completed").sum())
        n["failed"] += int((runs["status"] == "failed").sum())
        n["unfinished"] += int(((runs["submit"] == "ok") & runs["complete_t"].isna()).sum())
        n["committed"] += int(len(ok_steps))
        n["commits_not_ok"] += int((steps["outcome"] != "ok").sum())
        n["duplicate_executions"] += int((dup["executions"] - 1).clip(lower=0).sum())
        n["exec_attempts"] += int(runs["exec_attempts"].sum())
        n["replays"] += int(runs["replays"].sum())
        # completed runs plus the censored lower bounds of runs that never finished
        self.lat["run"].add(mok["latency_s"])
        self.lat["run"].add(censored)
        n["run_censored"] += len(censored)
        self.lat["run_failed"].add(mdone[mdone["status"] == "failed"]["latency_s"])
        self.lat["submit_ack"].add(measured["submit_latency_s"].dropna())
        self.lat["step_commit"].add(msteps["commit_latency_s"])
        # asyncio timers may fire a hair early, so tiny negative overheads are counted apart
        # instead of being clamped into the histogram; a censored run's overhead is at least
        # its censored latency - its simulated work; one whose bound is negative (still inside
        # its own simulated waits) has no bound
        self.lat["engine_overhead"].add(mok["overhead_s"][mok["overhead_s"] >= 0])
        self.lat["engine_overhead"].add(cens_over[cens_over >= 0])
        n["overhead_censored"] += int((cens_over >= 0).sum())
        n["overhead_unbounded"] += int((cens_over < 0).sum())
        n["overhead_negative"] += int((mok["overhead_s"] < 0).sum())

    def result(self) -> dict[str, Any]:
        n, w0, end_t = self.n, self.w0, self.end_t
        window = end_t - w0 if not math.isnan(end_t) else math.nan
        arrivals = n["in_win_arrivals"] + sum(int((t <= end_t).sum()) for t in self.later_arrivals)
        steps = n["in_win_steps"] + sum(int((t <= end_t).sum()) for t in self.later_steps)
        return {
            "window": {"start_t": w0, "end_t": end_t, "duration_s": window},
            "throughput": {
                "runs_per_s": _rate(n["in_win_runs"], window),
                "failed_runs_per_s": _rate(n["in_win_failed"], window),
                "steps_per_s": _rate(steps, window),
                "offered_runs_per_s": _rate(arrivals, window),
                "runs_completed_in_window": n["in_win_runs"],
                "runs_failed_in_window": n["in_win_failed"],
                "arrivals_in_window": arrivals,
                "steps_committed_in_window": steps,
            },
            "runs": {k: n[k] for k in _RUN_COUNTS},
            "steps": {
                "committed": n["committed"],
                "commits_not_ok": n["commits_not_ok"],
                "duplicate_executions": n["duplicate_executions"],
                "exec_attempts": n["exec_attempts"],
                "replays": n["replays"],
            },
            "latency": {
                "run": {
                    **self.lat["run"].summary(censored=n["run_censored"]),
                    "censored_at_t": self.drive_end,
                },
                "run_failed": self.lat["run_failed"].summary(),
                "submit_ack": self.lat["submit_ack"].summary(),
                "step_commit": self.lat["step_commit"].summary(),
                "engine_overhead": self.lat["engine_overhead"].summary(
                    censored=n["overhead_censored"]
                ),
                "engine_overhead_unbounded": n["overhead_unbounded"],
                "engine_overhead_negative": n["overhead_negative"],
            },
        }
