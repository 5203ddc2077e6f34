"""The checkers themselves, on hand-built histories and states: each one must FAIL on the case it
exists for, and say "unknown" when it had nothing to compare (bench/checkers.py, verdict rules).
The state here is plain data: these tests check the checkers, not a backend (the conformance
suite checks every backend's real state view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.base import RunState, StateView
from backends.history import HistoryWriter, read_history
from backends.workflow import expected_payload
from bench import checkers
from tests.helpers import smoke_runs


class FakeState(StateView):
    """A durable state given as data: run statuses and step results."""

    def __init__(self, runs: dict[str, str], steps: dict[tuple[str, int], bytes]) -> None:
        self._runs, self._steps = runs, steps

    def runs(self) -> list[RunState]:
        return [RunState(r, s, 0, None) for r, s in self._runs.items()]  # type: ignore[arg-type]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        return {s: v for (r, s), v in self._steps.items() if r == run_id}

    def all_step_ids(self) -> set[tuple[str, int]]:
        return set(self._steps)


class BrokenState(FakeState):
    def runs(self) -> list[RunState]:
        raise OSError("disk on fire")


def ev(t: float, type: str, op: str, run: str, step: int | None = None, value: Any = None) -> dict:
    e: dict[str, Any] = {"t": t, "proc": "worker-0", "type": type, "op": op, "run": run}
    if step is not None:
        e["step"] = step
    if value is not None:
        e["value"] = value
    return e


def one_run(run: str = "a", t0: float = 1.0) -> list[dict]:
    """A run accepted, claimed, two steps executed and committed, completed."""
    return [
        ev(t0, "ok", "submit", run),
        ev(t0 + 0.1, "info", "claim", run, value={"since": t0 + 0.05}),
        ev(t0 + 0.2, "invoke", "exec", run, 0, value={"claim": t0 + 0.05}),
        ev(t0 + 0.25, "ok", "exec", run, 0),
        ev(t0 + 0.3, "ok", "commit", run, 0),
        ev(t0 + 0.4, "invoke", "exec", run, 1, value={"claim": t0 + 0.05}),
        ev(t0 + 0.45, "ok", "exec", run, 1),
        ev(t0 + 0.5, "ok", "commit", run, 1),
        ev(t0 + 0.5, "ok", "complete", run, value="completed"),
    ]


GOOD = FakeState({"a": "completed"}, {("a", 0): b"x", ("a", 1): b"y"})


def test_a_clean_run_passes_with_and_without_a_fault() -> None:
    for fault_t in (None, 5.0):
        loss = checkers.check_write_loss(one_run(), GOOD, fault_t)
        assert loss["valid"] is True and loss["lost_count"] == 0
    assert checkers.check_write_loss(one_run(), GOOD, 5.0)["rpo_s"] == 0.0
    assert checkers.check_write_loss(one_run(), GOOD, None)["rpo_s"] is None
    assert checkers.check_exactly_once(one_run(), GOOD, set())["valid"] is True


def test_missing_step_ack_fails_without_a_fault() -> None:
    """A committed step missing from the store, in a run with no fault (was verdict True)."""
    state = FakeState({"a": "completed"}, {("a", 0): b"x"})
    out = checkers.check_all(one_run(), lambda: state, [], 7)
    loss = out["write_loss"]
    assert loss["valid"] is False and out["valid"] is False
    assert [(x["kind"], x["id"], x["how"]) for x in loss["lost"]] == [
        ("step-committed", "a/1", "missing")
    ]
    assert loss["rpo_s"] is None and loss["lost"][0]["age_at_fault_s"] is None


def test_wrong_status_fails() -> None:
    state = FakeState({"a": "failed"}, GOOD._steps)
    loss = checkers.check_write_loss(one_run(), state)
    assert loss["valid"] is False
    assert [(x["kind"], x["id"]) for x in loss["lost"]] == [("run-completed", "a")]


def test_missing_accepted_run_fails() -> None:
    loss = checkers.check_write_loss(one_run(), FakeState({}, GOOD._steps))
    assert ("run-accepted", "a") in {(x["kind"], x["id"]) for x in loss["lost"]}


def test_flipped_payload_byte_fails() -> None:
    runs = smoke_runs()[:3]
    steps = {
        (r.run_id, s.step_id): expected_payload(7, r.run_id, s.step_id, s.payload_bytes)
        for r in runs
        for s in r.plan.steps
    }
    state = FakeState({r.run_id: "completed" for r in runs}, steps)
    assert checkers.check_step_payloads(runs, state, 7)["valid"] is True
    victim = next(k for k, v in steps.items() if len(v) > 0)
    flipped = bytearray(steps[victim])
    flipped[len(flipped) // 2] ^= 0x01
    steps[victim] = bytes(flipped)
    out = checkers.check_step_payloads(runs, state, 7)
    assert out["valid"] is False and out["mismatches"] == [f"{victim[0]}/{victim[1]}"]


def test_run_claimed_again_after_completion_fails() -> None:
    history = [*one_run(), ev(3.0, "info", "claim", "a", value={"since": 2.9})]
    loss = checkers.check_write_loss(history, GOOD, fault_t=2.0)
    assert loss["valid"] is False
    (lost,) = loss["lost"]
    assert (lost["kind"], lost["id"]) == ("run-completed", "a") and "claimed" in lost["how"]
    assert loss["rpo_s"] == lost["age_at_fault_s"] > 0


def test_stuck_run_fails() -> None:
    history = [ev(1.0, "ok", "submit", "a"), ev(1.1, "info", "claim", "a")]
    once = checkers.check_exactly_once(history, FakeState({"a": "running"}, {}), set())
    assert once["valid"] is False and once["stuck_runs"] == ["a"]


def test_no_evidence_is_unknown_never_a_pass() -> None:
    empty = FakeState({}, {})
    assert checkers.check_write_loss([], empty)["valid"] == "unknown"
    assert checkers.check_exactly_once([], empty, set())["valid"] == "unknown"
    assert checkers.check_step_payloads(smoke_runs()[:2], empty, 7)["valid"] == "unknown"
    assert checkers.check_duplicates([], fault=False)["valid"] == "unknown"
    assert checkers.check_all([], lambda: empty, smoke_runs()[:2], 7)["valid"] == "unknown"


def test_a_checker_that_raises_is_unknown_with_the_error() -> None:
    out = checkers.check_all(one_run(), lambda: BrokenState({}, {}), [], 7)
    assert out["write_loss"]["valid"] == "unknown" and "disk on fire" in out["write_loss"]["error"]
    assert out["valid"] == "unknown"

    def unreadable() -> StateView:
        raise ConnectionError("store down")

    out = checkers.check_all(one_run(), unreadable, [], 7)
    assert out["valid"] == "unknown" and "store down" in out["step_payloads"]["error"]


def test_duplicate_execution_fails_only_without_a_fault() -> None:
    history = [*one_run(), ev(2.0, "ok", "exec", "a", 1)]
    assert checkers.check_duplicates(history, fault=False)["valid"] is False
    figure = checkers.check_duplicates(history, fault=True)
    assert figure["valid"] is None and figure["duplicate_steps"] == 1


def test_figures_do_not_decide_the_verdict() -> None:
    out = checkers.check_all(one_run(), lambda: GOOD, [], 7, {"start_t": 9.0})
    assert out["recovery"]["valid"] is None and out["indeterminate"]["valid"] is None
    assert out["duplicates"]["valid"] is None  # after a fault: a figure


def test_rpo_is_none_when_every_lost_ack_came_after_the_fault() -> None:
    """Not "RPO 0.0" beside a non-zero loss: the loss is counted apart."""
    state = FakeState({"a": "completed"}, {})
    loss = checkers.check_write_loss(one_run(t0=3.0), state, fault_t=2.0)
    assert loss["lost_count"] == 2 and loss["lost_after_fault_began"] == 2
    assert loss["rpo_s"] is None and loss["lost_window_s"] is None
    both = one_run(t0=1.0) + one_run("b", t0=3.0)
    state = FakeState({"a": "completed", "b": "completed"}, {})
    loss = checkers.check_write_loss(both, state, fault_t=2.0)
    assert loss["lost_after_fault_began"] == 2 and loss["rpo_s"] == 2.0 - 1.3


def test_torn_line_in_the_middle_of_a_history_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "worker-0.jsonl"
    h = HistoryWriter(path, "worker-0", 0)
    h.record("ok", "submit", "a", t=1.0)
    h.close()
    with open(path, "ab") as f:  # SIGKILLed mid-write: no newline
        f.write(b'{"t":2.000000,"proc":"worker-0","ty')
    h = HistoryWriter(path, "worker-0", 0)  # the restarted worker appends to the same file
    h.record("ok", "submit", "b", t=3.0)
    h.record("ok", "submit", "c", t=4.0)
    h.close()
    events = read_history(tmp_path)
    assert [e["run"] for e in events] == ["a", "b", "c"] and events.torn_lines == 1
    out = checkers.check_all(events, lambda: FakeState({}, {}), [], 7)
    assert out["history"]["torn_lines_skipped"] == 1
