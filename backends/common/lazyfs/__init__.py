"""lazyfs: a FUSE filesystem that holds back unsynced writes and drops them on a power loss.

The harness mounts it over a backend's data directory for power-loss trials (issue 11, after
Jepsen's lazyfs). Reads and writes pass through to a *backing* directory, but file contents
written since the file's last fsync/fdatasync are held in the server's memory;
:meth:`LazyMount.lose_power` discards them, as a machine losing power would. Namespace
operations (create, rename, unlink, mkdir, chmod/chown) reach the backing directory at once
and are *not* held back by default (as Jepsen's lazyfs): an unsynced new file survives a
power loss as an empty file, an unsynced rename survives. ``hold_dirents=True`` holds them
back too, until the next sync on the mount (the ext4 journal model of :mod:`.dirlog`).
See :mod:`.server` for the exact model.

Pure Python: the server speaks the kernel's FUSE protocol on ``/dev/fuse`` and mounts with
mount(2) (no libfuse, no system package). It runs as a child process of the harness (never in
the harness's own process: the harness opens files on the mount), dies with it
(PR_SET_PDEATHSIG), and a mount left by a crashed harness is found and removed by
:func:`clean_stale_mounts`.

A power-loss cycle: SIGKILL every process using the mount -> :meth:`LazyMount.lose_power`
-> :meth:`LazyMount.stop` -> :meth:`LazyMount.start` -> restart the processes. A clean
:meth:`LazyMount.stop` makes everything durable first (a clean shutdown syncs), so the backing
directory holds exactly what the mount showed; after ``lose_power`` it holds only what was
durable.

The caller must close every file it has open on the mount itself before ``lose_power`` (a
real power loss would have killed it too): pages it has mmapped (SQLite's ``-shm``) vanish
and touching them raises SIGBUS; after ``stop`` its descriptors fail with ENOTCONN.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from backends.common.lazyfs import mounts
from backends.common.process import ManagedProcess
from backends.errors import BackendError, ConfigError

__all__ = ["LazyMount", "available", "clean_stale_mounts"]

_ROOT = Path(__file__).resolve().parents[3]  # the project root, for the server's imports
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_LIVE: weakref.WeakSet[LazyMount] = weakref.WeakSet()


@functools.cache
def available() -> str | None:
    """None if lazyfs can mount here, else why not (shown to the user, one line). Probes a
    real mount(2) once (a container may have /dev/fuse but not the right to mount)."""
    if not sys.platform.startswith("linux"):
        return "lazyfs needs Linux (FUSE)"
    if os.geteuid() != 0:
        return "lazyfs needs root (mount(2) of a FUSE filesystem without fusermount)"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"lazyfs needs /dev/fuse: {e.strerror}"
    try:
        with tempfile.TemporaryDirectory(prefix="lazyfs-probe-") as d:
            try:  # nobody serves this mount and nobody touches it: unmounted right away
                mounts.mount_fuse(fd, d, os.getpid())
            except OSError as e:
                return f"lazyfs cannot mount a FUSE filesystem here: {e.strerror}"
            mounts.umount(d, detach=True)
    finally:
        os.close(fd)
    return None


def clean_stale_mounts(root: Path) -> list[str]:
    """Unmount lazyfs mounts at or under ``root`` whose server is gone (a crashed harness);
    return their mount points. Mounts of live servers and other filesystems are left alone."""
    base = os.path.abspath(root)
    removed = []
    for m in reversed(mounts.lazyfs_mounts()):  # innermost first
        inside = m.mountpoint == base or m.mountpoint.startswith(base.rstrip("/") + "/")
        dead = inside and not mounts.server_alive(m.pid)
        if dead and mounts.umount(m.mountpoint, detach=True) == 0:
            removed.append(m.mountpoint)
    return removed


def syncfs(path: Path) -> None:
    """Ask the kernel to write back its dirty pages on the mount (mmap writes) to the server."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


