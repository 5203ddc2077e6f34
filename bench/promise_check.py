"""Was the durability promise kept? The measured loss of one fault trial (the write-loss
checker's lost acks, with ids and ages) judged against what the deployment promised for that
fault (``Deployment.promise``): **kept**, **broken** or **unknown**, with the figures.

Rules (the verdict must be true, so "broken" needs proof and "kept" needs something at risk):
* Ages are taken at the moment the fault *began* (the nemesis's invoke event), not when the
  injection finished: a kill followed by deleting a data directory can take a while, and an
  ack that was young when the node died must not look old because the deletion was slow.
* A lost ack breaks a promise of 0 whenever it was made. It breaks a bounded promise when its
  age at the fault is above the bound. An ack made after the fault began (age <= 0) was never
  durable-before-the-fault: it is inside every positive bound (the replica could not hold it
  yet), but a store promising 0 must not lose an ack it gave, even during the fault. A total
  loss promise (no bound) is broken by no loss.
* A store promising to come back intact breaks that promise when its integrity check fails.
* Nothing at risk, nothing proven: when no ack was exposed at the fault (none younger than the
  bound; for a 0 promise none in the last ``ZERO_BOUND_WINDOW_S``) and no run was in flight
  (claimed, not completed), an unbroken promise is ``unknown``, not kept.
* No fault, no verdict: a fault that was never injected (interrupted, or it failed) gives
  ``unknown`` with the reason, never a pass. No promise stated: ``unknown``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from backends.promises import Promise

# A 0 promise has no window of its own; the acks it protects most are the youngest ones, which
# an engine acknowledging before its write is durable (or a store flushing lazily, e.g. a WAL
# writer every 200 ms) would lose. One second covers those flush intervals several times over.
ZERO_BOUND_WINDOW_S = 1.0
LISTED = 50  # lost acks listed by id; counts are always complete

NO_BOUND = "no bound"  # the label of a promise without an age bound (the report keys on it)
ACK_OPS = {"submit": "run-accepted", "commit": "step-committed", "complete": "run-completed"}


def label(promise: Promise | None) -> str:
    """The promise in a few characters, for tables: "0 lost", "<= 2.5 s", "no bound" (any ack
    may be lost: a node whose only copy is gone, or a setting that syncs only now and then)."""
    if promise is None:
        return "none stated"
    if promise.max_lost_age_s is None:
        return NO_BOUND
    if promise.max_lost_age_s == 0:
        return "0 lost"
    return f"<= {promise.max_lost_age_s:.3g} s"


def fault_began_t(events: list[dict[str, Any]], fault_done_t: float) -> float:
    """When the injection began: the nemesis's invoke event (the last one before the fault was
    done); the fault time itself when the history has none."""
    began = [
        e["t"]
        for e in events
        if e["op"] == "nemesis"
        and isinstance(e.get("value"), dict)
        and e["value"].get("phase") == "invoke"
        and e["t"] <= fault_done_t
    ]
    return max(began) if began else fault_done_t


def exposure(
    events: list[dict[str, Any]], began_t: float, done_t: float, window_s: float
) -> dict[str, Any]:
    """What was at risk when the fault hit: acks made before the fault was done and at most
    ``window_s`` old when it began (math.inf = every ack so far), and runs in flight (claimed
    before the fault was done, not completed before it)."""
    acks: dict[str, int] = {k: 0 for k in ACK_OPS.values()}
    claimed: set[str] = set()
    completed: set[str] = set()
    for e in events:
        t, op = e["t"], e["op"]
        if t >= done_t:
            continue
        if e["type"] == "ok" and op in ACK_OPS and began_t - t <= window_s:
            acks[ACK_OPS[op]] += 1
        if op == "claim":
            claimed.add(e["run"])
        elif op == "complete" and e["type"] == "ok":
            completed.add(e["run"])
    return {
        "window_s": None if math.isinf(window_s) else window_s,
        "acks_exposed": sum(acks.values()),
        "acks_exposed_by_kind": acks,
        "runs_in_flight": len(claimed - completed),
    }


def _outside(lost: dict[str, Any], bound: float | None, shift_s: float) -> bool:
    """Is this lost ack outside the promise? ``shift_s``: fault done - fault began."""
    if bound is None:
        return False
    if bound == 0:
        return True
    return lost["age_at_fault_s"] - shift_s > bound


# size: the promise verdict, one rule after another with its reason; not split in this change so the
# rule reads in one place.
def judge(
    promise: Promise | None,
    loss: dict[str, Any] | None,
    events: list[dict[str, Any]],
    fault_done_t: float,
    integrity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The promise judgement of one trial; ``loss`` is ``check_write_loss``'s result."""
    out: dict[str, Any] = {
        "promise": promise.to_dict() if promise is not None else None,
        "promise_label": label(promise),
    }

    def verdict(v: str, reason: str) -> dict[str, Any]:
        out["verdict"], out["reason"] = v, reason
        out["valid"] = {"kept": True, "broken": False}.get(v, "unknown")
        return out

    if fault_done_t is None or math.isnan(fault_done_t):
        return verdict("unknown", "the fault was never injected: this trial proves nothing")
    began = fault_began_t(events, fault_done_t)
    shift = fault_done_t - began
    bound = promise.max_lost_age_s if promise is not None else None
    window = math.inf if promise is not None and bound is None else (bound or ZERO_BOUND_WINDOW_S)
    out["exposure"] = {
        "fault_began_t": began,
        "fault_done_t": fault_done_t,
        **exposure(events, began, fault_done_t, window),
    }
    if promise is None:
        return verdict("unknown", "this configuration states no promise for this fault")
    iv = (integrity or {}).get("valid")
    if not loss or "lost" not in loss:
        # a store too damaged to read: broken if it promised to come back intact
        if promise.intact and iv is False:
            out["integrity"] = "failed"
            return verdict("broken", "the store's integrity check failed after recovery")
        why = "no write-loss result to judge"
        if iv is False:
            why += (
                "; the store's integrity check failed after recovery, which this configuration"
                " does not promise against"
            )
        return verdict("unknown", why)
    lost = loss["lost"]
    outside = [x for x in lost if _outside(x, bound, shift)]
    out["lost_count"] = loss.get("lost_count", len(lost))
    out["lost_outside_count"] = len(outside)
    out["lost_inside_count"] = len(lost) - len(outside)
    out["lost_after_fault_began"] = sum(1 for x in lost if x["age_at_fault_s"] - shift < 0)
    out["lost_outside"] = [
        {
            "kind": x["kind"],
            "id": x["id"],
            "age_at_fault_s": x["age_at_fault_s"] - shift,
            "after_fault_began": x["age_at_fault_s"] - shift < 0,
        }
        for x in outside[:LISTED]
    ]
    out["integrity"] = {True: "passed", False: "failed"}.get(iv, "not checked")  # type: ignore[arg-type]
    broken = []
    if outside:
        oldest = max(x["age_at_fault_s"] - shift for x in outside)
        broken.append(
            f"{len(outside)} lost ack(s) outside the promise ({out['promise_label']}), the "
            f"oldest {oldest:.3f} s old when the fault began"
        )
    if promise.intact and iv is False:
        broken.append("the store's integrity check failed after recovery")
    if broken:
        return verdict("broken", "; ".join(broken))
    exp = out["exposure"]
    if exp["acks_exposed"] == 0 and exp["runs_in_flight"] == 0:
        return verdict(
            "unknown",
            "nothing was at risk: no ack younger than "
            + (f"{window:g} s" if not math.isinf(window) else "the fault")
            + " and no run in flight when the fault began",
        )
    return verdict(
        "kept",
        f"{out['lost_count']} lost, all inside the promise ({out['promise_label']}); "
        f"{exp['acks_exposed']} ack(s) exposed, {exp['runs_in_flight']} run(s) in flight",
    )


