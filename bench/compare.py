"""`bench compare`: the identical workload (one schedule object, so one schedule hash) on several
backends, with repeats and optionally a fault, then one comparison report.

Backends run one after another, never at the same time: on a 2-core machine two deployments
would measure each other. Their order rotates between repeats so a slow drift of the machine
(thermal, page cache) does not always land on the same backend.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from backends.base import get
from backends.errors import ConfigError
from bench import experiment, signals
from bench.crash import trial_figures
from bench.nemesis import FaultSpec, check_supported


def plan_order(backends: list[str], repeats: int) -> list[tuple[int, str]]:
    """(repeat, backend) pairs, the backend order rotated by one each repeat."""
    out = []
    for r in range(repeats):
        k = r % len(backends)
        out.extend((r, b) for b in backends[k:] + backends[:k])
    return out


def run_compare(
    base: experiment.Request,
    backends: list[str],
    options: dict[str, dict[str, Any]],
    repeats: int,
    fault: FaultSpec | None,
) -> list[dict[str, Any]]:
    """Run every (repeat, backend); returns one record per run with its directory."""
    if repeats < 1:
        raise ConfigError("--repeats must be at least 1")
    for b in backends:
        info = get(b)  # unknown backend: refused before anything runs
        if fault is not None:
            check_supported(fault.fault, info.factory, b, options[b])
    records = []
    for repeat, backend in plan_order(backends, repeats):
        req = dataclasses.replace(
            base, backend=backend, options=options[backend], fault=fault, trial=repeat
        )
        out = experiment.run(req)
        if out.interrupted_by:  # Ctrl-C / SIGTERM stops the comparison, not only this run
            signals.raise_for(out.interrupted_by)
        if out.manifest["schedule"]["hash"] != base.schedule.hash:  # a harness bug, not input
            raise RuntimeError("schedule hash changed between backends")
        rec = {
            "backend": backend,
            "repeat": repeat,
            "run_dir": str(out.run_dir),
            "verdict": out.summary.get("verdict"),
            "partial": out.manifest.get("partial"),
        }
        if fault is not None:
            rec.update(trial_figures(out))
        records.append(rec)
    return records


def run_dirs(records: list[dict[str, Any]]) -> list[Path]:
    return [Path(r["run_dir"]) for r in records]
