"""Checkers: pure functions from history (as tables) + the backend's final durable state to a
verdict (``valid``: True | False | "unknown") with figures. They compose: a run's verdict is
invalid if any checker is invalid, unknown if any is unknown, else valid.

This first set checks a run without faults; fault checkers (write loss, RPO, recovery time) come
with the nemesis.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from backends.base import RunSpec, StateView
from backends.workflow import expected_payload


def check_acked_runs_durable(runs: pd.DataFrame, state: StateView) -> dict[str, Any]:
    """Every run whose submit was acknowledged exists in the durable state; every run the
    history saw completed is completed (or failed, as recorded) there."""
    stored = {r.run_id: r for r in state.runs()}
    acked = runs[runs["submit"] == "ok"]
    missing = sorted(set(acked["run_id"]) - set(stored))
    done = runs.dropna(subset=["complete_t"])
    wrong_status = sorted(
        rid
        for rid, st in zip(done["run_id"], done["status"], strict=True)
        if rid in stored and stored[rid].status != st
    )
    unfinished = sorted(r.run_id for r in stored.values() if r.status in ("queued", "running"))
    valid = not missing and not wrong_status
    return {
        "valid": valid,
        "acked_runs": int(len(acked)),
        "stored_runs": len(stored),
        "missing_acked_runs": missing[:50],
        "missing_count": len(missing),
        "status_mismatch": wrong_status[:50],
        "status_mismatch_count": len(wrong_status),
        "unfinished_in_store": len(unfinished),
    }


def check_step_payloads(runs: list[RunSpec], state: StateView, seed: int) -> dict[str, Any]:
    """Every stored step result equals, byte for byte, what the step produced."""
    bad: list[str] = []
    checked = 0
    for run in runs:
        stored = state.step_results(run.run_id)
        for step in run.plan.steps:
            if step.step_id in stored:
                checked += 1
                want = expected_payload(seed, run.run_id, step.step_id, step.payload_bytes)
                if stored[step.step_id] != want:
                    bad.append(f"{run.run_id}/{step.step_id}")
    return {
        "valid": not bad,
        "checked": checked,
        "mismatches": bad[:50],
        "mismatch_count": len(bad),
    }


def compose(results: dict[str, dict[str, Any]]) -> bool | str:
    vals = [r.get("valid") for r in results.values()]
    if any(v is False for v in vals):
        return False
    if any(v == "unknown" for v in vals):
        return "unknown"
    return True
