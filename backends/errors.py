"""One base exception type for the whole project. Messages name the backend (or the input) and
say what to do next; only ``bench.cli`` turns them into ``error: ...`` and an exit code."""

from __future__ import annotations


class DurabenchError(Exception):
    """Base of every error durabench raises on purpose."""


class ConfigError(DurabenchError):
    """Bad input: unknown backend, malformed workload file, invalid option value."""


class BackendError(DurabenchError):
    """A backend's deployment cannot start or stops working (missing binary, port in use,
    unreachable store)."""


class ReplicaStopError(BackendError):
    """Every process stopped, but the replica's last sync failed: the primary is whole, the
    replica may lack its last commits."""


class Indeterminate(DurabenchError):
    """An operation whose outcome the caller never learned (timeout, crash). Neither success
    nor loss: the history records it as ``info``."""


class LeaseLost(DurabenchError):
    """A worker tried to write for a run another worker now owns (fenced out)."""


class DiskFull(DurabenchError):
    """The filesystem holding the results filled up: the run stops, what was written is kept
    (marked partial)."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"disk full at {path}: the run was stopped; what was written is kept, marked partial"
        )
        self.path = path
