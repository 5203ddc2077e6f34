"""``results/<run-id>/``: the on-disk result of one `bench run`. Data first, formatting later.

Layout
  manifest.json     what was run and where: command, workload + schedule hash, seed, settings,
                    backend config and topology, versions, machine, times, partial flag
  summary.json      the figures (throughput, latency percentiles + encoded HDR histograms,
                    resources, backend metrics, warnings)
  runs.csv          one row per scheduled run (pandas.read_csv reads it as is)
  steps.csv         one row per step checkpoint
  timeseries.csv    one row per second: arrivals, completions, commits, latency
  resources.csv     per-process CPU seconds, RSS and PSS, sampled
  history/*.jsonl   the raw history, one file per process (backends.history)
  logs/*.log        every child process's output
Group files ``results/<stamp>-<random>-<kind>.json`` (kind crash, sweep, compare) list the run
directories of one command; they carry the same ``schema_version``.

Schema history (bump SCHEMA_VERSION on any incompatible change, and say what changed):
  1  first version
  2  checks: one write_loss check on every run (acked_runs_durable gone), promise, replication,
     history; figures that cannot fail have valid None. Memory: peak_pss_bytes (sampled PSS of
     the process tree) and peak_rss_hwm_bytes (VmHWM, single processes) replace peak_rss_bytes;
     runs/s counts completed runs only; offered_rate_per_s is over the measured window (the
     schedule's average is schedule_rate_per_s); run latency has censored samples; untrusted.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import secrets
import socket
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from backends.base import registered

SCHEMA_VERSION = 2
# the harness's own; each backend adds its own (``BackendInfo.packages``)
PACKAGES = ("durabench", "hdrhistogram", "psutil", "pandas", "rich")


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_dir(root: Path, backend: str, workload: str) -> Path:
    """A run directory no other run (even one started in the same second) has: the random
    suffix is retried until the directory is created by us (mkdir is atomic)."""
    path = _unique_dir(root, lambda: f"{_stamp()}-{backend}-{workload}-{secrets.token_hex(2)}")
    for sub in ("history", "logs", "work"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "work").chmod(0o700)  # databases hold workload payloads: not for other users
    return path


def new_report_dir(root: Path) -> Path:
    """``<stamp>-<random>-report``: a report directory no other command (even one started in
    the same second) has, created here (mkdir is atomic)."""
    return _unique_dir(root, lambda: f"{_stamp()}-{secrets.token_hex(3)}-report")


def _unique_dir(root: Path, name: Callable[[], str]) -> Path:
    """A new directory under ``root`` named by ``name()``, retried until this call created it
    (mkdir is atomic: two commands started in the same second never share one)."""
    root.mkdir(parents=True, exist_ok=True)
    while True:
        path = root / name()
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path


def write_new_json(root: Path, suffix: str, data: dict[str, Any]) -> Path:
    """A new versioned JSON file ``<stamp>-<random>-<suffix>.json`` under ``root``, written
    atomically (a complete temporary file hard-linked to its name, which fails rather than
    replaces when another process took the name: never overwritten, never half-written)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{suffix}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(dumps(data))
        while True:
            path = root / f"{_stamp()}-{secrets.token_hex(3)}-{suffix}.json"
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue
            return path
    finally:
        tmp.unlink(missing_ok=True)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "cpu_model": cpu_model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
    }


def package_versions() -> dict[str, str]:
    """Installed versions of the harness's packages and of every registered backend's."""
    names = list(PACKAGES)
    for info in registered().values():
        names += [p for p in info.packages if p not in names]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _clean(obj: Any) -> Any:
    """JSON has no NaN: write null instead, so every JSON reader accepts the files."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def dumps(data: dict[str, Any]) -> str:
    """A result file's text: versioned, NaN written as null."""
    return json.dumps(_clean({"schema_version": SCHEMA_VERSION, **data}), indent=2, default=str)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(dumps(data))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
