"""DBOS worker process: ``python -m backends.dbos.worker CONFIG.json``.

Started by ``backends.durable.workers.WorkerPool`` (``entry="backends.dbos.worker"``), so kill /
restart / crash points work as for the other backends. ``store_args``: ``url`` (the DBOS system
database URL), ``schema`` (Postgres only), ``synchronous`` / ``autocheckpoint`` (SQLite only).

Each worker is one DBOS application process with its own executor id (``executor_id`` = the
worker's name, stable across restarts): at launch DBOS recovers the PENDING workflows of that
executor id, the way a restarted DBOS process recovers its own work in production. In DBOS 3.x
recovery re-enqueues them (``reenqueue_for_recovery``: back to ENQUEUED, so exactly one runner
takes each through the queue's atomic dequeue): any worker may then run a recovered workflow,
not necessarily the one that restarted. It dequeues
from the ``durabench`` queue, at most ``--concurrency`` workflows at a time
(``worker_concurrency``). The ready marker is written after ``DBOS.launch()`` returned and the
queue is registered. SIGTERM / SIGINT -> ``DBOS.destroy()`` (workflows in flight stay PENDING
under this executor id and are recovered by its next start), then ``os._exit``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from backends.base import ExecutionSettings, RetryPolicy
from backends.durable.crashpoints import CrashPoints
from backends.history import INFO, HistoryWriter

QUEUE_POLL_S = 0.05  # DBOS's default is 1 s; durabench's own workers poll every 5 ms


def _settings(d: dict[str, Any]) -> ExecutionSettings:
    d = dict(d)
    d["retry"] = RetryPolicy(**d["retry"])
    return ExecutionSettings(**d)


def sqlite_pragmas(synchronous: str, autocheckpoint: bool, target: Any = None) -> None:
    """Every SQLite connection of ``target`` (an engine; default: every engine this process
    opens, i.e. DBOS's own) gets the ``sqlite`` backend's settings: WAL, ``synchronous``, and no
    WAL checkpoints when Litestream runs (it must be the only checkpointer). DBOS itself sets
    only busy_timeout and foreign_keys. The harness's ``DBOSClient`` engine gets the same, so
    the run-accepted ack commits under the same ``synchronous`` as the step acks."""
    import sqlalchemy as sa

    @sa.event.listens_for(target if target is not None else sa.engine.Engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            if not autocheckpoint:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()


def dbos_config(worker: str, args: dict[str, Any]) -> dict[str, Any]:
    from backends.dbos.app import APP_NAME, APP_VERSION

    cfg: dict[str, Any] = {
        "name": APP_NAME,
        "system_database_url": args["url"],
        "executor_id": worker,
        "application_version": APP_VERSION,
        "log_level": "WARNING",
    }
    if args.get("schema"):
        cfg["dbos_system_schema"] = args["schema"]
    return cfg


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    history = HistoryWriter(Path(cfg["history_path"]), cfg["worker"], cfg["epoch_ns"])
    code = 0
    try:
        _serve(cfg, history)
    except BaseException:  # noqa: BLE001 - reported, then a failed exit code
        traceback.print_exc()
        code = 1
    history.record(INFO, "worker-stop", value=None if code == 0 else "error")
    history.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # DBOS's daemon threads need no teardown; the database has everything


def _serve(cfg: dict[str, Any], history: HistoryWriter) -> None:
    args = cfg["store_args"]
    settings = _settings(cfg["settings"])
    if args["url"].startswith("sqlite"):
        sqlite_pragmas(args["synchronous"], bool(args.get("autocheckpoint")))
    from dbos import DBOS

    from backends.dbos import app

    app.HOOKS.history = history
    app.HOOKS.crash = CrashPoints()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    DBOS(config=dbos_config(cfg["worker"], args))  # type: ignore[arg-type]
    DBOS.launch()
    DBOS.register_queue(
        app.QUEUE,
        worker_concurrency=settings.concurrency,
        polling_interval_sec=QUEUE_POLL_S,
        on_conflict="always_update",
    )
    history.record(INFO, "worker-start", value={"executor_id": DBOS.executor_id})
    Path(cfg["ready_path"]).write_text("ready\n")
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=0)


if __name__ == "__main__":
    main()
