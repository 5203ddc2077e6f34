"""A node's data directory on the lazy filesystem (``backends.common.lazyfs``), for lose-power
trials only: the directory a backend already uses becomes a FUSE mount over a backing directory
next to it (``<dir>.backing``). Writes not yet fsynced live only in the mount's memory, so a
power loss (``lose``) can drop them; ``remount`` then gives the node a fresh mount (and a fresh
kernel page cache) over what the backing directory really holds.

Plain runs never create a ``PowerNode``: their throughput is measured without the lazy
filesystem, whose cost (one FUSE round trip per request) would otherwise be in every figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.errors import BackendError

FAULT = "lose-power"


def unavailable() -> str | None:
    """Why the lazy filesystem cannot be used here (None when it can)."""
    try:
        from backends.common.lazyfs import available
    except ImportError as e:
        return f"the lazy filesystem (backends.common.lazyfs) is not installed ({e})"
    return available()


def clean_stale(root: Path) -> list[str]:
    """Unmount lazy mounts under ``root`` whose server died with an earlier harness."""
    if unavailable() is not None:
        return []
    from backends.common.lazyfs import clean_stale_mounts

    return clean_stale_mounts(root)


class PowerNode:
    """One lazy mount at ``mountpoint`` for a node's data. ``prepare_backing`` runs on the
    backing directory before the first mount (e.g. hand it to the Postgres system user, so the
    mount root shows that owner)."""

    def __init__(
        self,
        mountpoint: Path,
        logdir: Path,
        prepare_backing: Callable[[Path], None] | None = None,
    ) -> None:
        self.mountpoint = Path(mountpoint).absolute()
        self.backing = self.mountpoint.with_name(self.mountpoint.name + ".backing")
        self.log_path = Path(logdir).absolute() / f"lazyfs-{self.mountpoint.name}.log"
        self.prepare_backing = prepare_backing
        self.mount: Any = None
        self.mounts = 0
        self.losses: list[dict[str, Any]] = []

    def start(self) -> None:
        if self.mount is not None:
            return
        why = unavailable()
        if why is not None:
            raise BackendError(f"{FAULT}: {why}")
        from backends.common.lazyfs import LazyMount

        if self.mounts == 0:
            self.backing.mkdir(parents=True, exist_ok=True)
            if self.prepare_backing is not None:
                self.prepare_backing(self.backing)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        mount = LazyMount(self.backing, self.mountpoint, self.log_path)
        mount.start()
        self.mount = mount
        self.mounts += 1

    def lose(self) -> dict[str, Any]:
        """Drop every write not yet fsynced (the caller has SIGKILLed every user first)."""
        if self.mount is None:
            raise BackendError(f"{FAULT}: the lazy filesystem is not mounted")
        t0 = time.monotonic()
        dropped = dict(self.mount.lose_power() or {})
        dropped["lose_s"] = time.monotonic() - t0
        self.losses.append(dropped)
        return dropped

    def remount(self) -> float:
        """Unmount and mount again: a rebooted machine starts with an empty page cache."""
        t0 = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - t0

    def stop(self) -> None:
        mount, self.mount = self.mount, None
        if mount is not None:
            mount.stop()

    def describe(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        if self.mount is not None:
            try:
                stats = dict(self.mount.stats())
            except Exception as e:  # noqa: BLE001 - a description must not fail the run
                stats = {"error": str(e)}
        return {
            "mountpoint": str(self.mountpoint),
            "backing": str(self.backing),
            "mounts": self.mounts,
            "losses": self.losses,
            "stats": stats,
        }
