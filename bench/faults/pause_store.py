"""pause-store: SIGSTOP the store process(es) for --pause seconds, then SIGCONT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backends.base import PausableStore
from bench.faults import Fault, register

if TYPE_CHECKING:
    from bench.nemesis import FaultSpec


@register
class PauseStore(Fault):
    name = "pause-store"
    capability = PausableStore
    refusal = "it has no store process the harness can pause"
    help = "SIGSTOP the store process(es) for --pause, then SIGCONT"

    def hold_s(self, spec: FaultSpec) -> float:
        return spec.pause_s

    def inject(self, dep: PausableStore) -> None:
        dep.pause_store()

    def recover(self, dep: PausableStore) -> None:
        dep.resume_store()
