"""Where the primary's WAL and its streaming standby are, for the exposure sampler.

local = ``pg_current_wal_lsn()`` on the primary (a COMMIT that returned wrote its commit record
below it); replica = ``pg_last_wal_receive_lsn()`` on the standby: WAL received *and flushed*
there, which a promotion replays, so a commit at or below it survives the loss of the primary.
Both as bytes since 0/0. Each side keeps one autocommit connection, reopened after an error
(a killed primary: that side reads None until a new primary; the generation is the primary's
port, so positions of a promoted standby are never compared with the old primary's)."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from backends.base import ReplicationPosition

UNIT = "WAL LSN (bytes)"
_LOCAL = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
_REPLICA = "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint"


class _Side:
    def __init__(self) -> None:
        self.conn: psycopg.Connection[Any] | None = None
        self.server: Any = None

    def read(self, server: Any, query: str) -> int | None:
        if server is None:
            return None
        if server is not self.server:
            self.close()
            self.server = server
        try:
            if self.conn is None:
                self.conn = server.connect(connect_timeout=1)
            row = self.conn.execute(query).fetchone()
        except psycopg.Error:
            self.close()
            return None
        return None if row is None or row[0] is None else int(row[0])

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


class LsnPositions:
    def __init__(self) -> None:
        self.primary = _Side()
        self.standby = _Side()

    def read(self, primary: Any, standby: Any) -> ReplicationPosition:
        local = self.primary.read(primary, _LOCAL)
        replica = self.standby.read(standby, _REPLICA)
        return ReplicationPosition(str(getattr(primary, "port", "?")), local, replica, UNIT)

    def close(self) -> None:
        self.primary.close()
        self.standby.close()
