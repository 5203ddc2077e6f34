"""Where the SQLite file and its Litestream replica are, in one unit: the WAL byte offset.

Litestream 0.5 exposes only its *local* LTX txid (``litestream_txid``, control socket
``/txid``); the replica's position is known to it only after a forced sync (``POST /sync``),
which would change what we measure. Both sides can be read without touching Litestream:

* local: the WAL-index header at the start of the ``-shm`` file (read as ``ShmReader`` says:
  never close a descriptor of a SQLite file in a process that has connections to it) (two identical copies of 48
  bytes; ``mxFrame`` = last committed frame, ``aSalt`` = the WAL header's salts). The end of the
  last committed transaction is ``32 + mxFrame * (page_size + 24)``. Checked on this machine:
  it equals the ``WALOffset + WALSize`` of the LTX file that copied it.
* replica: the header of the newest level-0 LTX file in the replica (``ltx/0/``, names sorted by
  txid): ``WALOffset``, ``WALSize``, ``WALSalt1`` (big-endian, LTX format v0.5).

Each WAL restart gets new salts (salt-1 + 1 on a restart, random ones for a fresh WAL), so the
position is ``(ordinal of salt-1 in the order the sampler saw them) << 32 | end offset``: it
only grows within one database file (the generation: its inode; a restored node is a new one).
A replica LTX whose salt was not seen locally in the current generation belongs to another
one (or to a WAL the sampler has not seen yet) and is not used: the replica reads as the newest
LTX file whose salt is known, a file it really holds, so it can only read as behind. Not "no
reading": at every sync Litestream uploads the old WAL's tail and then the first frames of the
restarted WAL (a new salt) back to back; a node lost before the sampler saw that new salt
locally left the old tail unread, and the replica read lower than it was (the lose-node
cross-check then called acks "certainly missing" that the restore had).

Listing the bucket costs the harness ~1.5 ms of CPU (boto3): every 25 ms that was a third of
its CPU per step at 500 runs/s. Only Litestream writes the replica, and an object it uploaded
is listable once its PUT answered (read-after-write), which Litestream must read from its socket.
So a listing is skipped while Litestream's I/O counters (``/proc/<pid>/io`` rchar + wchar)
have not moved since the last listing began: nothing can have been uploaded since, and the
last reading stands (``S3Replica.activity``).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Container
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from backends.base import ReplicationPosition
from backends.sqlite.objectstore import S3Target, s3_client

UNIT = "WAL byte offset (salt generation << 32)"
_LTX_HEADER = struct.Struct(">4sIIIQQQQQQII")  # magic .. WALSalt1, WALSalt2 (first 72 bytes)


class ShmReader:
    """Reads the WAL-index header of ``-shm`` without ever closing a descriptor of it.

    Why: SQLite's locks are POSIX advisory locks, and closing *any* descriptor of a file drops
    every such lock the process holds on it. The harness process has its own SQLite
    connections (the submitter); an ``open(); read(); close()`` of ``-shm`` here released their
    WAL write lock mid-commit, a worker wrote the same WAL frames, and acknowledged runs
    vanished (found by the lose-node cross-check). So one descriptor per ``-shm`` inode stays
    open until ``close()``, called when the deployment stops, after its connections closed."""

    def __init__(self, db_path: Path) -> None:
        self.path = f"{db_path}-shm"
        self.fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self._suspended = False

    def suspend(self) -> None:
        """Let go of ``-shm`` and read nothing until ``resume`` (the node is off: nothing of
        this process may hold its files, and its own SQLite connections are already closed, so
        closing these descriptors drops no lock anyone relies on)."""
        with self._lock:
            self._suspended = True
            self.close()

    def resume(self) -> None:
        with self._lock:
            self._suspended = False

    def read(self) -> tuple[int, int] | None:
        """(salt1, end offset of the last committed frame); None when unreadable or torn (the
        two header copies differ while a writer updates them), or while suspended."""
        with self._lock:
            return None if self._suspended else self._read()

    def _read(self) -> tuple[int, int] | None:
        try:
            ino = os.stat(self.path).st_ino  # no descriptor involved
            fd = self.fds.get(ino)
            if fd is None:
                fd = os.open(self.path, os.O_RDONLY)
                self.fds[os.fstat(fd).st_ino] = fd  # the inode it really opened
            b = os.pread(fd, 96, 0)
        except OSError:
            return None
        if len(b) < 96 or b[:48] != b[48:96]:
            return None
        size_page, mx_frame = struct.unpack_from("=HI", b, 14)
        page = 65536 if size_page == 1 else size_page
        (salt1,) = struct.unpack_from(">I", b, 32)
        if mx_frame == 0 or page == 0:
            return (salt1, 32)
        return (salt1, 32 + mx_frame * (page + 24))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def parse_ltx_header(b: bytes) -> tuple[int, int] | None:
    """(WALSalt1, WALOffset + WALSize) of an LTX file; None for a snapshot (no WAL range)."""
    if len(b) < _LTX_HEADER.size or b[:4] != b"LTX1":
        return None
    f = _LTX_HEADER.unpack_from(b)
    wal_offset, wal_size, salt1 = f[8], f[9], f[10]
    if wal_size == 0:
        return None
    return (salt1, wal_offset + wal_size)


class FileReplica:
    """The newest level-0 LTX header of a file replica whose salt is known."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "ltx" / "0"

    def newest(self, known: Container[int]) -> tuple[int, int] | None:
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".ltx"))
        except OSError:
            return None
        for name in reversed(names):
            try:
                with open(self.dir / name, "rb") as f:
                    parsed = parse_ltx_header(f.read(100))
            except OSError:
                continue
            if parsed is not None and parsed[0] in known:
                return parsed
        return None


