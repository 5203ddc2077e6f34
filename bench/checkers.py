"""Checkers: pure functions from history + the backend's final durable state to a verdict
(``valid``) with figures. ``check_all`` runs every one of them the same way for runs with and
without a fault. The rules below are the only place verdicts are defined (docs/verdicts.md says
the same for users).

Verdict rules
  valid True       the checker compared real evidence and found nothing wrong.
  valid False      it found a violation; the ids are in the result.
  valid "unknown"  it could not decide: nothing to compare (no ack, no stored step, no accepted
                   run), the durable state could not be read, or the checker raised (the error
                   is in ``error``: Jepsen's check-safe). Never a pass.
  valid None       a figure, not a check (indeterminate operations, recovery times, duplicate
                   work after a fault): reported, never decides the verdict.
  A run's verdict (``compose``): False if any check is False, else "unknown" if any is unknown,
  else True.

What each check judges
  write_loss     every ack of the run, fault or not: each accepted run exists in the store, each
                 committed step is in the journal, each completion has its status. An ack is
                 also lost when the history shows the store forgot it and healed afterwards: a
                 step executed again from a claim that began after its ack (that claim's journal
                 read lacked the step), or a completed run claimed again by a claim that began
                 after the completion ack. Work redone by a claim that began *before* the ack
                 (two overlapping claims) is duplicate work, not loss. RPO = age at the fault of
                 the oldest lost ack made before the fault; None when every lost ack was made
                 after the fault began (``lost_after_fault_began`` counts those) and when there
                 was no fault; 0.0 only when nothing was lost.
  exactly_once   every accepted, not-lost run has one final status in the store and never two
                 different completion acks; an unfinished one is stuck (False), fault or not.
  step_payloads  every stored step result equals, byte for byte, what the step produced.
  duplicates     a step whose work ran to completion more than once. With no fault it is a
                 failure of exactly-once execution (nothing justified redoing work); after a
                 fault it is at-least-once cost, reported as a figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from backends.base import RunSpec, StateView
from backends.common.payload import PAYLOAD_VERSION
from backends.workflow import expected_payload


def check_step_payloads(
    runs: list[RunSpec], state: StateView, seed: int, payload_version: int = PAYLOAD_VERSION
) -> dict[str, Any]:
    """Every stored step result equals, byte for byte, what the step produced (with the run's
    payload function, ``payload_version``). Unknown when no step was stored: there was nothing
    to compare."""
    bad: list[str] = []
    checked = 0
    by_id = {run.run_id: run for run in runs}
    for run_id, stored in state.all_step_results():  # one query, not one per run
        run = by_id.get(run_id)
        if run is None:
            continue  # not a scheduled run: nothing to compare it with
        for step in run.plan.steps:
            if step.step_id in stored:
                checked += 1
                want = expected_payload(
                    seed, run.run_id, step.step_id, step.payload_bytes, payload_version
                )
                if stored[step.step_id] != want:
                    bad.append(f"{run.run_id}/{step.step_id}")
    out: dict[str, Any] = {
        "valid": not bad if checked else "unknown",
        "checked": checked,
        "mismatches": bad[:50],
        "mismatch_count": len(bad),
    }
    if not checked:
        out["reason"] = "no stored step result to compare"
    return out


def compose(results: dict[str, dict[str, Any]]) -> bool | str:
    """False if any checker failed, "unknown" if any could not decide, else True. A figure or
    a check that did not run (``valid`` None, e.g. amcheck not installed) counts for neither."""
    vals = [r.get("valid") for r in results.values() if isinstance(r, dict)]
    vals = [v for v in vals if v is not None]
    if any(v is False for v in vals):
        return False
    if any(v == "unknown" for v in vals):
        return "unknown"
    return True


def safe(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Jepsen's check-safe: a checker that raises has decided nothing; it says so."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - any failure of a checker is "unknown", with why
        return {"valid": "unknown", "error": f"{type(e).__name__}: {e}"}


# --- write loss ---------------------------------------------------------------------------------


def _claim_start(e: dict[str, Any], key: str) -> float:
    """When the claim behind an event began (``value[key]``), else the event's own time: the
    conservative bound (the journal read cannot have happened after the event)."""
    v = e.get("value")
    if isinstance(v, dict) and isinstance(v.get(key), int | float):
        return float(v[key])
    return float(e["t"])


# size: the write-loss verdict with its evidence, one rule after another; not split in this change so
# the rule reads in one place.
def check_write_loss(
    events: list[dict[str, Any]], state: StateView, fault_t: float | None = None
) -> dict[str, Any]:
    """Every ack of the run (``fault_t`` None: no fault), checked against the final state and
    against what the history shows the store forgot (see the module docstring)."""
    fault = None if fault_t is None or math.isnan(fault_t) else fault_t
    stored_runs = {r.run_id: r for r in state.runs()}
    stored_steps = state.all_step_ids()
    acked_run: dict[str, float] = {}
    acked_step: dict[tuple[str, int], float] = {}
    acked_done: dict[str, tuple[float, str]] = {}
    execs: dict[tuple[str, int], list[tuple[float, float]]] = {}  # (invoke t, claim start)
    claims: dict[str, list[float]] = {}  # start of each claim
    for e in events:
        op, typ = e["op"], e["type"]
        if op == "submit" and typ == "ok":
            acked_run.setdefault(e["run"], e["t"])
        elif op == "commit" and typ == "ok":
            acked_step.setdefault((e["run"], e["step"]), e["t"])
        elif op == "complete" and typ == "ok":
            acked_done.setdefault(e["run"], (e["t"], e.get("value")))
        elif op == "exec" and typ == "invoke":
            execs.setdefault((e["run"], e["step"]), []).append((e["t"], _claim_start(e, "claim")))
        elif op == "claim":
            claims.setdefault(e["run"], []).append(_claim_start(e, "since"))

    lost: list[dict[str, Any]] = []
    redone: list[str] = []  # acked steps executed again by a claim begun before the ack

    def add(kind: str, key: str, t: float, how: str) -> None:
        lost.append(
            {
                "kind": kind,
                "id": key,
                "ack_t": t,
                "how": how,
                "age_at_fault_s": None if fault is None else fault - t,
                "after_fault": None if fault is None else t >= fault,
            }
        )

    for rid, t in acked_run.items():
        if rid not in stored_runs:
            add("run-accepted", rid, t, "missing")
    for (rid, sid), t in acked_step.items():
        runs_of_step = execs.get((rid, sid), [])
        if (rid, sid) not in stored_steps:
            add("step-committed", f"{rid}/{sid}", t, "missing")
        elif any(c > t for _, c in runs_of_step):
            add("step-committed", f"{rid}/{sid}", t, "executed again by a claim made after the ack")
        elif any(x > t for x, _ in runs_of_step):
            redone.append(f"{rid}/{sid}")
    for rid, (t, status) in acked_done.items():
        now = stored_runs.get(rid)
        if now is None or now.status != status:
            add("run-completed", rid, t, f"status now {now.status if now else 'missing'}")
        elif any(c > t for c in claims.get(rid, ())):
            add("run-completed", rid, t, "claimed again after the completion ack")
    lost.sort(key=lambda x: x["ack_t"])
    before = [x for x in lost if x["after_fault"] is False]
    ages = [x["age_at_fault_s"] for x in before]
    by_kind: dict[str, int] = {}
    for x in lost:
        by_kind[x["kind"]] = by_kind.get(x["kind"], 0) + 1
    n_acks = len(acked_run) + len(acked_step) + len(acked_done)
    rpo: float | None = None  # no fault, or every lost ack came after it began
    if fault is not None and not lost:
        rpo = 0.0
    elif ages:
        rpo = max(ages)
    out: dict[str, Any] = {
        "valid": (not lost) if n_acks else "unknown",
        "acks": {
            "run-accepted": len(acked_run),
            "step-committed": len(acked_step),
            "run-completed": len(acked_done),
        },
        "lost_count": len(lost),
        "lost_after_fault_began": sum(1 for x in lost if x["after_fault"]),
        "lost_by_kind": by_kind,
        "rpo_s": rpo,  # the oldest lost ack's age at the fault, among acks made before it
        "lost_window_s": [min(ages), max(ages)] if ages else None,
        "lost": lost,  # every lost ack, with its id, kind, ack time and age at the fault
        "redone_not_lost": len(redone),  # duplicate work on acked steps, not loss
        "redone_examples": redone[:20],
    }
    if not n_acks:
        out["reason"] = "no acknowledged write to check"
    return out


# --- execution ----------------------------------------------------------------------------------


def check_duplicates(events: list[dict[str, Any]], fault: bool = True) -> dict[str, Any]:
    """Steps whose work ran to completion more than once (a repeated LLM call costs money, a
    repeated tool call may repeat a side effect). After a fault this is at-least-once cost: a
    figure (lost acks are judged by ``check_write_loss``). With no fault nothing justifies it:
    any duplicate fails exactly-once execution."""
    execs: dict[tuple[str, int], int] = {}
    for e in events:
        if e["op"] == "exec" and e["type"] == "ok":
            key = (e["run"], e["step"])
            execs[key] = execs.get(key, 0) + 1
    dups = {f"{r}/{s}": n for (r, s), n in execs.items() if n > 1}
    valid: bool | str | None = None
    if not fault:
        valid = not dups if execs else "unknown"
    return {
        "valid": valid,
        "criterion": "figure (after a fault)" if fault else "none allowed (no fault)",
        "executed_steps": len(execs),
        "duplicate_steps": len(dups),
        "extra_executions": sum(n - 1 for n in dups.values()),
        "examples": dict(list(dups.items())[:20]),
    }


def check_exactly_once(
    events: list[dict[str, Any]], state: StateView, lost_runs: set[str]
) -> dict[str, Any]:
    """Every accepted run that was not lost finished exactly once: one final status in the
    store, and never two different completion acks. Unfinished ones are stuck. Unknown when no
    run was accepted."""
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
    out: dict[str, Any] = {
        "valid": (not conflicting and not stuck) if acked else "unknown",
        "accepted_runs": len(acked),
        "conflicting_completions": conflicting[:50],
        "stuck_runs": stuck[:50],
        "stuck_count": len(stuck),
    }
    if not acked:
        out["reason"] = "no accepted run"
    return out


def recovery_times(
    events: list[dict[str, Any]], timeline: dict[str, Any], lost_runs: set[str] | None = None
) -> dict[str, Any]:
    """Fault -> store accepting again -> first step of an interrupted run committed -> every
    interrupted run completed. Interrupted = claimed before the fault, not completed before it,
    and not lost by it (a lost run never resumes: write loss reports it). Figures, not a check:
    a run that never finished is judged by ``check_exactly_once``."""
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
        "valid": None,
        "interrupted_runs": len(interrupted),
        "interrupted_finished": len(finished),
        "store_accepting_s": since(timeline.get("store_accepting_t")),
        "first_resumed_step_s": since(first_step),
        "all_interrupted_done_s": since(all_done),
    }


# --- all of them --------------------------------------------------------------------------------


def check_all(
    events: list[dict[str, Any]],
    read_state: Callable[[], StateView],
    runs: list[RunSpec],
    seed: int,
    timeline: dict[str, Any] | None = None,
    integrity: Callable[[], dict[str, Any]] | None = None,
    payload_version: int = PAYLOAD_VERSION,
) -> dict[str, Any]:
    """Every checker, each wrapped by ``safe``, on one run: the same checks with and without a
    fault (``timeline`` None or a fault that never started = no fault)."""
    fault_t = None if timeline is None else timeline.get("start_t")
    if fault_t is not None and math.isnan(fault_t):
        fault_t = None
    out: dict[str, Any] = {}
    try:
        state: StateView | None = read_state()
    except Exception as e:  # noqa: BLE001 - no state, no evidence: every state check is unknown
        state, why = None, f"could not read the durable state: {type(e).__name__}: {e}"
    if state is None:
        for name in ("write_loss", "exactly_once", "step_payloads"):
            out[name] = {"valid": "unknown", "error": why}
    else:
        out["write_loss"] = safe(check_write_loss, events, state, fault_t)
        lost = out["write_loss"].get("lost") or []
        lost_runs = {x["id"] for x in lost if x["kind"] == "run-accepted"}
        out["exactly_once"] = safe(check_exactly_once, events, state, lost_runs)
        out["step_payloads"] = safe(check_step_payloads, runs, state, seed, payload_version)
        if fault_t is not None and timeline is not None:
            out["recovery"] = safe(recovery_times, events, timeline, lost_runs)
    out["duplicates"] = safe(check_duplicates, events, fault_t is not None)
    if integrity is not None:
        out["integrity"] = safe(integrity)
    out["indeterminate"] = {
        "valid": None,
        "count": sum(1 for e in events if e["type"] == "info" and e["op"] in ("submit", "commit")),
        "note": "operations whose outcome the caller never learned: neither success nor loss",
    }
    torn = getattr(events, "torn_lines", 0)
    broken = sum(1 for e in events if e["op"] == "broken-engine")
    if torn or broken:
        out["history"] = {"valid": None, "torn_lines_skipped": torn}
        if broken:  # backends/durable/testonly.py: never in a real measurement
            out["history"]["test_only_broken_engine_events"] = broken
    out["valid"] = compose(out)
    return out
