"""mount(2)/umount2(2) through ctypes, and the lazyfs mounts listed in ``/proc/self/mounts``.

A lazyfs mount has the source ``lazyfs:<server pid>`` and the type ``fuse.lazyfs``, so the
harness can tell its own mounts from everyone else's and find the process serving each one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

FSTYPE = "fuse.lazyfs"
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    pid: int | None  # the server that mounted it
    dev: str = ""  # "major:minor" of the mount (its FUSE connection), from mountinfo


def _unescape(field: str) -> str:  # /proc/mounts writes space, tab, newline, \ as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def lazyfs_mounts() -> list[Mount]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # id parent major:minor root mountpoint opts [optional...] - fstype source superopts
            head, sep, tail = line.partition(" - ")
            fields, rest = head.split(), tail.split()
            if not sep or len(fields) < 5 or len(rest) < 2 or rest[0] != FSTYPE:
                continue
            pid = None
            if rest[1].startswith("lazyfs:"):
                with contextlib.suppress(ValueError):
                    pid = int(rest[1].split(":", 1)[1])
            out.append(Mount(_unescape(fields[4]), pid, fields[2]))
    return out


def mount_at(path: str | Path) -> Mount | None:
    """The lazyfs mount on top at ``path`` (the last one listed wins), if any."""
    p = os.path.abspath(path)
    found = None
    for m in lazyfs_mounts():
        if m.mountpoint == p:
            found = m
    return found


def server_alive(pid: int | None) -> bool:
    """Is ``pid`` a running lazyfs server (not a reused pid of something else)?"""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"backends.common.lazyfs.server" in cmd and state not in ("Z", "X")


def mount_fuse(fd: int, mountpoint: str, pid: int) -> None:
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions"
    r = _libc.mount(
        f"lazyfs:{pid}".encode(),
        os.fsencode(mountpoint),
        FSTYPE.encode(),
        MS_NOSUID | MS_NODEV,
        opts.encode(),
    )
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {mountpoint}: {os.strerror(e)}")


def umount(mountpoint: str, detach: bool = False) -> int:
    """0 on success, else the errno (EBUSY: still in use; EINVAL: not a mount point)."""
    r = _libc.umount2(os.fsencode(mountpoint), MNT_DETACH if detach else 0)
    return 0 if r == 0 else ctypes.get_errno()


def detach_if_ours(mountpoint: str, pid: int) -> bool:
    m = mount_at(mountpoint)
    if m is None or m.pid != pid:
        return False
    return umount(mountpoint, detach=True) == 0


def users(mountpoint: str | Path) -> list[tuple[int, str]]:
    """Processes with a file, a mapping or their working directory on ``mountpoint``
    (``/proc/*/fd``, ``maps``, ``cwd``): (pid, command line)."""
    base = os.path.abspath(mountpoint)
    prefix = base.rstrip("/") + "/"

    def on(path: str) -> bool:
        path = path.removesuffix(" (deleted)")
        return path == base or path.startswith(prefix)

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        d = f"/proc/{entry}"
        try:
            hit = on(os.readlink(f"{d}/cwd"))
            if not hit:
                for fd in os.listdir(f"{d}/fd"):
                    with contextlib.suppress(OSError):
                        if on(os.readlink(f"{d}/fd/{fd}")):
                            hit = True
                            break
            if not hit:
                with open(f"{d}/maps") as f:
                    for line in f:
                        parts = line.split(None, 5)
                        if len(parts) == 6 and on(parts[5].strip()):
                            hit = True
                            break
            if hit:
                with open(f"{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                found.append((int(entry), cmd[:120]))
        except OSError:  # gone meanwhile, or a kernel thread
            continue
    return found


FUSECTL = "/sys/fs/fuse/connections"


def abort_connection(m: Mount) -> bool:
    """Last resort for a server stuck in the kernel on its own mount (a process in D state
    cannot be killed): abort its FUSE connection through fusectl, mounting fusectl for the
    moment if it is not mounted. Every request on it then fails; the server can exit."""
    try:
        major, minor = (int(x) for x in m.dev.split(":"))
    except ValueError:
        return False
    conn = f"{FUSECTL}/{(major << 20) | minor}/abort"  # the kernel's dev_t encoding
    mounted_here = False
    if not os.path.exists(conn) and os.path.isdir(FUSECTL):
        mounted_here = _libc.mount(b"fusectl", FUSECTL.encode(), b"fusectl", 0, None) == 0
    try:
        with open(conn, "w") as f:
            f.write("1")
        return True
    except OSError:
        return False
    finally:
        if mounted_here:
            umount(FUSECTL)
