"""The ``dbos`` backend beyond the conformance suite: its state view reads DBOS's real system
tables (a step output row deleted from them is reported lost, exactly that one), and killed
DBOS workers recover their workflows under their executor ids (``bench crash``), with the
exposure to an async standby measured meanwhile."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from backends.dbos.backend import DbosDeployment
from backends.errors import ConfigError
from bench import checkers
from bench.history import HistoryWriter, read_history
from tests.helpers import context, events, smoke_runs, submit_all, wait_until


def test_a_step_output_deleted_from_dbos_tables_is_reported_lost(tmp_path: Path) -> None:
    ctx = context(tmp_path, workers=1, time_scale=0.0)
    dep = DbosDeployment({"replica": "none"}, ctx)
    h = HistoryWriter(ctx.history_dir / "harness.jsonl", "harness", ctx.epoch_ns)
    runs = smoke_runs()[:5]
    try:
        dep.start()
        client = dep.client()
        submit_all(client, runs, h)
        wait_until(lambda: len(events(ctx, "complete", "ok")) == len(runs), 60, "runs done")
        seed = ctx.settings.seed
        evs = read_history(ctx.history_dir)
        state = client.state()
        assert checkers.check_all(evs, lambda: state, runs, seed)["valid"] is True
        victim = runs[2].run_id
        db = dep.store.db_path  # type: ignore[union-attr]
        with sqlite3.connect(db) as c:
            c.execute(
                "DELETE FROM operation_outputs WHERE workflow_uuid = ? AND function_name = ?",
                (victim, "step-1"),
            )
        out = checkers.check_all(evs, lambda: client.state(), runs, seed)
        lost = [(x["kind"], x["id"]) for x in out["write_loss"]["lost"]]
        assert lost == [("step-committed", f"{victim}/1")]
        assert out["valid"] is False
    finally:
        dep.stop()
        h.close()


def test_kill_worker_on_postgres_recovers_each_workers_own_workflows() -> None:
    # not tmp_path: the embedded server runs as an unprivileged user who must traverse the path
    tmp_path = Path(tempfile.mkdtemp(prefix="durabench-dbos-"))
    tmp_path.chmod(0o711)
    try:
        _kill_worker_trial(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _kill_worker_trial(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "crash", "--backend", "dbos"]
        + ["--dbos-database", "postgres", "--workload", "smoke", "--fault", "kill-worker"]
        + ["--standby", "async"]  # also: exposure is measured against the async standby
        + ["--trials", "1", "--restart-delay", "0.5", "--results-dir", str(tmp_path)]
        + ["--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (group,) = tmp_path.glob("*-crash.json")
    (trial,) = json.loads(group.read_text())["rows"]["kill-worker"]
    assert trial["lost_acks"] == 0 and trial["stuck_runs"] == 0
    run_dir = Path(trial["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["checks"]["exactly_once"]["valid"] is True
    # DBOS's commits (its own connections) move the primary's LSN; the standby's replay covers
    # them: every ack gets an exposure, none waits until the end of sampling
    e = summary["exposure"]
    assert e["unit"].startswith("WAL LSN") and e["acks"] > 0
    assert e["acks_covered"] == e["acks"] and e["exposure_s"]["max"] is not None
    evs = read_history(run_dir / "history")
    fault_t = json.loads((run_dir / "manifest.json").read_text())["fault"]["timeline"]["start_t"]
    claims = [e for e in evs if e["op"] == "claim"]
    before = {e["run"]: e["proc"] for e in claims if e["t"] < fault_t}
    done_before = {e["run"] for e in evs if e["op"] == "complete" and e["t"] < fault_t}
    interrupted = set(before) - done_before
    assert interrupted, "the kill came after every claimed run had finished"
    # each restarted worker finds the PENDING workflows of its executor id and re-enqueues
    # them (DBOS 3.x recovery goes through the queue): every interrupted run runs again, on
    # whichever worker dequeues it first, and no finished one does. (A run whose completion
    # ack came after the kill may have finished before it: the watcher polls.)
    again = {e["run"] for e in claims if e["t"] > fault_t and e["run"] in before}
    assert again and again <= interrupted
    committed = {(e["run"], e["step"]) for e in evs if e["op"] == "commit" and e["type"] == "ok"}
    replayed = {(e["run"], e["step"]) for e in evs if e["op"] == "replay"}
    for rid in again:  # steps committed before the kill come back from operation_outputs
        before_kill = {k for k in committed if k[0] == rid and _t(evs, k) < fault_t}
        assert before_kill <= replayed, rid


def _t(evs: list[dict], key: tuple[str, int]) -> float:
    return next(
        e["t"]
        for e in evs
        if e["op"] == "commit" and e["type"] == "ok" and (e["run"], e["step"]) == key
    )


def test_an_option_of_the_other_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dbos: --standby do.es. not apply to --dbos-database"):
        DbosDeployment({"dbos_database": "sqlite", "standby": "async"}, context(tmp_path))
    with pytest.raises(ConfigError, match="--synchronous do.es. not apply"):
        DbosDeployment({"dbos_database": "postgres", "synchronous": "OFF"}, context(tmp_path))
