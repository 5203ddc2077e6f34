"""The harness side of the ``dbos`` backend: submit runs with a ``DBOSClient``, watch for
completed runs, and read DBOS's own system tables as the state view.

* **run accepted**: ``DBOSClient.enqueue`` returned: DBOS has committed the workflow's status
  row (status ENQUEUED on the ``durabench`` queue, inputs included) in the system database. An
  error raised by the enqueue is indeterminate (the insert may have committed).
* **run completed**: the ``CompletionWatcher`` (a thread in the harness) polls
  ``workflow_status`` every ``WATCH_POLL_S`` and records ``complete ok`` (value ``completed`` /
  ``failed``) the first time it reads a run in SUCCESS / ERROR: the status row it read is
  committed. The ack is recorded up to one poll (plus the read) after the commit, never before.

The state view decodes what DBOS stored with DBOS's own deserializer: a step's output row
(``operation_outputs``, name ``step-<id>``, error NULL) gives back the exact bytes the step
returned; the workflow's status maps ENQUEUED / DELAYED -> queued, PENDING -> running, SUCCESS
-> completed, ERROR / CANCELLED / MAX_RECOVERY_ATTEMPTS_EXCEEDED -> failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from backends.base import Client, ExecutionSettings, RunSpec, RunState, RunStatus, StateView
from backends.dbos.app import APP_VERSION, QUEUE, WORKFLOW_NAME, step_id_of, workflow_args
from backends.errors import BackendError, Indeterminate
from backends.history import OK, HistoryWriter

SUBMIT_THREADS = 8
WATCH_POLL_S = 0.02
RESCAN_MS = 10_000  # the watcher re-reads completions this much older than the newest seen
STATUS: dict[str, RunStatus] = {
    "ENQUEUED": "queued",
    "DELAYED": "queued",
    "PENDING": "running",
    "SUCCESS": "completed",
    "ERROR": "failed",
    "CANCELLED": "failed",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "failed",
}
DONE = {"SUCCESS": "completed", "ERROR": "failed"}


def engine(url: str) -> sa.Engine:
    """A plain SQLAlchemy engine on the system database (reads only)."""
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, poolclass=sa.pool.NullPool)

        @sa.event.listens_for(eng, "connect")
        def _busy(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA busy_timeout=30000")

        return eng
    return sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"),
        pool_size=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def _table(schema: str | None, name: str) -> str:
    return f'"{schema}".{name}' if schema else name


class DbosStateView(StateView):
    def __init__(self, url: str, schema: str | None) -> None:
        from dbos._serialization import DefaultSerializer

        self.url, self.schema = url, schema
        self.engine = engine(url)
        self.serializer = DefaultSerializer()

    def _rows(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(sa.text(query), params))

    def runs(self) -> list[RunState]:
        ws, oo = _table(self.schema, "workflow_status"), _table(self.schema, "operation_outputs")
        wo = _table(self.schema, "workflow_output")
        rows = self._rows(
            f"SELECT s.workflow_uuid, s.status, coalesce(s.error, o.error), s.serialization,"
            f" (SELECT count(*) FROM {oo} p WHERE p.workflow_uuid = s.workflow_uuid"
            f"  AND p.error IS NULL AND p.output IS NOT NULL AND p.function_name LIKE 'step-%')"
            f" FROM {ws} s LEFT JOIN {wo} o ON o.workflow_uuid = s.workflow_uuid"
            f" WHERE s.name = :name",
            name=WORKFLOW_NAME,
        )
        return [
            RunState(rid, STATUS.get(status, "failed"), int(n), self._error(err, ser))
            for rid, status, err, ser, n in rows
        ]

    def _error(self, err: str | None, serialization: str | None) -> str | None:
        if err is None:
            return None
        from dbos._serialization import deserialize_exception

        try:
            return str(deserialize_exception(err, serialization, self.serializer))
        except Exception as e:  # noqa: BLE001 - keep the raw text rather than nothing
            return f"{err} (not decodable: {e!r})"

    def _outputs(self, where: str, **params: Any) -> list[Any]:
        oo = _table(self.schema, "operation_outputs")
        return self._rows(
            f"SELECT workflow_uuid, function_name, output, serialization FROM {oo}"
            f" WHERE error IS NULL AND output IS NOT NULL {where}",
            **params,
        )

    def step_results(self, run_id: str) -> dict[int, bytes]:
        from dbos._serialization import deserialize_value

        out: dict[int, bytes] = {}
        for _, name, output, ser in self._outputs("AND workflow_uuid = :r", r=run_id):
            sid = step_id_of(name)
            if sid is not None:
                value = deserialize_value(output, ser, self.serializer)
                if isinstance(value, bytes):
                    out[sid] = value
        return out

    def all_step_ids(self) -> set[tuple[str, int]]:
        oo = _table(self.schema, "operation_outputs")
        rows = self._rows(
            f"SELECT workflow_uuid, function_name FROM {oo}"
            " WHERE error IS NULL AND output IS NOT NULL"
        )
        return {(r, sid) for r, name in rows if (sid := step_id_of(name)) is not None}

    def close(self) -> None:
        self.engine.dispose()


class CompletionWatcher:
    """Records the run-completed ack: a thread polling ``workflow_status`` (see the module
    docstring). Read errors (store down, paused) are retried at the next poll."""

    def __init__(self, url: str, schema: str | None, history: HistoryWriter) -> None:
        self.url, self.schema, self.h = url, schema, history
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dbos-watcher", daemon=True)
        self.errors = 0
        self.paused = False
        self._polling = threading.Lock()  # held for each read: pause() waits for it
        self._thread.start()

    def pause(self) -> None:
        """Stop reading and return once no read is in progress (its connection is closed)."""
        self.paused = True
        with self._polling:
            pass

    def retarget(self, url: str) -> None:
        self.url = url

    def _loop(self) -> None:
        eng, url = None, None
        ws = _table(self.schema, "workflow_status")
        query = sa.text(
            f"SELECT workflow_uuid, status, updated_at FROM {ws} WHERE name = :name"
            " AND status IN ('SUCCESS', 'ERROR') AND updated_at >= :since"
        )
        since = 0
        while not self._stop.wait(WATCH_POLL_S):
            with self._polling:
                if self.paused:
                    if eng is not None:
                        eng.dispose()
                        eng = None
                    continue
                try:
                    if eng is None or url != self.url:
                        if eng is not None:
                            eng.dispose()
                        url, eng = self.url, engine(self.url)
                    with eng.connect() as c:
                        rows = list(c.execute(query, {"name": WORKFLOW_NAME, "since": since}))
                except Exception:  # noqa: BLE001 - the store may be down: poll again
                    self.errors += 1
                    continue
            for rid, status, updated in rows:
                if rid not in self.seen:
                    self.seen.add(rid)
                    self.h.record(OK, "complete", rid, value=DONE[status])
                # updated_at is epoch ms taken by a worker before its commit: re-read a margin
                # so a row committed late with an earlier timestamp is not skipped
                since = max(since, int(updated) - RESCAN_MS)
        if eng is not None:
            eng.dispose()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class DbosClient(Client):
    def __init__(
        self,
        url: str,
        schema: str | None,
        settings: ExecutionSettings,
        history_dir: Path,
        epoch_ns: int,
        sqlite_pragmas: dict[str, Any] | None = None,
    ) -> None:
        self.url, self.schema, self.settings = url, schema, settings
        self.pragmas = sqlite_pragmas
        self.dbos = self._dbos_client(url)
        self.h = HistoryWriter(history_dir / "dbos-watcher.jsonl", "dbos-watcher", epoch_ns)
        self.watcher = CompletionWatcher(url, schema, self.h)
        self.pool = ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="dbos-submit")
        self.views: list[DbosStateView] = []
        self.up = True
        self._in_flight = 0  # enqueues running now (power_down waits for them)
        self._idle = threading.Condition()

    def _dbos_client(self, url: str) -> Any:
        """A ``DBOSClient`` on ``url``; on SQLite its connections get the workers' pragmas
        (``synchronous``, no autocheckpoint) before the first one opens."""
        from dbos import DBOSClient

        from backends.dbos.worker import sqlite_pragmas

        # one pooled connection per submit thread (DBOS's default pool of 5 kept 3 of the 8
        # threads waiting for a connection)
        kw: dict[str, Any] = {
            "system_database_url": url,
            "lazy": True,
            "system_database_pool_size": SUBMIT_THREADS,
        }
        if self.schema:
            kw["dbos_system_schema"] = self.schema
        client = DBOSClient(**kw)
        if url.startswith("sqlite") and self.pragmas is not None:
            sqlite_pragmas(**self.pragmas, target=client._sys_db.engine.pool)
        client.check_connection()
        return client

    def _enqueue(self, run: RunSpec) -> None:
        with self._idle:
            if not self.up:
                raise BackendError("dbos: the node holding the system database is down")
            self._in_flight += 1
        try:
            self._enqueue_up(run)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _enqueue_up(self, run: RunSpec) -> None:
        s = self.settings
        args = workflow_args(run.run_id, run.plan, s.seed, s.time_scale, s.retry)
        options: Any = {
            "queue_name": QUEUE,
            "workflow_name": WORKFLOW_NAME,
            "workflow_id": run.run_id,
            "app_version": APP_VERSION,
        }
        try:
            self.dbos.enqueue(options, *args)
        except Exception as e:  # noqa: BLE001 - the insert may have committed
            raise Indeterminate(f"dbos: enqueue of {run.run_id}: {e}") from None

    async def submit(self, run: RunSpec) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self._enqueue, run)

    def state(self) -> StateView:
        self.views.append(DbosStateView(self.url, self.schema))
        return self.views[-1]

    def node_down(self) -> None:
        """The store's node is lost: submits fail at once, the watcher stops reading (on SQLite
        a read would create an empty file where the restore must go)."""
        self.up = False
        self.watcher.paused = True

    def power_down(self, timeout_s: float = 30.0) -> None:
        """The SQLite node loses power: submits fail at once, and the harness lets go of the
        file (no read, no enqueue in progress, the DBOSClient's pool closed), as a client on
        another machine whose connections break. Called while the workers still hold the file,
        so these closes are not the last and checkpoint nothing."""
        with self._idle:
            self.up = False
        self.watcher.pause()
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout_s):
                raise BackendError(
                    f"dbos: {self._in_flight} enqueue(s) still running after "
                    f"{timeout_s:g} s: cannot cut the power under them"
                )
        self.dbos.destroy()

    def power_up(self, url: str) -> None:
        """Power is back and the workers run again: a fresh DBOSClient, the watcher reads."""
        self.dbos = self._dbos_client(url)
        self.up = True
        self.watcher.paused = False

    def node_up(self, url: str) -> None:
        """The node is rebuilt (restored file, promoted standby or new server)."""
        self.retarget(url)
        self.up = True
        self.watcher.paused = False

    def retarget(self, url: str) -> None:
        """A new DBOSClient (fresh connections) on ``url``: the new primary, or the restored
        file that replaced the deleted one."""
        old = self.dbos
        self.url, self.dbos = url, self._dbos_client(url)
        self.watcher.retarget(url)
        with contextlib.suppress(Exception):
            old.destroy()

    async def close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        # after a normal drive every submit has resolved; after an interrupt thousands may
        # still wait for a submit thread: they never started (no enqueue, nothing committed)
        # and are dropped rather than drained at DBOS's enqueue rate
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.watcher.close()
        with contextlib.suppress(Exception):
            self.dbos.destroy()
        for v in self.views:
            with contextlib.suppress(Exception):
                v.close()
        self.h.close()