class LazyMount:
    """One lazyfs mount of ``backing`` at ``mountpoint``, served by a child process."""

    def __init__(
        self,
        backing: Path,
        mountpoint: Path,
        log_path: Path | None = None,
        *,
        hold_dirents: bool = False,
        writeback_s: float | None = None,
        writeback_cache: bool = False,
    ) -> None:
        """``hold_dirents``: also hold back namespace operations (create, unlink, rename,
        mkdir...) until the next fsync/fdatasync/fsyncdir on the mount, as ext4's journal
        would (:mod:`.dirlog`); without it they are durable at once. ``writeback_s``: data and
        namespace changes older than this reach the disk without fsync, like the kernel's
        flusher (~30 s on Linux); None (default): unsynced data is held until a sync or lost.
        ``writeback_cache``: let the kernel buffer writes before they reach the server
        (FUSE_WRITEBACK_CACHE): several times faster without fsync, same durability; loss
        figures then count page-sized write requests, and after ``lose_power`` the mount
        must be remounted (stop(), start()) because the kernel keeps its cached file sizes.
        """
        self.hold_dirents = hold_dirents
        self.writeback_s = writeback_s
        self.writeback_cache = writeback_cache
        self.backing = Path(os.path.abspath(backing))
        self.mountpoint = Path(os.path.abspath(mountpoint))
        b, m = str(self.backing), str(self.mountpoint)
        if b == m or b.startswith(m + "/") or m.startswith(b + "/"):
            raise ConfigError(f"lazyfs: backing dir {b} and mount point {m} must not nest")
        self.log_path = log_path or self.backing.with_name(self.backing.name + "-lazyfs.log")
        self._proc: ManagedProcess | None = None
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self._last_stats: dict[str, Any] = {}
        self._powered_off = False  # lose_power() since the last start() or sync()
        self._lock = threading.Lock()  # one control request at a time (faults run off-thread)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.alive else None

    @property
    def mounted(self) -> bool:
        m = mounts.mount_at(self.mountpoint)
        return m is not None and self._proc is not None and m.pid == self._proc.pid

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the server and mount; returns when the mount answers."""
        if self.pid is not None:
            return
        why = available()
        if why is not None:
            raise BackendError(why)
        stale = mounts.mount_at(self.mountpoint)
        if stale is not None:
            deadline = time.monotonic() + 2  # a server just killed takes a moment to exit
            while mounts.server_alive(stale.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if mounts.server_alive(stale.pid):
                raise BackendError(
                    f"lazyfs: {self.mountpoint} is already served by lazyfs pid {stale.pid}"
                )
            clean_stale_mounts(self.mountpoint)
            print(f"lazyfs: removed a stale mount at {self.mountpoint}", file=sys.stderr)
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.mountpoint):
            raise BackendError(f"lazyfs: {self.mountpoint} is already a mount point")
        control = f"durabench-lazyfs-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        argv = [sys.executable, "-m", "backends.common.lazyfs.server"]
        argv += [str(self.backing), str(self.mountpoint), control]
        if self.hold_dirents:
            argv.append("--hold-dirents")
        if self.writeback_s is not None:
            argv += ["--writeback-s", str(self.writeback_s)]
        if self.writeback_cache:
            argv.append("--writeback-cache")
        self._proc = ManagedProcess("lazyfs", argv, self.log_path, env=env)
        self._proc.start()
        _LIVE.add(self)
        self._powered_off = False
        try:
            self._proc.wait_ready(lambda: self._connect(control), timeout_s, "mounted")
            os.stat(self.mountpoint)  # the mount answers (GETATTR through the kernel)
        except BaseException:
            self.stop(flush=False)
            raise

    def _connect(self, control: str) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect("\0" + control)
        except OSError:
            s.close()
            return False
        self._sock, self._rfile = s, s.makefile("rb")
        return bool(self._call("ping").get("pid"))

    def _call(self, op: str, timeout_s: float = 60.0) -> dict[str, Any]:
        if self._sock is None:
            raise BackendError("lazyfs: the server is not running")
        try:
            with self._lock:
                self._sock.settimeout(timeout_s)
                self._sock.sendall(json.dumps({"op": op}).encode() + b"\n")
                line = self._rfile.readline()
        except OSError as e:
            raise BackendError(f"lazyfs: control channel failed during {op}: {e}") from e
        if not line:
            raise BackendError(f"lazyfs: the server died during {op}; see {self.log_path}")
        resp = json.loads(line)
        if not resp.pop("ok", False):
            raise BackendError(f"lazyfs: {op} failed: {resp.get('error')}")
        return resp

    def lose_power(self, wait_idle_s: float = 5.0) -> dict[str, Any]:
        """Discard every write not made durable by fsync/fdatasync. The caller has killed every
        process using the mount; one still using it after ``wait_idle_s`` (killed processes
        take a moment to exit) is an error, not silently left running through a "power
        loss" (it would also get SIGBUS on its mmapped pages). The mount stays usable and
        shows only durable data (with ``hold_dirents`` or ``writeback_cache``, remount:
        stop() and start())."""
        if self.pid is None:
            raise BackendError("lazyfs: lose_power without a running server")
        deadline = time.monotonic() + wait_idle_s
        while (left := mounts.users(self.mountpoint)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            who = ", ".join(f"{pid} ({cmd})" for pid, cmd in left[:5])
            raise BackendError(
                f"lazyfs: cannot lose power on {self.mountpoint}: still in use by {who}; "
                "kill (or close) every user of the mount first"
            )
        # Pages the kernel still holds dirty (mmap, writeback cache) first reach the server, to
        # be dropped with the rest. An error here (a writeback error of a file deleted since)
        # changes nothing: whatever is written back later is dropped by the stop() below.
        with contextlib.suppress(OSError):
            syncfs(self.mountpoint)
        self._powered_off = True
        return self._call("drop")

    def sync(self) -> dict[str, Any]:
        """Make everything written so far durable, like sync(1): for setup steps that do not
        fsync (``initdb --no-sync``) but must not count as unsynced in a trial."""
        if self.pid is None:
            raise BackendError("lazyfs: sync without a running server")
        syncfs(self.mountpoint)
        self._powered_off = False
        return self._call("flush")

    def stats(self) -> dict[str, Any]:
        if self.pid is None:
            return dict(self._last_stats)
        self._last_stats = self._call("stats")
        return dict(self._last_stats)

    def stop(self, flush: bool | None = None, timeout_s: float = 10.0) -> None:
        """Unmount and stop the server. ``flush`` first makes every unsynced write durable, as
        a clean shutdown would; by default it does, except after ``lose_power()`` (a machine
        that lost power does not sync on the way down: nothing the kernel still wrote back
        after the drop may reach the disk). Idempotent; safe after errors."""
        if flush is None:
            flush = not self._powered_off
        proc = self._proc
        responsive = False
        if proc is not None and proc.alive and self._sock is not None:
            with contextlib.suppress(BackendError, OSError):
                self._call("ping", timeout_s=5)
                responsive = True  # a wedged server would hang syncfs and umount: skip them
            with contextlib.suppress(BackendError, OSError):
                if flush and responsive:
                    syncfs(self.mountpoint)
                    self._call("flush")
                if responsive:
                    self._last_stats = self._call("stats", timeout_s=5)
        detached = False
        m = mounts.mount_at(self.mountpoint)
        if proc is not None and m is not None and m.pid == proc.pid:
            err = mounts.umount(str(self.mountpoint)) if responsive else errno.EBUSY
            if err:  # in use (or no server to answer): detach; open files then fail
                mounts.umount(str(self.mountpoint), detach=True)
                detached = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._rfile.close()
                self._sock.close()
            self._sock = self._rfile = None
        if proc is not None:
            # After a plain umount the server reads ENODEV and exits by itself; a detached
            # mount still has users, and the server would serve them until they close.
            deadline = time.monotonic() + (0 if detached else timeout_s)
            while proc.alive and time.monotonic() < deadline:  # exits on ENODEV after umount
                time.sleep(0.02)
            if proc.alive and not responsive and proc.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
                deadline = time.monotonic() + 2
                while proc.alive and time.monotonic() < deadline:
                    time.sleep(0.02)
                if proc.alive and m is not None:  # stuck in the kernel on its own mount
                    mounts.abort_connection(m)
            proc.stop(timeout_s=2)
        _LIVE.discard(self)


@atexit.register
def _stop_all() -> None:
    """Last resort at interpreter exit (error paths): no mount may outlive the harness."""
    for m in list(_LIVE):
        with contextlib.suppress(Exception):
            m.stop()
