# size: the SQL of one store (schema, submit, claim, checkpoint, state view) kept together so the queries can be read side by side.
"""The durable store on PostgreSQL, used from several processes at once: the harness submits
runs, every worker claims and checkpoints. Workers share one queue (the ``runs`` table) by
claiming with ``FOR UPDATE SKIP LOCKED``, so two workers never take the same run and neither
waits for the other's locks.

Acks (what is durable when a call returns): each operation is one transaction, and returning
means its ``COMMIT`` has returned. With ``synchronous_commit=on`` (the default) the commit
record is flushed to the server's WAL first, so an ack survives a server crash; ``off`` acks
before the flush (a server crash may lose the last ~3 x wal_writer_delay of acks, a worker crash
loses nothing); ``local`` ignores a synchronous standby; ``remote_write`` / ``remote_apply``
also wait for a synchronous standby to write / replay the commit (``--standby sync``). A lost
disk without a standby loses everything.

Everything lives in one Postgres schema (default ``durabench``): every connection sets
``search_path`` to it and ``synchronous_commit`` (one ``SET`` when the connection opens), so
pointing durabench at an existing server with ``--postgres-dsn`` never touches other tables.

Connections: psycopg 3 async pools. A worker keeps hundreds of runs in flight on one asyncio
loop but talks to the store through few operations at a time: one claim, one group-commit batch
(``GroupCommitter`` flushes one batch at a time), a renew every lease/3 and the occasional
finish / release. Pools are small (``POOL_MIN``..``POOL_MAX``): more connections would not commit
faster (batching does), and each one is a server process (memory, ``max_connections``: with N
workers the deployment uses at most 8 x (N + 1) + 2). The harness's submitter opens its 8 at
once, because a burst of arrivals lands all at once and one submit = one transaction.
Statements are prepared on their second use (``PREPARE_THRESHOLD``): the dozen hot statements
are parsed and planned once per connection, one-off statements never. (Behind PgBouncer in
transaction mode before 1.21, prepared statements break: use a direct connection.)
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Collection, Iterator
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.string import StrDumper
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backends.base import Plan, RunSpec, RunState, StateView
from backends.durable import sql
from backends.durable.groupcommit import Checkpoint
from backends.durable.store import ClaimedRun
from backends.errors import BackendError, Indeterminate, LeaseLost

D = sql.POSTGRES
SYNC_COMMIT = ("on", "off", "local", "remote_write", "remote_apply")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MIN_VERSION = 13
POOL_MIN, POOL_MAX = 2, 8  # per worker process; the harness's submitter opens all 8 at once
SUBMIT_BATCH = 256  # runs in one submit transaction at most
SUBMIT_FLUSHERS = 4  # submit transactions in flight: the next batch gathers meanwhile
PREPARE_THRESHOLD = 1  # prepare a statement on its second execution on a connection
CONNECT_TIMEOUT_S = 10
MARKER = "durabench workflow state"  # COMMENT on the schema and tables durabench created
DEADLOCK_RETRIES = 3
POLL_TIMEOUT_S = 1.0  # claim / renew wait this long for a connection, then try again later
log = logging.getLogger("durabench.postgres")

# The shared statements (backends.durable.sql) in psycopg's parameter style.
CLAIM, RENEW = D.sql(sql.claim(D)), D.sql(sql.renew(D))
PENDING_EXISTS = D.sql(sql.PENDING_EXISTS)
JOURNAL = D.sql(sql.JOURNAL)
ADVANCE = D.sql(sql.ADVANCE)
ADVANCE_FINAL = D.sql(sql.ADVANCE_FINAL)
UNDO_ADVANCE = D.sql(sql.UNDO_ADVANCE)
INSERT_STEP = D.sql(sql.INSERT_STEP)
STEP_OUTPUT = D.sql(sql.STEP_OUTPUT)
FINISH = D.sql(sql.FINISH)
RELEASE = D.sql(sql.RELEASE)
INSERT_RUN = D.sql(sql.INSERT_RUN)
STATE_RESULTS = D.sql(sql.STATE_RESULTS)
STREAM_CHUNK = 1000  # rows per round trip when streaming every step result


# -- connections ----------------------------------------------------------------------------------


def where(dsn: str) -> str:
    """``host:port`` of a DSN, for messages (never the password)."""
    d = conninfo_to_dict(dsn)
    return f"{d.get('host') or 'localhost'}:{d.get('port') or 5432}"


def connect_kwargs(dsn: str, app: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"autocommit": True, "prepare_threshold": PREPARE_THRESHOLD}
    info = conninfo_to_dict(dsn)
    if "connect_timeout" not in info:
        kw["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in info:
        kw["application_name"] = f"durabench-{app}"
    return kw


def session_sql(schema: str, synchronous_commit: str) -> pgsql.Composed:
    """What every store connection runs once when it opens."""
    return pgsql.SQL("SET search_path TO {}; SET synchronous_commit TO {}").format(
        pgsql.Identifier(schema), pgsql.Literal(synchronous_commit)
    )


def connect_error(e: psycopg.OperationalError, dsn: str) -> BackendError:
    """A connection failure as a message saying what to do next."""
    msg, at, info = str(e), where(dsn), conninfo_to_dict(dsn)
    user, db = info.get("user", "(default user)"), info.get("dbname", "(default database)")
    if "password authentication failed" in msg or "no password supplied" in msg:
        why = f"password authentication failed for user {user} at {at}: check the user and "
        why += "password in --postgres-dsn (or PGPASSWORD)"
    elif re.search(r'database ".*" does not exist', msg):
        why = f"database {db} does not exist on {at}: create it (createdb {db}) or name an "
        why += "existing one in --postgres-dsn"
    elif re.search(r'role ".*" does not exist', msg):
        why = f"role {user} does not exist on {at}: check the user in --postgres-dsn"
    else:
        first = (msg.strip() or type(e).__name__).splitlines()[0]
        why = f"cannot connect to {at}: is the server running? check --postgres-dsn ({first})"
    return BackendError(f"postgres: {why}")


def connect(dsn: str, schema: str | None, synchronous_commit: str = "on", app: str = "harness"):
    """A sync autocommit connection, set up like the store's (``schema=None``: no search_path)."""
    try:
        conn = psycopg.connect(dsn, **connect_kwargs(dsn, app))
    except psycopg.OperationalError as e:
        raise connect_error(e, dsn) from None
    if schema is not None:
        conn.execute(session_sql(schema, synchronous_commit))
    return conn


