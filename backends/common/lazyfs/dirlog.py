"""Namespace operations not yet durable (``hold_dirents``): an undo log, like a journal that
has not committed yet.

Model (ext4/xfs with their default journaling): create, mkdir, link, symlink, mknod, unlink,
rmdir and rename are applied to the backing directory at once, and remembered here in order.
The next ``fsync``/``fdatasync``/``fsyncdir`` of *anything* on the mount commits the journal
and with it every namespace operation before it (:meth:`DirLog.commit`); a power loss undoes
the uncommitted ones, newest first (:meth:`DirLog.undo`). Because a sync always commits the
whole log, what is undone is always a suffix: no undo depends on an entry that was kept.

Removed entries are not deleted until they are committed: unlink and rmdir move the entry to
a trash directory beside the backing directory (same filesystem, not visible on the mount),
and a rename over an existing file first hard-links the old target there, so undo can put
them back. Open files stay open either way. Simplifications, all kinder than a real disk (so a
loss lazyfs reports is real): ``fdatasync`` of a file whose size did not change also commits
(ext4 would not), and chmod/chown/utimes are never undone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import time
from dataclasses import dataclass

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
RENAME_EXCHANGE = 2


@dataclass
class Undo:
    kind: str  # "remove" path a | "restore" trash a -> b | "rename" a -> b | "exchange" a b
    a: str
    b: str
    when: float


def exchange(a: str, b: str) -> None:
    if _libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


class DirLog:
    def __init__(self, backing: str) -> None:
        self.trash = backing.rstrip("/") + ".lazyfs-trash"
        self.log: list[Undo] = []
        self.seq = 0
        self.committed = 0
        self.undone = 0
        self.unkept = 0  # removals made final at once (trash on another filesystem)
        os.makedirs(self.trash, mode=0o700, exist_ok=True)
        self._empty_trash()  # a crashed server's leftovers: their removal stands

    def _trash_path(self) -> str:
        self.seq += 1
        return os.path.join(self.trash, str(self.seq))

    def _empty_trash(self) -> None:
        for name in os.listdir(self.trash):
            p = os.path.join(self.trash, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    # -- recording (the operation itself happens here for removals) ---------------------------

    def created(self, path: str) -> None:
        self.log.append(Undo("remove", path, "", time.monotonic()))

    def remove(self, path: str, is_dir: bool) -> None:
        """unlink/rmdir ``path``, keeping it in the trash until the removal commits."""
        if is_dir and os.listdir(path):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), path)
        t = self._trash_path()
        try:
            os.rename(path, t)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            (os.rmdir if is_dir else os.unlink)(path)  # trash on another filesystem: final
            self.unkept += 1
            return
        self.log.append(Undo("restore", t, path, time.monotonic()))

    def before_replace(self, target: str) -> Undo | None:
        """``target`` is about to be replaced by a rename: keep its old entry."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return None
        t = self._trash_path()
        try:
            if stat.S_ISDIR(st.st_mode):  # a rename may only replace an empty directory
                os.rename(target, t)
            else:  # a hard link keeps the old file; the rename stays atomic for readers
                os.link(target, t, follow_symlinks=False)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            self.unkept += 1  # trash on another filesystem: the replacement is final
            return None
        u = Undo("restore", t, target, time.monotonic())
        self.log.append(u)
        return u

    def cancel(self, u: Undo | None) -> None:
        """The rename failed: put back what :meth:`before_replace` moved."""
        if u is None or not self.log or self.log[-1] is not u:
            return
        self.log.pop()
        if os.path.lexists(u.b):
            os.unlink(u.a)  # it was a hard link
        else:
            os.rename(u.a, u.b)

    def renamed(self, old: str, new: str) -> None:
        self.log.append(Undo("rename", new, old, time.monotonic()))

    def exchanged(self, a: str, b: str) -> None:
        self.log.append(Undo("exchange", a, b, time.monotonic()))

    # -- outcomes -----------------------------------------------------------------------------

    def commit(self, older_than: float | None = None) -> None:
        """Everything logged (before ``older_than``, a monotonic time) is durable now."""
        if not self.log:
            return
        if older_than is None:
            n = len(self.log)
        else:
            n = next((i for i, u in enumerate(self.log) if u.when >= older_than), len(self.log))
        if n == 0:
            return
        done, self.log = self.log[:n], self.log[n:]
        self.committed += n
        for u in done:
            if u.kind == "restore":  # the removal is final now
                if os.path.isdir(u.a) and not os.path.islink(u.a):
                    shutil.rmtree(u.a, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(u.a)

    def undo(self) -> dict[str, int]:
        """Power loss: undo every uncommitted operation, newest first."""
        undone = failed = 0
        for u in reversed(self.log):
            try:
                if u.kind == "remove":
                    if os.path.isdir(u.a) and not os.path.islink(u.a):
                        os.rmdir(u.a)
                    else:
                        os.unlink(u.a)
                elif u.kind == "restore":
                    if os.path.lexists(u.b):  # replaced by a rename (undone before this)
                        os.unlink(u.b)
                    os.rename(u.a, u.b)
                elif u.kind == "rename":
                    os.rename(u.a, u.b)
                else:
                    exchange(u.a, u.b)
                undone += 1
            except OSError:
                failed += 1
        self.log.clear()
        self.undone += undone
        self._empty_trash()
        return {"undone_dirents": undone, "undo_failed": failed}
