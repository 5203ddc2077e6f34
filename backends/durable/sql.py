"""SQL shared by the SQL stores: the schema and the statements, written once with ``:name``
parameters. Dialect differences stay behind the few hooks in ``Dialect`` (DBOS's habit): the
binary type, how to claim without two workers taking the same run, and the parameter style.

Tables
  runs   one row per accepted run: its plan, status (queued | running | completed | failed),
         owner and lease, how many steps are committed, and the final error.
  steps  the step journal: one row per committed step result. Its primary key (run, step)
         makes "a committed step is never committed twice" a database invariant.
The queue is ``runs`` itself: runnable = queued, or running with an expired lease.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    blob: str  # binary column type
    text_pk: str  # text primary key column type
    skip_locked: str  # appended to the claim's row-locking subquery
    param_style: str  # "named" (:x) or "pyformat" (%(x)s)
    id_list: str  # a subquery over the list of run ids passed as :ids

    def sql(self, statement: str) -> str:
        if self.param_style == "pyformat":
            return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", statement)
        return statement


SQLITE = Dialect(
    "sqlite",
    blob="BLOB",
    text_pk="TEXT",
    skip_locked="",
    param_style="named",
    id_list="(SELECT value FROM json_each(:ids))",  # ids as a JSON array
)
POSTGRES = Dialect(
    "postgres",
    blob="BYTEA",
    text_pk="TEXT",
    skip_locked="FOR UPDATE SKIP LOCKED",
    param_style="pyformat",
    id_list="(SELECT unnest(:ids))",  # ids as a text[]
)


def schema(d: Dialect) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS runs (
            run_id {d.text_pk} PRIMARY KEY,
            seq INTEGER NOT NULL,
            tenant TEXT NOT NULL,
            plan TEXT NOT NULL,
            n_steps INTEGER NOT NULL,
            status TEXT NOT NULL,
            owner TEXT,
            lease_until DOUBLE PRECISION,
            steps_done INTEGER NOT NULL DEFAULT 0,
            claims INTEGER NOT NULL DEFAULT 0,
            submitted_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            error TEXT)""",
        # only unfinished runs are indexed: the queue scan stays small as completed runs pile up
        """CREATE INDEX IF NOT EXISTS runs_pending ON runs (seq)
            WHERE status IN ('queued', 'running')""",
        f"""CREATE TABLE IF NOT EXISTS steps (
            run_id {d.text_pk} NOT NULL,
            step_id INTEGER NOT NULL,
            output {d.blob} NOT NULL,
            attempts INTEGER NOT NULL,
            worker TEXT NOT NULL,
            committed_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, step_id))""",
    ]


INSERT_RUN = """INSERT INTO runs (run_id, seq, tenant, plan, n_steps, status, submitted_at)
    VALUES (:run_id, :seq, :tenant, :plan, :n_steps, 'queued', :now)
    ON CONFLICT (run_id) DO NOTHING"""

PENDING_EXISTS = """SELECT 1 FROM runs WHERE status IN ('queued', 'running')
    AND (status = 'queued' OR lease_until < :now OR owner = :recover_owner) LIMIT 1"""


def claim(d: Dialect) -> str:
    return f"""UPDATE runs SET status = 'running', owner = :worker, lease_until = :lease,
        claims = claims + 1
        WHERE run_id IN (
            SELECT run_id FROM runs WHERE status IN ('queued', 'running')
            AND (status = 'queued' OR lease_until < :now OR owner = :recover_owner)
            ORDER BY seq LIMIT :limit {d.skip_locked})
        RETURNING run_id, plan, steps_done, claims"""


JOURNAL = "SELECT step_id, output FROM steps WHERE run_id = :run_id"

# Fenced: only the owner of a running run may checkpoint it or finish it.
ADVANCE = """UPDATE runs SET steps_done = steps_done + 1
    WHERE run_id = :run_id AND owner = :worker AND status = 'running'"""
ADVANCE_FINAL = """UPDATE runs SET steps_done = steps_done + 1,
    status = 'completed', finished_at = :now
    WHERE run_id = :run_id AND owner = :worker AND status = 'running'"""
UNDO_ADVANCE = "UPDATE runs SET steps_done = steps_done - 1 WHERE run_id = :run_id"
INSERT_STEP = """INSERT INTO steps (run_id, step_id, output, attempts, worker, committed_at)
    VALUES (:run_id, :step_id, :output, :attempts, :worker, :now)
    ON CONFLICT (run_id, step_id) DO NOTHING"""
STEP_OUTPUT = "SELECT output FROM steps WHERE run_id = :run_id AND step_id = :step_id"
FINISH = """UPDATE runs SET status = :status, error = :error, finished_at = :now
    WHERE run_id = :run_id AND owner = :worker AND status = 'running'"""
RELEASE = """UPDATE runs SET status = 'queued', owner = NULL, lease_until = NULL
    WHERE run_id = :run_id AND owner = :worker AND status = 'running'"""

# Read-only state view.
STATE_RUNS = "SELECT run_id, status, steps_done, error FROM runs ORDER BY seq"
STATE_STEPS = "SELECT run_id, step_id FROM steps"
STATE_RESULTS = "SELECT step_id, output FROM steps WHERE run_id = :run_id"
STATE_ALL_RESULTS = "SELECT run_id, step_id, output FROM steps ORDER BY run_id"


def group_results(rows: Iterable[tuple[str, int, bytes]]) -> Iterator[tuple[str, dict[int, bytes]]]:
    """``(run_id, step_id, output)`` rows ordered by run -> one ``(run_id, {step: output})`` per
    run (``StateView.all_step_results``), holding one run at a time."""
    run: str | None = None
    results: dict[int, bytes] = {}
    for run_id, step_id, output in rows:
        if run_id != run:
            if run is not None:
                yield run, results
            run, results = run_id, {}
        results[step_id] = bytes(output)
    if run is not None:
        yield run, results


def renew(d: Dialect) -> str:
    """Extend the leases of the runs in ``:ids``."""
    return f"""UPDATE runs SET lease_until = :lease
        WHERE owner = :worker AND status = 'running' AND run_id IN {d.id_list}"""
