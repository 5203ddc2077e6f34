"""After the drive: the history partitioned by run, and every check run shard by shard.

Post-run memory must follow what is checked, not the whole history (a 1-hour run holds tens of
millions of events). The history is streamed once into shard files by run (``backends.history.
partition_history``); each shard holds a contiguous slice of the schedule (runs ``k*size ..``),
so the schedule is iterated once, in order, never copied. Every checker of ``bench.checkers``
runs unchanged on one shard's events and that shard's durable state (``StateView.for_runs``);
the per-shard results are merged here into the result ``checkers.check_all`` gives on the whole
history: the same verdicts, counts, lost acks and figures (lists of examples capped as there).
"""

from __future__ import annotations

import errno
import itertools
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import RetryPolicy, RunSpec, StateView
from backends.common.payload import PAYLOAD_VERSION
from backends.history import Partition, partition_history
from bench import checkers, metrics

MIN_SHARD_RUNS = 500  # below this a shard's fixed costs (a state query, a sort) dominate
MAX_SHARDS = 512  # open shard files while partitioning


@dataclass
class Shards:
    """Which shard a run id belongs to: seq // size for the schedule's ids ``r{seq:06d}``
    (``exceptions`` maps ids of another form), every other id to the last shard."""

    n_runs: int
    size: int
    exceptions: dict[str, int] = field(default_factory=dict)

    @property
    def n_shards(self) -> int:
        return -(-self.n_runs // self.size) + 1  # + 1: ids not in the schedule

    def of(self, run_id: str) -> int:
        seq = self.exceptions.get(run_id)
        if seq is None:
            m = _SEQ_ID.fullmatch(run_id)
            seq = int(m.group(1)) if m else None
            if seq is not None and (seq >= self.n_runs or run_id != f"r{seq:06d}"):
                seq = None  # e.g. r1 or r0000005: not the schedule's spelling of that seq
        return self.n_shards - 1 if seq is None else seq // self.size


_SEQ_ID = re.compile(r"r(\d+)")


def plan_shards(runs: Sequence[RunSpec], size: int | None = None) -> Shards:
    """Shards of ``size`` runs (default: at most ``MAX_SHARDS``, at least ``MIN_SHARD_RUNS``
    runs each). One pass over the schedule to find ids not spelled ``r{seq:06d}``."""
    n = len(runs)
    if size is None:
        size = max(MIN_SHARD_RUNS, -(-n // (MAX_SHARDS - 1)))
    exceptions = {r.run_id: i for i, r in enumerate(runs) if r.run_id != f"r{i:06d}"}
    return Shards(n, max(1, size), exceptions)


@dataclass
class History:
    """A run's history, partitioned (see the module docstring): iterate it for every event
    (shard by shard), ``shard(k)`` for one shard's."""

    partition: Partition
    shards: Shards

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.partition)

    @property
    def torn_lines(self) -> int:
        return self.partition.torn_lines

    def close(self) -> None:
        self.partition.close()


def partition(
    history_dir: Path, runs: Sequence[RunSpec], under: Path | None = None, size: int | None = None
) -> History:
    """Stream ``history_dir`` into shard files in a fresh directory under ``under`` (default:
    the system's temporary directory); ``close()`` removes them."""
    shards = plan_shards(runs, size)
    try:
        return History(_partition(history_dir, shards, under), shards)
    except OSError as e:
        if under is None or e.errno != errno.ENOSPC:
            raise
    # a full results disk (the run may have stopped for it): the system's temporary directory
    return History(_partition(history_dir, shards, None), shards)


def _partition(history_dir: Path, shards: Shards, under: Path | None) -> Partition:
    root = Path(tempfile.mkdtemp(prefix=".history-shards-", dir=under))
    try:
        return partition_history(history_dir, root, shards.n_shards, shards.of)
    except BaseException:
        Partition(root, 0).close()
        raise


def by_shard(history: History, runs: Iterable[RunSpec]) -> Iterator[tuple[list[RunSpec], Any]]:
    """(the shard's scheduled runs, its events) for every shard, in schedule order: shard k
    holds the runs at positions k*size .. (k+1)*size - 1 (``Shards.of`` maps each of their ids
    there), the last shard only ids outside the schedule."""
    it = iter(runs)
    last = history.shards.n_shards - 1
    for k in range(history.shards.n_shards):
        mine = list(itertools.islice(it, history.shards.size)) if k < last else []
        yield mine, history.partition.shard(k)


# --- checks -------------------------------------------------------------------------------------


def fault_time(timeline: dict[str, Any] | None) -> float | None:
    """As ``checkers.check_all`` reads it: no timeline, or a fault that never started = None."""
    t = None if timeline is None else timeline.get("start_t")
    return None if t is None or math.isnan(t) else t


def check_all(
    history: History,
    read_state: Callable[[], StateView],
    runs: Sequence[RunSpec],
    seed: int,
    timeline: dict[str, Any] | None = None,
    integrity: Callable[[], dict[str, Any]] | None = None,
    payload_version: int = PAYLOAD_VERSION,
) -> dict[str, Any]:
    """``checkers.check_all`` over a partitioned history: each shard checked against the state
    of its runs only, the results merged (same verdicts and figures as on the whole history)."""
    whole: list[StateView] = []

    def state_of(ids: set[str]) -> Callable[[], StateView]:
        def read() -> StateView:
            if not whole:  # one view (one connection) for every shard; raises like read_state
                whole.append(read_state())
            return whole[0].for_runs(ids)

        return read

    parts: list[dict[str, Any]] = []
    for mine, events in by_shard(history, runs):
        if parts and not mine and not events:  # nothing to judge (e.g. no id outside the
            continue  # schedule): no state read either
        ids = {r.run_id for r in mine}
        ids.update(e["run"] for e in events if isinstance(e.get("run"), str))
        parts.append(
            checkers.check_all(
                events, state_of(ids), mine, seed, timeline, payload_version=payload_version
            )
        )
    out = merge(parts, fault_time(timeline))
    if integrity is not None:
        out["integrity"] = checkers.safe(integrity)
    torn = history.torn_lines
    broken = (out.pop("history", None) or {}).get("test_only_broken_engine_events", 0)
    if torn or broken:
        out["history"] = {"valid": None, "torn_lines_skipped": torn}
        if broken:  # backends/durable/testonly.py: never in a real measurement
            out["history"]["test_only_broken_engine_events"] = broken
    out = _reorder(out)
    out["valid"] = checkers.compose(out)
    return out


# the order of ``checkers.check_all``'s keys
_ORDER = (
    "write_loss",
    "exactly_once",
    "step_payloads",
    "recovery",
    "duplicates",
    "integrity",
    "indeterminate",
    "history",
)


def _reorder(out: dict[str, Any]) -> dict[str, Any]:
    first = {k: out[k] for k in _ORDER if k in out}
    return first | {k: v for k, v in out.items() if k not in _ORDER}


def merge(parts: list[dict[str, Any]], fault_t: float | None) -> dict[str, Any]:
    """One ``checkers.check_all`` result (without ``valid``) from those of disjoint sets of
    runs. A check that could not decide in one shard (``error``) cannot decide overall."""
    out: dict[str, Any] = {}
    for name, fn in _MERGERS.items():
        got = [p[name] for p in parts if name in p]
        if not got:
            continue
        failed = [g for g in got if "error" in g]
        out[name] = (
            {"valid": "unknown", "error": failed[0]["error"]} if failed else fn(got, fault_t)
        )
    out["indeterminate"] = {
        "valid": None,
        "count": sum(p["indeterminate"]["count"] for p in parts),
        "note": parts[0]["indeterminate"]["note"] if parts else "",
    }
    broken = sum((p.get("history") or {}).get("test_only_broken_engine_events", 0) for p in parts)
    if broken:
        out["history"] = {"valid": None, "test_only_broken_engine_events": broken}
    return _reorder(out)


def _write_loss(got: list[dict[str, Any]], fault_t: float | None) -> dict[str, Any]:
    lost = sorted((x for g in got for x in g["lost"]), key=lambda x: x["ack_t"])
    acks = {k: sum(g["acks"][k] for g in got) for k in got[0]["acks"]}
    ages = [x["age_at_fault_s"] for x in lost if x["after_fault"] is False]
    by_kind: dict[str, int] = {}
    for x in lost:
        by_kind[x["kind"]] = by_kind.get(x["kind"], 0) + 1
    n_acks = sum(acks.values())
    rpo: float | None = None  # no fault, or every lost ack came after it began
    if fault_t is not None and not lost:
        rpo = 0.0
    elif ages:
        rpo = max(ages)
    out: dict[str, Any] = {
        "valid": (not lost) if n_acks else "unknown",
        "acks": acks,
        "lost_count": len(lost),
        "lost_after_fault_began": sum(1 for x in lost if x["after_fault"]),
        "lost_by_kind": by_kind,
        "rpo_s": rpo,
        "lost_window_s": [min(ages), max(ages)] if ages else None,
        "lost": lost,
        "redone_not_lost": sum(g["redone_not_lost"] for g in got),
        "redone_examples": [x for g in got for x in g["redone_examples"]][:20],
    }
    if not n_acks:
        out["reason"] = "no acknowledged write to check"
    return out


def _exactly_once(got: list[dict[str, Any]], fault_t: float | None) -> dict[str, Any]:
    accepted = sum(g["accepted_runs"] for g in got)
    conflicting = sorted(x for g in got for x in g["conflicting_completions"])
    stuck_count = sum(g["stuck_count"] for g in got)
    out: dict[str, Any] = {
        "valid": (not conflicting and not stuck_count) if accepted else "unknown",
        "accepted_runs": accepted,
        "conflicting_completions": conflicting[:50],
        "stuck_runs": sorted(x for g in got for x in g["stuck_runs"])[:50],
        "stuck_count": stuck_count,
    }
    if not accepted:
        out["reason"] = "no accepted run"
    return out


def _step_payloads(got: list[dict[str, Any]], fault_t: float | None) -> dict[str, Any]:
    checked = sum(g["checked"] for g in got)
    bad = sum(g["mismatch_count"] for g in got)
    out: dict[str, Any] = {
        "valid": not bad if checked else "unknown",
        "checked": checked,
        "mismatches": [x for g in got for x in g["mismatches"]][:50],
        "mismatch_count": bad,
    }
    if not checked:
        out["reason"] = "no stored step result to compare"
    return out


def _recovery(got: list[dict[str, Any]], fault_t: float | None) -> dict[str, Any]:
    hit = [g for g in got if g["interrupted_runs"]]
    firsts = [g["first_resumed_step_s"] for g in got if g["first_resumed_step_s"] is not None]
    dones = [g["all_interrupted_done_s"] for g in hit]
    return {
        "valid": None,
        "interrupted_runs": sum(g["interrupted_runs"] for g in got),
        "interrupted_finished": sum(g["interrupted_finished"] for g in got),
        "store_accepting_s": got[0]["store_accepting_s"],
        "first_resumed_step_s": min(firsts) if firsts else None,
        # every interrupted run finished: in every shard that had one
        "all_interrupted_done_s": max(dones) if hit and None not in dones else None,
    }


def _duplicates(got: list[dict[str, Any]], fault_t: float | None) -> dict[str, Any]:
    executed = sum(g["executed_steps"] for g in got)
    dups = sum(g["duplicate_steps"] for g in got)
    valid: bool | str | None = None
    if fault_t is None:
        valid = not dups if executed else "unknown"
    examples: dict[str, int] = {}
    for g in got:
        examples.update(itertools.islice(g["examples"].items(), 20 - len(examples)))
    return {
        "valid": valid,
        "criterion": got[0]["criterion"],
        "executed_steps": executed,
        "duplicate_steps": dups,
        "extra_executions": sum(g["extra_executions"] for g in got),
        "examples": examples,
    }


_MERGERS: dict[str, Callable[[list[dict[str, Any]], float | None], dict[str, Any]]] = {
    "write_loss": _write_loss,
    "exactly_once": _exactly_once,
    "step_payloads": _step_payloads,
    "recovery": _recovery,
    "duplicates": _duplicates,
}


# --- tables -------------------------------------------------------------------------------------


def tabulate(
    history: History,
    runs: Sequence[RunSpec],
    retry: RetryPolicy,
    time_scale: float,
    start_t: float,
    warmup_end_t: float,
    drive_end_t: float,
    out_dir: Path | None,
) -> dict[str, Any]:
    """``metrics.summarize`` of the run, shard by shard; with ``out_dir``, runs.csv, steps.csv
    (appended a shard at a time, runs in schedule order) and timeseries.csv written there."""
    summary = metrics.Summary(warmup_end_t, drive_end_t)
    series = metrics.Series()
    first = True
    for mine, events in by_shard(history, runs):
        rt = metrics.run_table(events, mine, retry, time_scale, start_t)
        st = metrics.step_table(events)
        del events
        if len(rt) or len(st) or first:  # the last shard holds only ids outside the schedule
            summary.add(rt, st)
            series.add(rt, st)
        if out_dir is not None and (len(rt) or len(st) or first):
            mode = "w" if first else "a"
            rt.to_csv(out_dir / "runs.csv", index=False, mode=mode, header=first)
            st.to_csv(out_dir / "steps.csv", index=False, mode=mode, header=first)
        first = False
    if out_dir is not None:
        series.frame().to_csv(out_dir / "timeseries.csv", index=False)
    return summary.result()
