"""Resource use of every process a measurement involves: each of the backend's processes by role,
and the harness itself (so a reader can see when the harness, not the backend, was busy).

Memory has one definition for every backend and role: ``peak_pss_bytes``, the largest sampled
PSS summed over the role's process tree (shared pages charged once, in proportion), sampled with
the CPU figures (every 0.5 s during the drive, so a shorter spike can be missed). Beside it,
``peak_rss_hwm_bytes`` is the kernel's own peak RSS (VmHWM) where one exists: a role that is a
single process, and the harness; it is None for a process tree.

The harness's memory of the drive alone (before the post-run checks, which read the whole
history) is ``rss_bytes_end_of_drive`` (VmRSS when the drain ended) and
``peak_rss_hwm_bytes_drive`` (VmHWM then: the peak from start-up to the end of the drive)."""

from __future__ import annotations

import os
from typing import Any

import psutil

from backends.base import Deployment
from backends.common.process import ManagedProcess, vm_hwm


class ResourceSampler:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.rows: list[dict[str, Any]] = []
        self._me = psutil.Process()
        self._seen: dict[str, ManagedProcess] = {}
        self._first: dict[str, tuple[float, float]] = {}  # role -> (t, cpu_s) at first sample
        self._last: dict[str, tuple[float, float]] = {}
        self._harness_peak_pss = 0
        self._drive_end: dict[str, int | None] = {}

    def sample(self, t: float) -> None:
        for role, proc in self.deployment.processes().items():
            self._seen[role] = proc
            u = proc.sample()
            self._mark(role, t, u.cpu_s)
            self.rows.append(
                {
                    "t": round(t, 3),
                    "role": role,
                    "pid": proc.pid,
                    "cpu_s": round(u.cpu_s, 4),
                    "rss_bytes": u.rss_bytes,
                    "pss_bytes": u.pss_bytes,
                }
            )
        ct = self._me.cpu_times()
        self._mark("harness", t, ct.user + ct.system)
        pss = self._me.memory_full_info().pss
        self._harness_peak_pss = max(self._harness_peak_pss, pss)
        self.rows.append(
            {
                "t": round(t, 3),
                "role": "harness",
                "pid": os.getpid(),
                "cpu_s": round(ct.user + ct.system, 4),
                "rss_bytes": self._me.memory_info().rss,
                "pss_bytes": pss,
            }
        )

    def drive_ended(self) -> None:
        """The harness's memory when the drive (arrivals and drain) ended, before any check."""
        self._drive_end = {
            "rss_bytes_end_of_drive": self._me.memory_info().rss,
            "peak_rss_hwm_bytes_drive": vm_hwm(os.getpid()),
        }

    def _mark(self, role: str, t: float, cpu_s: float) -> None:
        self._first.setdefault(role, (t, cpu_s))
        self._last[role] = (t, cpu_s)

    def _during(self, role: str) -> dict[str, Any]:
        """CPU used between the first and the last sample (the drive, without start-up and
        without the analysis afterwards), and as a share of one core."""
        if role not in self._first:
            return {}
        (t0, c0), (t1, c1) = self._first[role], self._last[role]
        span = t1 - t0
        return {
            "cpu_s_during_drive": c1 - c0,
            "cpu_util_during_drive": (c1 - c0) / span if span > 0 else None,
        }

    def summary(self) -> dict[str, Any]:
        """CPU seconds (whole life, and during the drive), peak memory (module docstring) and
        restarts by role."""
        out: dict[str, Any] = {}
        for role, proc in sorted(self._seen.items()):
            u = proc.usage
            out[role] = {
                "cpu_s": u.cpu_s,
                "peak_pss_bytes": u.peak_pss_bytes,
                "peak_rss_hwm_bytes": u.peak_rss_hwm_bytes,
                "process_tree": u.tree,
                "restarts": u.restarts,
                "pid": proc.pid,
                **self._during(role),
            }
        ct = self._me.cpu_times()
        out["harness"] = {
            "cpu_s": ct.user + ct.system,
            "peak_pss_bytes": self._harness_peak_pss,
            "peak_rss_hwm_bytes": vm_hwm(os.getpid()),
            "process_tree": False,
            "restarts": 0,
            "pid": os.getpid(),
            **self._drive_end,
            **self._during("harness"),
        }
        return out
