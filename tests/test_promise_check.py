"""The promise judgement on hand-built histories and states, run through the real write-loss
checker: each rule has a case that must fail (broken / not a pass) beside the one that passes."""

from __future__ import annotations

import math
from typing import Any

from backends.base import RunState, StateView
from backends.promises import Promise
from bench import checkers, promise_check

FAULT_BEGAN, FAULT_DONE = 10.0, 10.2  # the injection took 0.2 s (kill + delete)


class State(StateView):
    """A durable state holding exactly the given runs and steps."""

    def __init__(self, runs: dict[str, str], steps: set[tuple[str, int]]) -> None:
        self._runs, self._steps = runs, steps

    def runs(self) -> list[RunState]:
        return [RunState(r, s, 0, None) for r, s in self._runs.items()]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        return {s: b"" for r, s in self._steps if r == run_id}

    def all_step_ids(self) -> set[tuple[str, int]]:
        return set(self._steps)


def ev(t: float, type: str, op: str, run: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"t": t, "proc": "test", "type": type, "op": op, "run": run, **kw}


def history(acks: dict[str, float], claims: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Run ``r`` accepted at ``acks[r]``; the nemesis began at 10.0 and was done at 10.2."""
    out = [ev(t, "ok", "submit", r) for r, t in acks.items()]
    out += [ev(1.0, "info", "claim", r) for r in claims]
    out += [
        ev(FAULT_BEGAN, "info", "nemesis", value={"phase": "invoke", "fault": "lose-node"}),
        ev(FAULT_DONE, "info", "nemesis", value={"phase": "fault"}),
    ]
    return sorted(out, key=lambda e: e["t"])


def judge(
    promise: Promise | None,
    acks: dict[str, float],
    kept: set[str],
    claims: tuple[str, ...] = (),
    integrity: dict[str, Any] | None = None,
    done_t: float = FAULT_DONE,
) -> dict[str, Any]:
    events = history(acks, claims)
    state = State({r: "queued" for r in kept}, set())
    loss = checkers.check_write_loss(events, state, done_t)
    return promise_check.judge(promise, loss, events, done_t, integrity)


ZERO = Promise("kill-store", 0.0, True, "fsync at commit")
BOUND = Promise("lose-node", 1.0, True, "replica within 1 s")
TOTAL = Promise("lose-node", None, True, "no replica")


def test_ack_older_than_the_bound_lost_is_broken() -> None:
    out = judge(BOUND, {"old": 8.5, "young": 9.8}, kept={"young"})
    assert out["verdict"] == "broken" and out["valid"] is False
    assert [x["id"] for x in out["lost_outside"]] == ["old"]
    assert math.isclose(out["lost_outside"][0]["age_at_fault_s"], 1.5)  # at the fault's start


def test_loss_within_the_bound_is_kept() -> None:
    out = judge(BOUND, {"old": 8.5, "young": 9.8}, kept={"old"})
    assert out["verdict"] == "kept" and out["valid"] is True
    assert out["lost_count"] == 1 and out["lost_inside_count"] == 1
    assert out["exposure"]["acks_exposed"] == 1  # "young": 0.2 s old at the fault


def test_slow_injection_does_not_make_a_young_ack_old() -> None:
    # 0.9 s old when the node died, 1.1 s when the deletion finished: inside a 1 s bound
    out = judge(BOUND, {"r": 9.1}, kept=set())
    assert out["verdict"] == "kept", out


def test_any_loss_with_a_zero_promise_is_broken() -> None:
    out = judge(ZERO, {"a": 9.99, "b": 9.5}, kept={"b"})
    assert out["verdict"] == "broken" and out["lost_outside_count"] == 1


def test_an_ack_made_during_the_fault_and_lost() -> None:
    # acked after the fault began: never durable before it. A 0 promise covers every ack it
    # gave; a bounded one cannot have shipped it yet (inside the bound)
    acks = {"during": 10.1, "before": 9.9}
    broken = judge(ZERO, acks, kept={"before"})
    assert broken["verdict"] == "broken" and broken["lost_outside"][0]["after_fault_began"]
    kept = judge(BOUND, acks, kept={"before"})
    assert kept["verdict"] == "kept" and kept["lost_after_fault_began"] == 1


def test_total_loss_promise_is_kept_by_a_total_loss() -> None:
    out = judge(TOTAL, {"a": 2.0, "b": 9.0}, kept=set())
    assert out["verdict"] == "kept" and out["promise_label"] == "no bound"
    assert out["exposure"]["acks_exposed"] == 2 and out["exposure"]["window_s"] is None


def test_nothing_exposed_is_unknown() -> None:
    # the only ack is 5 s old at a fault promising 0 loss, no run in flight: proves nothing
    out = judge(ZERO, {"a": 5.0}, kept={"a"})
    assert out["verdict"] == "unknown" and out["valid"] == "unknown"
    assert "nothing was at risk" in out["reason"]
    # the same with a run in flight is evidence
    assert judge(ZERO, {"a": 5.0}, kept={"a"}, claims=("a",))["verdict"] == "kept"


def test_fault_never_injected_is_not_a_pass() -> None:
    out = judge(ZERO, {"a": 9.9}, kept={"a"}, done_t=math.nan)
    assert out["verdict"] == "unknown" and "never injected" in out["reason"]
    checks = {"acked_runs_durable": {"valid": True}, "promise": out}
    assert checkers.compose(promise_check.composable(checks)) == "unknown"


def test_no_promise_stated_is_unknown() -> None:
    assert judge(None, {"a": 9.9}, kept={"a"})["verdict"] == "unknown"


def test_failed_integrity_check_breaks_an_intact_promise() -> None:
    out = judge(ZERO, {"a": 9.9}, kept={"a"}, integrity={"valid": False})
    assert out["verdict"] == "broken" and "integrity" in out["reason"]
    assert judge(ZERO, {"a": 9.9}, kept={"a"}, integrity={"valid": True})["verdict"] == "kept"


def test_an_unreadable_store_breaks_an_intact_promise() -> None:
    """A store too damaged to count losses (no write-loss result) still breaks a promise to
    come back intact; one that did not promise it is unknown, and says why."""
    events = history({"a": 9.9})
    damaged = {"valid": False}
    out = promise_check.judge(ZERO, None, events, FAULT_DONE, damaged)
    assert out["verdict"] == "broken" and "integrity" in out["reason"]
    loose = Promise("lose-power", None, False, "synchronous=OFF")
    out = promise_check.judge(loose, None, events, FAULT_DONE, damaged)
    assert out["verdict"] == "unknown" and "does not promise" in out["reason"]


def test_the_promise_decides_the_verdict_after_a_fault() -> None:
    lost = {"valid": False}
    kept = {"write_loss": lost, "promise": {"valid": True, "verdict": "kept"}}
    broken = {"write_loss": lost, "promise": {"valid": False, "verdict": "broken"}}
    unknown = {"write_loss": lost, "promise": {"valid": "unknown", "verdict": "unknown"}}
    assert checkers.compose(promise_check.composable(kept)) is True
    assert checkers.compose(promise_check.composable(broken)) is False
    assert checkers.compose(promise_check.composable(unknown)) is False  # loss without promise


def test_exit_code_mapping() -> None:
    ok = {"verdict": True, "promise_verdict": "kept"}
    assert promise_check.exit_code([ok, {"verdict": "unknown", "promise_verdict": "unknown"}]) == 0
    assert promise_check.exit_code([ok, {"verdict": False, "promise_verdict": "kept"}]) == 1
    assert promise_check.exit_code([ok, {"verdict": False, "promise_verdict": "broken"}]) == 1
