"""What the dev server promises through a power loss (``lose-power``): durabench runs its SQLite
file with ``synchronous=FULL`` (WAL or rollback journal), so every persisted history write is
fsynced before the server answers: nothing acknowledged may be lost, and the file stays intact
(sqlite.org/pragma.html#pragma_synchronous)."""

from __future__ import annotations

from backends.promises import Promise

FAULT = "lose-power"


def power_loss_promise(journal_mode: str) -> Promise:
    return Promise(
        FAULT,
        0.0,
        True,
        f"the dev server's SQLite file runs journal_mode={journal_mode}, synchronous=FULL: every "
        "commit is fsynced before the server acknowledges",
    )
