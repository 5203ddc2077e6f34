"""kill-worker: SIGKILL every worker process, restart them after --restart-delay."""

from __future__ import annotations

from typing import Any

from backends.base import KillableWorkers
from bench.faults import Fault, register


@register
class KillWorker(Fault):
    name = "kill-worker"
    capability = KillableWorkers
    refusal = "its workers are not processes the harness can kill"
    help = "SIGKILL every worker process, restart them after --restart-delay"

    def inject(self, dep: KillableWorkers) -> dict[str, Any]:
        names = dep.worker_names()
        for name in names:  # back to back: one fault, one time
            dep.kill_worker(name)
        return {"killed_workers": names}

    def recover(self, dep: KillableWorkers) -> None:
        for name in dep.worker_names():
            dep.start_worker(name)
