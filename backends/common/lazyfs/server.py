# size: one FUSE protocol server (a handler per opcode, the overlay calls, the control socket)
# in one process by design: the kernel's request loop and its replies read best side by side.
"""The lazyfs FUSE server: one process, one thread, serving ``/dev/fuse`` and a control socket.

Run as ``python -m backends.common.lazyfs.server BACKING MOUNTPOINT CONTROL`` (by
:class:`backends.common.lazyfs.LazyMount`, never in the harness's own process: the harness opens
files on the mount, and a process that touches the mount it serves deadlocks).

What is held back (the durability model):

* **File contents and sizes** written, truncated or fallocated since the file's last
  ``fsync``/``fdatasync`` live in an in-memory :class:`~.overlay.Overlay` per backing inode;
  reads merge it over the backing file. ``fsync`` writes it to the backing file and fsyncs
  that. ``drop`` (power loss) forgets every overlay.
* **Namespace operations** (create, mkdir, unlink, rename, link, symlink, chmod, chown, utimes)
  go to the backing directory at once. By default they survive a power loss, as if every
  directory were synced immediately (as in Jepsen's lazyfs). With ``--hold-dirents`` the
  entry changes are kept in an undo log until the next sync on the mount commits them, and a
  power loss undoes the rest (:mod:`.dirlog`; then remount after ``drop``, the kernel's
  cached names are not corrected). Without it, an unsynced new file survives as an empty
  file (its contents were held back), an unsynced rename survives, a deleted file stays
  deleted: kinder than a real filesystem (ext4 can lose a create or rename not followed by a
  sync), so a loss lazyfs reports is a real one, but it may miss losses that depend on
  directory entries.
* **Writeback** (``--writeback-s N``, off by default): changes older than N seconds reach the
  backing directory without a sync, as the kernel's flusher would write them back.
* **Kernel page cache**: writes are write-through by default; ``--writeback-cache`` lets the
  kernel buffer them (much faster for workloads that do not fsync; the buffered pages are
  pushed to the server by fsync, by ``syncfs`` before a drop, or by the kernel's own
  writeback, and are unsynced like any other write; but the kernel then trusts its cached
  file sizes, so remount after ``drop``). Opens invalidate the
  cache (no FOPEN_KEEP_CACHE) and ``drop`` invalidates every inode the kernel knows, so after
  a power loss readers see only durable data. No direct_io: SQLite mmaps its ``-shm`` file.

Control socket (abstract unix socket, one JSON object per line): ``ping``, ``stats``,
``flush`` (make everything durable, as a clean shutdown would), ``drop`` (power loss).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from backends.common.lazyfs import mounts
from backends.common.lazyfs import protocol as P
from backends.common.lazyfs.dirlog import DirLog
from backends.common.lazyfs.overlay import Overlay

MAX_WRITE = 1 << 20
BUF_SIZE = MAX_WRITE + (64 << 10)  # must hold max_write plus the headers
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
Key = tuple[int, int]  # (st_dev, st_ino) of the backing file


class FuseError(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


@dataclass
class Node:
    nodeid: int
    key: Key
    path: str
    nlookup: int = 0
    last: os.stat_result | None = None  # the last attributes reported for it
    names: set[str] = field(default_factory=set)  # every name it is known by (hard links)


@dataclass
class Handle:
    fd: int
    key: Key
    node: Node


@dataclass
class DirHandle:
    entries: list[tuple[bytes, int, int]] = field(default_factory=list)  # name ino mode


def _split_names(data: memoryview, count: int) -> list[bytes]:
    parts = bytes(data).split(b"\0")
    if len(parts) < count + 1:
        raise FuseError(errno.EINVAL)
    return parts[:count]


class Server:
    def __init__(
        self,
        backing: str,
        mountpoint: str,
        hold_dirents: bool = False,
        writeback_s: float | None = None,
        writeback_cache: bool = False,
    ) -> None:
        self.backing = os.path.abspath(backing)
        self.writeback_cache = writeback_cache
        self.dirlog = DirLog(self.backing) if hold_dirents else None
        self.writeback_s = writeback_s
        self.last_writeback = time.monotonic()
        self.mountpoint = os.path.abspath(mountpoint)
        st = os.lstat(self.backing)
        root = Node(1, (st.st_dev, st.st_ino), self.backing, 1 << 62)
        self.nodes: dict[int, Node] = {1: root}
        self.by_key: dict[Key, Node] = {root.key: root}
        self.next_nodeid = 2
        self.handles: dict[int, Handle | DirHandle] = {}
        self.next_fh = 1
        self.open_count: dict[Key, int] = {}
        self.overlays: dict[Key, Overlay] = {}
        self.counts: dict[str, int] = {"requests": 0, "writes": 0, "write_bytes": 0, "fsyncs": 0}
        self.counts |= {"fsyncdirs": 0, "drops": 0, "flushes": 0, "written_back": 0}
        self.ops: dict[int, int] = {}  # requests per opcode
        self.fuse_fd = -1
        self.invalidating: threading.Thread | None = None
        self.running = True
        self.started = time.time()

    # -- node table ---------------------------------------------------------------------------

    def node(self, nodeid: int) -> Node:
        n = self.nodes.get(nodeid)
        if n is None:
            raise FuseError(errno.ESTALE)
        return n

    def child(self, parent: int, name: bytes) -> str:
        if b"/" in name or name in (b"", b".", b".."):
            raise FuseError(errno.EINVAL)
        return os.path.join(self.node(parent).path, os.fsdecode(name))

    def remember(self, path: str, st: os.stat_result) -> Node:
        """The node for a name the kernel is told about (one lookup count more)."""
        key = (st.st_dev, st.st_ino)
        n = self.by_key.get(key)
        if n is None:
            n = Node(self.next_nodeid, key, path)
            self.next_nodeid += 1
            self.nodes[n.nodeid] = n
            self.by_key[key] = n
        else:
            n.path = path  # a hard link: the latest name is valid right now
        n.names.add(path)
        n.nlookup += 1
        return n

    def unnamed(self, key: Key, path: str) -> None:
        """``path`` no longer names the inode ``key``: serve it by another of its names."""
        n = self.by_key.get(key)
        if n is not None:
            n.names.discard(path)
            if n.path == path and n.names:
                n.path = next(iter(n.names))

    def forget(self, nodeid: int, nlookup: int) -> None:
        n = self.nodes.get(nodeid)
        if n is None or nodeid == 1:
            return
        n.nlookup -= nlookup
        if n.nlookup <= 0:
            del self.nodes[nodeid]
            if self.by_key.get(n.key) is n:
                del self.by_key[n.key]

    def gone(self, key: Key) -> None:
        """A backing inode lost its last name: its inode number may be reused by the backing
        filesystem, so it must not map to the old node or overlay any more."""
        n = self.by_key.pop(key, None)
        if n is not None:
            n.key = (-1, n.nodeid)  # unique dead key: the kernel may still hold the node
        if not self.open_count.get(key):
            self.overlays.pop(key, None)

    def created(self, path: str) -> None:
        if self.dirlog is not None:
            self.dirlog.created(path)

    def writeback(self) -> None:
        """Like the kernel's flusher: data and namespace changes older than ``writeback_s``
        reach the disk without an fsync (off unless ``writeback_s`` is set)."""
        now = time.monotonic()
        if self.writeback_s is None or now - self.last_writeback < 0.5:
            return
        self.last_writeback = now
        cutoff = now - self.writeback_s
        for key in [k for k, ov in self.overlays.items() if ov.since <= cutoff]:
            fd = self._fd_for(key, self.by_key.get(key))
            if fd is None:
                continue
            try:
                self.overlays.pop(key).flush(fd)
                self.counts["written_back"] += 1
            finally:
                if not any(isinstance(h, Handle) and h.fd == fd for h in self.handles.values()):
                    os.close(fd)
        if self.dirlog is not None:
            self.dirlog.commit(older_than=cutoff)

    def renamed(self, old: str, new: str) -> None:
        prefix = old + "/"

        def moved(p: str) -> str:
            if p == old:
                return new
            return new + p[len(old) :] if p.startswith(prefix) else p

        for n in self.nodes.values():
            n.path = moved(n.path)
            if n.names:
                n.names = {moved(p) for p in n.names}

    # -- attributes ---------------------------------------------------------------------------

    def stat_node(self, n: Node, fh: int | None = None) -> os.stat_result:
        h = self.handles.get(fh) if fh is not None else None
        if isinstance(h, Handle):
            return os.fstat(h.fd)
        try:
            return os.lstat(n.path)
        except FileNotFoundError:  # unlinked while open: the handles still reach it
            for other in self.handles.values():
                if isinstance(other, Handle) and other.node is n:
                    return os.fstat(other.fd)
            raise

    def attr(self, st: os.stat_result) -> bytes:
        ov = self.overlays.get((st.st_dev, st.st_ino))
        if ov is None:
            return P.pack_attr(st)
        return P.pack_attr(st, ov.size, ov.mtime_ns)

    def entry(self, path: str) -> bytes:
        st = os.lstat(path)
        n = self.remember(path, st)
        n.last = st
        t = P.ENTRY_TIMEOUT_S
        return P.ENTRY_OUT.pack(n.nodeid, 0, t, t, 0, 0) + self.attr(st)

    def attr_out(self, st: os.stat_result) -> bytes:
        return P.ATTR_OUT.pack(P.ENTRY_TIMEOUT_S, 0, 0) + self.attr(st)

    def own(self, path: str, uid: int, gid: int, parent: str) -> None:
        """New entries belong to the caller (the server runs as root), as on a local disk;
        a setgid directory passes its group on."""
        pst = os.lstat(parent)
        if pst.st_mode & stat.S_ISGID:
            gid = pst.st_gid
        os.lchown(path, uid, gid)

    # -- overlays -----------------------------------------------------------------------------

    def overlay(self, key: Key, fd: int) -> Overlay:
        ov = self.overlays.get(key)
        if ov is None:
            ov = self.overlays[key] = Overlay(os.fstat(fd).st_size)
        return ov

    def sync_key(self, key: Key, fd: int, datasync: bool = False) -> None:
        ov = self.overlays.pop(key, None)
        if ov is not None:
            ov.flush(fd)
        (os.fdatasync if datasync else os.fsync)(fd)
        if self.dirlog is not None:  # a sync commits the journal: every namespace op so far
            self.dirlog.commit()

    def flush_all(self) -> dict[str, Any]:
        """Make every overlay durable (a clean shutdown's sync)."""
        files = 0
        for key in list(self.overlays):
            n = self.by_key.get(key)
            fd = self._fd_for(key, n)
            if fd is None:
                continue
            try:
                self.sync_key(key, fd)
                files += 1
            finally:
                if not any(isinstance(h, Handle) and h.fd == fd for h in self.handles.values()):
                    os.close(fd)
        self.overlays.clear()
        if self.dirlog is not None:
            self.dirlog.commit()
        self.counts["flushes"] += 1
        return {"flushed_files": files}

    def _fd_for(self, key: Key, n: Node | None) -> int | None:
        for h in self.handles.values():
            if isinstance(h, Handle) and h.key == key:
                return h.fd
        if n is None:
            return None
        try:
            fd = os.open(n.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:  # the name now belongs to another file
            os.close(fd)
            return None
        return fd

    def drop_all(self) -> dict[str, Any]:
        """Power loss: forget every unsynced write, then make the kernel forget its cached
        pages and attributes so readers see the backing files."""
        out = {
            "dropped_writes": sum(o.writes for o in self.overlays.values()),
            "dropped_bytes": sum(o.write_bytes for o in self.overlays.values()),
            "dropped_pages": sum(len(o.pages) for o in self.overlays.values()),
            "files": len(self.overlays),
        }
        self.overlays.clear()
        if self.dirlog is not None:
            out |= self.dirlog.undo()
        self.counts["drops"] += 1
        # Invalidating may make the kernel write back a dirty page first and wait for our
        # reply, so it runs beside the loop (which keeps serving); the caller's reply waits.
        self.invalidating = threading.Thread(
            target=self._invalidate, args=(list(self.nodes),), daemon=True
        )
        self.invalidating.start()
        return out

    def _invalidate(self, nodeids: list[int]) -> None:
        for nodeid in nodeids:
            msg = P.NOTIFY_INVAL_INODE_OUT.pack(nodeid, 0, 0)
            with contextlib.suppress(OSError):  # ENOENT: the kernel does not cache it
                os.write(
                    self.fuse_fd, P.OUT_HEADER.pack(16 + len(msg), P.NOTIFY_INVAL_INODE, 0) + msg
                )

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "unsynced_files": len(self.overlays),
            "unsynced_writes": sum(o.writes for o in self.overlays.values()),
            "unsynced_bytes": sum(o.held_bytes for o in self.overlays.values()),
            "nodes": len(self.nodes),
            "unsynced_dirents": len(self.dirlog.log) if self.dirlog is not None else None,
            "final_removals": self.dirlog.unkept if self.dirlog is not None else None,
            "open_handles": len(self.handles),
            "pid": os.getpid(),
            "ops": {P.NAMES.get(op, str(op)): n for op, n in sorted(self.ops.items())},
        }

    # -- request handlers ---------------------------------------------------------------------
    # Each takes (header fields, body) and returns the reply payload or raises FuseError.

    def do_init(self, h: tuple, body: memoryview) -> bytes:
        major, minor, readahead, flags, _flags2 = P.INIT_IN.unpack_from(body)
        if major != 7:
            raise FuseError(errno.EPROTO)
        want = P.ASYNC_READ | P.BIG_WRITES | P.MAX_PAGES | P.PARALLEL_DIROPS
        if self.writeback_cache:
            want |= P.WRITEBACK_CACHE
        return P.INIT_OUT.pack(
            P.MAJOR, P.MINOR, readahead, flags & want, 16, 12, MAX_WRITE, 1, MAX_WRITE // 4096, 0, 0
        )

    def do_lookup(self, h: tuple, body: memoryview) -> bytes:
        (name,) = _split_names(body, 1)
        return self.entry(self.child(h[3], name))

    def do_getattr(self, h: tuple, body: memoryview) -> bytes:
        flags, _, fh = P.GETATTR_IN.unpack_from(body)
        n = self.node(h[3])
        n.last = self.stat_node(n, fh if flags & P.GETATTR_FH else None)
        return self.attr_out(n.last)

    def do_setattr(self, h: tuple, body: memoryview) -> bytes:
        f = P.SETATTR_IN.unpack_from(body)
        valid, fh, size, atime, mtime = f[0], f[2], f[3], f[5], f[6]
        atimensec, mtimensec, mode, uid, gid = f[8], f[9], f[11], f[13], f[14]
        n = self.node(h[3])
        hd = self.handles.get(fh) if valid & P.FATTR_FH else None
        try:
            st = self.stat_node(n, fh if isinstance(hd, Handle) else None)
        except FileNotFoundError:
            # The kernel's writeback flushes times of a file deleted since (writeback cache):
            # nothing left to set. Anything else on a vanished file is an error.
            times = P.FATTR_ATIME | P.FATTR_MTIME | P.FATTR_ATIME_NOW | P.FATTR_MTIME_NOW
            if n.last is None or valid & ~(times | P.FATTR_CTIME | P.FATTR_FH | P.FATTR_LOCKOWNER):
                raise
            return P.ATTR_OUT.pack(0, 0, 0) + P.pack_attr(n.last)
        is_link = stat.S_ISLNK(st.st_mode)
        path = n.path
        if valid & P.FATTR_MODE and not is_link:
            if isinstance(hd, Handle):
                os.fchmod(hd.fd, stat.S_IMODE(mode))
            else:
                os.chmod(path, stat.S_IMODE(mode))
        if valid & (P.FATTR_UID | P.FATTR_GID):
            u = uid if valid & P.FATTR_UID else -1
            g = gid if valid & P.FATTR_GID else -1
            if isinstance(hd, Handle):
                os.fchown(hd.fd, u, g)
            else:
                os.lchown(path, u, g)
        if valid & P.FATTR_SIZE:
            if not stat.S_ISREG(st.st_mode):
                raise FuseError(errno.EINVAL)
            key = (st.st_dev, st.st_ino)
            if isinstance(hd, Handle):
                self.overlay(key, hd.fd).truncate(size)
            else:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    self.overlay(key, fd).truncate(size)
                finally:
                    os.close(fd)
        if valid & (P.FATTR_ATIME | P.FATTR_MTIME | P.FATTR_ATIME_NOW | P.FATTR_MTIME_NOW):
            now = time.time_ns()
            a = now if valid & P.FATTR_ATIME_NOW else atime * 10**9 + atimensec
            m = now if valid & P.FATTR_MTIME_NOW else mtime * 10**9 + mtimensec
            if not valid & (P.FATTR_ATIME | P.FATTR_ATIME_NOW):
                a = st.st_atime_ns
            if not valid & (P.FATTR_MTIME | P.FATTR_MTIME_NOW):
                m = st.st_mtime_ns
            os.utime(path, ns=(a, m), follow_symlinks=False)
            ov = self.overlays.get((st.st_dev, st.st_ino))
            if ov is not None:
                ov.mtime_ns = m
        return self.attr_out(self.stat_node(n, fh if isinstance(hd, Handle) else None))

    def do_readlink(self, h: tuple, body: memoryview) -> bytes:
        return os.fsencode(os.readlink(self.node(h[3]).path))

    def do_symlink(self, h: tuple, body: memoryview) -> bytes:
        name, target = _split_names(body, 2)
        path = self.child(h[3], name)
        os.symlink(target, path)
        self.created(path)
        self.own(path, h[4], h[5], self.node(h[3]).path)
        return self.entry(path)

    def do_mknod(self, h: tuple, body: memoryview) -> bytes:
        mode, rdev, _umask, _ = P.MKNOD_IN.unpack_from(body)
        (name,) = _split_names(body[P.MKNOD_IN.size :], 1)
        path = self.child(h[3], name)
        os.mknod(path, mode, rdev)
        self.created(path)
        self.own(path, h[4], h[5], self.node(h[3]).path)
        return self.entry(path)

    def do_mkdir(self, h: tuple, body: memoryview) -> bytes:
        mode, _umask = P.MKDIR_IN.unpack_from(body)
        (name,) = _split_names(body[P.MKDIR_IN.size :], 1)
        path = self.child(h[3], name)
        os.mkdir(path, stat.S_IMODE(mode))
        self.created(path)
        os.chmod(path, stat.S_IMODE(mode))  # mkdir(2) drops setgid/sticky bits on some systems
        self.own(path, h[4], h[5], self.node(h[3]).path)
        return self.entry(path)

    def do_unlink(self, h: tuple, body: memoryview) -> bytes:
        (name,) = _split_names(body, 1)
        path = self.child(h[3], name)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            raise FuseError(errno.EISDIR)
        if self.dirlog is not None:
            self.dirlog.remove(path, is_dir=False)
        else:
            os.unlink(path)
        if st.st_nlink <= 1:
            self.gone((st.st_dev, st.st_ino))
        else:
            self.unnamed((st.st_dev, st.st_ino), path)
        return b""

    def do_rmdir(self, h: tuple, body: memoryview) -> bytes:
        (name,) = _split_names(body, 1)
        path = self.child(h[3], name)
        st = os.lstat(path)
        if self.dirlog is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise FuseError(errno.ENOTDIR)
            self.dirlog.remove(path, is_dir=True)
        else:
            os.rmdir(path)
        self.gone((st.st_dev, st.st_ino))
        return b""

    def do_rename(self, h: tuple, body: memoryview) -> bytes:
        (newdir,) = P.RENAME_IN.unpack_from(body)
        return self._rename(h[3], newdir, 0, body[P.RENAME_IN.size :])

    def do_rename2(self, h: tuple, body: memoryview) -> bytes:
        newdir, flags, _ = P.RENAME2_IN.unpack_from(body)
        return self._rename(h[3], newdir, flags, body[P.RENAME2_IN.size :])

    def _rename(self, olddir: int, newdir: int, flags: int, names: memoryview) -> bytes:
        oldname, newname = _split_names(names, 2)
        old, new = self.child(olddir, oldname), self.child(newdir, newname)
        try:
            target = os.lstat(new)
        except FileNotFoundError:
            target = None
        source = os.lstat(old)
        same = target is not None and (target.st_dev, target.st_ino) == (
            source.st_dev,
            source.st_ino,
        )
        undo = None
        if self.dirlog is not None and target is not None and not same and not flags:
            if stat.S_ISDIR(target.st_mode):  # check what rename(2) would refuse first
                if not stat.S_ISDIR(source.st_mode):
                    raise FuseError(errno.EISDIR)
                if os.listdir(new):
                    raise FuseError(errno.ENOTEMPTY)
            elif stat.S_ISDIR(source.st_mode):
                raise FuseError(errno.ENOTDIR)
            undo = self.dirlog.before_replace(new)
        try:
            if flags == 0:
                os.rename(old, new)
            else:  # RENAME_NOREPLACE (1) / RENAME_EXCHANGE (2): renameat2(2)
                r = _libc.renameat2(-100, os.fsencode(old), -100, os.fsencode(new), flags)
                if r != 0:
                    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        except OSError:
            if self.dirlog is not None:
                self.dirlog.cancel(undo)
            raise
        if self.dirlog is not None and not same:
            if flags & 2:
                self.dirlog.exchanged(old, new)
            else:
                self.dirlog.renamed(old, new)
        if flags & 2:  # exchange: swap the paths of both subtrees
            tmp = new + "\0lazyfs-swap"
            self.renamed(new, tmp)
            self.renamed(old, new)
            self.renamed(tmp, old)
            return b""
        src = os.lstat(new)
        replaced = target is not None and (target.st_dev, target.st_ino) != (src.st_dev, src.st_ino)
        if replaced and (stat.S_ISDIR(target.st_mode) or target.st_nlink <= 1):
            self.gone((target.st_dev, target.st_ino))
        elif replaced:  # the replaced file lives on under its other names
            self.unnamed((target.st_dev, target.st_ino), new)
        self.renamed(old, new)
        return b""

    def do_link(self, h: tuple, body: memoryview) -> bytes:
        (oldnodeid,) = P.LINK_IN.unpack_from(body)
        (name,) = _split_names(body[P.LINK_IN.size :], 1)
        path = self.child(h[3], name)
        os.link(self.node(oldnodeid).path, path, follow_symlinks=False)
        self.created(path)
        return self.entry(path)

    def _open(self, n: Node, flags: int) -> tuple[int, Handle]:
        try:
            fd = os.open(n.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.ETXTBSY, errno.EISDIR):
                raise
            fd = os.open(n.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        hd = Handle(fd, key, n)
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = hd
        self.open_count[key] = self.open_count.get(key, 0) + 1
        if flags & os.O_TRUNC and stat.S_ISREG(st.st_mode):
            self.overlay(key, fd).truncate(0)
        return fh, hd

    def do_open(self, h: tuple, body: memoryview) -> bytes:
        flags, _ = P.OPEN_IN.unpack_from(body)
        fh, _hd = self._open(self.node(h[3]), flags)
        return P.OPEN_OUT.pack(fh, 0, 0)  # no KEEP_CACHE: each open drops stale cached pages

    def do_create(self, h: tuple, body: memoryview) -> bytes:
        flags, mode, _umask, _ = P.CREATE_IN.unpack_from(body)
        (name,) = _split_names(body[P.CREATE_IN.size :], 1)
        path = self.child(h[3], name)
        try:  # the file's name is durable at once; its contents are held back
            fd = os.open(
                path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, stat.S_IMODE(mode)
            )
            os.close(fd)
            self.created(path)
            self.own(path, h[4], h[5], self.node(h[3]).path)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
        ent = self.entry(path)
        fh, _hd = self._open(self.by_key[self._key(path)], flags)
        return ent + P.OPEN_OUT.pack(fh, 0, 0)

    @staticmethod
    def _key(path: str) -> Key:
        st = os.lstat(path)
        return (st.st_dev, st.st_ino)

    def handle(self, fh: int) -> Handle:
        hd = self.handles.get(fh)
        if not isinstance(hd, Handle):
            raise FuseError(errno.EBADF)
        return hd

    def do_read(self, h: tuple, body: memoryview) -> bytes:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        hd = self.handle(fh)
        ov = self.overlays.get(hd.key)
        return ov.read(hd.fd, offset, size) if ov is not None else os.pread(hd.fd, size, offset)

    def do_write(self, h: tuple, body: memoryview) -> bytes:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        hd = self.handle(fh)
        data = body[P.READ_IN.size : P.READ_IN.size + size]
        self.overlay(hd.key, hd.fd).write(hd.fd, offset, data)
        self.counts["writes"] += 1
        self.counts["write_bytes"] += size
        return P.WRITE_OUT.pack(size, 0)

    def do_flush(self, h: tuple, body: memoryview) -> bytes:
        return b""  # close(2) is not a sync

    def do_release(self, h: tuple, body: memoryview) -> bytes:
        fh, *_ = P.RELEASE_IN.unpack_from(body)
        hd = self.handles.pop(fh, None)
        if isinstance(hd, Handle):
            left = self.open_count.get(hd.key, 1) - 1
            if left:
                self.open_count[hd.key] = left
            else:
                self.open_count.pop(hd.key, None)
                if os.fstat(hd.fd).st_nlink == 0:  # deleted while open: its data is gone
                    self.overlays.pop(hd.key, None)
            os.close(hd.fd)
        return b""

    def do_fsync(self, h: tuple, body: memoryview) -> bytes:
        fh, flags, _ = P.FSYNC_IN.unpack_from(body)
        hd = self.handle(fh)
        self.sync_key(hd.key, hd.fd, bool(flags & P.FSYNC_FDATASYNC))
        self.counts["fsyncs"] += 1
        return b""

    def do_fsyncdir(self, h: tuple, body: memoryview) -> bytes:
        fd = os.open(self.node(h[3]).path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.dirlog is not None:
            self.dirlog.commit()
        self.counts["fsyncdirs"] += 1
        return b""

    def do_opendir(self, h: tuple, body: memoryview) -> bytes:
        n = self.node(h[3])
        st = os.lstat(n.path)
        entries = [(b".", st.st_ino, stat.S_IFDIR), (b"..", 1, stat.S_IFDIR)]
        with os.scandir(os.fsencode(n.path)) as it:
            for e in it:
                try:
                    mode = e.stat(follow_symlinks=False).st_mode
                except FileNotFoundError:
                    continue
                entries.append((e.name, e.inode(), mode))
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = DirHandle(entries)
        return P.OPEN_OUT.pack(fh, 0, 0)

    def do_readdir(self, h: tuple, body: memoryview) -> bytes:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        hd = self.handles.get(fh)
        if not isinstance(hd, DirHandle):
            raise FuseError(errno.EBADF)
        out = bytearray()
        for i in range(offset, len(hd.entries)):
            name, ino, mode = hd.entries[i]
            rec = P.dirent(ino, i + 1, name, mode)
            if len(out) + len(rec) > size:
                break
            out += rec
        return bytes(out)

    def do_releasedir(self, h: tuple, body: memoryview) -> bytes:
        fh, *_ = P.RELEASE_IN.unpack_from(body)
        self.handles.pop(fh, None)
        return b""

    def do_statfs(self, h: tuple, body: memoryview) -> bytes:
        s = os.statvfs(self.backing)
        return P.KSTATFS.pack(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize,
            s.f_namemax,
            s.f_frsize,
            0,
        )

    def do_access(self, h: tuple, body: memoryview) -> bytes:
        return b""  # default_permissions: the kernel checks modes itself

    def do_fallocate(self, h: tuple, body: memoryview) -> bytes:
        fh, offset, length, mode, _ = P.FALLOCATE_IN.unpack_from(body)
        hd = self.handle(fh)
        keep_size, punch, zero_range = 0x01, 0x02, 0x10
        ov = self.overlay(hd.key, hd.fd)
        if mode & ~(keep_size | punch | zero_range):
            raise FuseError(errno.EOPNOTSUPP)
        if mode & (punch | zero_range):
            ov.zero(hd.fd, offset, length)
        if not mode & keep_size and not mode & punch and offset + length > ov.size:
            ov.size = offset + length  # the new bytes read as zeros (above the floor)
            ov.writes += 1
        return b""

    def do_syncfs(self, h: tuple, body: memoryview) -> bytes:
        return b""

    def do_destroy(self, h: tuple, body: memoryview) -> bytes:
        self.running = False
        return b""

    HANDLERS = {
        P.INIT: do_init, P.LOOKUP: do_lookup, P.GETATTR: do_getattr, P.SETATTR: do_setattr,
        P.READLINK: do_readlink, P.SYMLINK: do_symlink, P.MKNOD: do_mknod, P.MKDIR: do_mkdir,
        P.UNLINK: do_unlink, P.RMDIR: do_rmdir, P.RENAME: do_rename, P.RENAME2: do_rename2,
        P.LINK: do_link, P.OPEN: do_open, P.CREATE: do_create, P.READ: do_read,
        P.WRITE: do_write, P.FLUSH: do_flush, P.RELEASE: do_release, P.FSYNC: do_fsync,
        P.FSYNCDIR: do_fsyncdir, P.OPENDIR: do_opendir, P.READDIR: do_readdir,
        P.RELEASEDIR: do_releasedir, P.STATFS: do_statfs, P.ACCESS: do_access,
        P.FALLOCATE: do_fallocate, P.SYNCFS: do_syncfs, P.DESTROY: do_destroy,
    }  # fmt: skip

    # -- the loop -----------------------------------------------------------------------------

    def dispatch(self, buf: memoryview) -> None:
        h = P.IN_HEADER.unpack_from(buf)
        length, opcode, unique, nodeid = h[0], h[1], h[2], h[3]
        body = buf[P.IN_HEADER.size : length]
        self.counts["requests"] += 1
        self.ops[opcode] = self.ops.get(opcode, 0) + 1
        if opcode == P.FORGET:
            self.forget(nodeid, P.FORGET_IN.unpack_from(body)[0])
            return
        if opcode == P.BATCH_FORGET:
            (count, _) = P.BATCH_FORGET_IN.unpack_from(body)
            for i in range(count):
                nid, nl = P.FORGET_ONE.unpack_from(body, P.BATCH_FORGET_IN.size + 16 * i)
                self.forget(nid, nl)
            return
        if opcode == P.INTERRUPT:
            return  # requests are answered in order, one at a time: nothing to interrupt
        fn = self.HANDLERS.get(opcode)
        err, payload = 0, b""
        if fn is None:
            err = errno.ENOSYS
        else:
            try:
                payload = fn(self, h, body)
            except FuseError as e:
                err = e.err
            except OSError as e:
                err = e.errno or errno.EIO
            except Exception as e:  # noqa: BLE001 - a bug must not take the mount down
                print(f"lazyfs: opcode {opcode} failed: {e!r}", file=sys.stderr, flush=True)
                err = errno.EIO
        reply = P.OUT_HEADER.pack(16 + (0 if err else len(payload)), -err, unique)
        try:
            os.write(self.fuse_fd, reply if err else reply + payload)
        except OSError as e:
            if e.errno == errno.ENODEV:  # unmounted meanwhile
                self.running = False
            elif e.errno != errno.ENOENT:  # ENOENT: the request was interrupted meanwhile
                raise

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "stats":
            return {"ok": True, **self.stats()}
        if op == "flush":
            return {"ok": True, **self.flush_all()}
        if op == "drop":
            return {"ok": True, **self.drop_all()}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def serve(self, listener: socket.socket) -> None:
        buf = bytearray(BUF_SIZE)
        view = memoryview(buf)
        conns: dict[int, tuple[socket.socket, bytearray]] = {}
        poller = select.poll()
        poller.register(self.fuse_fd, select.POLLIN)
        poller.register(listener.fileno(), select.POLLIN)
        deferred: list[tuple[socket.socket, bytes]] = []  # replies waiting for invalidation
        while self.running:
            busy = self.invalidating is not None and self.invalidating.is_alive()
            timeout = 10 if busy else 500 if self.writeback_s is not None else 1000
            events = poller.poll(timeout)
            self.writeback()
            if deferred and not (self.invalidating and self.invalidating.is_alive()):
                for c, reply in deferred:
                    with contextlib.suppress(OSError):
                        c.sendall(reply)
                deferred.clear()
            for fd, _ev in events:
                if fd == self.fuse_fd:
                    for _ in range(64):  # drain a burst, then look at the control socket
                        try:
                            n = os.readv(self.fuse_fd, [buf])
                        except BlockingIOError:
                            break
                        except InterruptedError:
                            continue
                        except OSError as e:
                            if e.errno == errno.ENOENT:  # interrupted before we read it
                                continue
                            if e.errno == errno.ENODEV:  # unmounted
                                self.running = False
                                break
                            raise
                        self.dispatch(view[:n])
                        if not self.running:
                            break
                elif fd == listener.fileno():
                    c, _ = listener.accept()
                    conns[c.fileno()] = (c, bytearray())
                    poller.register(c.fileno(), select.POLLIN)
                elif fd in conns:
                    c, pending = conns[fd]
                    try:
                        self.serve_control(c, pending, deferred)
                    except (OSError, EOFError):  # the harness hung up: keep serving FUSE
                        poller.unregister(fd)
                        c.close()
                        del conns[fd]

    def serve_control(
        self, c: socket.socket, pending: bytearray, deferred: list[tuple[socket.socket, bytes]]
    ) -> None:
        data = c.recv(65536)
        if not data:
            raise EOFError
        pending += data
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            try:
                resp = self.control(json.loads(line))
            except Exception as e:  # noqa: BLE001 - report, keep serving
                resp = {"ok": False, "error": repr(e)}
            reply = json.dumps(resp).encode() + b"\n"
            if deferred or (self.invalidating is not None and self.invalidating.is_alive()):
                deferred.append((c, reply))  # in order, after the invalidation
            else:
                c.sendall(reply)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="lazyfs-server")
    ap.add_argument("backing")
    ap.add_argument("mountpoint")
    ap.add_argument("control", help="abstract unix socket name for the control channel")
    ap.add_argument("--hold-dirents", action="store_true")
    ap.add_argument("--writeback-s", type=float, default=None)
    ap.add_argument("--writeback-cache", action="store_true")
    args = ap.parse_args(argv)
    backing, mountpoint, control = args.backing, args.mountpoint, args.control
    parent = os.getppid()
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the harness
    if os.getppid() != parent or parent == 1:
        return 70
    os.umask(0)  # modes come from the caller (the kernel applied its umask already)
    srv = Server(backing, mountpoint, args.hold_dirents, args.writeback_s, args.writeback_cache)

    def on_term(signum: int, frame: object) -> None:
        srv.running = False
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    srv.fuse_fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        mounts.mount_fuse(srv.fuse_fd, srv.mountpoint, os.getpid())
        os.set_blocking(srv.fuse_fd, False)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind("\0" + control)
        listener.listen(4)
        print(f"lazyfs: serving {srv.backing} at {srv.mountpoint} (pid {os.getpid()})", flush=True)
        srv.serve(listener)
    finally:
        # Only ever our own mount: a new server may already sit on the same mountpoint.
        mounts.detach_if_ours(srv.mountpoint, os.getpid())
        print(f"lazyfs: stopped ({json.dumps(srv.stats())})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