_UNUSABLE = (-1, -1)  # an LTX header without a WAL range: never fetched again


class S3Replica:
    """The newest level-0 LTX header in the bucket whose salt is known: ListObjectsV2 after the
    last key used (so a listing stays small), then ranged GETs of the new files' headers, newest
    first. Headers of newer files whose salt is not known yet are kept until one is used."""

    def __init__(
        self,
        target: S3Target,
        path: str,
        timeout_s: float = 2.0,
        activity: Callable[[], int | None] | None = None,
    ) -> None:
        self.target = target
        self.prefix = f"{path}/0000/"
        self.timeout_s = timeout_s
        # the uploader's I/O counter (None: unknown, list every time); see the module docstring
        self.activity = activity or (lambda: None)
        self.listed_at: int | None = None  # the counter when the last good listing began
        self.listings = 0
        self.last_key = ""
        self.last: tuple[int, int] | None = None
        self.pending: dict[str, tuple[int, int] | None] = {}  # key -> header (None: not read)

    def newest(self, known: Container[int]) -> tuple[int, int] | None:
        act = self.activity()
        if act is None or act != self.listed_at:
            self._list(act)
        for key in sorted(self.pending, reverse=True):
            head = self.pending[key]
            if head is None:
                head = self._header(key)  # None: the GET failed, tried again next time
                if head is None:
                    continue
                self.pending[key] = head
            if head != _UNUSABLE and head[0] in known:
                self.last_key, self.last = key, head
                self.pending = {k: h for k, h in self.pending.items() if k > key}
                break
        return self.last

    def _list(self, act: int | None) -> None:
        client = s3_client(self.target, self.timeout_s)
        args = {"Bucket": self.target.bucket, "Prefix": self.prefix, "MaxKeys": 1000}
        if self.last_key:
            args["StartAfter"] = self.last_key
        try:
            listing = client.list_objects_v2(**args)
        except (BotoCoreError, ClientError, OSError):
            return  # what it held before is still there: a replica never shrinks here
        self.listings += 1
        self.listed_at = act
        for o in listing.get("Contents", []):
            if o["Key"].endswith(".ltx"):
                self.pending.setdefault(o["Key"], None)

    def _header(self, key: str) -> tuple[int, int] | None:
        client = s3_client(self.target, self.timeout_s)
        try:
            obj = client.get_object(Bucket=self.target.bucket, Key=key, Range="bytes=0-99")
            body = obj["Body"].read()
        except (BotoCoreError, ClientError, OSError):
            return None
        return parse_ltx_header(body) or _UNUSABLE


def io_activity(pid: Callable[[], int | None]) -> Callable[[], int | None]:
    """A process's bytes read + written so far (``/proc/<pid>/io``), None when unreadable; the
    pid is asked each time (a restarted Litestream is a new process)."""

    def read() -> int | None:
        p = pid()
        if p is None:
            return None
        try:
            with open(f"/proc/{p}/io", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f.read().splitlines())
            return (p << 48) ^ (int(fields[b"rchar"]) + int(fields[b"wchar"]))
        except (OSError, KeyError, ValueError):
            return None

    return read


class WalPositions:
    """``Deployment.replication_position`` for SQLite + Litestream (see the module docstring)."""

    def __init__(self, db_path: Path, replica: FileReplica | S3Replica) -> None:
        self.db_path = db_path
        self.shm = ShmReader(db_path)
        self.replica = replica
        self.inode: int | None = None
        self.salts: dict[int, int] = {}  # salt-1 -> ordinal, in the order first seen
        self.last_replica: int | None = None

    def _pos(self, salt1: int, end: int) -> int:
        return (self.salts[salt1] << 32) | end

    def read(self) -> ReplicationPosition:
        local: int | None = None
        try:
            inode = os.stat(self.db_path).st_ino
        except OSError:
            inode = None
        wal = self.shm.read() if inode is not None else None
        if inode is not None and wal is not None:
            if inode != self.inode:  # a new database file: a new generation
                self.inode, self.salts, self.last_replica = inode, {}, None
            self.salts.setdefault(wal[0], len(self.salts))
            local = self._pos(*wal)
        replica: int | None = None
        if local is not None and self.last_replica is not None and self.last_replica >= local:
            replica = self.last_replica  # caught up: nothing new to list (the replica only grows)
        else:
            newest = self.replica.newest(self.salts) if self.salts else None
            if newest is not None and newest[0] in self.salts:
                replica = self._pos(*newest)
        if inode is not None and inode == self.inode:
            self.last_replica = replica
        return ReplicationPosition(str(self.inode), local, replica, UNIT)

    def close(self) -> None:
        self.shm.close()
