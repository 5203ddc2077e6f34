# size: one Deployment class over two reused deployments (sqlite or postgres parts), its
# capabilities, promises and registration; not split in this change.
"""``dbos``: DBOS Transact (PyPI ``dbos``, the real library) as a peer backend. Its system
database (workflow status, step outputs, queues) is either SQLite or Postgres
(``--dbos-database``), deployed by the same parts as durabench's own ``sqlite`` / ``postgres``
backends, which are reused here, options included:

* ``sqlite`` (default): the ``sqlite`` backend's deployment without its executor: a local
  SeaweedFS object store (or ``--replica file|none``, ``--s3-endpoint``), the database file
  ``<workdir>/sqlite/durabench.db`` in WAL mode (created by that deployment, so the file also
  holds its empty, unused executor tables), and the Litestream sidecar replicating it. DBOS's
  tables live in that file; every DBOS connection gets ``--synchronous`` and, while Litestream
  runs, no WAL autocheckpoint (``backends.dbos.worker.sqlite_pragmas``).
* ``postgres``: the ``postgres`` backend's deployment without its executor: the embedded
  PostgreSQL 18 (or ``--postgres-dsn``), ``--synchronous-commit``, ``--standby``. DBOS's tables
  live in schema ``<--postgres-schema>_dbos`` (dropped and recreated by the harness at start,
  under that deployment's advisory lock); sessions get ``synchronous_commit`` as a connection
  option.

Then ``--workers`` DBOS worker processes (``backends.dbos.worker``), each a DBOS application
with executor id = its name, dequeuing from the ``durabench`` queue with
``worker_concurrency = --concurrency``. worker-0 starts first (it runs DBOS's migrations), the
others after it. The harness submits through a ``DBOSClient`` (``backends.dbos.client``).

Acks (the exact moments; details in ``backends.dbos.app`` and ``backends.dbos.client``):

* **run accepted**: ``DBOSClient.enqueue`` returned: the workflow status row (ENQUEUED, with its
  inputs) is committed in the system database.
* **step committed**: in the worker, right after ``DBOS.run_step_async`` returned the output of
  a step it executed: DBOS wrote the ``operation_outputs`` row in its own transaction before
  returning.
* **run completed**: the harness's watcher read the workflow's status SUCCESS / ERROR in
  ``workflow_status`` (a committed row), up to one poll (20 ms) after the commit.

On SQLite an ack means "committed to the local file with ``--synchronous``" (replicated by
Litestream up to one sync interval later); on Postgres "COMMIT returned under
``--synchronous-commit``".
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from backends.base import (
    BackendInfo,
    Client,
    Deployment,
    MovingParts,
    Option,
    ReplicationPosition,
    RunContext,
    StateView,
    register,
)
from backends.dbos.app import APP_VERSION, QUEUE, WORKFLOW_NAME, step_options
from backends.dbos.client import WATCH_POLL_S, DbosClient, DbosStateView
from backends.dbos.worker import QUEUE_POLL_S
from backends.durable.workers import PooledWorkers, WorkerPool
from backends.errors import BackendError, ConfigError
from backends.postgres import backend as pg
from backends.postgres.faults import amcheck_schema
from backends.promises import Promise
from backends.sqlite import backend as sq
from backends.sqlite.store import integrity_check as sqlite_integrity

DATABASES = ("sqlite", "postgres")

OPTIONS = (
    Option(
        "--dbos-database",
        "dbos_database",
        "DBOS system database: sqlite (the sqlite backend's file, Litestream and object store) "
        "or postgres (the postgres backend's server and standby)",
        default="sqlite",
        choices=DATABASES,
    ),
    *sq.OPTIONS,
    *pg.OPTIONS,
)


def postgres_url(dsn: str, synchronous_commit: str) -> str:
    """A libpq DSN as the SQLAlchemy URL DBOS takes, with synchronous_commit for every
    session DBOS opens."""
    from urllib.parse import quote

    d = conninfo_to_dict(dsn)
    auth = quote(str(d.get("user", "")))
    if d.get("password"):
        auth += ":" + quote(str(d["password"]))
    host = f"{d.get('host', 'localhost')}:{d.get('port', 5432)}"
    opts = quote(f"-c synchronous_commit={synchronous_commit}")
    return f"postgresql://{auth}@{host}/{d.get('dbname', 'postgres')}?options={opts}"


class DbosDeployment(PooledWorkers, Deployment):
    backend = "dbos"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.database = str(options.get("dbos_database") or "sqlite").lower()
        if self.database not in DATABASES:
            raise ConfigError(
                f"dbos: --dbos-database must be one of {', '.join(DATABASES)} "
                f"(got {self.database!r})"
            )
        # an option of the other database's parts, set away from its default, would be ignored
        other = pg.OPTIONS if self.database == "sqlite" else sq.OPTIONS
        stray = [o.flag for o in other if options.get(o.dest) not in (None, o.default)]
        if stray:
            raise ConfigError(
                f"dbos: {', '.join(stray)} do(es) not apply to --dbos-database {self.database}"
            )
        # the reused deployment runs the store only: no executor workers of its own
        store_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, workers=0))
        self.store: sq.SqliteDeployment | pg.PostgresDeployment
        self.schema: str | None = None
        if self.database == "sqlite":
            self.store = sq.SqliteDeployment(options, store_ctx)
        else:
            self.store = pg.PostgresDeployment(options, store_ctx)
            self.schema = f"{self.store.schema}_dbos"
        self.url: str | None = None
        self.workers = WorkerPool(ctx, "dbos", {}, entry="backends.dbos.worker")
        self._client: DbosClient | None = None
        self.ready_s: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def preflight(cls, options: dict[str, Any]) -> None:
        if (options.get("dbos_database") or "sqlite") == "sqlite":
            sq.SqliteDeployment.preflight(options)

    def _store_args(self) -> dict[str, Any]:
        if isinstance(self.store, sq.SqliteDeployment):
            self.url = f"sqlite:///{self.store.db_path}"
            return {
                "url": self.url,
                "synchronous": self.store.synchronous,
                "autocheckpoint": self.store.replica == "none",
            }
        self.url = postgres_url(self.store.dsn or "", self.store.sync_commit)
        return {"url": self.url, "schema": self.schema}

    def start(self) -> None:
        try:
            t0 = time.monotonic()
            self.store.start()
            self.ready_s["store"] = time.monotonic() - t0
            if isinstance(self.store, pg.PostgresDeployment):
                self._drop_schema()
            self._start_workers()
        except BaseException:
            with contextlib.suppress(BackendError):
                self.stop()
            raise

    def _drop_schema(self) -> None:
        """A clean system database for this measurement (the store's advisory lock is held)."""
        assert isinstance(self.store, pg.PostgresDeployment)
        with psycopg.connect(self.store.dsn or "", autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def _start_workers(self) -> None:
        """worker-0 first: its DBOS.launch() creates / migrates the system tables."""
        t0 = time.monotonic()
        self.workers.reconfigure(self._store_args())
        for name in self.workers.procs:
            self.workers.start(name)
        self.ready_s["workers"] = time.monotonic() - t0

    def stop(self) -> None:
        errors: list[Exception] = []
        for step in (self._close_client, self.workers.stop, self.store.stop):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - stop the rest, then report
                errors.append(e)
        if errors:
            raise errors[0]

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.shutdown()
            self._client = None

    def client(self) -> Client:
        if self.url is None:
            raise BackendError("dbos: the deployment is not started")
        if self._client is None:
            pragmas = None
            if isinstance(self.store, sq.SqliteDeployment):
                args = self._store_args()
                pragmas = {k: args[k] for k in ("synchronous", "autocheckpoint")}
            self._client = DbosClient(
                self.url,
                self.schema,
                self.ctx.settings,
                self.ctx.history_dir,
                self.ctx.epoch_ns,
                sqlite_pragmas=pragmas,
            )
        return self._client

    def processes(self) -> dict[str, Any]:
        return {**self.workers.procs, **self.store.processes()}

    # -- faults ------------------------------------------------------------------------------

    @staticmethod
    def refuse_fault(options: dict[str, Any], fault: str) -> str | None:
        """The database's own refusals (an external Postgres: no processes of ours to act on;
        an object-store fault without an object store to put the proxy in front of)."""
        if (options.get("dbos_database") or "sqlite") == "postgres":
            if fault in sq.SqliteDeployment.OBJECT_STORE_FAULTS:
                return (
                    "object-store faults need --dbos-database sqlite (on postgres the replica "
                    "is a streaming standby, not an object store)"
                )
            return pg.PostgresDeployment.refuse_fault(options, fault)
        return sq.SqliteDeployment.refuse_fault(options, fault)

    def fault_refusal(self, fault: str) -> str | None:
        refuse = getattr(self.store, "fault_refusal", None)
        return refuse(fault) if refuse is not None else None

    def _sqlite_store(self, fault: str) -> sq.SqliteDeployment:
        if not isinstance(self.store, sq.SqliteDeployment):
            raise ConfigError(f"dbos: {fault} needs --dbos-database sqlite")
        return self.store

    def route_object_store_through_proxy(self) -> None:
        """SQLite: Litestream uploads through the harness's proxy (the sqlite backend's); the
        DBOS workers never talk to the object store."""
        self._sqlite_store("an object-store fault").route_object_store_through_proxy()

    def object_store_outage(self, on: bool) -> dict[str, Any]:
        return self._sqlite_store("s3-outage").object_store_outage(on)

    def object_store_delay(self, seconds: float) -> dict[str, Any]:
        return self._sqlite_store("s3-slow").object_store_delay(seconds)

    def store_processes(self) -> list[str]:
        if isinstance(self.store, sq.SqliteDeployment):
            # SQLite has no server: the processes holding the file are the DBOS workers (each
            # embeds SQLite) and Litestream, as for the sqlite backend
            return [*self.workers.procs, *self.store.store_processes()]
        return self.store.store_processes()

    def kill_store(self) -> None:
        if isinstance(self.store, sq.SqliteDeployment):
            for p in self.workers.procs.values():
                p.kill()
        self.store.kill_store()

    def start_store(self) -> None:
        self.store.start_store()
        if isinstance(self.store, sq.SqliteDeployment):
            self._start_workers()

    def pause_store(self) -> None:
        if isinstance(self.store, sq.SqliteDeployment):
            for p in self.workers.procs.values():
                p.pause()
        self.store.pause_store()

    def resume_store(self) -> None:
        self.store.resume_store()
        if isinstance(self.store, sq.SqliteDeployment):
            for p in self.workers.procs.values():
                p.resume()

    def lose_node(self) -> dict[str, Any]:
        """SQLite: the node with the file, its workers and Litestream is gone (the object store
        survives). Postgres: the database server's node is gone; the workers are application
        processes elsewhere and keep running until pointed at the new primary."""
        if self._client is not None:
            self._client.node_down()
        if isinstance(self.store, sq.SqliteDeployment):
            for p in self.workers.procs.values():
                p.kill()
        return self.store.lose_node()

    def rebuild_node(self) -> dict[str, Any]:
        """SQLite: ``litestream restore`` (the sqlite backend's), then the workers restart and
        recover their PENDING workflows. Postgres: the standby is promoted (or a new empty
        server: total loss), the workers restart pointed at it."""
        out = self.store.rebuild_node()
        t0 = time.monotonic()
        self.workers.stop()
        self._start_workers()  # after a total loss on Postgres, worker-0 recreates the tables
        if self._client is not None and self.url is not None:
            self._client.node_up(self.url)
        out["workers_restart_s"] = time.monotonic() - t0
        return out

    def prepare_power_loss(self) -> None:
        """The system database's data directory on the lazy filesystem: the sqlite backend's
        (the file, its WAL and -shm, Litestream's local state) or the postgres backend's."""
        self.store.prepare_power_loss()

    def lose_power(self) -> None:
        """SQLite: the node is the file's machine, with the DBOS workers and Litestream on it.
        The harness (a client elsewhere) lets go of the file first, while the workers still
        hold it; then the workers die with the power, then the store's own power loss
        (Litestream, unsynced writes). Postgres: the database server's node; the workers are
        application processes elsewhere and reconnect once it is back."""
        if isinstance(self.store, sq.SqliteDeployment):
            if self._client is not None:
                self._client.power_down()
            for p in self.workers.procs.values():
                p.kill()
        self.store.lose_power()

    def recover_power(self) -> dict[str, Any]:
        """Remount and restart the store (crash recovery from what is durable); on SQLite the
        workers restart and recover their PENDING workflows, then the harness reconnects."""
        out = self.store.recover_power()
        if isinstance(self.store, sq.SqliteDeployment):
            t0 = time.monotonic()
            self._start_workers()
            if self._client is not None and self.url is not None:
                self._client.power_up(self.url)
            out["workers_restart_s"] = time.monotonic() - t0
        return out

    def replication_health(self) -> dict[str, Any] | None:
        return self.store.replication_health()

    def replication_position(self) -> ReplicationPosition | None:
        """The reused store's positions, for the exposure sampler: on SQLite the WAL end in the
        WAL index (``-shm``), which every connection to the file updates on commit, DBOS's
        included, against Litestream's newest LTX file; on Postgres the primary's WAL insert LSN
        against the async standby's (None without one). Every DBOS ack is a commit in that
        store (``backends.dbos``: acks), so the first reading after an ack covers it."""
        return self.store.replication_position()

    def integrity_check(self) -> dict[str, Any]:
        if isinstance(self.store, sq.SqliteDeployment):
            return self.store.integrity_check()
        try:
            with psycopg.connect(self.store.dsn or "", autocommit=True) as c:
                return amcheck_schema(c, self.schema or "", may_install=not self.store.external)
        except psycopg.Error as e:
            return {"valid": False, "check": "amcheck", "error": str(e)}

    @classmethod
    @contextlib.contextmanager
    def open_kept_state(cls, run_dir: Path, manifest: dict[str, Any]) -> Iterator[StateView]:
        """``bench check``: DBOS's tables in the kept store, through the reused deployment's own
        re-opening (the SQLite file as is; the Postgres cluster served by a postmaster of our
        own, read-only)."""
        opts = manifest.get("backend_options") or {}
        if (opts.get("dbos_database") or "sqlite") == "sqlite":
            db = run_dir / "work" / "sqlite" / "durabench.db"
            if not db.is_file():
                raise ConfigError(
                    f"dbos: no database kept at {db}: only a run made with --keep-data can be "
                    "checked again"
                )
            view = KeptDbosState(f"sqlite:///{db}", None)
            view.check = lambda: sqlite_integrity(db)
            try:
                yield view
            finally:
                view.close()
            return
        schema = f"{opts.get('postgres_schema') or 'durabench'}_dbos"
        with pg.PostgresDeployment.open_kept_state(run_dir, manifest) as kept:
            view = KeptDbosState(postgres_url(kept.dsn, "on"), schema)

            def amcheck() -> dict[str, Any]:
                try:
                    with psycopg.connect(kept.dsn, autocommit=True) as c:
                        return amcheck_schema(c, schema, may_install=False)
                except psycopg.Error as e:
                    return {"valid": False, "check": "amcheck", "error": str(e)}

            view.check = amcheck
            try:
                yield view
            finally:
                view.close()

    # -- promises ----------------------------------------------------------------------------

    def promise(self, fault: str) -> Promise | None:
        """The store's promise, as for durabench's own backend on the same store: every DBOS
        ack is a committed transaction in it (status row, step output row), so what the store
        keeps through a fault, DBOS's acks keep. kill-worker touches no store process on
        Postgres; on SQLite it kills processes holding the file, which leaves the page cache
        (hence the file) intact."""
        p = self.store.promise(fault)
        if p is None and fault == "kill-worker":
            p = Promise(fault, 0.0, True, "workers are clients of the store: no ack is in them")
        if p is None:
            return None
        return dataclasses.replace(p, basis=f"DBOS on {self.database}: {p.basis}")

    # -- description -------------------------------------------------------------------------

    def topology(self) -> dict[str, Any]:
        s = self.ctx.settings
        topo = dict(self.store.topology())
        topo["store"] = f"DBOS system database: {topo.get('store', '?')}"
        topo["workers"] = (
            f"{s.workers} DBOS worker process(es) (dbos {self.versions().get('dbos', '?')}), "
            f"executor id = worker name, queue {QUEUE} worker_concurrency {s.concurrency}"
        )
        topo["submit"] = "DBOSClient.enqueue from the harness"
        return topo

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        import sqlalchemy

        return {
            **self.store.versions(),
            "dbos": version("dbos"),
            "sqlalchemy": sqlalchemy.__version__,
        }

    def config(self) -> dict[str, Any]:
        s = self.ctx.settings
        opts = step_options(s.retry, s.time_scale, 0)
        opts.pop("should_retry")
        opts.pop("name")
        return {
            "database": self.database,
            "store": self.store.config(),
            "system_schema": self.schema,
            "queue": QUEUE,
            "queue_polling_interval_s": QUEUE_POLL_S,
            "worker_concurrency": s.concurrency,
            "workflow": WORKFLOW_NAME,
            "application_version": APP_VERSION,
            "step_retry": {
                **opts,
                "should_retry": "not PermanentStepError",
                "max_wait_s": "3600 (DBOS's cap; the policy's max_backoff_s is not applied)",
            },
            "completion_watch_poll_s": WATCH_POLL_S,
            "ready_s": {**self.ready_s, **self.workers.ready_s},
        }

    def collect_metrics(self) -> dict[str, Any]:
        m = dict(self.store.collect_metrics())
        if self.schema is not None and "schema_bytes" in m:
            # the reused deployment measured its own (empty) executor schema: DBOS's instead
            m["schema_bytes"] = self._dbos_schema_bytes()
        if self._client is not None:
            m["completion_watcher_read_errors"] = self._client.watcher.errors
        return m

    def _dbos_schema_bytes(self) -> int | None:
        """DBOS's tables with their indexes and TOAST (what the cost model keeps per run)."""
        try:
            with psycopg.connect(self.store.dsn or "", autocommit=True) as c:
                row = c.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(oid)), 0)::bigint FROM pg_class"
                    " WHERE relnamespace = %s::regnamespace AND relkind = 'r'",
                    [self.schema],
                ).fetchone()
        except psycopg.Error:
            return None
        return int(row[0]) if row else None

    @staticmethod
    def replica_requests(backend_metrics: dict[str, Any]) -> tuple[dict[str, float], str] | None:
        # the store's figures (collect_metrics): Litestream's counters on sqlite, none on postgres
        return sq.SqliteDeployment.replica_requests(backend_metrics)

    @staticmethod
    def metrics_lines(backend_metrics: dict[str, Any]) -> list[str]:
        return sq.SqliteDeployment.metrics_lines(
            backend_metrics
        ) + pg.PostgresDeployment.metrics_lines(backend_metrics)

    def managed_standins(self) -> dict[str, str]:
        return self.store.managed_standins()

    def raw_commit_rate(self, seconds: float, clients: int = 1) -> dict[str, Any]:
        if clients != 1:
            raise ConfigError("dbos: the raw commit-rate baseline has one client (--clients 1)")
        self.workers.stop()  # idle, DBOS's queue pollers read the system database all the time
        return self.store.raw_commit_rate(seconds)  # the store's, which says its workers stopped


