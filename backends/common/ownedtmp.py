"""Temporary directories named after the process that owns them: ``<tmp>/<prefix><pid>-<random>``.

A SIGKILLed harness cannot remove what it made under the system temporary directory (atexit
does not run). Because the owner's pid is in the name, the next start can remove exactly the
directories whose owner is gone, and nothing else: a directory whose owner still runs, or
whose owner cannot be told, is kept.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import psutil


def create(prefix: str, mode: int = 0o700) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    path.chmod(mode)  # mkdtemp makes 0700; some owners need the server's user to traverse it
    return path


def owner(prefix: str, path: Path) -> int | None:
    """The pid in an owned directory's name, or None if the name is not of that form."""
    m = re.match(rf"^{re.escape(prefix)}(\d+)-", path.name)
    return int(m.group(1)) if m else None


def alive(pid: int, path: Path) -> bool:
    """The pid runs and was started before the directory was made (not a reused pid)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: keep the directory
    try:
        return started <= path.stat().st_mtime + 1
    except OSError:
        return True


def clean_stale(prefix: str) -> list[tuple[Path, int]]:
    """Remove every ``<prefix><pid>-*`` directory whose owner is gone; returns each removed
    path with the pid that owned it."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = owner(prefix, path)
        if pid is None or pid == os.getpid() or alive(pid, path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append((path, pid))
    return removed
