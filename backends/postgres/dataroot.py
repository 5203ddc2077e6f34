"""Where an embedded server keeps its data when the harness is root: a harness-owned temporary
root ``<tmp>/durabench-pg-<harness pid>-<random>`` instead of the results directory.

The server runs as an unprivileged system user, which must traverse every parent of its data
directory. Under the results directory that meant adding o+x to each parent (a 0700 home became
traversable by everyone, for good). The temporary root needs no such change: the system
temporary directory is world-traversable, the root itself is 0711 and owned by the harness's
user, and the data and socket directories inside are the system user's, mode 0700 (workload
payloads are never world-readable). The root is removed when the deployment stops; with
``--keep-data`` the data directories are moved into the run's ``work/`` first.

A SIGKILLed harness cannot clean up: the next start removes every ``durabench-pg-*`` directory
whose owner is gone (the harness pid in the name, or the postmaster pid in a socket lock file
of the older ``durabench-pg-<digest>`` socket directories) and says so.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import psutil

PREFIX = "durabench-pg-"
_OURS = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]+$")


def create() -> Path:
    root = Path(tempfile.gettempdir()) / f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    root.mkdir(mode=0o711)
    root.chmod(0o711)  # mkdir's mode is filtered by the umask
    return root


def remove(root: Path, keep_in: Path | None = None) -> None:
    """Remove ``root``; with ``keep_in``, its directories are moved there first (--keep-data)."""
    if keep_in is not None and root.exists():
        keep_in.mkdir(parents=True, exist_ok=True)
        for d in root.iterdir():
            if d.is_dir() and not d.name.endswith("-socket"):
                shutil.move(str(d), str(keep_in / d.name))
    shutil.rmtree(root, ignore_errors=True)


def clean_stale() -> list[tuple[Path, int]]:
    """Remove the ``durabench-pg-*`` directories whose owner process is gone; returns each
    removed path with the pid that owned it. A directory whose owner cannot be told is kept."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        owner = _owner(path)
        if owner is None or owner == os.getpid() or _alive(owner, path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append((path, owner))
    return removed


def _owner(path: Path) -> int | None:
    if m := _OURS.match(path.name):
        return int(m.group(1))
    for lock in path.glob(".s.PGSQL.*.lock"):  # an older socket directory: the postmaster's pid
        try:
            return int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return None


def _alive(pid: int, path: Path) -> bool:
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
