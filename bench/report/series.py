"""Time series on the schedule's clock: per-second buckets that start at the schedule's zero.

``timeseries.csv`` is bucketed on the harness clock, whose zero is before the deployment started,
so its buckets straddle the schedule's zero and the charts used to show negative-time buckets of
start-up. The report rebuckets ``runs.csv`` / ``steps.csv`` with the same function
(``bench.metrics.timeseries``) after moving every time to the schedule's zero, then moves the
bucket starts back, so the charts (which subtract the schedule start) draw bucket 0 at 0 s."""

from __future__ import annotations

import pandas as pd

from bench import metrics
from bench.report.load import Run

RUN_TIMES = ("scheduled_t", "submit_invoke_t", "submit_ack_t", "complete_t")


def on_schedule_clock(r: Run) -> pd.DataFrame:
    """The run's per-second series with buckets aligned to its schedule's zero; the CSV's own
    series (clipped at zero) when the per-run files are missing."""
    runs, steps, s0 = r.csv("runs.csv"), r.csv("steps.csv"), r.schedule_start_t
    need = {"scheduled_t", "complete_t", "status", "latency_s"}
    if runs.empty or not need <= set(runs.columns) or "commit_t" not in steps:
        ts = r.csv("timeseries.csv")
        return ts[ts["t"] + 1.0 > s0].reset_index(drop=True) if "t" in ts else ts
    runs = runs.copy()
    for col in RUN_TIMES:
        if col in runs:
            runs[col] = runs[col] - s0
    steps = steps.copy()
    steps["commit_t"] = steps["commit_t"] - s0
    ts = metrics.timeseries(runs, steps[steps["commit_t"] >= 0])
    ts["t"] = ts["t"] + s0
    return ts
