"""lose-power: SIGKILL every process of the node and drop every write it had not fsynced, then
remount, restart and recover after --restart-delay. The node's data directory sits on the lazy
filesystem (``backends.common.lazyfs``) for these trials only."""

from __future__ import annotations

from typing import Any

from backends.base import PowerLosable
from backends.common import powerloss
from bench.faults import Fault, register


@register
class LosePower(Fault):
    name = "lose-power"
    capability = PowerLosable
    refusal = "it has no node of its own whose power the harness can cut"
    help = "SIGKILL the node's processes, drop its unsynced writes, remount and restart"

    def unavailable(self) -> str | None:
        return powerloss.unavailable()

    def prepare(self, dep: PowerLosable) -> None:
        dep.prepare_power_loss()

    def inject(self, dep: PowerLosable) -> None:
        dep.lose_power()

    def recover(self, dep: PowerLosable) -> dict[str, Any]:
        return dep.recover_power()
