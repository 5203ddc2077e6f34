"""Post-run checks and tables shard by shard (bench/postrun.py): the same verdicts and figures as
on the whole history, and memory that does not grow with the number of runs checked.

The equality checks (called from tests/test_broken_engine.py, on its run) use a real run of the deliberately broken engine (every 7th checkpoint acked
and never written) with a worker kill, so the merged result has lost acks, recovery figures and
duplicate work to get right, and its verdict must stay False."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Collection, Iterator
from pathlib import Path

import pandas as pd

from backends.base import Plan, RetryPolicy, RunSpec, RunState, StateView, StepSpec
from backends.history import HistoryWriter, read_history
from backends.sqlite.backend import KeptSqliteState
from bench import checkers, metrics, postrun, recheck


def _normal(checks: dict) -> str:
    """Lists whose order among equal keys is the history's (ties at one group commit's time)
    compared as sets."""
    c = json.loads(json.dumps(checks, default=str))
    wl = c.get("write_loss") or {}
    if "lost" in wl:
        wl["lost"] = sorted(wl["lost"], key=lambda x: (x["ack_t"], x["id"]))
    for name, key in (("write_loss", "redone_examples"), ("step_payloads", "mismatches")):
        if key in (c.get(name) or {}):
            c[name][key] = sorted(c[name][key])
    return json.dumps(c, sort_keys=True)


def assert_sharded_checks_equal_whole(broken_run: Path) -> None:
    """Called by tests/test_broken_engine.py on its kill-worker run (kept data): one run, two
    uses."""
    manifest = json.loads((broken_run / "manifest.json").read_text())
    schedule, timeline = recheck._schedule(manifest), recheck._timeline(manifest)
    view = KeptSqliteState(broken_run / "work" / "sqlite" / "durabench.db")
    try:
        whole = checkers.check_all(
            read_history(broken_run / "history"),
            lambda: view,
            list(schedule.runs),
            schedule.seed,
            timeline,
            view.integrity_check,
        )
        hist = postrun.partition(broken_run / "history", schedule.runs, size=4)
        try:
            assert hist.shards.n_shards > 5  # 30 runs: many shards, so merging is exercised
            sharded = postrun.check_all(
                hist, lambda: view, schedule.runs, schedule.seed, timeline, view.integrity_check
            )
        finally:
            hist.close()
    finally:
        view.close()
    assert whole["valid"] is False and whole["write_loss"]["lost_count"] > 0
    assert "recovery" in whole and whole["duplicates"]["valid"] is None  # a fault run
    assert _normal(sharded) == _normal(whole)
    assert list(sharded) == list(whole)  # same checks, same order


def assert_sharded_tables_equal_whole(broken_run: Path, tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    manifest = json.loads((broken_run / "manifest.json").read_text())
    summary = json.loads((broken_run / "summary.json").read_text())
    schedule, settings = recheck._schedule(manifest), recheck._settings(manifest)
    start = summary["schedule_start_t"]
    warm, end = start + schedule.warmup_s, summary["latency"]["run"]["censored_at_t"]
    events = read_history(broken_run / "history")
    runs = metrics.run_table(events, schedule.runs, settings.retry, settings.time_scale, start)
    steps = metrics.step_table(events)
    whole = metrics.summarize(runs, steps, warm, end)
    hist = postrun.partition(broken_run / "history", schedule.runs, size=4)
    try:
        sharded = postrun.tabulate(
            hist, schedule.runs, settings.retry, settings.time_scale, start, warm, end, tmp_path
        )
    finally:
        hist.close()
    assert json.dumps(sharded, sort_keys=True) == json.dumps(whole, sort_keys=True)
    assert sharded["runs"]["completed"] > 0 and sharded["steps"]["committed"] > 0
    want = metrics.timeseries(runs, steps)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "timeseries.csv"), want, check_dtype=False)
    got_runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(got_runs["run_id"]) == [r.run_id for r in schedule.runs]  # schedule order
    assert len(pd.read_csv(tmp_path / "steps.csv")) == len(steps)


# --- memory does not grow with the number of runs -----------------------------------------------

PLAN = Plan(tuple((StepSpec(i, "tool", "t", 0.0, 10),) for i in range(4)))


class DictState(StateView):
    """Final state of synthetic runs (all completed, every step stored), read per shard."""

    def __init__(self, n: int) -> None:
        self.n = n

    def runs(self) -> list[RunState]:
        return [RunState(f"r{i:06d}", "completed", 4, None) for i in range(self.n)]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        return {}

    def all_step_ids(self) -> set[tuple[str, int]]:
        return {(f"r{i:06d}", s) for i in range(self.n) for s in range(4)}

    def for_runs(self, run_ids: Collection[str]) -> StateView:
        ids = sorted(run_ids)
        shard = DictState(0)
        shard.runs = lambda: [RunState(r, "completed", 4, None) for r in ids]  # type: ignore[method-assign]
        shard.all_step_ids = lambda: {(r, s) for r in ids for s in range(4)}  # type: ignore[method-assign]
        return shard


class Runs:
    """A schedule's runs built on demand (as a lazy ``Schedule.runs`` is): never all held."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[RunSpec]:
        return (RunSpec(f"r{i:06d}", i, "t", i * 0.001, False, PLAN) for i in range(self.n))


def _history(path: Path, n: int) -> None:
    w = HistoryWriter(path / "harness.jsonl", "harness", 0)
    for i in range(n):
        r, t = f"r{i:06d}", i * 0.001
        lines = [w.line("invoke", "submit", r, t=t), w.line("ok", "submit", r, t=t)]
        lines.append(w.line("info", "claim", r, t=t, value={"since": t}))
        for s in range(4):
            lines.append(w.line("invoke", "exec", r, s, 1, t=t))
            lines.append(w.line("ok", "exec", r, s, 1, t=t))
            lines.append(w.line("invoke", "commit", r, s, 1, t=t))
            lines.append(w.line("ok", "commit", r, s, 1, t=t))
        lines.append(w.line("ok", "complete", r, t=t + 0.5, value="completed"))
        w.write("".join(lines))
    w.close()


def _peak(tmp: Path, n: int) -> tuple[int, dict]:
    (tmp / "h").mkdir()
    _history(tmp / "h", n)
    runs, state = Runs(n), DictState(n)
    tracemalloc.start()
    try:
        hist = postrun.partition(tmp / "h", runs, under=tmp, size=SHARD)
        checks = postrun.check_all(hist, lambda: state, runs, 1)
        summary = postrun.tabulate(hist, runs, PLAN_RETRY, 0.0, 0.0, 0.0, n, None)
        hist.close()
        return tracemalloc.get_traced_memory()[1], {**checks, **summary}
    finally:
        tracemalloc.stop()


PLAN_RETRY = RetryPolicy()
N, SHARD = 100, 50  # smoke-sized: 2 vs 20 shards


def test_post_run_memory_does_not_grow_with_the_number_of_runs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small, s = _peak(tmp_path / "a", N)
    large, b = _peak(tmp_path / "b", 10 * N)
    # the checks judged every run: the figures follow the run count, the memory does not
    for x in (s, b):  # (no step result stored by this fake: the payload check is unknown)
        assert x["write_loss"]["valid"] is True and x["exactly_once"]["valid"] is True
    assert b["write_loss"]["acks"]["step-committed"] == 40 * N and b["runs"]["completed"] == 10 * N
    # read whole, 10x the runs held ~10x the memory; by shard the peak is the shard's
    assert large < 2.5 * small, (small, large)