def check_version(version_num: int, version: str, at: str) -> None:
    if version_num < MIN_VERSION * 10000:
        raise BackendError(
            f"postgres: the server at {at} runs PostgreSQL {version}; durabench needs "
            f"{MIN_VERSION} or later: upgrade it or point --postgres-dsn at a newer server"
        )


# -- schema ---------------------------------------------------------------------------------------


def create_schema(dsn: str, schema: str) -> dict[str, Any]:
    """Check the server version, then create the schema and tables that are missing; never drops
    anything. Tables durabench creates are marked (COMMENT); a ``runs`` / ``steps`` table in the
    schema without that mark belongs to someone else and is refused, never written."""
    with connect(dsn, None) as conn:
        num = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        check_version(num, version, where(dsn))
        ident = pgsql.Identifier(schema)
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
        try:
            if not exists:  # checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE even then
                conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                conn.execute(pgsql.SQL("COMMENT ON SCHEMA {} IS {}").format(ident, MARKER))
            q = "SELECT relname, obj_description(oid, 'pg_class') FROM pg_class WHERE"
            q += " relnamespace = %s::regnamespace AND relname IN ('runs', 'steps')"
            tables = dict(conn.execute(q, [schema]).fetchall())
            foreign = sorted(t for t, note in tables.items() if note != MARKER)
            if foreign:
                raise BackendError(
                    f"postgres: schema {schema} on {where(dsn)} already has table(s) {foreign} "
                    "that durabench did not create: pick another --postgres-schema"
                )
            conn.execute(session_sql(schema, "on"))
            with conn.transaction():
                for stmt in sql.schema(D):
                    conn.execute(stmt)
                created = sorted({"runs", "steps"} - set(tables))
                for t in created:
                    comment = pgsql.SQL("COMMENT ON TABLE {} IS {}")
                    conn.execute(comment.format(pgsql.Identifier(t), MARKER))
        except psycopg.errors.InsufficientPrivilege as e:
            raise BackendError(
                f"postgres: cannot create schema {schema} on {where(dsn)} ({e}): grant CREATE on "
                f"the database, or create the schema for this user (CREATE SCHEMA {schema} "
                "AUTHORIZATION <user>)"
            ) from None
    return {"server_version": version, "schema_created": not exists, "tables_created": created}


def clear_state(conn: psycopg.Connection[Any]) -> int:
    """Empty the (durabench-created) tables an earlier measurement left in this schema, so run
    ids start fresh; returns how many runs were removed. ``conn`` has the search_path set."""
    n = int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])  # type: ignore[index]
    if n:
        conn.execute("TRUNCATE runs, steps")
    return n


