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
    """False if any checker failed, "unknown" if any could not decide, else True. A checker
    that did not run (``valid`` None, e.g. amcheck not installed) counts for neither."""
    vals = [r.get("valid") for r in results.values() if r.get("valid") is not None]
    if any(v is False for v in vals):
        return False
    if any(v == "unknown" for v in vals):
        return "unknown"
    return True


# --- after a fault ------------------------------------------------------------------------------
#
# An acknowledged write is LOST if, after recovery, its effect is missing from the durable state,
# or if the system behaved as if it were missing: a step acked before the fault executed again
# after it (its journal entry was gone when the run was resumed), or a run whose completion was
# acked was claimed again. Re-execution can heal the final state, so looking at the final state
# alone would hide such losses; the history shows them.


def check_write_loss(
    events: list[dict[str, Any]], state: StateView, fault_t: float
) -> dict[str, Any]:
    """Every ack of the trial, checked against the final state and the history after it.

    An ack made *after* the fault began can be lost too (a submit blocked on the dying store
    that committed into a deleted file): it is reported apart, and the RPO (the age at the fault
    of the oldest lost ack) is computed from the acks made before the fault."""
    stored_runs = {r.run_id: r for r in state.runs()}
    stored_steps = state.all_step_ids()
    acked_run: dict[str, float] = {}
    acked_step: dict[tuple[str, int], float] = {}
    acked_done: dict[str, tuple[float, str]] = {}
    execs: dict[tuple[str, int], list[float]] = {}  # exec invokes after the fault
    claims: dict[str, list[float]] = {}  # claims after the fault
    for e in events:
        t, op, typ = e["t"], e["op"], e["type"]
        if op == "submit" and typ == "ok":
            acked_run.setdefault(e["run"], t)
        elif op == "commit" and typ == "ok":
            acked_step.setdefault((e["run"], e["step"]), t)
        elif op == "complete" and typ == "ok":
            acked_done.setdefault(e["run"], (t, e.get("value")))
        elif op == "exec" and typ == "invoke" and t > fault_t:
            execs.setdefault((e["run"], e["step"]), []).append(t)
        elif op == "claim" and t > fault_t:
            claims.setdefault(e["run"], []).append(t)

    def again(times: list[float] | None, ack_t: float) -> bool:
        """Redone after both the ack and the fault: the journal had lost it."""
        return any(x > max(ack_t, fault_t) for x in times or ())

    lost: list[dict[str, Any]] = []

    def add(kind: str, key: str, t: float, how: str) -> None:
        lost.append(
            {
                "kind": kind,
                "id": key,
                "ack_t": t,
                "how": how,
                "age_at_fault_s": fault_t - t,
                "after_fault": t >= fault_t,
            }
        )

    for rid, t in acked_run.items():
        if rid not in stored_runs:
            add("run-accepted", rid, t, "missing")
    for (rid, sid), t in acked_step.items():
        if (rid, sid) not in stored_steps:
            add("step-committed", f"{rid}/{sid}", t, "missing")
        elif again(execs.get((rid, sid)), t):
            add("step-committed", f"{rid}/{sid}", t, "executed again after the fault")
    for rid, (t, status) in acked_done.items():
        now = stored_runs.get(rid)
        if now is None or now.status != status:
            add("run-completed", rid, t, f"status now {now.status if now else 'missing'}")
        elif again(claims.get(rid), t):
            add("run-completed", rid, t, "claimed again after the fault")
    lost.sort(key=lambda x: x["ack_t"])
    before = [x for x in lost if not x["after_fault"]]
    ages = [x["age_at_fault_s"] for x in before]
    by_kind: dict[str, int] = {}
    for x in lost:
        by_kind[x["kind"]] = by_kind.get(x["kind"], 0) + 1
    return {
        "valid": not lost,
        "acks": {
            "run-accepted": len(acked_run),
            "step-committed": len(acked_step),
            "run-completed": len(acked_done),
        },
        "lost_count": len(lost),
        "lost_after_fault_began": len(lost) - len(before),
        "lost_by_kind": by_kind,
        "rpo_s": max(ages) if ages else 0.0,  # the oldest lost ack's age at the fault
        "lost_window_s": [min(ages), max(ages)] if ages else None,
        "lost": lost,  # every lost ack, with its id, kind, ack time and age at the fault
    }


def check_duplicates(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Steps whose work ran to completion more than once (at-least-once execution: a repeated
    LLM call costs money, a repeated tool call may repeat a side effect). Reported, not judged:
    the durable contract allows it; lost acks are judged by ``check_write_loss``."""
    execs: dict[tuple[str, int], int] = {}
    for e in events:
        if e["op"] == "exec" and e["type"] == "ok":
            key = (e["run"], e["step"])
            execs[key] = execs.get(key, 0) + 1
    dups = {f"{r}/{s}": n for (r, s), n in execs.items() if n > 1}
    return {
        "valid": True,
        "duplicate_steps": len(dups),
        "extra_executions": sum(n - 1 for n in dups.values()),
        "examples": dict(list(dups.items())[:20]),
    }


def check_exactly_once(
    events: list[dict[str, Any]], state: StateView, lost_runs: set[str]
) -> dict[str, Any]:
    """Every accepted run that was not lost finished exactly once: one final status in the
    store, and never two different completion acks. Unfinished ones are stuck."""
    acked = {e["run"] for e in events if e["op"] == "submit" and e["type"] == "ok"}
    done: dict[str, set[str]] = {}
    for e in events:
        if e["op"] == "complete" and e["type"] == "ok":
            done.setdefault(e["run"], set()).add(e.get("value"))
    stored = {r.run_id: r for r in state.runs()}
    conflicting = sorted(r for r, vals in done.items() if len(vals) > 1)
    stuck = sorted(
        r for r in acked - lost_runs if r not in stored or stored[r].status in ("queued", "running")
    )
    return {
        "valid": not conflicting and not stuck,
        "conflicting_completions": conflicting[:50],
        "stuck_runs": stuck[:50],
        "stuck_count": len(stuck),
    }


def recovery_times(
    events: list[dict[str, Any]], timeline: dict[str, Any], lost_runs: set[str] | None = None
) -> dict[str, Any]:
    """Fault -> store accepting again -> first step of an interrupted run committed -> every
    interrupted run completed. Interrupted = claimed before the fault, not completed before it,
    and not lost by it (a lost run never resumes: write loss reports it)."""
    fault_t = timeline["start_t"]
    claimed_before = {e["run"] for e in events if e["op"] == "claim" and e["t"] < fault_t}
    done_before = {
        e["run"] for e in events if e["op"] == "complete" and e["type"] == "ok" and e["t"] < fault_t
    }
    interrupted = claimed_before - done_before - (lost_runs or set())
    first_step = min(
        (
            e["t"]
            for e in events
            if e["op"] == "commit"
            and e["type"] == "ok"
            and e["t"] > fault_t
            and e["run"] in interrupted
        ),
        default=None,
    )
    finished = {}
    for e in events:
        if e["op"] == "complete" and e["type"] == "ok" and e["run"] in interrupted:
            finished.setdefault(e["run"], e["t"])
    all_done = max(finished.values()) if len(finished) == len(interrupted) and finished else None

    def since(t: float | None) -> float | None:
        return None if t is None or t != t else t - fault_t

    return {
        "valid": True if len(finished) == len(interrupted) else "unknown",
        "interrupted_runs": len(interrupted),
        "interrupted_finished": len(finished),
        "store_accepting_s": since(timeline.get("store_accepting_t")),
        "first_resumed_step_s": since(first_step),
        "all_interrupted_done_s": since(all_done),
    }
