"""kill-store: SIGKILL the store process(es), restart them after --restart-delay."""

from __future__ import annotations

from backends.base import KillableStore
from bench.faults import Fault, register


@register
class KillStore(Fault):
    name = "kill-store"
    capability = KillableStore
    refusal = "it has no store process the harness can kill"
    help = "SIGKILL the store process(es), restart them after --restart-delay"

    def inject(self, dep: KillableStore) -> None:
        dep.kill_store()

    def recover(self, dep: KillableStore) -> None:
        dep.start_store()  # returns when the store accepts requests again