# -- worker side ----------------------------------------------------------------------------------


def _pool(dsn: str, schema: str, synchronous_commit: str, app: str) -> AsyncConnectionPool:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.adapters.register_dumper(str, StrDumper)  # str as text: unnest(:ids) needs a type
        await conn.execute(session_sql(schema, synchronous_commit))

    return AsyncConnectionPool(
        dsn,
        min_size=POOL_MAX if app == "submit" else POOL_MIN,  # a burst arrives all at once
        max_size=POOL_MAX,
        kwargs=connect_kwargs(dsn, app),
        configure=configure,
        open=False,
        name=f"durabench-{app}",
    )


async def _open(pool: AsyncConnectionPool, dsn: str) -> None:
    try:
        await pool.open(wait=True, timeout=30)
    except PoolTimeout:
        await pool.close()
        raise BackendError(f"postgres: no connection to {where(dsn)} within 30s") from None


async def _each(
    conn: psycopg.AsyncConnection[Any], stmt: str, params: list[dict[str, Any]], fetch=False
) -> list[Any]:
    """``stmt`` once per params, pipelined in one round trip (``executemany``); for each
    execution its rowcount, or with ``fetch`` its rows."""
    if not params:
        return []
    cur = conn.cursor()
    await cur.executemany(stmt, params, returning=True)
    out = []
    while True:
        out.append(await cur.fetchall() if fetch else cur.rowcount)
        if not cur.nextset():
            return out


