"""TEST ONLY: a deliberately broken engine, so tests can prove the checkers catch a real loss
under the real harness. Never set this outside tests.

``DURABENCH_TEST_ONLY_BROKEN_ENGINE=drop-commit:N`` makes the durable executor acknowledge every
N-th non-final step checkpoint (per worker) WITHOUT writing it to the store: the step-committed
ack is in the history, the journal entry never exists. A worker running broken says so in the
history (``info broken-engine``) before it does anything, so no result can carry it unnoticed.
"""

from __future__ import annotations

import os

ENV = "DURABENCH_TEST_ONLY_BROKEN_ENGINE"
MODES = ("drop-commit",)


class BrokenEngine:
    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get(ENV, "") if spec is None else spec
        self.every = 0
        if spec:
            mode, _, n = spec.partition(":")
            if mode not in MODES or not n.isdigit() or int(n) < 1:
                raise ValueError(f"{ENV}: expected drop-commit:N (N >= 1), got {spec!r}")
            self.every = int(n)
        self._seen = 0
        self.spec = spec

    @property
    def active(self) -> bool:
        return self.every > 0

    def drop_commit(self, final: bool) -> bool:
        """True when this checkpoint must be acked without being written."""
        if not self.active or final:
            return False
        self._seen += 1
        return self._seen % self.every == 0
