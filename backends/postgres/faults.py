"""Fault capabilities of the Postgres deployment (used by ``bench.nemesis``).

  kill-store   SIGKILL the postmaster (its backends notice and exit), then start it again: crash
               recovery replays the WAL. With synchronous_commit=on nothing acked may be lost;
               with off, the last commits may be.
  pause-store  SIGSTOP the postmaster and every backend (a stopped postmaster alone would let
               open sessions keep committing), later SIGCONT.
  lose-power   SIGKILL every server process and drop every write the data directory (a lazy
               mount in these trials) had not fsynced, remount, start: crash recovery replays
               what the WAL really holds. The standby, if any, is another node: untouched.
  lose-node    SIGKILL every server process and delete the data directory. With a standby
               (``--standby async|sync``) it is promoted and the workers and the load generator
               reconnect to it; without one, a new empty server takes over: total loss.

Workers are application processes on other machines: node loss does not kill them. They are
restarted gracefully (SIGTERM) only to point them at the new primary, the way a failover
changes the address applications connect to.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from typing import Any

import psycopg

from backends.common.nodeloss import verify_gone
from backends.common.powerloss import PowerNode
from backends.errors import BackendError
from backends.postgres.power import power_loss_promise
from backends.postgres.promise import PostgresPromises
from backends.postgres.sysuser import SYSTEM_USER, SystemUser
from backends.promises import Promise

OWN_PROCESS_FAULTS = ("kill-store", "pause-store", "lose-node", "lose-power")


class PostgresFaults(PostgresPromises):
    """Mixin for ``PostgresDeployment``; relies on its server, standby, workers, client and
    lock attributes."""

    @staticmethod
    def refuse_fault(options: dict[str, Any], fault: str) -> str | None:
        """Why ``fault`` cannot be injected with these options (known before anything starts)."""
        if fault in OWN_PROCESS_FAULTS and options.get("postgres_dsn"):
            return "the server is external (--postgres-dsn): durabench does not own its processes"
        return None

    def fault_refusal(self, fault: str) -> str | None:
        if fault in OWN_PROCESS_FAULTS and self.external:  # type: ignore[attr-defined]
            return self.refuse_fault({"postgres_dsn": self.external}, fault)  # type: ignore[attr-defined]
        return None

    def store_processes(self) -> list[str]:
        return ["postgres"]

    def _server(self) -> Any:
        if self.server is None:  # type: ignore[attr-defined]
            raise BackendError("postgres: no server process of our own to act on")
        return self.server  # type: ignore[attr-defined]

    def kill_store(self) -> None:
        self._server().kill()

    def start_store(self) -> None:
        self._server().start()
        self._relock()

    def pause_store(self) -> None:
        self._server().pause(all_processes=True)

    def resume_store(self) -> None:
        self._server().resume()

    def lose_node(self) -> dict[str, Any]:
        server = self._server()
        self.lag_at_fault = self._standby_lag()
        t_kill = time.monotonic()
        server.kill(all_processes=True)
        if self.lag_at_fault is not None:
            # the reading is older than the kill by this much; the standby only moved on since
            self.lag_at_fault["read_before_kill_s"] = t_kill - self.lag_at_fault.pop("_read_t")
        shutil.rmtree(server.datadir, ignore_errors=True)
        return {"verified_gone": verify_gone("postgres", [server.datadir])}

    def _standby_lag(self) -> dict[str, Any] | None:
        """How far the standby trailed the primary just before the node is lost (the
        primary's pg_stat_replication row: bytes of WAL not flushed / not replayed there, and
        Postgres's own flush and replay lag times). None without a standby."""
        standby = getattr(self, "standby", None)
        if standby is None:
            return None
        t = time.monotonic()
        try:
            row = standby.replication_row()
        except (psycopg.Error, BackendError) as e:
            return {"_read_t": t, "error": f"could not read pg_stat_replication: {e}"}
        if row is None:
            return {"_read_t": t, "error": "the standby was not streaming at the fault"}
        keys = ("sync_state", "flush_lag_bytes", "replay_lag_bytes", "flush_lag_s", "replay_lag_s")
        keys += ("reply_age_s",)
        return {"_read_t": t, **{k: row.get(k) for k in keys}}

    def rebuild_node(self) -> dict[str, Any]:
        d: Any = self
        t0 = time.monotonic()
        if d.standby is not None:
            promote_s = d.standby.promote()
            d.lost_server, d.server, d.standby = d.server, d.standby, None
            out = {
                "restored_from": f"promoted {d.standby_mode} streaming standby",
                "promote_s": promote_s,
                "total_loss": False,
                "standby_lag_at_fault": getattr(d, "lag_at_fault", None),
            }
        else:
            d.lost_server, d.server = d.server, None
            d._start_server()  # a new node, empty (lose_node deleted the data dir): initdb
            out = {
                "restored_from": None,
                "total_loss": True,
                "note": "no standby: a new empty server replaced the lost node",
            }
        from backends.postgres import store  # here: the module imports this one's user

        d.dsn = d.server.dsn("durabench")
        store.create_schema(d.dsn, d.schema)
        self._relock()
        if d._client is not None:
            d._client.retarget(d.dsn)
        d.workers.stop()
        d.workers.reconfigure({**d.workers.store_args, "dsn": d.dsn})
        d.workers.start()
        out["rebuild_s"] = time.monotonic() - t0
        return out

    def _relock(self) -> None:
        d: Any = self
        if d._lock is not None:
            with contextlib.suppress(psycopg.Error):
                d._lock.close()
        d._lock = d._conn()
        d._hold_lock(d._lock)

    def prepare_power_loss(self) -> None:
        """The embedded server's data directory on the lazy filesystem; the backing directory is
        the system user's, so the mount root shows that owner (postgres checks it)."""
        d: Any = self
        if d.external:
            raise BackendError("postgres: lose-power needs the embedded server, not --postgres-dsn")
        own = SystemUser(SYSTEM_USER).own_dir
        d.power = PowerNode(d._data_dir("postgres"), d.ctx.logdir, prepare_backing=own)

    def lose_power(self) -> None:
        """Every server process dies at once (the workers and the harness are clients on other
        machines: their connections break), then the unsynced writes are gone."""
        d: Any = self
        if d.power is None:
            raise BackendError("postgres: lose-power needs prepare_power_loss() before start()")
        server = self._server()
        server.kill(all_processes=True)
        server._wait_orphans()  # nothing of the node may write after the power is off
        d.power.lose()

    def recover_power(self) -> dict[str, Any]:
        d: Any = self
        remount_s = d.power.remount()
        t0 = time.monotonic()
        self.start_store()  # crash recovery from what the WAL really holds
        return {
            "lazyfs_dropped": d.power.losses[-1] if d.power.losses else None,
            "remount_s": remount_s,
            "restart_s": time.monotonic() - t0,
        }

    def promise(self, fault: str) -> Promise | None:
        d: Any = self
        if fault == "lose-power":
            return power_loss_promise(d.sync_commit, d.settings.get("wal_writer_delay"))
        return super().promise(fault)

    def integrity_check(self) -> dict[str, Any]:
        """amcheck's B-tree checks on every index of our schema (heap included)."""
        d: Any = self
        try:
            with d._conn() as c:
                # never change a database durabench does not own
                return amcheck_schema(c, d.schema, may_install=not d.external)
        except psycopg.Error as e:
            return {"valid": False, "check": "amcheck", "error": str(e)}


def amcheck_schema(c: psycopg.Connection[Any], schema: str, may_install: bool) -> dict[str, Any]:
    """amcheck's ``bt_index_check(heapallindexed)`` on every index of ``schema``; ``valid`` None
    (not run, says nothing) when amcheck is missing and may not be installed, or unavailable."""
    try:
        installed = c.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone()
        if not installed and not may_install:
            return {
                "valid": None,  # not run: says nothing either way
                "check": "amcheck",
                "note": "amcheck is not installed in this database",
            }
        if not installed:
            c.execute("CREATE EXTENSION amcheck")
        rows = c.execute(
            "SELECT c.relname, a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
            [schema],
        ).fetchall()
        btree = [name for name, am in rows if am == "btree"]
        for name in btree:  # bt_index_check verifies B-trees only (a GIN index is refused)
            c.execute("SELECT bt_index_check(%s::regclass, true)", [f'"{schema}"."{name}"'])
        out = {"valid": True, "check": "amcheck bt_index_check(heapallindexed)", "indexes": btree}
        other = [f"{name} ({am})" for name, am in rows if am != "btree"]
        if other:
            out["not_checked"] = other
        return out
    except (psycopg.errors.UndefinedFile, psycopg.errors.InsufficientPrivilege) as e:
        return {"valid": None, "check": "amcheck", "note": f"not available: {e}"}
    except psycopg.Error as e:
        return {"valid": False, "check": "amcheck", "error": str(e)}