class PostgresStore:
    """``DurableStore`` for one worker process (one asyncio loop, one small pool)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        # renew and checkpoint_batch both lock many of this worker's run rows, in different
        # orders; running them one at a time keeps them from deadlocking each other
        self._many_rows = asyncio.Lock()

    async def claim(
        self, worker: str, limit: int, lease_s: float, recover: bool
    ) -> list[ClaimedRun]:
        """The claim is one autocommit UPDATE: durable when its rows arrive. Journals are read
        after it, which is safe: only the owner (now us) can add steps to a claimed run."""
        now = time.time()
        args = {"now": now, "recover_owner": worker if recover else None}
        try:
            async with self.pool.connection(POLL_TIMEOUT_S) as conn:
                # a read first: an idle poll must not lock rows or write WAL
                if await (await conn.execute(PENDING_EXISTS, args)).fetchone() is None:
                    return []
                claim = {**args, "worker": worker, "lease": now + lease_s, "limit": limit}
                rows = await (await conn.execute(CLAIM, claim)).fetchall()
                resumed = [{"run_id": r[0]} for r in rows if r[2]]  # steps_done > 0
                found = await _each(conn, JOURNAL, resumed, fetch=True)
                journals = {a["run_id"]: dict(j) for a, j in zip(resumed, found, strict=True)}
        except psycopg.OperationalError as e:  # store unreachable: no work now; leases recover
            log.warning("postgres: claim failed (%s); retrying", e)
            await asyncio.sleep(0.2)
            return []
        return [
            ClaimedRun(run_id, Plan.from_json(plan), journals.get(run_id, {}), claims)
            for run_id, plan, _, claims in rows
        ]

    async def renew(self, worker: str, run_ids: list[str], lease_s: float) -> None:
        if not run_ids:
            return
        args = {"lease": time.time() + lease_s, "worker": worker, "ids": run_ids}
        try:
            async with self._many_rows, self.pool.connection(POLL_TIMEOUT_S) as conn:
                await conn.execute(RENEW, args)
        except psycopg.OperationalError as e:  # the next renew tries again
            log.warning("postgres: lease renewal failed (%s)", e)

    async def checkpoint_batch(
        self, worker: str, items: list[Checkpoint]
    ) -> list[bytes | LeaseLost]:
        """ONE transaction: the fenced ADVANCE / ADVANCE_FINAL of every item; INSERT_STEP for the
        items still owned; for a step an earlier owner already committed, UNDO_ADVANCE and its
        stored output. Each group goes as one pipelined ``executemany`` (one round trip, however
        many items). Every item's ack is the COMMIT returning. A deadlock rolls the whole
        transaction back, so it is simply retried."""
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                async with self._many_rows:
                    return await self._checkpoint_tx(worker, items)
            except psycopg.errors.DeadlockDetected:
                if attempt == DEADLOCK_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _checkpoint_tx(self, worker: str, items: list[Checkpoint]) -> list[bytes | LeaseLost]:
        now = time.time()
        args = [
            {"run_id": i.run_id, "step_id": i.step_id, "worker": worker, "now": now} for i in items
        ]
        out: list[bytes | LeaseLost] = []
        async with self.pool.connection() as conn, conn.transaction():
            owned: list[int] = []
            for stmt, final in ((ADVANCE, False), (ADVANCE_FINAL, True)):
                idx = [n for n, it in enumerate(items) if it.final is final]
                done = await _each(conn, stmt, [args[n] for n in idx])
                owned += [n for n, count in zip(idx, done, strict=True) if count == 1]
            owned.sort()
            rows = [
                {**args[n], "output": items[n].output, "attempts": items[n].attempts} for n in owned
            ]
            done = await _each(conn, INSERT_STEP, rows)
            dup = [n for n, count in zip(owned, done, strict=True) if count != 1]
            # committed before by an earlier owner: the first result wins
            await _each(conn, UNDO_ADVANCE, [args[n] for n in dup])
            stored = await _each(conn, STEP_OUTPUT, [args[n] for n in dup], fetch=True)
            kept = {n: bytes(r[0][0]) for n, r in zip(dup, stored, strict=True)}
            mine = set(owned)
            for n, it in enumerate(items):
                if n in kept:
                    out.append(kept[n])
                elif n in mine:
                    out.append(it.output)
                else:
                    out.append(LeaseLost(f"postgres: {worker} no longer owns run {it.run_id}"))
        return out  # the transaction block has exited: COMMIT has returned

    async def finish(self, worker: str, run_id: str, status: str, error: str | None) -> None:
        args = {"status": status, "error": error, "run_id": run_id, "worker": worker}
        async with self.pool.connection() as conn:  # autocommit: committed on return
            cur = await conn.execute(FINISH, {**args, "now": time.time()})
        if cur.rowcount != 1:
            raise LeaseLost(f"postgres: {worker} no longer owns run {run_id}")

    async def release(self, worker: str, run_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(RELEASE, {"run_id": run_id, "worker": worker})

    async def close(self) -> None:
        await self.pool.close()


async def open_store(dsn: str, schema: str, synchronous_commit: str = "on") -> PostgresStore:
    """Worker-side factory, named in the worker config as ``backends.postgres.store:open_store``."""
    pool = _pool(dsn, schema, synchronous_commit, "worker")
    await _open(pool, dsn)
    return PostgresStore(pool)


# -- harness side ---------------------------------------------------------------------------------


class PostgresStateView(StateView):
    """Reads the durable state through one sync connection (reopened if it broke). Works on a hot
    standby too (read-only queries), e.g. to check what survived a failover."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        self._conn: psycopg.Connection[Any] | None = None

    def _c(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn, self.schema, app="state")
        return self._conn

    def runs(self) -> list[RunState]:
        return [RunState(r, s, n, e) for r, s, n, e in self._c().execute(sql.STATE_RUNS)]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        rows = self._c().execute(STATE_RESULTS, {"run_id": run_id})
        return {s: bytes(o) for s, o in rows}

    def all_step_ids(self) -> set[tuple[str, int]]:
        return {(r, s) for r, s in self._c().execute(sql.STATE_STEPS)}

    def all_step_results(self) -> Iterator[tuple[str, dict[int, bytes]]]:
        """One query for every run (was one per run: seconds at 20,000 runs), streamed in
        chunks so the client never holds every output at once."""
        rows = self._c().cursor().stream(sql.STATE_ALL_RESULTS, size=STREAM_CHUNK)
        return sql.group_results(rows)

    def for_runs(self, run_ids: Collection[str]) -> StateView:
        return _PostgresRunsView(self, sorted(run_ids))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ``StateView.for_runs``: the ids as one array parameter
_RUNS_OF = """SELECT run_id, status, steps_done, error FROM runs
    WHERE run_id = ANY(%(ids)s) ORDER BY seq"""
_STEPS_OF = "SELECT run_id, step_id FROM steps WHERE run_id = ANY(%(ids)s)"
_RESULTS_OF = """SELECT run_id, step_id, output FROM steps
    WHERE run_id = ANY(%(ids)s) ORDER BY run_id"""


class _PostgresRunsView(StateView):
    """The state of some runs only (``StateView.for_runs``), through the whole view's
    connection: index lookups and one query per table, so a shard's read costs what it holds."""

    def __init__(self, whole: PostgresStateView, ids: list[str]) -> None:
        self.whole, self.ids, self._set = whole, {"ids": ids}, frozenset(ids)

    def runs(self) -> list[RunState]:
        rows = self.whole._c().execute(_RUNS_OF, self.ids)
        return [RunState(r, s, n, e) for r, s, n, e in rows]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        return self.whole.step_results(run_id) if run_id in self._set else {}

    def all_step_ids(self) -> set[tuple[str, int]]:
        return {(r, s) for r, s in self.whole._c().execute(_STEPS_OF, self.ids)}

    def all_step_results(self) -> Iterator[tuple[str, dict[int, bytes]]]:
        rows = self.whole._c().cursor().stream(_RESULTS_OF, self.ids, size=STREAM_CHUNK)
        return sql.group_results(rows)


