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

from backends.common.powerloss import PowerNode
from backends.errors import BackendError
from backends.postgres.power import power_loss_promise
from backends.postgres.sysuser import SYSTEM_USER, SystemUser
from backends.promises import Promise

OWN_PROCESS_FAULTS = ("kill-store", "pause-store", "lose-node", "lose-power")


class PostgresFaults:
    """Mixin for ``PostgresDeployment``; relies on its server, standby, workers, client and
    lock attributes."""

    def fault_refusal(self, fault: str) -> str | None:
        if fault in OWN_PROCESS_FAULTS and self.external:  # type: ignore[attr-defined]
            return "the server is external (--postgres-dsn): durabench does not own its processes"
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

    def lose_node(self) -> None:
        server = self._server()
        server.kill(all_processes=True)
        shutil.rmtree(server.datadir, ignore_errors=True)

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
        d.power = PowerNode(d.ctx.workdir / "postgres", d.ctx.logdir, prepare_backing=own)

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
        return None

    def integrity_check(self) -> dict[str, Any]:
        """amcheck's B-tree checks on every index of our schema (heap included)."""
        d: Any = self
        try:
            with d._conn() as c:
                installed = c.execute(
                    "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"
                ).fetchone()
                if not installed and d.external:
                    # never change a database durabench does not own
                    return {
                        "valid": None,  # not run: says nothing either way
                        "check": "amcheck",
                        "note": "amcheck is not installed on the external server",
                    }
                if not installed:
                    c.execute("CREATE EXTENSION amcheck")
                rows = c.execute(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                    [d.schema],
                ).fetchall()
                for (name,) in rows:
                    c.execute("SELECT bt_index_check(%s::regclass, true)", [f"{d.schema}.{name}"])
            return {
                "valid": True,
                "check": "amcheck bt_index_check(heapallindexed)",
                "indexes": [r[0] for r in rows],
            }
        except (psycopg.errors.UndefinedFile, psycopg.errors.InsufficientPrivilege) as e:
            return {"valid": None, "check": "amcheck", "note": f"not available: {e}"}
        except psycopg.Error as e:
            return {"valid": False, "check": "amcheck", "error": str(e)}
