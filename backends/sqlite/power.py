"""What each ``--synchronous`` setting promises through a power loss (``lose-power``).

From SQLite's documentation of ``PRAGMA synchronous`` (https://sqlite.org/pragma.html#pragma_synchronous)
and of WAL mode (https://sqlite.org/wal.html#performance_considerations):

* FULL / EXTRA: the WAL is fsynced at every commit: nothing acknowledged may be lost.
* NORMAL (WAL): "WAL mode is always consistent with synchronous=NORMAL, but WAL mode does lose
  durability. A transaction committed in WAL mode with synchronous=NORMAL might roll back
  following a power loss or system crash": the WAL is synced only at a checkpoint. With
  Litestream running, the checkpoints are Litestream's and nothing bounds the time between them,
  so no bound on the age of a lost ack; the file stays consistent.
* OFF: SQLite never syncs: "the database might become corrupted if the operating system crashes
  or the computer loses power": no bound, and no promise of an intact file.
"""

from __future__ import annotations

from backends.promises import Promise

FAULT = "lose-power"


def power_loss_promise(synchronous: str) -> Promise:
    mode = synchronous.upper()
    if mode in ("FULL", "EXTRA"):
        return Promise(
            FAULT, 0.0, True, f"synchronous={mode} fsyncs the WAL at every commit (WAL mode)"
        )
    if mode == "NORMAL":
        return Promise(
            FAULT,
            None,
            True,
            "synchronous=NORMAL in WAL mode syncs the WAL only at a checkpoint: the commits since "
            "the last checkpoint may roll back, with no bound on their age; the file stays "
            "consistent (sqlite.org/pragma.html#pragma_synchronous)",
        )
    return Promise(
        FAULT,
        None,
        False,
        "synchronous=OFF never syncs: anything may be lost and the file may be corrupted "
        "(sqlite.org/pragma.html#pragma_synchronous)",
    )
