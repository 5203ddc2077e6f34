"""scripts/step_ceiling.py is a ceiling for the engine only if it makes the engine's writes: every
run inserted, claimed and completed, every step's output stored, on a real SqliteStore. (The
timed figures it prints are a benchmark, not tested here.)"""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
from pathlib import Path

from backends.base import Plan, StepSpec
from backends.common.payload import payload
from backends.sqlite.store import SqliteStore, create_schema

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("step_ceiling", ROOT / "scripts/step_ceiling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_ceiling_makes_the_engines_writes(tmp_path: Path) -> None:
    mod = _script()
    rows = mod.run_rows(str(ROOT / "workloads/cpu-probe.toml"), 7, 300)
    # generated plans end with one step, which completes the run in its commit; a plan whose
    # last group fans out completes in a transaction of its own, after its steps
    fan_out = Plan(
        (
            (StepSpec(0, "llm", "plan", 0.0, 300),),
            (StepSpec(1, "tool", "tool:a", 0.0, 40), StepSpec(2, "tool", "tool:b", 0.0, 50)),
        )
    )
    rows.append(
        {
            "run_id": "r900000",
            "seq": 900000,
            "tenant": "t0",
            "plan": fan_out.to_json(),
            "n_steps": 3,
        }
    )
    plans = {r["run_id"]: Plan.from_json(r["plan"]) for r in rows}
    assert len(plans) == 301

    db = tmp_path / "ceiling.db"
    create_schema(db, "NORMAL")
    store = SqliteStore(db, "NORMAL", autocheckpoint=True)
    try:
        out = asyncio.run(
            mod.drive(store, rows, 120.0, batch=64, backlog=50, concurrency=40, seed=7)
        )
    finally:
        store.conn.close()

    n_steps = sum(len(p.steps) for p in plans.values())
    assert out["runs_inserted"] == 301 and out["runs_completed"] == 301
    assert out["steps"] == n_steps
    conn = sqlite3.connect(db)
    try:
        runs = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
        assert runs == dict.fromkeys(plans, "completed")
        stored = {
            (r, s): bytes(o)
            for r, s, o in conn.execute("SELECT run_id, step_id, output FROM steps")
        }
    finally:
        conn.close()
    assert len(stored) == n_steps
    for run_id, plan in plans.items():
        for step in plan.steps:
            want = payload(7, run_id, step.step_id, step.payload_bytes)
            assert stored[(run_id, step.step_id)] == want, (run_id, step.step_id)
