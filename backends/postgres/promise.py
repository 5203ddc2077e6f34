"""What a Postgres deployment promises to keep through each fault (``Deployment.promise``).

* kill-worker / pause-store: nothing acked is lost. Workers are clients: every ack is a COMMIT
  the server returned, and killing or stopping processes does not undo it.
* kill-store (SIGKILL the postmaster, crash recovery from the WAL): with any
  ``synchronous_commit`` but ``off`` the commit's WAL is flushed before COMMIT returns: 0 lost.
  With ``off`` the WAL records may still sit in shared WAL buffers; the WAL writer writes them
  every ``wal_writer_delay`` and the PostgreSQL manual bounds the risk window at three times
  that ("Asynchronous Commit"). A SIGKILLed server loses what was not written yet.
* lose-node: without a standby, total loss. With a synchronous standby and a
  ``synchronous_commit`` that waits for it (on, remote_write, remote_apply): 0 lost (the standby
  survives the node and is promoted; promotion replays all WAL it received). Otherwise (async
  standby, or ``local`` / ``off``) acks younger than the standby's lag at the fault may be lost:
  the lag is read from the primary's ``pg_stat_replication`` just before the kill (replay lag
  at the standby's last reply + that reply's age + time from the reading to the kill).
"""

from __future__ import annotations

import re
from typing import Any

from backends.promises import Promise

WAITS_FOR_STANDBY = ("on", "remote_write", "remote_apply")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def setting_seconds(value: str | None) -> float | None:
    """A Postgres time setting as shown by current_setting ("200ms", "1s") in seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|min|h)?\s*", value or "")
    if not m:
        return None
    return float(m.group(1)) * _UNITS[m.group(2) or "ms"]  # a bare number is in ms


class PostgresPromises:
    """Mixin for ``PostgresDeployment``: uses its sync_commit, standby_mode, settings and the
    lag recorded by ``lose_node`` (``lag_at_fault``)."""

    def promise(self, fault: str) -> Promise | None:
        d: Any = self
        sc = d.sync_commit
        if fault in ("kill-worker", "pause-store"):
            return Promise(
                fault,
                0.0,
                True,
                "every ack is a COMMIT the server returned; killing or stopping processes "
                "does not undo a commit",
            )
        if fault == "kill-store":
            if sc != "off":
                return Promise(
                    fault,
                    0.0,
                    True,
                    f"synchronous_commit={sc}: COMMIT returns after the WAL is flushed locally; "
                    "crash recovery replays it",
                )
            delay = setting_seconds(d.settings.get("wal_writer_delay"))
            if delay is None:
                return None
            return Promise(
                fault,
                3 * delay,
                True,
                "synchronous_commit=off: COMMIT returns before its WAL is written; the WAL "
                f"writer writes it every wal_writer_delay ({delay * 1000:g} ms), and the "
                "PostgreSQL manual bounds the risk window at 3 x wal_writer_delay",
            )
        if fault == "lose-node":
            return self._lose_node_promise(fault, sc)
        return None

    def _lose_node_promise(self, fault: str, sc: str) -> Promise | None:
        d: Any = self
        if d.standby_mode == "none":
            return Promise(
                fault, None, True, "no standby: the lost data directory was the only copy"
            )
        if d.standby_mode == "sync" and sc in WAITS_FOR_STANDBY:
            return Promise(
                fault,
                0.0,
                True,
                f"synchronous standby with synchronous_commit={sc}: COMMIT returns after the "
                "standby has the WAL; it survives the node and is promoted",
            )
        lag = getattr(d, "lag_at_fault", None)
        if not lag or lag.get("error"):
            return None  # the bound is the lag at the fault: without a reading, no promise
        why = (
            "asynchronous standby"
            if d.standby_mode == "async"
            else f"synchronous standby, but synchronous_commit={sc} does not wait for it"
        )
        after_read = float(lag.get("read_before_kill_s") or 0.0)
        if lag.get("flush_lag_bytes") == 0:
            # at its last reply the standby had flushed everything the primary had written
            # when we read: only commits made between the reading and the kill can be missing
            return Promise(
                fault,
                after_read,
                True,
                f"{why}, caught up when read (pg_stat_replication, 0 bytes behind) "
                f"{after_read:.3f} s before the kill: only acks younger than that may be lost",
            )
        lag_s, reply_age = lag.get("replay_lag_s"), lag.get("reply_age_s")
        if lag_s is None or reply_age is None:
            return None
        # replay_lag is measured up to the standby's last reply: WAL flushed on the primary
        # more than (lag + age of that reply) before the reading was on the standby
        bound = float(lag_s) + float(reply_age) + after_read
        return Promise(
            fault,
            bound,
            True,
            f"{why}: acks younger than its lag at the fault may be missing after promotion: "
            f"replay lag {float(lag_s):.3f} s ({lag.get('flush_lag_bytes')} bytes not flushed "
            f"there) at its last reply, {float(reply_age):.3f} s before the reading, read "
            f"{after_read:.3f} s before the kill (pg_stat_replication; replay lag >= flush "
            "lag, and promotion keeps all flushed WAL)",
        )