class KeptDbosState(DbosStateView):
    """A kept system database, for ``bench check``: the state view and the store's integrity
    check (``PRAGMA integrity_check`` / amcheck of the DBOS schema)."""

    check: Any = None

    def integrity_check(self) -> dict[str, Any]:
        return self.check()


def declared_for(options: dict[str, Any]) -> dict[str, Any]:
    """``BackendInfo.by_options``: the moving parts and managed alternatives are those of the
    store the system database runs on (``--dbos-database``), i.e. that backend's declarations,
    plus DBOS's own (no port, no config file)."""
    from backends.registration import get

    database = str(options.get("dbos_database") or "sqlite").lower()
    store = get(database if database in DATABASES else "sqlite")
    parts = store.parts
    return {
        "managed": store.managed,
        "parts": MovingParts(
            ports="none of its own (DBOS Transact 3.x opens no listening port); the "
            f"{store.name} system database's: {parts.ports if parts else '?'}",
            files=f"the {store.name} system database's: {parts.files if parts else '?'}; DBOS "
            "is configured in code, no config file",
            source=f"backends/dbos/; docs.dbos.dev; {parts.source if parts else ''}".rstrip("; "),
        ),
    }


register(
    BackendInfo(
        name="dbos",
        summary="DBOS Transact (the dbos library) workers; system database on SQLite "
        "(+ Litestream) or Postgres (--dbos-database)",
        durable=True,
        options=OPTIONS,
        factory=DbosDeployment,
        variants=(("postgres", {"dbos_database": "postgres"}),),
        packages=("dbos", "sqlalchemy"),
        parts=MovingParts(
            ports="none of its own (DBOS Transact 3.x opens no listening port); the system "
            "database's: as sqlite (--dbos-database sqlite) or as postgres",
            files="the system database's (the sqlite backend's file + Litestream + SeaweedFS, "
            "or the postgres backend's data directory); DBOS is configured in code, no config "
            "file",
            source="backends/dbos/; docs.dbos.dev",
        ),
        by_options=declared_for,
    )
)
