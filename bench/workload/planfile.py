"""Every plan of a schedule as JSON in one file, written before the deployment starts.

A store that keeps the plan as JSON (sqlite, postgres) submits that text. Building a plan from
its seeded ``Random`` and serializing it costs ~37 µs a run (~6 µs a step); done during the
drive it is harness CPU on the cores the backend is measured on. Held in memory for the whole
schedule it is ~600 bytes a run (430 MB for a 1-hour run at 200 runs/s). So the plans are
written once, before the deployment starts, to a file in the run's work directory, and read
back with one ``pread`` a run; the harness keeps 8 bytes a run (the offsets).
"""

from __future__ import annotations

import errno
import os
from array import array
from collections.abc import Callable
from pathlib import Path

from backends.base import Plan, StoredPlan
from backends.errors import DiskFull

WRITE_BUFFER = 1 << 20


class PlanFile:
    """Run ``seq``'s plan text is bytes ``offsets[seq]:offsets[seq + 1]`` of ``path``."""

    def __init__(self, path: Path, offsets: array[int]) -> None:
        self.path = path
        self._offsets = offsets
        self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    @classmethod
    def write(cls, n: int, plan: Callable[[int], Plan], path: Path) -> PlanFile:
        """Build plans ``0..n-1`` with ``plan`` and write them to ``path``."""
        offsets = array("q", [0]) * (n + 1)
        pos = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "wb", buffering=WRITE_BUFFER) as f:
                for seq in range(n):
                    data = plan(seq).to_json().encode()
                    offsets[seq] = pos
                    f.write(data)
                    pos += len(data)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskFull(path) from e
            raise
        offsets[n] = pos
        return cls(path, offsets)

    def plan(self, seq: int) -> StoredPlan:
        if self._fd is None:
            raise ValueError(f"plan file {self.path} is closed")
        start = self._offsets[seq]
        return StoredPlan(os.pread(self._fd, self._offsets[seq + 1] - start, start).decode())

    def nbytes(self) -> int:
        """Memory held per run (the offsets)."""
        return self._offsets.itemsize * len(self._offsets)

    def close(self) -> None:
        """Close and delete the file (it is rebuilt from the seed whenever needed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
