"""A harness killed with SIGKILL cannot clean up: its run directory keeps ``work/`` (databases,
object store) and a manifest saying "still running". The next run in the same results
directory removes that ``work/`` (unless the dead run asked for --keep-data), marks the
manifest with what happened, and says so. Only runs whose harness process is gone are touched:
the manifest records the harness pid and its start time, so a reused pid is not mistaken for
the harness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psutil

from bench import results

STILL_RUNNING = "still running (or the harness died)"


def owner(pid: int) -> dict[str, Any]:
    """What the manifest records about the harness process."""
    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def clean(root: Path) -> list[Path]:
    """Remove the ``work/`` of every run under ``root`` whose harness died; returns them."""
    removed = []
    if not root.is_dir():
        return removed
    for work in root.glob("*/work"):
        manifest_path = work.parent / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        harness = manifest.get("harness") or {}
        if manifest.get("partial_reason") != STILL_RUNNING or "pid" not in harness:
            continue
        if _alive(harness):
            continue
        note = f"the harness (pid {harness['pid']}) died before the run ended"
        if not manifest.get("keep_data"):
            shutil.rmtree(work, ignore_errors=True)
            note += "; its work/ was removed by a later run"
            removed.append(work)
        manifest["partial_reason"] = note
        results.write_json(manifest_path, manifest)
    return removed


def _alive(harness: dict[str, Any]) -> bool:
    try:
        p = psutil.Process(int(harness["pid"]))
        return abs(p.create_time() - float(harness.get("started", 0))) < 1
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, ValueError):
        return True  # cannot tell: leave it
