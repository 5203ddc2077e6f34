"""A streaming replica of a :class:`PostgresServer`, for node-loss tests: lose the primary,
promote the standby, check what survived.

Asynchronous (default): the primary acknowledges a commit once its own WAL is flushed; the
standby may lag, so a commit acknowledged just before the primary dies can be missing after
failover. Synchronous: the primary's ``synchronous_standby_names`` names this standby, so with
``synchronous_commit=on`` a commit returns only after the standby has flushed its WAL (received
and durable there, not necessarily replayed/visible; ``remote_apply`` waits for that too).
"""

from __future__ import annotations

import time
from pathlib import Path

from backends.errors import BackendError
from backends.postgres.server import PostgresServer


class Standby(PostgresServer):
    """A hot standby (read-only queries work) cloned from ``primary`` with ``pg_basebackup -R``.
    ``name`` is its ``application_name`` on the primary (pg_stat_replication, sync names)."""

    def __init__(
        self,
        primary: PostgresServer,
        datadir: Path,
        logdir: Path,
        port: int | None = None,
        name: str = "standby1",
    ) -> None:
        super().__init__(
            datadir,
            logdir,
            port=port,
            role=f"postgres-{name}",
            settings={**primary.settings, "cluster_name": name},
            user=primary.user,
            bin_dir=primary.bin_dir,
            system_user=primary.system_user_name,
        )
        self.primary = primary
        self.name = name

    def init(self, sync: bool = True) -> bool:
        """Base backup of the running primary (WAL streamed alongside, fast checkpoint) written
        as the system user; ``-R`` adds standby.signal and primary_conninfo."""
        if self.initialized:
            return False
        if not self.primary.process.alive:
            raise BackendError("postgres: the primary must be running to clone a standby")
        tool = self.binary("pg_basebackup")
        self.system_user.own_dir(self.datadir)
        src = self.primary.dsn(application_name=self.name)
        argv = [tool, "-D", self.datadir, "-d", src, "-R", "-X", "stream", "-c", "fast"]
        self.system_user.run(argv, self.logdir / f"{self.role}-basebackup.log", "pg_basebackup")
        return True

    # -- state -------------------------------------------------------------------------------

    def in_recovery(self) -> bool:
        return bool(self.sql("SELECT pg_is_in_recovery()")[0][0])

    def replay_lsn(self) -> str | None:
        """Last WAL position replayed here (visible to queries); None once promoted."""
        return self.sql("SELECT pg_last_wal_replay_lsn()::text")[0][0]

    def receive_lsn(self) -> str | None:
        """Last WAL position received and flushed to disk here."""
        return self.sql("SELECT pg_last_wal_receive_lsn()::text")[0][0]

    def replication_row(self) -> dict[str, object] | None:
        """This standby's row of the primary's pg_stat_replication (None if not connected)."""
        with self.primary.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT state, sync_state, sent_lsn::text, flush_lsn::text, replay_lsn::text,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint AS flush_lag_bytes,"
                " extract(epoch FROM flush_lag)::float8 AS flush_lag_s,"
                " extract(epoch FROM replay_lag)::float8 AS replay_lag_s,"
                " extract(epoch FROM clock_timestamp() - reply_time)::float8 AS reply_age_s"
                " FROM pg_stat_replication WHERE application_name = %s",
                [self.name],
            )
            row = cur.fetchone()
            names = [d.name for d in cur.description or []]
        return dict(zip(names, row, strict=True)) if row else None

    def replay_lag(self) -> int | None:
        """Bytes of WAL the primary has written that this standby has not replayed yet
        (from the primary's pg_stat_replication); None if not streaming."""
        row = self.replication_row()
        return None if row is None else int(row["replay_lag_bytes"] or 0)  # type: ignore[call-overload]

    def wait_caught_up(self, timeout_s: float = 30.0) -> float:
        """Wait until everything the primary had written when called is replayed here (LSN
        comparison, so it works without pg_stat_replication); returns seconds waited."""
        target = self.primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
        t0 = time.monotonic()
        while True:
            done = self.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])[0][0]
            if done:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise BackendError(
                    f"postgres: standby {self.name} has not replayed up to {target} after "
                    f"{timeout_s:.0f}s (at {self.replay_lsn()}); see {self.process.log_path}"
                )
            time.sleep(0.01)

    # -- control -----------------------------------------------------------------------------

    def set_synchronous(self, on: bool, timeout_s: float = 30.0) -> None:
        """Name (or un-name) this standby in the primary's synchronous_standby_names (ALTER
        SYSTEM + reload), then wait until the primary reports it as sync (or async)."""
        value = f'"{self.name}"' if on else ""
        with self.primary.connect() as conn:
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{value}'")
            conn.execute("SELECT pg_reload_conf()")
        want = "sync" if on else "async"
        t0 = time.monotonic()
        while (row := self.replication_row()) is None or row["sync_state"] != want:
            if time.monotonic() - t0 > timeout_s:
                raise BackendError(
                    f"postgres: standby {self.name} not {want} after {timeout_s:.0f}s "
                    f"(pg_stat_replication: {row})"
                )
            time.sleep(0.02)

    def promote(self, timeout_s: float = 60.0) -> float:
        """Make this standby a primary (pg_promote, waiting for it); returns seconds taken.
        WAL received but not yet replayed is replayed first, so nothing flushed here is lost."""
        t0 = time.monotonic()
        with self.connect() as conn:
            row = conn.execute("SELECT pg_promote(true, %s)", [int(timeout_s)]).fetchone()
        if not (row and row[0]):
            raise BackendError(
                f"postgres: standby {self.name} did not promote within {timeout_s:.0f}s; "
                f"see {self.process.log_path}"
            )
        return time.monotonic() - t0
