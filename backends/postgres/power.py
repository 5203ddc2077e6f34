"""What each ``--synchronous-commit`` setting promises through a power loss (``lose-power``).

From PostgreSQL's documentation of ``synchronous_commit``
(https://www.postgresql.org/docs/current/runtime-config-wal.html#GUC-SYNCHRONOUS-COMMIT) and of
asynchronous commit (https://www.postgresql.org/docs/current/wal-async-commit.html):

* on / local / remote_write / remote_apply: COMMIT returns after the commit's WAL record is
  flushed to the server's own disk: nothing acknowledged may be lost (fsync is on).
* off: COMMIT returns before the flush; the WAL writer flushes in the background, and "the
  maximum delay is three times wal_writer_delay": acks younger than that may be lost. The
  database itself stays consistent ("does not create any risk of database inconsistency").
"""

from __future__ import annotations

import re

from backends.promises import Promise

FAULT = "lose-power"
DEFAULT_WAL_WRITER_DELAY_S = 0.2  # PostgreSQL's default, used only when the setting is unknown


def wal_writer_delay_s(value: str | None) -> float | None:
    """``current_setting('wal_writer_delay')`` ("200ms", "1s") in seconds; None if unreadable."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*", value or "")
    if not m:
        return None
    scale = {"ms": 0.001, None: 0.001, "s": 1.0, "min": 60.0}[m.group(2)]
    return float(m.group(1)) * scale


def power_loss_promise(synchronous_commit: str, wal_writer_delay: str | None) -> Promise:
    if synchronous_commit != "off":
        return Promise(
            FAULT,
            0.0,
            True,
            f"synchronous_commit={synchronous_commit}: COMMIT returns after its WAL record is "
            "flushed to the server's disk (fsync on)",
        )
    delay = wal_writer_delay_s(wal_writer_delay)
    known = delay is not None
    delay = delay if delay is not None else DEFAULT_WAL_WRITER_DELAY_S
    return Promise(
        FAULT,
        3 * delay,
        True,
        "synchronous_commit=off: COMMIT returns before the WAL flush; the WAL writer flushes "
        f"within 3 x wal_writer_delay ({wal_writer_delay if known else 'unknown, default 200ms'})"
        " (postgresql.org/docs/current/wal-async-commit.html); the database stays consistent",
    )