def check(
    fault: str,
    promise_of: Callable[[str], Promise | None],
    events: list[dict[str, Any]],
    timeline: dict[str, Any] | None,
    checks: dict[str, Any],
) -> dict[str, Any]:
    """Judge one trial from the promise lookup (a live deployment's ``promise``, or the promise
    a kept run recorded, for ``bench check``), the history, the fault timeline and the checks
    computed so far (write loss, integrity). A promise that cannot be asked for is no promise
    (``unknown``)."""
    done_t = (timeline or {}).get("start_t", math.nan)
    try:
        promise = promise_of(fault)
    except Exception as e:  # noqa: BLE001 - no promise, reported, not fatal
        out = judge(None, None, events, done_t)
        out["error"] = f"promise({fault!r}) raised: {e}"
        return out
    return judge(promise, checks.get("write_loss"), events, done_t, checks.get("integrity"))


def composable(checks: dict[str, Any]) -> dict[str, Any]:
    """The checks a trial's verdict is composed from. After a fault, the promise judges the
    write loss: a loss the configuration promised may happen (inside a replication bound, or
    a total loss) is a figure, not a failure, and a loss outside it fails through the promise.
    Without a kept/broken judgement the write-loss check decides on its own, as before."""
    if (checks.get("promise") or {}).get("verdict") in ("kept", "broken"):
        return {k: v for k, v in checks.items() if k != "write_loss"}
    return checks


def exit_code(trials: list[dict[str, Any]]) -> int:
    """1 when any trial failed a correctness check (verdict False) or broke its promise, else
    0 (unknown trials included: they are reported as such, not failed)."""
    bad = any(t.get("verdict") is False or t.get("promise_verdict") == "broken" for t in trials)
    return 1 if bad else 0
