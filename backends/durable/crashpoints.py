"""Named crash points (after DBOS's debug triggers): hit an exact crash window deterministically
instead of sleeping and hoping.

A worker started with ``DURABENCH_CRASH_AT=<point>:<n>`` SIGKILLs itself the n-th time execution
reaches ``<point>``. Points in the durable executor:

  before-commit   a step's work is done, its result not yet committed
  after-commit    the step is committed in the store, the ack not yet recorded in the history
  after-ack       the step's ack is recorded in the history
"""

from __future__ import annotations

import os
import signal

POINTS = ("before-commit", "after-commit", "after-ack")
ENV = "DURABENCH_CRASH_AT"


class CrashPoints:
    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get(ENV, "") if spec is None else spec
        self.point: str | None = None
        self.remaining = 0
        if spec:
            point, _, n = spec.partition(":")
            if point not in POINTS:
                raise ValueError(f"{ENV}: unknown crash point {point!r}; known: {POINTS}")
            self.point = point
            self.remaining = int(n or 1)

    def armed(self, point: str) -> bool:
        """True if the next ``hit(point)`` kills this process."""
        return point == self.point and self.remaining == 1

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
