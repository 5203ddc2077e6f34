"""Resource use of every process a measurement involves: each of the backend's processes by role,
and the harness itself (so a reader can see when the harness, not the backend, was busy)."""

from __future__ import annotations

import os
from typing import Any

import psutil

from backends.base import Deployment
from backends.common.process import ManagedProcess, _vm_hwm


class ResourceSampler:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.rows: list[dict[str, Any]] = []
        self._me = psutil.Process()
        self._seen: dict[str, ManagedProcess] = {}

    def sample(self, t: float) -> None:
        for role, proc in self.deployment.processes().items():
            self._seen[role] = proc
            u = proc.sample()
            self.rows.append(
                {
                    "t": round(t, 3),
                    "role": role,
                    "pid": proc.pid,
                    "cpu_s": round(u.cpu_s, 4),
                    "rss_bytes": u.rss_bytes,
                }
            )
        ct = self._me.cpu_times()
        self.rows.append(
            {
                "t": round(t, 3),
                "role": "harness",
                "pid": os.getpid(),
                "cpu_s": round(ct.user + ct.system, 4),
                "rss_bytes": self._me.memory_info().rss,
            }
        )

    def summary(self) -> dict[str, Any]:
        """CPU seconds, peak RSS and restarts by role, over the whole measurement."""
        out: dict[str, Any] = {}
        for role, proc in sorted(self._seen.items()):
            u = proc.usage
            out[role] = {
                "cpu_s": u.cpu_s,
                "peak_rss_bytes": u.peak_rss_bytes,
                "restarts": u.restarts,
                "pid": proc.pid,
            }
        ct = self._me.cpu_times()
        out["harness"] = {
            "cpu_s": ct.user + ct.system,
            "peak_rss_bytes": _vm_hwm(os.getpid()),
            "restarts": 0,
            "pid": os.getpid(),
        }
        return out