class PostgresSubmitter:
    """Harness-side run submission: an async pool on the harness's event loop (opened on the
    first submit, because the pool belongs to the loop it runs on).

    Submits that arrive while earlier ones are committing are committed together, in one
    transaction (``SUBMIT_BATCH`` runs at most, ``SUBMIT_FLUSHERS`` transactions in flight):
    a transaction and a pool checkout per run were most of the harness's CPU on postgres
    (44 µs per step at capacity). A lone submit is still one autocommit INSERT, as before: a
    BEGIN / COMMIT around it cost ~0.8 ms of submit-ack p50 at 500 runs/s."""

    def __init__(self, dsn: str, schema: str, synchronous_commit: str) -> None:
        self.dsn, self.schema, self.synchronous_commit = dsn, schema, synchronous_commit
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Task[None] | None = None
        self._stale = False
        self._queue: list[tuple[RunSpec, asyncio.Future[None]]] = []
        self._flushers = 0  # transactions in flight
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.batches = 0  # transactions committed or tried

    def retarget(self, dsn: str) -> None:
        """Connect to another server from the next submit on (after a failover); may be
        called from another thread, so the old pool is closed by the next submit's loop."""
        self.dsn = dsn
        self._stale = True

    async def submit(self, run: RunSpec) -> None:
        """The **run accepted** ack: returns once a transaction holding the run's INSERT
        committed (with this session's synchronous_commit)."""
        loop = asyncio.get_running_loop()
        if self._stale and self._pool is not None and self._loop is loop:
            old, self._pool = self._pool, None
            loop.create_task(old.close())
        self._stale = False
        if self._pool is None or self._loop is not loop:
            self._pool = _pool(self.dsn, self.schema, self.synchronous_commit, "submit")
            self._loop, self._ready = loop, loop.create_task(_open(self._pool, self.dsn))
        await asyncio.shield(self._ready)  # type: ignore[arg-type]
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.append((run, fut))
        if self._flushers < SUBMIT_FLUSHERS:
            self._flushers += 1
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await fut

    async def _flush(self) -> None:
        """Commit queued submits, a batch a transaction, until none is left (each batch on
        the pool of the moment: a failover's retarget replaces it)."""
        try:
            while self._queue:
                batch = self._queue[:SUBMIT_BATCH]
                del self._queue[:SUBMIT_BATCH]
                error = await self._commit(self._pool, [run for run, _ in batch])
                for _, fut in batch:
                    if fut.done():  # its submit was cancelled
                        continue
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
        finally:
            self._flushers -= 1

    async def _commit(
        self, pool: AsyncConnectionPool | None, runs: list[RunSpec]
    ) -> Exception | None:
        """None once a transaction holding every run committed; else what each submit of the
        batch raises (a batch is committed or rolled back whole)."""
        self.batches += 1
        now = time.time()
        rows = [
            {"run_id": r.run_id, "seq": r.seq, "tenant": r.tenant, "now": now,
             "plan": r.plan_json, "n_steps": r.n_steps}
            for r in runs
        ]  # fmt: skip
        what = runs[0].run_id if len(runs) == 1 else f"{len(runs)} runs ({runs[0].run_id}..)"
        if pool is None:  # closed meanwhile: never sent
            return BackendError(f"postgres: submitter closed before {what} was sent")
        try:
            async with pool.connection() as conn:
                if len(rows) == 1:  # autocommit: one round trip, no BEGIN / COMMIT
                    await conn.execute(INSERT_RUN, rows[0])
                else:
                    async with conn.transaction(), conn.cursor() as cur:
                        await cur.executemany(INSERT_RUN, rows)
        except PoolTimeout as e:  # never sent: not accepted
            return BackendError(f"postgres: no connection to submit {what}: {e}")
        except psycopg.OperationalError as e:  # lost mid-transaction: it may have committed
            return Indeterminate(f"postgres: submit of {what}: {e}")
        except Exception as e:  # noqa: BLE001 - rolled back: every submit of the batch learns it
            return e
        return None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and self._loop is asyncio.get_running_loop():
            await pool.close()
